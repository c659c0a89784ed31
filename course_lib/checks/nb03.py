"""Checks for notebook 03 (advanced): the PV-DBOW negative-sampling loss, BPR and listwise losses,
inference of paragraph vectors for cold papers, and the loss-balance experiment."""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from . import (Fail, Mistake, as_array, as_scalar, as_tensor, call, check, check_torch_gradient, close, describe,
               diagnose, passed)

_ONE_NUMBER = "one number (the mean over the pairs and their negatives)"


def _pv_dbow(d, u, n, *, pos_sign=1.0, neg_sign=-1.0, over_t="mean", over_k="sum"):
    """The mini-batch PV-DBOW loss (B,) with its signs and reductions as parameters (defaults: right)."""
    pos = torch.einsum("bd,btd->bt", d, u)  # (B, T)
    neg = torch.einsum("bd,tkd->btk", d, n)  # (B, T, K)
    noise = F.logsigmoid(neg_sign * neg)
    per = -F.logsigmoid(pos_sign * pos) - (noise.sum(-1) if over_k == "sum" else noise.mean(-1))  # (B, T)
    return per.mean(1) if over_t == "mean" else per.sum(1)


@check("pv_dbow_loss", expects="a tensor (B,): the mean over the T sampled words of -log s(d.u) - sum_k log s(-d.u_k)")
def check_pv_dbow_loss(loss_fn):
    """``loss_fn(doc (B,D), pos (B,T,D), noise (T,K,D)) -> (B,)``: mean over t of
    ``-log s(d.u_t) - sum_k log s(-d.u_tk)``."""
    rng = np.random.default_rng(0)
    d, u, n = rng.normal(size=(3, 4)), rng.normal(size=(3, 5, 4)), rng.normal(size=(5, 2, 4))
    td, tu, tn = (torch.tensor(a) for a in (d, u, n))
    value = as_array("pv_dbow_loss", as_tensor("pv_dbow_loss", call("pv_dbow_loss", loss_fn, td, tu, tn)),
                     shape=(3,), what="the loss (one value per paper)", shape_hints={
                         (): "you averaged over the papers too: return one loss per paper (B,)",
                         (3, 5): "average over the T sampled words of each paper",
                         (3, 5, 2): "sum over the K noise words, then average over the T sampled words"})
    want = _pv_dbow(td, tu, tn)
    if not close(value, want):
        raise diagnose(value, [
            Mistake("you summed over the T sampled words; average over them instead", _pv_dbow(td, tu, tn, over_t="sum")),
            Mistake("noise words must score LOW: use log sigmoid(-d . u_noise)", _pv_dbow(td, tu, tn, neg_sign=1.0)),
            Mistake("the sampled words of the paper must score HIGH: use log sigmoid(+d . u)",
                    _pv_dbow(td, tu, tn, pos_sign=-1.0)),
            Mistake("both signs are swapped: +d . u for the paper's words, -d . u_noise for the noise words",
                    _pv_dbow(td, tu, tn, pos_sign=-1.0, neg_sign=1.0)),
            Mistake("the loss is a NEGATIVE log-likelihood, so it is positive: check the overall sign", -want),
            Mistake("you averaged over the K noise words; the formula sums them", _pv_dbow(td, tu, tn, over_k="mean")),
        ], f"expected {np.round(want.numpy(), 4).tolist()}, got {np.round(value, 4).tolist()}")
    check_torch_gradient("pv_dbow_loss", lambda x: loss_fn(x, tu, tn), d)
    big = as_array("pv_dbow_loss", call("pv_dbow_loss", loss_fn, 1000 * td, tu, tn))
    if not np.all(np.isfinite(big)):
        raise Fail("pv_dbow_loss gives inf/NaN for large scores: log(sigmoid(x)) underflows to log(0) when x is very "
                   "negative; use a log-sigmoid that torch computes stably")
    return passed("the PV-DBOW loss matches the formula and its gradient matches finite differences")


def _ranking_case():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(2, 8))
    rows = torch.tensor([0, 0, 1])
    pos = torch.tensor([1, 5, 2])
    neg = torch.tensor([[0, 3, 4], [2, 3, 7], [6, 0, 0]])
    return s, rows, pos, neg


def _pairs(s, rows, pos, neg):
    s = torch.as_tensor(s)
    return s[rows, pos].unsqueeze(1), s[rows.unsqueeze(1), neg]  # (P, 1), (P, N_S)


_RANK_SHAPES = {(3,): "you returned one value per like: average over the likes", (3, 3): "average over the likes and "
                "their sampled negatives into one number", (1,): "return a 0-d tensor (one number)"}
_PAIR_ERRORS = {IndexError: "each like's row must pair with each of its N_S negatives: give the row index a second "
                            "axis so that it broadcasts against neg (P, N_S)",
                RuntimeError: "each like's row must pair with each of its N_S negatives: give the row index a second "
                              "axis so that it broadcasts against neg (P, N_S)"}


@check("bpr", expects="one number as a tensor: the mean over likes and negatives of -log sigmoid(s_pos - s_neg)")
def check_bpr(bpr_fn):
    """``bpr_fn(scores, rows, pos, neg)``: mean over pairs and negatives of ``-log s(s_pos - s_neg)``."""
    s, rows, pos, neg = _ranking_case()
    out = call("bpr", bpr_fn, torch.tensor(s), rows, pos, neg, errors=_PAIR_ERRORS)
    value = as_scalar("bpr", out, what=_ONE_NUMBER, shape_hints=_RANK_SHAPES)
    sp, sn = _pairs(s, rows, pos, neg)
    want = float(-F.logsigmoid(sp - sn).mean())
    if not np.isclose(value, want, rtol=1e-6):
        raise diagnose(value, [
            Mistake("the positive must score ABOVE the negatives: sigma(s_pos - s_neg), not the reverse",
                    float(-F.logsigmoid(sn - sp).mean())),
            Mistake("each like must be paired with its OWN negatives: give the row index a second axis, so that row i "
                    "of the result pairs like i with neg[i, :]", lambda: float(-F.logsigmoid(
                        torch.as_tensor(s)[rows, pos] - torch.as_tensor(s)[rows, neg]).mean())),
            Mistake("you summed over the 3 negatives (or over the likes); BPR here is their average", want * 3),
            Mistake("you summed over the likes and the negatives; BPR here is the average", want * 9),
            Mistake("BPR is the NEGATIVE log-likelihood, a positive number: check the sign", -want),
            Mistake("take the log of the sigmoid: BPR is -log sigma(s_pos - s_neg)", float(-torch.sigmoid(sp - sn).mean())),
            Mistake("take the log of the sigmoid: BPR is -log sigma(s_pos - s_neg)", float(1 - torch.sigmoid(sp - sn).mean())),
        ], f"expected {want:.4f}, got {value:.4f}")
    as_tensor("bpr", out)
    check_torch_gradient("bpr", lambda x: bpr_fn(x, rows, pos, neg), s)
    return passed(f"BPR = {want:.4f} on the test case; gradient checked")


@check("listwise", expects="one number as a tensor: the mean of -log softmax([s_pos, s_negs])[0]")
def check_listwise(xe_fn):
    """``xe_fn(scores, rows, pos, neg)``: mean of ``-log softmax([s_pos, s_negs])[0]``."""
    s, rows, pos, neg = _ranking_case()
    out = call("listwise", xe_fn, torch.tensor(s), rows, pos, neg, errors=_PAIR_ERRORS)
    value = as_scalar("listwise", out, what=_ONE_NUMBER, shape_hints=_RANK_SHAPES)
    sp, sn = _pairs(s, rows, pos, neg)
    both = torch.cat([sp, sn], dim=1)  # (P, 1 + N_S)
    want = float(-torch.log_softmax(both, 1)[:, 0].mean())
    if not np.isclose(value, want, rtol=1e-6):
        full = float(-torch.log_softmax(torch.tensor(s)[rows], 1)[torch.arange(3), pos].mean())
        raise diagnose(value, [
            Mistake("you took the softmax over ALL users; the task samples: softmax over the positive and its "
                    "sampled negatives only", full),
            Mistake("the softmax runs over the candidates of ONE like (dim=1), not over the likes",
                    float(-torch.log_softmax(both, 0)[:, 0].mean())),
            Mistake("the positive sits in column 0 of [s_pos, s_negs]: take its log-probability, not a negative's",
                    when=lambda v: any(np.isclose(v, float(-torch.log_softmax(both, 1)[:, j].mean()))
                                       for j in range(1, 4))),
            Mistake("the positive belongs in the softmax's denominator too", float(-(sp[:, 0] - torch.logsumexp(sn, 1))
                                                                                   .mean())),
            Mistake("you summed over the likes; average over them", want * 3),
            Mistake("the cross-entropy is -log p: check the sign", -want),
        ], f"expected {want:.4f}, got {value:.4f}")
    as_tensor("listwise", out)
    check_torch_gradient("listwise", lambda x: xe_fn(x, rows, pos, neg), s)
    return passed(f"listwise cross-entropy = {want:.4f} on the test case; gradient checked")


def _infer_case():
    from course_lib.torch_models.e2e_paragraph import EndToEndParagraphVectors  # noqa: PLC0415
    from course_lib.torch_models.utils import TextBatch  # noqa: PLC0415

    gen = torch.Generator().manual_seed(0)
    # the papers use words 3..10, while noise words come mostly from 11..39: a clear signal to fit
    ids = torch.randint(3, 11, (6, 12), generator=gen)
    batch = TextBatch(ids, torch.ones_like(ids, dtype=torch.float32), torch.arange(6))
    counts = np.r_[np.zeros(3), np.ones(8), np.full(29, 50.0)]
    enc = EndToEndParagraphVectors(6, counts, dim=5, n_words=12, seed=0)
    with torch.no_grad():  # the papers' words share a direction the noise words point away from
        enc.word_out.weight.normal_(std=0.3, generator=gen)
        enc.word_out.weight[3:11, 0] += 2.0
        enc.word_out.weight[11:, 0] -= 2.0
    return enc, batch


@functools.lru_cache(maxsize=1)
def _reference_vectors() -> torch.Tensor:
    """The library's inference on the check's case (deterministic: computed once per session)."""
    enc, batch = _infer_case()
    return enc.infer_vectors(batch, steps=200, lr=0.1)


def _sgd_inference(enc, batch, steps, lr):
    """The exercise's inference with plain SGD instead of Adagrad (a mistake's signature)."""
    gen = torch.Generator().manual_seed(0)
    vecs = torch.zeros(len(batch), enc.out_dim, requires_grad=True)
    opt = torch.optim.SGD([vecs], lr=lr)
    for _ in range(steps):
        loss = enc.p2v_loss(vecs, batch, gen, enc.word_out.weight.detach()).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return vecs.detach()


@check("infer_vectors", expects="a (B, dim) tensor of new paper vectors; the encoder unchanged")
def check_infer(infer_fn):
    """``infer_fn(encoder, batch, steps, lr) -> (B, dim)``: new paper vectors, word vectors untouched."""
    enc, batch = _infer_case()
    words_before = enc.word_out.weight.detach().clone()
    docs_before = enc.doc.weight.detach().clone()
    value = call("infer_vectors", infer_fn, enc, batch, 200, 0.1)
    value = as_array("infer_vectors", value, shape=(6, 5), what="the inferred vectors (B, dim) = (6, 5)",
                     shape_hints={(5,): "one vector per paper of the batch", (1, 5): "one vector per paper of the batch"})
    if not torch.equal(words_before, enc.word_out.weight.detach()):
        raise Fail("the output word vectors changed: inference must keep them frozen (optimise only the new vectors, "
                   "and let no gradient reach the word vectors)")
    if not torch.equal(docs_before, enc.doc.weight.detach()):
        raise Fail("the encoder's table changed: return the new vectors, do not write them into it")
    if enc.word_out.weight.grad is not None and bool(enc.word_out.weight.grad.abs().sum() > 0):
        raise Fail("gradients reached the encoder's output word vectors (their .grad is filled): freeze them for "
                   "the loss, so that inference leaves the encoder untouched")
    if close(value, docs_before[:6]):
        raise Fail("these are the encoder's stored rows; a cold paper's row was never trained: fit new vectors to "
                   "the papers' text")
    vecs = torch.as_tensor(value, dtype=torch.float32)
    probe = torch.Generator().manual_seed(7)
    with torch.no_grad():
        mine = float(enc.p2v_loss(vecs, batch, probe).mean())
        zero = float(enc.p2v_loss(torch.zeros(6, 5), batch, torch.Generator().manual_seed(7)).mean())
    ref = _reference_vectors()
    cos = float(F.cosine_similarity(vecs, ref, dim=1).mean())
    if mine > zero + 0.1:
        raise Fail(f"the inferred vectors explain the words WORSE than zero vectors (loss {mine:.3f} vs {zero:.3f}): "
                   "the update climbs the loss; minimise it")
    if not mine < zero - 0.1:
        raise Fail(f"the inferred vectors do not explain the words (loss {mine:.3f} vs {zero:.3f} for zero vectors): "
                   "minimise p2v_loss over the vectors with the optimizer, for `steps` steps")
    if cos < 0.9:
        raise diagnose(vecs, [
            Mistake("you took plain SGD steps; the exercise uses Adagrad, whose per-coordinate step sizes reach the "
                    "reference vectors in these few steps",
                    when=lambda v: float(F.cosine_similarity(v, _sgd_inference(enc, batch, 200, 0.1), dim=1).mean())
                    > 0.99),
        ], f"the loss went down but the vectors point elsewhere than the reference inference (mean cosine {cos:.2f}); "
           "run more steps or check the sign of the update")
    return passed(f"PV loss {zero:.2f} -> {mine:.2f}, word vectors frozen, cosine {cos:.2f} to the reference")


@check("the balance results", expects="a dict {lambda_p2v: {metric: value}} with lambda_p2v = 0.0 and two more")
def check_balance(results: dict, metric: str = "cold R@50"):
    """``results[lambda_p2v][metric]``: some lambda > 0 must beat lambda = 0 on cold papers."""
    if not isinstance(results, dict):
        raise Fail(f"expected a dict {{lambda_p2v: {{metric: value}}}}, got {describe(results)}")
    if 0.0 not in results or len(results) < 3:
        raise Fail("run at least three values of lambda_p2v, including 0.0")
    values = {}
    for lam, row in results.items():
        if not isinstance(row, dict) or metric not in row:
            raise Fail(f"results[{lam!r}] has no {metric!r}: evaluate every run with the same metrics")
        values[lam] = as_scalar(f"results[{lam!r}][{metric!r}]", row[metric], returned=False)
    base = values[0.0]
    best = max((lam for lam in values if lam > 0), key=lambda lam: values[lam])
    if not values[best] > base:
        raise Fail(f"no lambda_p2v > 0 beats lambda_p2v = 0 on {metric} ({base:.3f}): train longer or check that "
                   "score_papers infers the cold papers' vectors")
    return passed(f"the paragraph-vector term helps cold papers: {metric} {base:.3f} at lambda_p2v=0 -> "
                  f"{values[best]:.3f} at lambda_p2v={best:g}")
