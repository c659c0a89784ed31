"""The notebook 02 checks accept right answers and name typical wrong ones."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks import nb02
from course_lib.torch_models.paragraph2vec import negative_sampling_loss, noise_distribution



def _out(capsys) -> str:
    return capsys.readouterr().out


# ----------------------------------------------------------------------------- negative sampling


def test_ns_loss_check_passes_the_library_loss(capsys):
    assert nb02.check_ns_loss(negative_sampling_loss)
    assert _out(capsys).startswith("PASS: ns_loss matches the formula")


def test_ns_loss_check_names_mistakes(capsys):
    def swapped_signs(h, pos, neg):
        return -F.logsigmoid(-(h * pos).sum(-1)) - F.logsigmoid(torch.bmm(neg, h[:, :, None])[..., 0]).sum(-1)

    def log_of_sigmoid(h, pos, neg):  # right formula, underflows for large scores
        s_neg = torch.bmm(neg, h[:, :, None])[..., 0]
        return -torch.log(torch.sigmoid((h * pos).sum(-1))) - torch.log(torch.sigmoid(-s_neg)).sum(-1)

    assert not nb02.check_ns_loss(swapped_signs)
    assert "The signs look swapped" in _out(capsys)
    assert not nb02.check_ns_loss(lambda h, pos, neg: negative_sampling_loss(h, pos, neg).sum())
    assert "shape (batch,) = (4,), got (); sum over the K noise words but not over the batch" in _out(capsys)
    assert not nb02.check_ns_loss(lambda h, pos, neg: negative_sampling_loss(h, pos, neg).detach())
    assert "no gradient reaches h" in _out(capsys)
    assert not nb02.check_ns_loss(log_of_sigmoid)
    assert "use F.logsigmoid(x) instead of torch.log(torch.sigmoid(x))" in _out(capsys)
    assert not nb02.check_ns_loss(lambda h, pos, neg: None)
    assert "ns_loss returned None" in _out(capsys)

    def not_done(h, pos, neg):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        nb02.check_ns_loss(not_done)
    assert "ns_loss is not implemented yet" in _out(capsys)


def test_noise_probs_check(capsys):
    assert nb02.check_noise_probs(noise_distribution)
    assert _out(capsys) == "PASS: noise_probs = [0.0, 0.0, 0.2222, 0.0278, 0.0, 0.75]\n"

    def keeps_unk(counts, e):
        p = np.asarray(counts, float) ** e
        return p / p.sum()

    def no_exponent(counts, e):
        return noise_distribution(counts, 1.0)

    def not_normalised(counts, e):
        c = np.asarray(counts, float)
        c[:2] = 0
        return c ** e

    assert not nb02.check_noise_probs(keeps_unk)
    assert "<PAD> (id 0) and <UNK> (id 1) must have probability 0" in _out(capsys)
    assert not nb02.check_noise_probs(no_exponent)
    assert "raw unigram frequencies" in _out(capsys)
    assert not nb02.check_noise_probs(not_normalised)
    assert "the probabilities sum to 36.0000, not 1: normalise" in _out(capsys)
    assert not nb02.check_noise_probs(lambda counts, e: noise_distribution(counts, e)[2:])
    assert "shape (6,), got (4,)" in _out(capsys)
    assert not nb02.check_noise_probs(lambda counts, e: None)
    assert "noise_probs returned None" in _out(capsys)


# ------------------------------------------------------------------------------------- PV-DBOW


class PVDBOW(nn.Module):
    """The exercise's module around the library's loss (word2vec's initialisation)."""

    def __init__(self, n_docs, vocab_size, dim, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.doc_vectors = nn.Embedding(n_docs, dim)
        self.out_vectors = nn.Embedding(vocab_size, dim)
        with torch.no_grad():
            self.doc_vectors.weight.uniform_(-0.5 / dim, 0.5 / dim, generator=gen)
            self.out_vectors.weight.zero_()

    def forward(self, doc, target, negatives):
        return negative_sampling_loss(self.doc_vectors(doc), self.out_vectors(target), self.out_vectors(negatives))


def _variant(forward):
    return type("Variant", (PVDBOW,), {"forward": forward})


def test_pvdbow_check_passes_the_reference(capsys):
    assert nb02.check_pvdbow(PVDBOW)
    assert "the nearest paragraph shares the planted topic for 100% of paragraphs" in _out(capsys)


def test_pvdbow_check_names_mistakes(capsys):
    def summed(self, doc, target, negatives):
        return PVDBOW.forward(self, doc, target, negatives).sum()

    def no_negatives(self, doc, target, negatives):
        return -F.logsigmoid((self.doc_vectors(doc) * self.out_vectors(target)).sum(-1))

    def swapped_arguments(self, doc, target, negatives):  # the true word's vector taken as h
        return negative_sampling_loss(self.out_vectors(target), self.doc_vectors(doc), self.out_vectors(negatives))

    def detached(self, doc, target, negatives):
        return PVDBOW.forward(self, doc, target, negatives).detach()

    assert not nb02.check_pvdbow(_variant(summed))
    assert "forward must return one loss per example, shape (3,), got ()" in _out(capsys)
    assert not nb02.check_pvdbow(_variant(no_negatives))
    assert "every loss should be (1 + K) log 2 = 2.0794" in _out(capsys)
    assert not nb02.check_pvdbow(_variant(swapped_arguments))
    assert "use the paragraph vector as h and the output vectors of the words" in _out(capsys)
    assert not nb02.check_pvdbow(_variant(detached))
    assert "the losses carry no gradient" in _out(capsys)
    assert not nb02.check_pvdbow(_variant(lambda self, doc, target, negatives: None))
    assert "PVDBOW.forward returned None" in _out(capsys)


def test_loss_history_check(capsys):
    assert nb02.check_loss_history([3.0, 2.5, 2.2])
    assert _out(capsys).startswith("PASS: the loss went down by more than 5% over 3 epochs")
    assert not nb02.check_loss_history([3.0, 2.9, 2.95])
    assert "the loss did not go down (3.000 -> 2.950)" in _out(capsys)
    assert not nb02.check_loss_history([3.0, float("nan")])
    assert "NaN/inf" in _out(capsys)
    assert not nb02.check_loss_history([3.0])
    assert "at least 2 epochs" in _out(capsys)


# ------------------------------------------------------------------------------------ inference


def _infer(model, words, noise, epochs=50, lr=0.05, negative=5, seed=0, frozen=True):
    gen = torch.Generator().manual_seed(seed)
    dim = model.doc_vectors.weight.shape[1]
    d = torch.empty(1, dim).uniform_(-0.5 / dim, 0.5 / dim, generator=gen).requires_grad_()
    out = model.out_vectors.weight.detach() if frozen else model.out_vectors.weight
    params = [d] if frozen else [d, model.out_vectors.weight]
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(epochs):
        neg = torch.multinomial(noise, len(words) * negative, replacement=True, generator=gen)
        loss = negative_sampling_loss(d.expand(len(words), -1), out[words], out[neg].view(len(words), negative, dim))
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    return d.detach()[0]


def test_infer_check(capsys):
    assert nb02.check_infer(_infer, PVDBOW)
    assert "for 100% of them (chance 33%); the model stayed frozen" in _out(capsys)

    def untrained(model, words, noise, epochs=50, lr=0.05, negative=5, seed=0):
        return _infer(model, words, noise, epochs=0, seed=seed)

    assert not nb02.check_infer(lambda *a, **k: _infer(*a, **k, frozen=False), PVDBOW)
    assert "infer_vector changed the model's weights" in _out(capsys)
    assert not nb02.check_infer(untrained, PVDBOW)
    assert "minimise ns_loss over the new vector" in _out(capsys)
    assert not nb02.check_infer(lambda *a, **k: None, PVDBOW)
    assert "infer_vector returned None" in _out(capsys)


# ---------------------------------------------------------------------------------------- PV-DM


def _dm_hidden(d, w, mask):
    return (d + (w * mask.unsqueeze(-1)).sum(1)) / (1.0 + mask.sum(1, keepdim=True))


def test_dm_hidden_check(capsys):
    assert nb02.check_dm_hidden(_dm_hidden)
    assert _out(capsys).startswith("PASS: dm_hidden averages the paragraph vector")
    assert not nb02.check_dm_hidden(lambda d, w, mask: d)
    assert "returned the paragraph vector alone" in _out(capsys)
    assert not nb02.check_dm_hidden(lambda d, w, mask: (d + w.sum(1)) / (1 + w.shape[1]))  # forgot the mask
    assert "the padded context positions were counted" in _out(capsys)
    assert not nb02.check_dm_hidden(lambda d, w, mask: d + (w * mask.unsqueeze(-1)).sum(1))
    assert "you summed the paragraph vector and the context words" in _out(capsys)
    assert not nb02.check_dm_hidden(lambda d, w, mask: torch.cat([d, (w * mask.unsqueeze(-1)).sum(1)], 1))
    assert "(batch, dim) = (3, 4), got (3, 8)" in _out(capsys)
    assert not nb02.check_dm_hidden(lambda d, w, mask: None)
    assert "dm_hidden returned None" in _out(capsys)


def test_tag_lift_and_reinferred_checks(capsys):
    assert nb02.check_tag_lift({"lift": 2.4})
    assert not nb02.check_tag_lift({"lift": 1.2})
    assert "only 1.20x as often as random papers (want >= 1.5)" in _out(capsys)
    assert nb02.check_reinferred([0, 0, 0, 0, 1])
    assert not nb02.check_reinferred([0, 3, 0, 1, 2])
    assert "only 40% of the re-inferred papers" in _out(capsys)
