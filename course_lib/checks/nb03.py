"""Checks for notebook 03 (advanced): the PV-DBOW negative-sampling loss, BPR and listwise losses,
inference of paragraph vectors for cold papers, and the loss-balance experiment."""
from __future__ import annotations

import numpy as np
import torch

from . import Verdict, call_learner, compare_shapes, numerical_gradient, rel_error, report, to_numpy


def _one_number(name, value) -> float | None:
    """A loss that must be a single number, or None after a FAIL line naming its shape."""
    value = to_numpy(value)
    if value.size != 1:
        report(False, "", f"{name} must return one number (the mean over the pairs and their negatives), "
                          f"got shape {value.shape}")
        return None
    return float(value.reshape(()))


def _grad_ok(name, fn, x0: np.ndarray) -> bool:
    """Autograd through the learner's function against central differences."""
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    out = fn(x)
    if not torch.is_tensor(out) or not out.requires_grad:
        return report(False, "", f"{name} must return a torch tensor built from its inputs (no .item(), no numpy), "
                                 "so that backward() can flow through it")
    out.sum().backward()
    num = numerical_gradient(lambda a: float(fn(torch.tensor(a, dtype=torch.float64)).sum()), x0)
    err = rel_error(x.grad.numpy(), num)
    if err > 1e-6:
        return report(False, "", f"the gradient of {name} differs from finite differences (relative error {err:.1e})")
    return True


def check_pv_dbow_loss(loss_fn) -> bool:
    """``loss_fn(doc (B,D), pos (B,T,D), noise (T,K,D)) -> (B,)``: mean over t of
    ``-log s(d.u_t) - sum_k log s(-d.u_tk)``."""
    from course_lib.torch_models.e2e_paragraph import negative_sampling_loss

    rng = np.random.default_rng(0)
    d, u, n = rng.normal(size=(3, 4)), rng.normal(size=(3, 5, 4)), rng.normal(size=(5, 2, 4))
    td, tu, tn = (torch.tensor(a) for a in (d, u, n))
    value = call_learner("pv_dbow_loss", loss_fn, td, tu, tn)
    if value is None:
        return Verdict(False)
    if not compare_shapes("the loss (one value per paper)", value, (3,)):
        return Verdict(False)
    want = to_numpy(negative_sampling_loss(torch.einsum("bd,btd->bt", td, tu), torch.einsum("bd,tkd->btk", td, tn)))
    value = to_numpy(value)
    if np.allclose(value, want * 5):
        return report(False, "", "you summed over the T sampled words; average over them instead")
    flipped = to_numpy(negative_sampling_loss(torch.einsum("bd,btd->bt", td, tu), -torch.einsum("bd,tkd->btk", td, tn)))
    if np.allclose(value, flipped):
        return report(False, "", "noise words must score LOW: use log sigmoid(-d . u_noise)")
    if not np.allclose(value, want, rtol=1e-6):
        return report(False, "", f"expected {np.round(want, 4).tolist()}, got {np.round(value, 4).tolist()}")
    if not _grad_ok("pv_dbow_loss", lambda x: loss_fn(x, tu, tn), d):
        return Verdict(False)
    return report(True, "the PV-DBOW loss matches the formula and its gradient matches finite differences", "")


def _ranking_case():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(2, 8))
    rows = torch.tensor([0, 0, 1])
    pos = torch.tensor([1, 5, 2])
    neg = torch.tensor([[0, 3, 4], [2, 3, 7], [6, 0, 0]])
    return s, rows, pos, neg


def check_bpr(bpr_fn) -> bool:
    """``bpr_fn(scores, rows, pos, neg)``: mean over pairs and negatives of ``-log s(s_pos - s_neg)``."""
    from course_lib.torch_models.hybrid import bpr_loss

    s, rows, pos, neg = _ranking_case()
    value = call_learner("bpr", bpr_fn, torch.tensor(s), rows, pos, neg)
    if value is None:
        return Verdict(False)
    want = float(bpr_loss(torch.tensor(s), rows, pos, neg))
    value = _one_number("bpr", value)
    if value is None:
        return Verdict(False)
    reversed_ = float(-torch.nn.functional.logsigmoid(
        torch.tensor(s)[rows.unsqueeze(1), neg] - torch.tensor(s)[rows, pos].unsqueeze(1)).mean())
    if np.isclose(value, reversed_):
        return report(False, "", "the positive must score ABOVE the negatives: sigma(s_pos - s_neg), not the reverse")
    if np.isclose(value, want * 3):
        return report(False, "", "you summed over the 3 negatives; BPR here is their average")
    if not np.isclose(value, want, rtol=1e-6):
        return report(False, "", f"expected {want:.4f}, got {value:.4f}")
    if not _grad_ok("bpr", lambda x: bpr_fn(x, rows, pos, neg), s):
        return Verdict(False)
    return report(True, f"BPR = {want:.4f} on the test case; gradient checked", "")


def check_listwise(xe_fn) -> bool:
    """``xe_fn(scores, rows, pos, neg)``: mean of ``-log softmax([s_pos, s_negs])[0]``."""
    from course_lib.torch_models.hybrid import listwise_loss

    s, rows, pos, neg = _ranking_case()
    value = call_learner("listwise", xe_fn, torch.tensor(s), rows, pos, neg)
    if value is None:
        return Verdict(False)
    want = float(listwise_loss(torch.tensor(s), rows, pos, neg))
    value = _one_number("listwise", value)
    if value is None:
        return Verdict(False)
    full = float(-torch.log_softmax(torch.tensor(s)[rows], 1)[torch.arange(3), pos].mean())
    if np.isclose(value, full):
        return report(False, "", "you took the softmax over ALL users; the task samples: softmax over the positive "
                                 "and its sampled negatives only")
    if not np.isclose(value, want, rtol=1e-6):
        return report(False, "", f"expected {want:.4f}, got {value:.4f}")
    if not _grad_ok("listwise", lambda x: xe_fn(x, rows, pos, neg), s):
        return Verdict(False)
    return report(True, f"listwise cross-entropy = {want:.4f} on the test case; gradient checked", "")


def check_infer(infer_fn) -> bool:
    """``infer_fn(encoder, batch, steps, lr) -> (B, dim)``: new paper vectors, word vectors untouched."""
    from course_lib.torch_models.e2e_paragraph import EndToEndParagraphVectors
    from course_lib.torch_models.utils import TextBatch

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
    words_before = enc.word_out.weight.detach().clone()
    docs_before = enc.doc.weight.detach().clone()
    value = call_learner("infer_vectors", infer_fn, enc, batch, 200, 0.1)
    if value is None:
        return Verdict(False)
    if not compare_shapes("the inferred vectors", value, (6, 5)):
        return Verdict(False)
    if not torch.equal(words_before, enc.word_out.weight.detach()):
        return report(False, "", "the output word vectors changed: inference must keep them frozen "
                                 "(pass encoder.word_out.weight.detach() to p2v_loss, optimise only the new vectors)")
    if not torch.equal(docs_before, enc.doc.weight.detach()):
        return report(False, "", "the encoder's table changed: return the new vectors, do not write them into it")
    vecs = torch.as_tensor(to_numpy(value), dtype=torch.float32)
    probe = torch.Generator().manual_seed(7)
    with torch.no_grad():
        mine = float(enc.p2v_loss(vecs, batch, probe).mean())
        zero = float(enc.p2v_loss(torch.zeros(6, 5), batch, torch.Generator().manual_seed(7)).mean())
    ref = enc.infer_vectors(batch, steps=200, lr=0.1)
    cos = float(torch.nn.functional.cosine_similarity(vecs, ref, dim=1).mean())
    if not mine < zero - 0.1:
        return report(False, "", f"the inferred vectors do not explain the words (loss {mine:.3f} vs {zero:.3f} for "
                                 "zero vectors): minimise p2v_loss over the vectors with the optimizer")
    if cos < 0.9:
        return report(False, "", f"the loss went down but the vectors point elsewhere than the reference inference "
                                 f"(mean cosine {cos:.2f}); run more steps or check the sign of the update")
    return report(True, f"PV loss {zero:.2f} -> {mine:.2f}, word vectors frozen, cosine {cos:.2f} to the reference", "")


def check_balance(results: dict[float, dict], metric: str = "cold R@50") -> bool:
    """``results[lambda_p2v][metric]``: some lambda > 0 must beat lambda = 0 on cold papers."""
    if 0.0 not in results or len(results) < 3:
        return report(False, "", "run at least three values of lambda_p2v, including 0.0")
    base = results[0.0][metric]
    best = max((lam for lam in results if lam > 0), key=lambda lam: results[lam][metric])
    return report(results[best][metric] > base,
                  f"the paragraph-vector term helps cold papers: {metric} {base:.3f} at lambda_p2v=0 -> "
                  f"{results[best][metric]:.3f} at lambda_p2v={best:g}",
                  f"no lambda_p2v > 0 beats lambda_p2v = 0 on {metric} ({base:.3f}): train longer or check "
                  "that score_papers infers the cold papers' vectors")
