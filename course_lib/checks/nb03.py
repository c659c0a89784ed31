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


# ---------------------------------------------------------------------------------- the joint loss

_LAM = 0.3  # the balance the check passes in
_ENC_LAMBDA = 3.0  # the encoder's own lambda_p2v, which weighs aux_loss (and must not be the one used)
_B = 5  # papers in the check's batch


def _joint_case():
    """A tiny level (c) model, a batch of 5 papers and its sampled users: ``(model, batch, inputs)``.

    Each paper's text repeats one word and a single word carries all the noise mass, so L_p2v is
    the same whatever generator draws the words: a learner's own draws give the same number."""
    from course_lib.torch_models.e2e_paragraph import EndToEndParagraphVectors  # noqa: PLC0415
    from course_lib.torch_models.hybrid import HybridRecommender, PaperTexts, sample_loss_inputs  # noqa: PLC0415

    n_papers, n_users = 7, 12
    ids = np.repeat(np.arange(1, n_papers + 1)[:, None], 4, axis=1)  # (7, 4): paper j says word j + 1
    counts = np.zeros(n_papers + 3)
    counts[-1] = 1.0  # the one noise word
    enc = EndToEndParagraphVectors(n_papers, counts, dim=4, lambda_p2v=_ENC_LAMBDA, n_words=3, negative=2, seed=0)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        enc.word_out.weight.normal_(generator=gen)
        enc.doc.weight.normal_(std=0.5, generator=gen)
    model = HybridRecommender(n_users, n_papers, enc, item_dim=3, seed=0)
    model.set_known_papers(np.ones(n_papers, dtype=bool))
    batch = PaperTexts(ids, np.ones(ids.shape, dtype=np.float32), "cpu").batch(np.arange(_B))
    targets = torch.zeros(_B, n_users)
    for row, users in enumerate([[0, 3], [1], [2, 5, 7], [4], [6, 11]]):
        targets[row, users] = 1.0
    inputs = sample_loss_inputs("listwise", targets, 3, torch.Generator().manual_seed(1))
    return model, batch, inputs


def _terms(rank_loss=None):
    """The reference terms on a fresh case: L_rec (with ``rank_loss``, default listwise), L_p2v (the
    mean over the papers) and the gradients of ``L_rec + _LAM L_p2v`` by parameter name."""
    from course_lib.torch_models.hybrid import listwise_loss  # noqa: PLC0415

    model, batch, inputs = _joint_case()
    rec = (rank_loss or listwise_loss)(model(batch), inputs["rows"], inputs["pos"], inputs["neg"])
    p2v = model.encoder.p2v_term(batch)
    (rec + _LAM * p2v).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return rec.item(), p2v.item(), grads


def _run_joint(joint_fn, rank_loss):
    """The learner's ``joint_fn`` on a fresh case: its raw result, the model, the "loss" value."""
    model, batch, inputs = _joint_case()
    out = call("joint_loss", joint_fn, model, batch, model(batch), inputs, lam=_LAM, rank_loss=rank_loss,
               expects="a dict {'loss': ..., 'rec_loss': ..., 'aux_loss': ...} of scalar tensors", errors={
                   TypeError: "joint_loss is called as joint_loss(model, batch, scores, inputs, lam=..., "
                              "rank_loss=...): keep those parameter names, and call rank_loss with (scores, rows, pos, "
                              "neg)",
                   KeyError: "inputs is the dict of sample_loss_inputs: 'targets', 'rows', 'pos' and 'neg'",
                   AttributeError: "the paragraph-vector term belongs to the content encoder (model.encoder), "
                                   "not to the recommender"})
    if isinstance(out, dict) and "loss" not in out:
        raise Fail(f"joint_loss returned a dict with the keys {sorted(map(str, out))[:5]} but no 'loss': the "
                   "training step minimises the entry named 'loss', the sum of both terms")
    loss = out["loss"] if isinstance(out, dict) else out
    value = as_scalar("joint_loss", loss, what="one number (the joint loss of the batch)", shape_hints={
        (_B,): "you kept one paragraph-vector loss per paper: average them over the papers of the batch"})
    return out, model, loss, value


def _mistakes(rec, p2v):
    lam, enc, b = _LAM, _ENC_LAMBDA, _B
    twice = "the paragraph-vector term is counted twice: add it once, weighed by lam"
    return [
        Mistake("lam multiplies the paragraph-vector term, not the recommendation loss", lam * rec + p2v),
        Mistake("lam multiplies the paragraph-vector term, not the recommendation loss",
                lam * rec + (1 - lam) * p2v),
        Mistake("the formula is not a convex mix: L_rec keeps weight 1 and only L_p2v is weighed by lam (no 1 - lam)",
                (1 - lam) * rec + lam * p2v),
        Mistake("the paragraph-vector term is missing: add L_p2v, weighed by lam", rec),
        Mistake("the recommendation loss is missing: the joint loss is L_rec plus the weighed L_p2v", lam * p2v),
        Mistake("lam is not used: weigh the paragraph-vector term by the lam passed in", rec + p2v),
        Mistake("aux_loss is already weighed by the encoder's own lambda_p2v, not by your lam: take the unweighted "
                "term (p2v_term) and weigh it by lam yourself", rec + enc * p2v),
        Mistake("aux_loss is already weighed by the encoder's own lambda_p2v; multiplying it by lam weighs the "
                "term twice: start from the unweighted p2v_term", rec + lam * enc * p2v),
        Mistake(twice, rec + 2 * lam * p2v),
        Mistake(twice, rec + lam * p2v + p2v),
        Mistake(twice + " (aux_loss already holds it, weighed by the encoder's lambda_p2v)",
                rec + lam * p2v + enc * p2v),
        Mistake("the recommendation loss is counted twice", 2 * rec + lam * p2v),
        Mistake("you summed the paragraph-vector loss over the papers; L_p2v is their mean, on the scale of the "
                "recommendation loss, which is a mean too", rec + lam * b * p2v),
        Mistake("the paragraph-vector term is divided by the batch size twice: p2v_term is already a mean",
                rec + lam * p2v / b),
        Mistake("both losses are minimised: ADD the weighed paragraph-vector term", rec - lam * p2v),
        Mistake("the recommendation loss has the wrong sign: both terms are added", -rec + lam * p2v),
        Mistake("you returned the negated loss: minimising it would make both terms worse", -(rec + lam * p2v)),
    ]


@check("joint_loss", expects="a dict {'loss': L_rec + lam * L_p2v, 'rec_loss': L_rec, 'aux_loss': lam * L_p2v} of "
                             "scalar tensors")
def check_joint_loss(joint_fn):
    """``joint_fn(model, batch, scores, inputs, lam, rank_loss) -> {"loss", "rec_loss", "aux_loss"}``:
    ``L_rec = rank_loss(scores, rows, pos, neg)``, ``aux_loss = lam * L_p2v`` (the encoder's unweighted
    PV-DBOW loss, a mean over the papers), ``loss = L_rec + aux_loss``, with gradients to every weight."""
    from course_lib.torch_models.hybrid import bpr_loss, listwise_loss  # noqa: PLC0415

    rec, p2v, grads = _terms()
    want = rec + _LAM * p2v
    out, model, loss, value = _run_joint(joint_fn, listwise_loss)
    if not np.isclose(value, want, rtol=1e-5, atol=1e-7):
        raise diagnose(value, _mistakes(rec, p2v), f"expected L_rec + lam L_p2v = {rec:.4f} + {_LAM} x {p2v:.4f} = "
                       f"{want:.4f}, got {value:.4f}", rtol=1e-5, atol=1e-7)
    if not isinstance(loss, torch.Tensor):
        raise Fail(f"the total is right, but it is {describe(loss)}: return the torch tensor itself (no .item() or "
                   "float()), since the training step calls backward on it")
    if not loss.requires_grad:
        raise Fail("the total is right but carries no gradient: build it from the model's tensors with torch "
                   "operations only (no .detach(), torch.no_grad() or a new torch.tensor(...))")
    if not isinstance(out, dict):
        raise Fail("the total is right; return it in a dict with 'loss', and the two terms under 'rec_loss' and "
                   "'aux_loss', so that the learning curves can show each term")
    for key, right, name in (("rec_loss", rec, "L_rec alone"),
                             ("aux_loss", _LAM * p2v, "the weighed term lam * L_p2v")):
        if key not in out:
            raise Fail(f"the dict has no {key!r}: record {name} under it (the learning curves plot it)")
        got = as_scalar(f"joint_loss's {key!r}", out[key], returned=False)
        if not np.isclose(got, right, rtol=1e-5, atol=1e-7):
            hint = ("record the weighed term, lam * L_p2v, so that loss = rec_loss + aux_loss"
                    if key == "aux_loss" and np.isclose(got, p2v, rtol=1e-5) else f"it should hold {name}")
            raise Fail(f"'{key}' is {got:.4f}, expected {right:.4f}: {hint}")
    loss.backward()
    params = dict(model.named_parameters())
    words = params["encoder.word_out.weight"].grad
    if words is None or float(words.abs().sum()) == 0:
        raise Fail("the value is right but the output word vectors get no gradient: the paragraph-vector term was "
                   "cut from the graph (.item(), .detach(), torch.no_grad() or a new tensor), so training would "
                   "never tie the paper vectors to the words")
    for name, g in grads.items():
        if params[name].grad is None or not close(params[name].grad, g, rtol=1e-4, atol=1e-7):
            raise Fail(f"the value is right but the gradient of {name} is wrong: build both terms with torch "
                       "operations on the model's tensors (no .item(), .detach(), torch.no_grad() or a new tensor)")
    rec_b, _, _ = _terms(bpr_loss)
    _, _, _, value_b = _run_joint(joint_fn, bpr_loss)
    if not np.isclose(value_b, rec_b + _LAM * p2v, rtol=1e-5, atol=1e-7):
        if np.isclose(value_b, want, rtol=1e-5, atol=1e-7):
            raise Fail("given rank_loss=bpr, joint_loss still computed the listwise loss: compute L_rec with the "
                       "rank_loss passed in, so that one joint loss serves BPR and listwise")
        raise Fail(f"with rank_loss=bpr expected {rec_b + _LAM * p2v:.4f}, got {value_b:.4f}: compute L_rec with "
                   "the rank_loss passed in")
    return passed("L = L_rec + lam L_p2v on the test case, both terms recorded, rank_loss used, gradients reach the "
                  "paper and word vectors")


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
    # no measured number in the PASS line: which lambda wins, and by how much, drifts with float32 rounding
    return passed(f"the paragraph-vector term helps cold papers: a lambda_p2v > 0 beats lambda_p2v = 0 on {metric}")
