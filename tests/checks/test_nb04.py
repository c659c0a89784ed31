"""The notebook 04 checks accept right answers and name typical wrong ones."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.checks import nb04
from course_lib.torch_models import askgru as ag
from course_lib.torch_models.saliency import word_saliency



def _out(capsys) -> str:
    return capsys.readouterr().out


# ------------------------------------------------------------------------------------ encoder


def _encoder(encode_embedded=None, **overrides):
    """A class called as the exercise calls the learner's: ``cls(n_words, emb_dim, hidden1, hidden2, dropout)``;
    ``encode_embedded`` replaces the library's forward pass after the embedding lookup."""
    body = {"__init__": lambda self, n, e, h1, h2, d: ag.GRUEncoder.__init__(self, n, e, h1, h2, dropout=d)}
    if encode_embedded is not None:
        body["encode_embedded"] = encode_embedded
    body.update(overrides)
    return type("LearnerEncoder", (ag.GRUEncoder,), body)


def _unpacked(self, emb, mask):
    """Runs both GRUs over the padding: the backward direction starts on padding."""
    h2, _ = self.gru2(self.gru1(emb)[0])  # (B, L, hidden2)
    return (h2 * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)


def _mean_over_width(self, emb, mask):
    h2 = ag.GRUEncoder.encode_embedded(self, emb, mask) * mask.sum(1, keepdim=True)
    return h2 / mask.shape[1]  # divides by the padded width, not by the number of real words


def _no_dropout(self, emb, mask):
    self.drops = torch.nn.ModuleList(torch.nn.Identity() for _ in range(3))  # as if self.drops were never used
    return ag.GRUEncoder.encode_embedded(self, emb, mask)


def _last_state(self, emb, mask):
    h2, _ = self.gru2(self.gru1(emb)[0])
    return h2[:, -1]


def test_gru_encoder_check_passes_the_library_encoder(capsys):
    assert nb04.check_gru_encoder(_encoder())
    assert _out(capsys) == "PASS: same output as GRUEncoder, and padding never changes it\n"


def test_gru_encoder_check_names_mistakes(capsys):
    assert not nb04.check_gru_encoder(_encoder(_unpacked))
    assert "padding changes your output" in _out(capsys)
    assert not nb04.check_gru_encoder(_encoder(_mean_over_width))
    assert "the mean must divide by the number of real words" in _out(capsys)
    assert not nb04.check_gru_encoder(_encoder(_last_state))
    assert "on papers without padding your output differs from the reference" in _out(capsys)
    assert not nb04.check_gru_encoder(_encoder(_no_dropout, embed=lambda self, ids: self.embedding(ids)))
    assert "two forward passes give the same output: apply self.drops[0]" in _out(capsys)
    assert not nb04.check_gru_encoder(_encoder(lambda self, emb, mask: None))
    assert "forward returned None" in _out(capsys)
    assert not nb04.check_gru_encoder(_encoder(lambda self, emb, mask: ag.GRUEncoder.encode_embedded(self, emb, mask).T))
    assert "the output has shape (4, 3), expected (batch=3, hidden2=4)" in _out(capsys)

    def one_direction(self, n, e, h1, h2, d):
        ag.GRUEncoder.__init__(self, n, e, h1, h2, dropout=d)
        self.gru1 = torch.nn.GRU(e, h1, batch_first=True)

    assert not nb04.check_gru_encoder(_encoder(__init__=one_direction))
    assert "the layers differ from GRUEncoder's (embedding, gru1, gru2)" in _out(capsys)

    def not_done(self, emb, mask):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        nb04.check_gru_encoder(_encoder(not_done))
    assert "forward is not implemented yet" in _out(capsys)


# -------------------------------------------------------------------------------------- losses


def _confidence(pred, target, n_likes, alpha_conf, eps_conf):
    return ag.weighted_squared_loss(pred, target, ag.confidence_weights(n_likes, alpha_conf, eps_conf).double())


def test_confidence_loss_check(capsys):
    assert nb04.check_confidence_loss(_confidence)
    assert _out(capsys) == "PASS: loss = 23.1905, as eq. (2) with c_ij = 1 + alpha log(1 + |R_i|/eps)\n"

    def without_one(pred, target, n, alpha, eps):
        return ((1 + alpha * torch.log(n / eps)) * (pred - target) ** 2).mean()

    def constants(pred, target, n, alpha, eps):
        return _confidence(pred, target, n, 10.0, 1e-8)

    assert not nb04.check_confidence_loss(lambda p, t, n, a, e: ((p - t) ** 2).mean())
    assert "expected 23.1905, got 0.105 (that is the unweighted mean: multiply by c_ij)" in _out(capsys)
    assert not nb04.check_confidence_loss(lambda *args: _confidence(*args) * 4)  # a sum over the 4 pairs
    assert "and that you average over the pairs" in _out(capsys)
    assert not nb04.check_confidence_loss(constants)
    assert "use the arguments alpha_conf and eps_conf, not constants" in _out(capsys)
    assert not nb04.check_confidence_loss(without_one)
    assert "you wrote log(|R_i| / eps); eq. (2) has log(1 + |R_i| / eps)" in _out(capsys)
    assert not nb04.check_confidence_loss(lambda p, t, n, a, e: ag.confidence_weights(n, a, e) * (p - t) ** 2)
    assert "confidence_weighted_loss must return one number, the mean cost, got 4 values" in _out(capsys)
    assert not nb04.check_confidence_loss(lambda *args: None)
    assert "confidence_weighted_loss returned None" in _out(capsys)


def _multitask(loss_rec, tag_logits, tags, lambda_mtl, tag_neg_weight):
    return ag.multitask_loss(loss_rec, ag.tag_loss(tag_logits, tags, tag_neg_weight), lambda_mtl)


def test_multitask_check(capsys):
    assert nb04.check_multitask_loss(_multitask)
    out = _out(capsys)
    assert out.startswith("PASS: C = 1.7820 and its gradient match lambda C_R + (1 - lambda) C_T")

    def mean_over_tags(loss_rec, z, tags, lam, w):  # wrong normalisation of C_T
        c_t = -(tags * F.logsigmoid(z) + w * (1 - tags) * F.logsigmoid(-z)).mean()
        return lam * loss_rec + (1 - lam) * c_t

    assert not nb04.check_multitask_loss(lambda loss_rec, z, tags, lam, w: lam * loss_rec)
    assert "expected 1.78198, got 0.9 (the tag term is missing)" in _out(capsys)
    assert not nb04.check_multitask_loss(lambda loss_rec, z, tags, lam, w: _multitask(loss_rec, z, tags, 1 - lam, w))
    assert "lambda_mtl weighs the recommendation cost C_R" in _out(capsys)
    assert not nb04.check_multitask_loss(mean_over_tags)
    assert "sum the weighted log-likelihood over the tags of a paper, average over papers" in _out(capsys)
    assert not nb04.check_multitask_loss(lambda *args: _multitask(*args).detach())
    assert "return a torch tensor connected to tag_logits" in _out(capsys)
    assert not nb04.check_multitask_loss(lambda *args: None)
    assert "multitask_cost returned None" in _out(capsys)


# ------------------------------------------------------------------------------------- saliency


def _saliency(model, texts, paper, user):
    return word_saliency(model, texts, paper, [user], device="cpu")[0]


def _by_hand(model, texts, paper, user, eval_mode=True, reduce="norm", trim=True):
    """The notebook's answer, with switches for the usual mistakes."""
    if eval_mode:
        model.eval()
    n = int(texts.lengths[paper]) if trim else texts.ids.shape[1]
    ids = torch.as_tensor(texts.ids[paper : paper + 1, :n])
    mask = torch.as_tensor(texts.mask[paper : paper + 1, :n])
    emb = model.encoder.embed(ids).detach().requires_grad_(True)  # (1, n, K_w)
    g = model.encoder.encode_embedded(emb, mask)
    idx = torch.tensor([paper])
    f = g + model.warm[idx].unsqueeze(-1).float() * model.item_emb[idx]
    model.score_pairs(torch.tensor([user]), f, idx).sum().backward()
    grad = emb.grad[0]  # (n, K_w)
    return (grad.norm(dim=-1) if reduce == "norm" else grad.sum(dim=-1)).numpy()


def test_saliency_check(capsys):
    assert nb04.check_saliency(_saliency)
    assert nb04.check_saliency(_by_hand)
    assert _out(capsys).count("PASS: one value per word") == 2

    assert not nb04.check_saliency(lambda *args: _by_hand(*args, eval_mode=False))  # dropout left on
    assert "use model.eval() (no dropout)" in _out(capsys)
    assert not nb04.check_saliency(lambda *args: _by_hand(*args, reduce="sum"))
    assert "your saliencies differ from ||d r_ij / d e_t||" in _out(capsys)
    assert not nb04.check_saliency(lambda *args: _by_hand(*args, trim=False))
    assert "for paper 0 (4 words) expected one value per real word, shape (4,), got (7,)" in _out(capsys)
    assert not nb04.check_saliency(lambda m, texts, paper, user: _by_hand(m, texts, 0, user))  # wrong paper
    assert "for paper 1 (7 words) expected one value per real word, shape (7,), got (4,)" in _out(capsys)
    assert not nb04.check_saliency(lambda *args: None)
    assert "word_saliency returned None" in _out(capsys)
