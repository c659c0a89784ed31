"""Meta-tests of the notebook 04 checks: the notebook's answers pass with its PASS lines, plausible
wrong answers fail with the hint of their mistake, wrong types fail without raising."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from course_lib.checks import WRONG_KINDS, nb04
from course_lib.torch_models.askgru import GRUEncoder, multitask_loss, tag_loss
from course_lib.torch_models.saliency import word_saliency


def _fails_with(capsys, verdict, hint):
    out = capsys.readouterr().out
    assert not verdict, out
    assert out.startswith("FAIL: ") and hint in out, out


# ---------------------------------------------------------------------------------------- encoder


class Encoder(nn.Module):
    """The notebook's encoder (the template's embed and forward, the learner's encode_embedded);
    the keyword arguments switch one slip on."""

    def __init__(self, n_words, emb_dim=200, hidden1=400, hidden2=200, dropout=(0.1, 0.5, 0.3), *, pack=True,
                 divide="real", skip=None, functional=False, pool="mean", no_grad=False, detach=False):
        super().__init__()
        self.embedding = nn.Embedding(n_words, emb_dim, padding_idx=0)
        self.gru1 = nn.GRU(emb_dim, hidden1, batch_first=True, bidirectional=True)
        self.gru2 = nn.GRU(2 * hidden1, hidden2, batch_first=True)
        self.drops = nn.ModuleList(nn.Dropout(p) for p in dropout)
        self.out_dim = hidden2
        self.rates, self.pack, self.divide, self.skip, self.functional, self.pool = (
            dropout, pack, divide, skip, functional, pool)
        self.no_grad, self.detach = no_grad, detach

    def embed(self, ids):
        return self.embedding(ids)

    def forward(self, batch):
        return self.encode_embedded(self.embed(batch.ids), batch.mask)

    def _drop(self, k, x):
        if k == self.skip:
            return x
        return F.dropout(x, self.rates[k]) if self.functional else self.drops[k](x)

    def _gru(self, gru, x, lengths, width):
        if not self.pack:
            return gru(x)[0]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=width)[0]

    def encode_embedded(self, emb, mask):
        with torch.set_grad_enabled(not self.no_grad):
            return self._encode(emb.detach() if self.detach else emb, mask)

    def _encode(self, emb, mask):
        width = emb.shape[1]
        lengths = mask.sum(dim=1).long()
        h1 = self._drop(1, self._gru(self.gru1, self._drop(0, emb), lengths, width))
        h2 = self._drop(2, self._gru(self.gru2, h1, lengths, width))
        if self.pool == "last":
            return h2[torch.arange(len(lengths)), lengths - 1]
        total = (h2 * mask.unsqueeze(-1)).sum(dim=1)
        return total / (lengths.unsqueeze(-1) if self.divide == "real" else width)


class _AllInForward(Encoder):
    """Everything written in forward, the template's encode_embedded deleted."""

    encode_embedded = None

    def forward(self, batch):
        return self._encode(self.embedding(batch.ids), batch.mask)


class _OnlyForwardDirection(Encoder):
    """Reads gru1's forward half only and pads it with zeros where the backward states belong."""

    def _encode(self, emb, mask):
        width, lengths = emb.shape[1], mask.sum(dim=1).long()
        h1 = self._gru(self.gru1, emb, lengths, width)
        h1 = torch.cat([h1[..., : h1.shape[-1] // 2], torch.zeros_like(h1[..., h1.shape[-1] // 2:])], dim=-1)
        h2 = self._gru(self.gru2, h1, lengths, width)
        return (h2 * mask.unsqueeze(-1)).sum(dim=1) / lengths.unsqueeze(-1)


def test_encoder_passes(capsys):
    assert nb04.check_gru_encoder(Encoder)
    assert capsys.readouterr().out == ("PASS: same output as GRUEncoder, padding never changes it, and it plugs into "
                                       "AskGRU\n")


class _Renamed(Encoder):
    def __init__(self, *args):
        super().__init__(*args)
        self.rnn2 = self.gru2
        del self.gru2

    def forward(self, batch):
        return torch.zeros(len(batch.ids), 4)


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: Encoder(*a, pack=False), "the backward GRU reads the padding first"),
    (lambda *a: Encoder(*a, divide="width"), "not by the width of the batch"),
    (lambda *a: Encoder(*a, pool="last"), "you returned the last state"),
    (lambda *a: Encoder(*a, skip=0), "apply the dropout of the embeddings (self.drops[0])"),
    (lambda *a: Encoder(*a, skip=2), "apply the dropout of the second layer's output (self.drops[2])"),
    (lambda *a: Encoder(*a, functional=True), "in evaluation mode two forward passes differ"),
    (_Renamed, "your module lacks ['gru2'] and has ['rnn2'] instead"),
    (_AllInForward, "your encoder lacks the method(s) ['encode_embedded']"),
    (lambda *a: Encoder(*a, no_grad=True), "the encoding carries no gradient"),
    (lambda *a: Encoder(*a, detach=True), "no gradient reaches the embeddings given to encode_embedded"),
    (_OnlyForwardDirection, "on papers without padding your output differs from the reference"),
], ids=["unpacked", "width", "last-state", "no-drop0", "no-drop2", "dropout-in-eval", "renamed-layer",
        "no-encode-embedded", "no-grad", "detached-embeddings", "forward-direction-only"])
def test_encoder_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb04.check_gru_encoder(answer), hint)


class _ForwardReturnsDict(Encoder):
    def forward(self, batch):
        return {"h": 1}


@pytest.mark.parametrize("answer", WRONG_KINDS + [_ForwardReturnsDict])
def test_encoder_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb04.check_gru_encoder(answer), "")


def test_encoder_not_implemented_is_raised_again(capsys):
    class NotDone(Encoder):
        def encode_embedded(self, emb, mask):
            raise NotImplementedError("Exercise 1: encoder")

    with pytest.raises(NotImplementedError):
        nb04.check_gru_encoder(NotDone)
    assert "encode_embedded (through forward) is not implemented yet" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ confidence


def _conf(pred, target, n, alpha=10.0, eps=1e-8, *, log=torch.log1p, one=1.0, reduce="mean"):
    """A learner's confidence-weighted loss with one switchable slip."""
    c = one + alpha * log(n / eps)
    return getattr(c * (pred - target) ** 2, reduce)()


def test_confidence_loss_passes(capsys):
    assert nb04.check_confidence_loss(_conf)
    assert capsys.readouterr().out == "PASS: loss = 23.1905, as eq. (2) with c_ij = 1 + alpha log(1 + |R_i|/eps)\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda p, t, n, a, e: ((p - t) ** 2).mean(), "that is the unweighted mean"),
    (lambda p, t, n, a, e: _conf(p, t, n), "use the arguments alpha_conf and eps_conf"),
    (lambda p, t, n, a, e: _conf(p, t, n, a, e, log=torch.log), "you wrote log(|R_i| / eps)"),
    (lambda p, t, n, a, e: _conf(p, t, n, a, 1 / e), "eps divides the number of likes"),
    (lambda p, t, n, a, e: _conf(p, t, n, a, e, log=lambda x: torch.log10(1 + x)), "the natural log"),
    (lambda p, t, n, a, e: _conf(p, t, n, a, e, one=0.0), "c_ij starts at 1"),
    (lambda p, t, n, a, e: _conf(p, t, n, a, e, reduce="sum"), "you summed over the pairs"),
    (lambda p, t, n, a, e: _conf(p, t, n, a, 1e-8), "use the argument eps_conf"),
    (lambda p, t, n, a, e: _conf(p, t, n, a, e).item(), "fit calls .backward() on it"),
    (lambda p, t, n, a, e: _conf(p.detach(), t, n, a, e), "carries no gradient"),
], ids=["unweighted", "constants", "no-one-inside", "eps-times", "log10", "no-one", "sum", "constant-eps", "float",
        "detached-pred"])
def test_confidence_loss_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb04.check_confidence_loss(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_confidence_loss_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb04.check_confidence_loss(answer), "")


# ------------------------------------------------------------------------------------- multi-task


def _mtl(loss_rec, z, tags, lam=0.5, c=0.01, *, where="neg", stable=True, reduce="papers"):
    """A learner's multi-task cost with one switchable slip."""
    log_p = F.logsigmoid(z) if stable else torch.log(torch.sigmoid(z))
    log_not_p = F.logsigmoid(-z) if stable else torch.log(1 - torch.sigmoid(z))
    ll = tags * log_p + c * (1 - tags) * log_not_p if where == "neg" else c * tags * log_p + (1 - tags) * log_not_p
    c_t = -(ll.sum(1).mean() if reduce == "papers" else ll.mean())
    return lam * loss_rec + (1 - lam) * c_t


def test_multitask_passes_the_notebook_answer_and_the_library(capsys):
    assert nb04.check_multitask_loss(_mtl)
    assert nb04.check_multitask_loss(lambda r, z, t, lam, c: multitask_loss(r, tag_loss(z, t, c), lam))
    assert capsys.readouterr().out == ("PASS: C = 1.7820 and its gradient match lambda C_R + (1 - lambda) C_T "
                                       "(gradient relative error < 1e-5)\n") * 2


@pytest.mark.parametrize("answer, hint", [
    (lambda r, z, t, lam, c: lam * r, "the tag term is missing"),
    (lambda r, z, t, lam, c: _mtl(r, z, t, 1 - lam, c), "lambda_mtl weighs the recommendation cost"),
    (lambda r, z, t, lam, c: _mtl(r, z, t, lam, c, where="pos"), "c' down-weights the tags a paper does NOT have"),
    (lambda r, z, t, lam, c: _mtl(r, z, t, lam, c, reduce="entries"), "you averaged over every (paper, tag) entry"),
    (lambda r, z, t, lam, c: _mtl(r, z, t, lam, c, stable=False), "the cost is inf/NaN for large logits"),
    (lambda r, z, t, lam, c: _mtl(r, z, t, lam, c).item(), "must return a torch tensor connected to tag_logits"),
    (lambda r, z, t, lam, c: lam * r + _mtl(0.0, z, t, 0.0, c), "the tag cost is weighted by 1 - lambda_mtl"),
], ids=["no-tags", "lambda-swapped", "weight-on-positives", "entries", "unstable", "float", "no-one-minus-lambda"])
def test_multitask_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb04.check_multitask_loss(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_multitask_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb04.check_multitask_loss(answer), "")


# --------------------------------------------------------------------------------------- saliency


def _saliency(model, texts, paper, user, *, evaluate=True, norm="l2", all_users=False):
    """The notebook's word saliency with one switchable slip."""
    if evaluate:
        model.eval()
    n = int(texts.lengths[paper])
    emb = model.encoder.embed(torch.as_tensor(texts.ids[paper: paper + 1, :n])).detach().requires_grad_(True)
    g = model.encoder.encode_embedded(emb, torch.ones(1, n))
    users = torch.arange(model.n_users) if all_users else torch.tensor([user])
    idx = torch.tensor([paper] * len(users))
    f = g + model.warm[idx].unsqueeze(-1).float() * model.item_emb[idx]
    model.score_pairs(users, f, idx).sum().backward()
    grad = emb.grad[0]
    return {"l2": grad.norm(dim=-1), "l1": grad.abs().sum(-1), "square": (grad ** 2).sum(-1)}[norm].numpy()


def test_saliency_passes_the_notebook_answer_and_the_library(capsys):
    assert nb04.check_saliency(_saliency)
    assert nb04.check_saliency(lambda m, texts, paper, user: word_saliency(m, texts, paper, [user], device="cpu")[0])
    assert capsys.readouterr().out == ("PASS: one value per word, equal to the norm of the gradient of r_ij w.r.t. "
                                       "each embedding\n") * 2


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _saliency(*a, evaluate=False), "dropout is still on"),
    (lambda *a: _saliency(*a, norm="l1"), "sum of absolute values"),
    (lambda *a: _saliency(*a, norm="square"), "you took its square"),
    (lambda *a: _saliency(*a, all_users=True), "you backpropagated the scores of all users"),
    (lambda m, texts, paper, user: np.pad(_saliency(m, texts, paper, user), (0, 7 - texts.lengths[paper])),
     "leave the padding out"),
], ids=["dropout-on", "l1", "square", "all-users", "padding"])
def test_saliency_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb04.check_saliency(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_saliency_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb04.check_saliency(answer), "")


def test_the_encoder_check_uses_the_library_encoder_as_its_reference():
    """The reference the check compares with is GRUEncoder itself, so the PASS line means that."""
    assert nb04.check_gru_encoder(lambda n, e, h1, h2, d: GRUEncoder(n, e, h1, h2, dropout=d))


@pytest.mark.parametrize("check", [nb04.check_confidence_loss, nb04.check_multitask_loss])
def test_a_nan_cost_fails(check, capsys):
    _fails_with(capsys, check(lambda *a: torch.tensor(float("nan"), requires_grad=True)), "")
