"""Checks for notebook 04 (Ask the GRU end to end: encoder, losses, saliency)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from . import (Fail, Mistake, as_array, as_scalar, as_tensor, call, check, close, describe, diagnose,
               numerical_gradient, passed, rel_error)


def _padded_batch(seed: int = 0, n_words: int = 30):
    """Three papers of lengths 5, 2, 3 padded to width 8 with random ids behind the mask."""
    from course_lib.torch_models.utils import TextBatch  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    lengths = np.array([5, 2, 3])
    ids = rng.integers(1, n_words, size=(3, 8))
    mask = (np.arange(8)[None] < lengths[:, None]).astype(np.float32)
    return TextBatch(torch.as_tensor(ids), torch.as_tensor(mask), torch.arange(3)), ids, lengths


def _run(ref, ids, lengths, *, pack=True, pool="real"):
    """The encoder's layers run over padded ``ids`` with one common mistake switched on (defaults: right).

    ``pack``: the GRUs see only the real words; ``pool``: ``"real"`` mean over the real words,
    ``"width"`` masked sum / width, ``"all"`` mean over every position, ``"sum"``, ``"last"``."""
    ids = torch.as_tensor(ids)
    width = ids.shape[1]
    lengths = torch.as_tensor(lengths)
    x = ref.embedding(ids)  # (B, L, emb)
    h = x
    for gru in (ref.gru1, ref.gru2):
        if pack:
            packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=width)
        else:
            h = gru(h)[0]
    mask = (torch.arange(width)[None] < lengths[:, None]).to(h.dtype).unsqueeze(-1)  # (B, L, 1)
    if pool == "last":
        return h[torch.arange(len(ids)), lengths - 1]
    total = (h * mask).sum(1)
    return {"real": total / lengths[:, None], "width": total / width, "all": h.mean(1), "sum": total}[pool]


_FWD = "encode_embedded (through forward)"  # the learner writes encode_embedded; the check calls forward
_LAYERS = ("the embeddings (self.drops[0])", "the first layer's output (self.drops[1])",
           "the second layer's output (self.drops[2])")


@check("your encoder", expects="a module with embedding, gru1 (bidirectional), gru2 and dropouts whose "
                               "encode_embedded(emb, mask) returns (batch, hidden2)")
def check_gru_encoder(encoder_cls):
    """``encoder_cls(n_words, emb_dim, hidden1, hidden2, dropout)`` with the layers ``embedding``,
    ``gru1`` (bidirectional), ``gru2`` must compute what :class:`GRUEncoder` computes, ignore
    padding, read each paper backwards from its last real word, and apply its three dropouts in
    training mode only. It must also plug into the library: ``out_dim``, ``embed`` and
    ``encode_embedded`` (which saliency differentiates), gradients reaching the embeddings and every
    weight, and :class:`AskGRU` taking it as its encoder."""
    from course_lib.torch_models.askgru import GRUEncoder  # noqa: PLC0415
    from course_lib.torch_models.utils import TextBatch  # noqa: PLC0415

    ref = GRUEncoder(30, 6, 5, 4, dropout=(0.0, 0.0, 0.0), seed=0).eval()
    mine = call("your encoder", encoder_cls, 30, 6, 5, 4, (0.0, 0.0, 0.0))
    if not isinstance(mine, torch.nn.Module):
        raise Fail(f"the encoder must be a torch.nn.Module, got {describe(mine)}")
    mine.eval()
    try:
        extra, lacking = mine.load_state_dict(ref.state_dict(), strict=False)
    except RuntimeError as exc:  # a layer of another size
        raise Fail(f"a layer has another size than the exercise's (embedding emb_dim, gru1 bidirectional with hidden1 "
                   f"per direction, gru2 hidden2): {str(exc).splitlines()[-1].strip()}") from None
    if extra or lacking:
        def layers(keys):
            return sorted({k.split(".")[0] for k in keys})

        raise Fail(f"the layers differ from the exercise's (embedding, gru1 bidirectional, gru2): your module lacks "
                   f"{layers(lacking)} and has {layers(extra)} instead")
    if getattr(mine, "out_dim", None) != 4:
        raise Fail(f"out_dim should be hidden2 = 4, got {getattr(mine, 'out_dim', None)}: AskGRU sizes the user "
                   "and item vectors from it")
    missing = [m for m in ("embed", "encode_embedded") if not callable(getattr(mine, m, None))]
    if missing:
        raise Fail(f"your encoder lacks the method(s) {missing}: saliency (Exercise 4) calls encoder.embed(ids) "
                   "and encoder.encode_embedded(emb, mask); keep the template's embed and forward and write "
                   "encode_embedded")
    batch, ids, lengths = _padded_batch()
    out = as_array(_FWD, call(_FWD, mine, batch), shape=(3, 4), what="(batch=3, hidden2=4)",
                   shape_hints={(3, 8, 4): "average the second layer's outputs over the real words",
                                (3, 10): "the encoding is gru2's output (hidden2), not gru1's"})

    def one(model, i):
        return model(TextBatch(torch.as_tensor(ids[i: i + 1, : lengths[i]]), torch.ones(1, int(lengths[i])),
                               torch.arange(1)))

    with torch.no_grad():
        alone = torch.cat([one(ref, i) for i in range(3)])
        own_alone = torch.cat([as_tensor(_FWD, call(_FWD, one, mine, i), shape=(1, 4)) for i in range(3)])
    if rel_error(own_alone, alone) > 1e-4:
        unpadded = [ids[i: i + 1, : lengths[i]] for i in range(3)]
        raise diagnose(own_alone, [
            Mistake("you returned the last state; the encoder averages gru2's outputs over the real words",
                    lambda: torch.cat([_run(ref, u, [u.shape[1]], pool="last") for u in unpadded])),
            Mistake("you summed gru2's outputs; the encoder takes their mean over the real words",
                    lambda: torch.cat([_run(ref, u, [u.shape[1]], pool="sum") for u in unpadded])),
        ], "on papers without padding your output differs from the reference: check the bidirectional first layer, "
           "the concatenation, and the mean over time", rtol=1e-4, atol=1e-6)
    err = rel_error(out, alone)
    if err > 1e-4:
        with torch.no_grad():
            raise diagnose(out, [
                Mistake("the mean must divide by the number of real words, not by the width of the batch",
                        _run(ref, ids, lengths, pool="width")),
                Mistake("the backward GRU reads the padding first: pack the sequences with each paper's length, so "
                        "that it starts at the paper's last real word", _run(ref, ids, lengths, pack=False)),
                Mistake("padding entered the GRUs and the mean: take the lengths from the mask (the padded positions "
                        "here hold ordinary word vectors), pack with them and divide by the number of real words",
                        _run(ref, ids, lengths, pack=False, pool="all")),
            ], f"padding changes your output (relative error {err:.1e}): the backward GRU must start at each paper's "
               "last real word (pack the sequences), and the mean must divide by the number of real words",
                rtol=1e-4, atol=1e-6)
    _check_plugs_in(mine, batch, out)
    _check_dropouts(encoder_cls, batch)
    return passed("same output as GRUEncoder, padding never changes it, and it plugs into AskGRU")


def _check_plugs_in(mine, batch, out) -> None:
    """``encode_embedded`` is what ``forward`` computes, gradients reach the embeddings it is given
    (saliency) and every weight (training), and :class:`AskGRU` scores with it."""
    from course_lib.torch_models.askgru import AskGRU  # noqa: PLC0415

    emb = as_tensor("embed", call("embed", mine.embed, batch.ids), shape=(3, 8, 6),
                    what="a torch tensor (batch, width, emb_dim): the looked-up embeddings")
    emb = emb.detach().requires_grad_(True)
    g = as_tensor("encode_embedded", call("encode_embedded", mine.encode_embedded, emb, batch.mask), shape=(3, 4))
    if not close(g, out, rtol=1e-5, atol=1e-6):
        raise Fail("encode_embedded(embed(ids), mask) differs from forward(batch): forward must only look the words "
                   "up and hand the embeddings to encode_embedded (keep the template's forward)")
    if not g.requires_grad:
        raise Fail("the encoding carries no gradient, so training could not change the encoder: no torch.no_grad(), "
                   ".detach() or .data inside encode_embedded")
    g.sum().backward()
    if emb.grad is None or not bool(emb.grad.abs().sum() > 0):
        raise Fail("no gradient reaches the embeddings given to encode_embedded, which saliency (Exercise 4) "
                   "differentiates: build the encoding from `emb` itself, without detaching it")
    model = call("AskGRU(your encoder, ...)", AskGRU, mine, 2, 3)
    mine.zero_grad()
    f = as_tensor("AskGRU.item_repr", call("AskGRU.item_repr", model.item_repr, batch), shape=(3, 4))
    model.score_pairs(torch.tensor([0, 1, 0]), f, batch.paper_idx).sum().backward()
    frozen = [name for name, p in mine.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    if frozen:
        raise Fail(f"a score computed with your encoder sends no gradient to {frozen}: every layer must take part "
                   "in the encoding (both directions of gru1, then gru2), built with torch operations only")


def _check_dropouts(encoder_cls, batch) -> None:
    """Each dropout acts in training mode (two passes differ) and none in evaluation mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for k, where in enumerate(_LAYERS):
            rates = tuple(0.5 if j == k else 0.0 for j in range(3))
            model = call("your encoder", encoder_cls, 30, 6, 5, 4, rates).train()
            a, b = (as_array(_FWD, call(_FWD, model, batch)) for _ in range(2))
            if np.array_equal(a, b):
                raise Fail(f"with dropout {rates} in training mode two forward passes give the same output: apply the "
                           f"dropout of {where}")
        model = call("your encoder", encoder_cls, 30, 6, 5, 4, (0.5, 0.5, 0.5)).eval()
        a, b = (as_array(_FWD, call(_FWD, model, batch)) for _ in range(2))
    if not np.array_equal(a, b):
        raise Fail("in evaluation mode two forward passes differ: dropout must be off there; use the module's "
                   "dropout layers (self.drops), which follow model.train() / model.eval()")


def _conf_loss(pred, target, n, alpha, eps, *, log=math.log1p, one=True, reduce="mean", square=True, pos_only=False):
    """Eq. (2) as written with one common mistake (defaults: the right one)."""
    terms = []
    for p, t, k in zip(pred, target, n):
        c = (1.0 if one else 0.0) + alpha * log(k / eps)
        if pos_only and t == 0:
            c = 1.0
        err = (p - t) ** 2 if square else abs(p - t)
        terms.append(c * err)
    return float(np.mean(terms) if reduce == "mean" else np.sum(terms))


@check("confidence_weighted_loss", expects="one number: the mean over the pairs of c_ij (pred - target)^2, with "
                                           "c_ij = 1 + alpha log(1 + |R_i| / eps)")
def check_confidence_loss(fn):
    """``fn(pred, target, n_likes, alpha_conf, eps_conf)`` -> ``mean c_ij (pred - target)^2``."""
    pred = torch.tensor([0.9, 0.1, 0.4, -0.2], dtype=torch.float64)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    n_likes = torch.tensor([3.0, 3.0, 40.0, 40.0], dtype=torch.float64)
    a = (pred.tolist(), target.tolist(), n_likes.tolist())
    shapes = {(4,): "you returned one cost per pair: average them"}
    value = as_scalar("confidence_weighted_loss", call("confidence_weighted_loss", fn, pred, target, n_likes, 10.0,
                                                       1e-8), what="one number, the mean cost", shape_hints=shapes)
    want = _conf_loss(*a, 10.0, 1e-8)
    mistakes = [
        Mistake("that is the unweighted mean: multiply each squared error by its confidence c_ij",
                float(np.mean((pred - target).numpy() ** 2))),
        Mistake("you summed over the pairs; eq. (2) here is their mean", lambda: _conf_loss(*a, 10.0, 1e-8, reduce="sum")),
        Mistake("c_ij starts at 1: c_ij = 1 + alpha log(1 + |R_i| / eps)", lambda: _conf_loss(*a, 10.0, 1e-8, one=False)),
        Mistake("wrong logarithm: the confidence uses the natural log",
                lambda: _conf_loss(*a, 10.0, 1e-8, log=lambda x: math.log10(1 + x))),
        Mistake("wrong logarithm: the confidence uses the natural log",
                lambda: _conf_loss(*a, 10.0, 1e-8, log=lambda x: math.log2(1 + x))),
        Mistake("square the errors (you took their absolute value)", lambda: _conf_loss(*a, 10.0, 1e-8, square=False)),
        Mistake("eps divides the number of likes: log(1 + |R_i| / eps), not log(1 + |R_i| * eps)",
                lambda: _conf_loss(*a, 10.0, 1e8)),
        Mistake("both pairs of a user, the liked and the not-liked paper, carry the user's confidence c_ij",
                lambda: _conf_loss(*a, 10.0, 1e-8, pos_only=True)),
    ]
    if not abs(value - want) <= 1e-6 * abs(want):
        raise diagnose(value, mistakes, f"expected {want:.6g}, got {value:.6g} (check c_ij = 1 + alpha log(1 + |R_i| / "
                                        "eps), and that you average over the pairs)", rtol=1e-9)
    # eps = 0.5 matters: log(1 + |R_i| / eps) is far from log(|R_i| / eps) and from log(1 + |R_i| eps)
    other = as_scalar("confidence_weighted_loss", call("confidence_weighted_loss", fn, pred, target, n_likes, 2.0, 0.5),
                      shape_hints=shapes)
    want2 = _conf_loss(*a, 2.0, 0.5)
    if not abs(other - want2) <= 1e-6 * abs(want2):
        raise diagnose(other, [
            Mistake("use the arguments alpha_conf and eps_conf, not constants", want),
            Mistake("use the argument alpha_conf, not a constant", lambda: _conf_loss(*a, 10.0, 0.5)),
            Mistake("use the argument eps_conf, not a constant", lambda: _conf_loss(*a, 2.0, 1e-8)),
            Mistake("you wrote log(|R_i| / eps); eq. (2) has log(1 + |R_i| / eps)",
                    lambda: _conf_loss(*a, 2.0, 0.5, log=math.log)),
            Mistake("eps divides the number of likes: log(1 + |R_i| / eps), not log(1 + |R_i| * eps)",
                    lambda: _conf_loss(*a, 2.0, 2.0)),
            *mistakes[1:],
        ], f"with alpha_conf=2, eps_conf=0.5 expected {want2:.6g}, got {other:.6g}: check c_ij = 1 + alpha log(1 + "
           "|R_i| / eps)", rtol=1e-9)
    # fit minimises this loss with .backward(): it must stay a tensor connected to pred
    p = pred.clone().requires_grad_(True)
    out = as_tensor("confidence_weighted_loss", call("confidence_weighted_loss", fn, p, target, n_likes, 10.0, 1e-8),
                    need_grad=True, what="the mean cost as a torch tensor (fit calls .backward() on it)")
    out.sum().backward()
    conf = 1.0 + 10.0 * torch.log1p(n_likes / 1e-8)
    if p.grad is None or rel_error(p.grad, 2.0 * conf * (pred - target) / pred.numel()) > 1e-6:
        raise Fail("the gradient with respect to pred is not that of eq. (2): build the loss from pred with torch "
                   "operations only (no rounding, no .detach() of pred)")
    return passed(f"loss = {value:.4f}, as eq. (2) with c_ij = 1 + alpha log(1 + |R_i|/eps)")


def _mtl(loss_rec, logits, tags, lam, neg_w, *, where_w="neg", reduce="papers", sign=1.0, tag_weight=None):
    """lambda C_R + (1 - lambda) C_T as written with one common mistake (defaults: the right one)."""
    z, t = torch.as_tensor(logits), torch.as_tensor(tags)
    log_p, log_not_p = F.logsigmoid(z), F.logsigmoid(-z)
    if where_w == "neg":
        ll = t * log_p + neg_w * (1 - t) * log_not_p
    elif where_w == "pos":
        ll = neg_w * t * log_p + (1 - t) * log_not_p
    else:
        ll = t * log_p + (1 - t) * log_not_p
    c_t = sign * -{"papers": ll.sum(1).mean(), "entries": ll.mean(), "sum": ll.sum()}[reduce]
    return float(lam * loss_rec + (1 - lam if tag_weight is None else tag_weight) * c_t)


@check("multitask_cost", expects="one number as a tensor: lambda C_R + (1 - lambda) C_T")
def check_multitask_loss(fn):
    """``fn(loss_rec, tag_logits, tags, lambda_mtl, tag_neg_weight)`` -> ``lambda C_R + (1 - lambda) C_T``."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5))
    tags = (rng.random((4, 5)) < 0.3).astype(np.float64)
    loss_rec = torch.tensor(3.0, dtype=torch.float64)
    z = torch.tensor(logits, requires_grad=True)
    out = call("multitask_cost", fn, loss_rec, z, torch.tensor(tags), 0.3, 0.1)
    value = as_scalar("multitask_cost", out, what="one number, the cost C",
                      shape_hints={(4,): "you returned one cost per paper: average the tag cost over the papers",
                                   (4, 5): "sum the weighted log-likelihood over the tags of a paper, average over "
                                           "the papers"})
    want = _mtl(3.0, logits, tags, 0.3, 0.1)
    if not abs(value - want) <= 1e-6 * abs(want):
        raise diagnose(value, [
            Mistake("the tag term is missing: C = lambda C_R + (1 - lambda) C_T", 0.3 * 3.0),
            Mistake("lambda_mtl weighs the recommendation cost C_R, 1 - lambda_mtl the tag cost C_T",
                    _mtl(3.0, logits, tags, 0.7, 0.1)),
            Mistake("c' down-weights the tags a paper does NOT have (the (1 - t) log(1 - p) term), not the ones it has",
                    _mtl(3.0, logits, tags, 0.3, 0.1, where_w="pos")),
            Mistake("the weight c' on the absent tags is missing", _mtl(3.0, logits, tags, 0.3, 0.1, where_w="none")),
            Mistake("you averaged over every (paper, tag) entry; sum over the tags of a paper, then average over the "
                    "papers", _mtl(3.0, logits, tags, 0.3, 0.1, reduce="entries")),
            Mistake("you summed over the papers too; average the per-paper tag cost over the papers",
                    _mtl(3.0, logits, tags, 0.3, 0.1, reduce="sum")),
            Mistake("C_T is the NEGATIVE log-likelihood: check its sign", _mtl(3.0, logits, tags, 0.3, 0.1, sign=-1.0)),
            Mistake("the tag cost is weighted by 1 - lambda_mtl", _mtl(3.0, logits, tags, 0.3, 0.1, tag_weight=1.0)),
        ], f"expected {want:.6g}, got {value:.6g} (sum the weighted log-likelihood over the tags of a paper, average "
           "over papers, and negate it)", rtol=1e-9)
    out = as_tensor("multitask_cost", out, need_grad=True, what="a torch tensor connected to tag_logits")
    out.backward()
    if z.grad is None:
        raise Fail("no gradient reaches tag_logits: build the cost from them with torch operations only")

    def f(x):
        return as_scalar("multitask_cost", call("multitask_cost", fn, loss_rec, torch.tensor(x), torch.tensor(tags),
                                                0.3, 0.1))

    err = rel_error(z.grad.numpy(), numerical_gradient(f, logits))
    if err > 1e-5:
        raise Fail(f"the gradient with respect to the tag logits is off (relative error {err:.1e})")
    big = as_scalar("multitask_cost", call("multitask_cost", fn, loss_rec, torch.tensor(1000 * logits),
                                           torch.tensor(tags), 0.3, 0.1))
    if not math.isfinite(big):
        raise Fail("the cost is inf/NaN for large logits: log(sigmoid(z)) underflows to log(0); use log-sigmoids "
                   "that torch computes stably (log(1 - sigmoid(z)) is the log-sigmoid of -z)")
    return passed(f"C = {value:.4f} and its gradient match lambda C_R + (1 - lambda) C_T (gradient relative error "
                  "< 1e-5)")


def _embedding_grads(model, texts, paper: int, users) -> torch.Tensor:
    """d (sum of r_ij over ``users``) / d e_t for the real words of ``paper``, dropout off: (n, K_w)."""
    model.eval()
    n = int(texts.lengths[paper])
    emb = model.encoder.embed(torch.as_tensor(texts.ids[paper: paper + 1, :n])).detach().requires_grad_(True)
    g = model.encoder.encode_embedded(emb, torch.ones(1, n))
    idx = torch.tensor([paper] * len(users))
    f = g.expand(len(users), -1) + model.warm[idx].unsqueeze(-1).float() * model.item_emb[idx]
    model.score_pairs(torch.as_tensor(users), f, idx).sum().backward()
    return emb.grad[0].detach()


@check("word_saliency", expects="a numpy array (n_words,): ||d r_ij / d e_t|| for each real word of the paper")
def check_saliency(fn):
    """``fn(model, texts, paper, user)`` -> ``(n_tokens,)`` numpy array of ``||d r_ij / d e_t||``."""
    from course_lib.torch_models.askgru import AskGRU, GRUEncoder  # noqa: PLC0415
    from course_lib.torch_models.saliency import word_saliency  # noqa: PLC0415

    rng = np.random.default_rng(1)
    lengths = np.array([4, 7, 2])
    ids = np.zeros((3, 7), dtype=np.int64)
    for j, n in enumerate(lengths):
        ids[j, :n] = rng.integers(1, 25, n)
    texts = SimpleNamespace(ids=ids, lengths=lengths, mask=(np.arange(7)[None] < lengths[:, None]).astype(np.float32))
    model = AskGRU(GRUEncoder(25, 6, 5, 4, seed=2), n_users=4, n_papers=3, seed=2)
    with torch.no_grad():
        model.warm[0] = True
        model.item_emb[0] = 0.5
    # paper 1 fills the width; paper 0 (warm, 4 words) is padded, so its padding must be left out
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for paper, user in ((1, 2), (0, 3)):
            model.train()  # a correct answer switches dropout off itself
            value = as_array("word_saliency", call("word_saliency", fn, model, texts, paper, user),
                             what="one saliency per real word").ravel()
            want = word_saliency(model, texts, paper, [user], device="cpu")[0]
            if value.shape != want.shape:
                hint = " (leave the padding out)" if value.size == texts.ids.shape[1] else ""
                raise Fail(f"for paper {paper} ({lengths[paper]} words) expected one value per real word, shape "
                           f"{want.shape}, got {value.shape}{hint}")
            err = rel_error(value, want)
            if err > 1e-4:
                model.train()
                second = as_array("word_saliency", call("word_saliency", fn, model, texts, paper, user)).ravel()
                grads = lambda users=(user,): _embedding_grads(model, texts, paper, list(users))  # noqa: E731
                raise diagnose(value, [
                    Mistake("two calls give different saliencies: dropout is still on; switch the model to "
                            "evaluation mode first", when=lambda v: not close(v, second)),
                    Mistake("take the Euclidean norm of the gradient over the embedding dimension (you took the sum "
                            "of absolute values)", lambda: grads().abs().sum(-1)),
                    Mistake("take the norm of the gradient (you took its square)", lambda: (grads() ** 2).sum(-1)),
                    Mistake("take the norm of the gradient over the embedding dimension, not its signed sum",
                            lambda: grads().sum(-1)),
                    Mistake("you backpropagated the scores of all users; take r_ij of the one user given",
                            lambda: grads(range(model.n_users)).norm(dim=-1)),
                ], f"your saliencies differ from ||d r_ij / d e_t|| (relative error {err:.1e}); switch dropout off "
                   "(evaluation mode) and take the norm over the embedding dimension", rtol=1e-4, atol=1e-7)
    return passed("one value per word, equal to the norm of the gradient of r_ij w.r.t. each embedding")
