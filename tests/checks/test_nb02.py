"""Meta-tests of the notebook 02 checks: the notebook's answers pass with its PASS lines, plausible
wrong answers fail with the hint of their mistake, wrong types fail without raising."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks import WRONG_KINDS, nb02
from course_lib.torch_models.paragraph2vec import negative_sampling_loss, noise_distribution


def _fails_with(capsys, verdict, hint):
    out = capsys.readouterr().out
    assert not verdict, out
    assert out.startswith("FAIL: ") and hint in out, out


# ------------------------------------------------------------------------------- negative sampling


def _ns(h, pos, neg, *, pos_sign=1.0, neg_sign=-1.0, k_mean=False, stable=True):
    """A learner's ns_loss with one switchable slip."""
    s_pos = (h * pos).sum(-1)
    s_neg = torch.bmm(neg, h.unsqueeze(-1)).squeeze(-1)
    logsig = F.logsigmoid if stable else (lambda x: torch.log(torch.sigmoid(x)))
    noise = logsig(neg_sign * s_neg)
    return -logsig(pos_sign * s_pos) - (noise.mean(-1) if k_mean else noise.sum(-1))


def test_ns_loss_passes_the_notebook_answer_and_the_library(capsys):
    assert nb02.check_ns_loss(_ns)
    assert nb02.check_ns_loss(negative_sampling_loss)
    assert capsys.readouterr().out == (
        "PASS: ns_loss matches the formula; its gradient matches the closed form (relative error < 1e-6 with "
        "autograd, < 1e-5 with finite differences); stable for large scores.\n") * 2


@pytest.mark.parametrize("answer, hint", [
    (lambda h, p, n: _ns(h, p, n, pos_sign=-1.0, neg_sign=1.0), "The signs look swapped".lower()),
    (lambda h, p, n: _ns(h, p, n, neg_sign=1.0), "the noise words must score LOW"),
    (lambda h, p, n: _ns(h, p, n, pos_sign=-1.0), "the true word must score HIGH"),
    (lambda h, p, n: _ns(h, p, n, k_mean=True), "you averaged the K noise-word terms"),
    (lambda h, p, n: -_ns(h, p, n), "check the overall sign"),
    (lambda h, p, n: _ns(h, p, n).sum(), "you reduced over the batch"),
    (lambda h, p, n: _ns(h, p, n).detach(), "carries no gradient"),
    (lambda h, p, n: _ns(h, p, n, stable=False), "log(sigmoid(x)) underflows to log(0)"),
], ids=["swapped", "noise-sign", "true-sign", "mean-over-k", "negated", "batch-sum", "detached", "unstable"])
def test_ns_loss_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb02.check_ns_loss(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS + [lambda h, p, n: _ns(h, p, n).numpy()])
def test_ns_loss_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb02.check_ns_loss(answer), "")


# ---------------------------------------------------------------------------------------- noise


def test_noise_probs_passes(capsys):
    assert nb02.check_noise_probs(noise_distribution)
    assert capsys.readouterr().out == "PASS: noise_probs = [0.0, 0.0, 0.2222, 0.0278, 0.0, 0.75]\n"


def _zero_after(counts, e):
    p = np.asarray(counts, float) ** e
    p = p / p.sum()
    p[:2] = 0
    return p


def _in_place(counts, e):
    counts[:2] = 0
    return counts ** e / (counts ** e).sum()


def _keeps_unk(counts, e):
    p = np.asarray(counts, float) ** e
    return p / p.sum()


@pytest.mark.parametrize("answer, hint", [
    (_zero_after, "you zeroed <PAD> and <UNK> after normalising"),
    (_keeps_unk, "must have probability 0: they are not words"),
    (lambda c, e: noise_distribution(c, 1.0), "these are the raw unigram frequencies"),
    (lambda c, e: noise_distribution(c, 0.75), "use the ns_exponent argument"),
    (_in_place, "changed the counts array it was given"),
    (lambda c, e: np.r_[0.0, 0.0, np.asarray(c[2:], float) ** e], "not 1: normalise"),
], ids=["zeroed-after", "keeps-unk", "no-exponent", "constant-exponent", "in-place", "not-normalised"])
def test_noise_probs_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb02.check_noise_probs(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_noise_probs_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb02.check_noise_probs(answer), "")


# ----------------------------------------------------------------------------------------- PVDBOW


class PVDBOW(nn.Module):
    """The notebook's module, with the forward pass of Exercise 3."""

    def __init__(self, n_docs, vocab_size, dim, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.doc_vectors = nn.Embedding(n_docs, dim)
        self.out_vectors = nn.Embedding(vocab_size, dim)
        with torch.no_grad():
            self.doc_vectors.weight.uniform_(-0.5 / dim, 0.5 / dim, generator=gen)
            self.out_vectors.weight.zero_()

    def forward(self, doc, target, negatives):
        return _ns(self.doc_vectors(doc), self.out_vectors(target), self.out_vectors(negatives))


class _SwappedRoles(PVDBOW):
    def forward(self, doc, target, negatives):
        return _ns(self.out_vectors(target), self.doc_vectors(doc), self.out_vectors(negatives))


class _WrongTable(PVDBOW):
    def forward(self, doc, target, negatives):
        return _ns(self.out_vectors(doc), self.doc_vectors(target), self.out_vectors(negatives))


class _Summed(PVDBOW):
    def forward(self, doc, target, negatives):
        return super().forward(doc, target, negatives).sum()


class _Detached(PVDBOW):
    def forward(self, doc, target, negatives):
        return super().forward(doc, target, negatives).detach()


class _NoNoise(PVDBOW):
    def forward(self, doc, target, negatives):
        return -F.logsigmoid((self.doc_vectors(doc) * self.out_vectors(target)).sum(-1))


def test_pvdbow_passes(capsys):
    assert nb02.check_pvdbow(PVDBOW)
    assert capsys.readouterr().out == (
        "PASS: on a planted corpus the loss fell by more than 10% in 15 epochs and the nearest paragraph shares the "
        "planted topic for 100% of paragraphs (chance 33%).\n")


@pytest.mark.parametrize("answer, hint", [
    (_SwappedRoles, "h is the paragraph vector of doc"),
    (_WrongTable, "paragraph ids index the paragraph vectors"),
    (_Summed, "you reduced over the batch"),
    (_Detached, "the losses carry no gradient"),
    (_NoNoise, "the noise-word terms are missing"),
], ids=["swapped-roles", "wrong-table", "summed", "detached", "no-noise"])
def test_pvdbow_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb02.check_pvdbow(answer), hint)


class _ReturnsDict(PVDBOW):
    def forward(self, doc, target, negatives):
        return {"loss": 1}


@pytest.mark.parametrize("answer", WRONG_KINDS + [_ReturnsDict])
def test_pvdbow_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb02.check_pvdbow(answer), "")


# -------------------------------------------------------------------------------------- inference


def _infer(model, words, noise, epochs=50, lr=0.05, negative=5, seed=0, *, sign=1.0, seeded=True, frozen=True):
    """The notebook's infer_vector, with one switchable slip."""
    gen = torch.Generator().manual_seed(seed) if seeded else None
    dim = model.doc_vectors.weight.shape[1]
    d = torch.empty(1, dim).uniform_(-0.5 / dim, 0.5 / dim, generator=gen).requires_grad_()
    out = model.out_vectors.weight.detach()
    opt = torch.optim.SGD([d] if frozen else [d, *model.parameters()], lr=lr)
    for _ in range(epochs):
        neg = torch.multinomial(noise, len(words) * negative, replacement=True, generator=gen)
        loss = _ns(d.expand(len(words), -1), out[words], out[neg].view(len(words), negative, dim)).sum()
        if not frozen:
            loss = loss + model(torch.zeros_like(words[:1]), words[:1], words[:1].view(1, 1)).sum()
        opt.zero_grad()
        (sign * loss).backward()
        opt.step()
    return d.detach()[0]


def test_infer_passes(capsys):
    assert nb02.check_infer(_infer, PVDBOW)
    assert capsys.readouterr().out == (
        "PASS: inferred vectors of unseen paragraphs land next to trained paragraphs of the same planted topic for "
        "100% of them (chance 33%); the model stayed frozen.\n")


@pytest.mark.parametrize("answer, hint", [
    (lambda *a, **k: _infer(*a, **k, sign=-1.0), "the update climbs the loss"),
    (lambda *a, **k: _infer(*a, **k, seeded=False), "two calls with the same seed gave different vectors"),
    (lambda *a, **k: _infer(*a, **{**k, "epochs": 0}), "barely moved from their start"),
    (lambda *a, **k: _infer(*a, **k, frozen=False), "infer_vector changed the model's weights"),
    (lambda *a, **k: torch.zeros(3), "one vector of size dim=8"),
], ids=["ascent", "unseeded", "no-steps", "trains-model", "size"])
def test_infer_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb02.check_infer(answer, PVDBOW), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_infer_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb02.check_infer(answer, PVDBOW), "")


# ------------------------------------------------------------------------------------------ PV-DM


def _dm(d, w, mask, *, with_d=True, use_mask=True, divide="1+n"):
    """A learner's dm_hidden with one switchable slip."""
    m = mask if use_mask else torch.ones_like(mask)
    words = (w * m.unsqueeze(-1)).sum(1)
    n = m.sum(1, keepdim=True)
    total = d + words if with_d else words
    return {"1+n": total / (1 + n), "n": total / n, "none": total}[divide]


def test_dm_hidden_passes(capsys):
    assert nb02.check_dm_hidden(_dm)
    assert capsys.readouterr().out == (
        "PASS: dm_hidden averages the paragraph vector with the real context words (the third example, with no "
        "context word, is its paragraph vector alone).\n")


@pytest.mark.parametrize("answer, hint", [
    (lambda d, w, m: d, "returned the paragraph vector alone"),
    (lambda d, w, m: _dm(d, w, m, use_mask=False), "the padded context positions were counted"),
    (lambda d, w, m: _dm(d, w, m, divide="none"), "you summed the paragraph vector and the context words"),
    (lambda d, w, m: _dm(d, w, m, divide="n"), "divide by 1 + the number of real context words"),
    (lambda d, w, m: _dm(d, w, m, with_d=False), "the paragraph vector is missing"),
    (lambda d, w, m: (d + (w * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1)) / 2,
     "you averaged the words first"),
], ids=["d-only", "padding", "sum", "no-plus-one", "no-d", "mean-of-means"])
def test_dm_hidden_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb02.check_dm_hidden(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_dm_hidden_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb02.check_dm_hidden(answer), "")


# ------------------------------------------------------------------------------ after-training checks


def test_result_checks_pass_and_fail_without_raising(capsys):
    assert nb02.check_loss_history([3.0, 2.0, 1.0])
    assert nb02.check_tag_lift({"lift": 2.0})
    assert nb02.check_reinferred(np.array([0, 0, 0, 0, 1]))
    capsys.readouterr()
    _fails_with(capsys, nb02.check_loss_history([1.0, float("nan")]), "the loss became NaN/inf")
    _fails_with(capsys, nb02.check_loss_history(None), "the loss history must be a list of per-epoch losses, got None")
    _fails_with(capsys, nb02.check_tag_lift({"lift": 1.1}), "only 1.10x as often")
    _fails_with(capsys, nb02.check_tag_lift([2.0]), "with the key 'lift'")
    _fails_with(capsys, nb02.check_reinferred("ranks"), "own_rank must be an array of ranks")
    _fails_with(capsys, nb02.check_reinferred(np.ones(5)), "only 0% of the re-inferred papers")
