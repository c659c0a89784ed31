"""Checks for notebook 04 (Ask the GRU end to end: encoder, losses, saliency)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import torch

from . import Verdict, numerical_gradient, rel_error, report, run_check


def _returned_none(name: str, value) -> bool:
    """True, after a FAIL line, when the learner's function returned None (a missing ``return``)."""
    if value is None:
        report(False, "", f"{name} returned None: end the function with `return ...`")
    return value is None


def _padded_batch(seed: int = 0, n_words: int = 30):
    """Three papers of lengths 5, 2, 3 padded to width 8 with random ids behind the mask."""
    from course_lib.torch_models.utils import TextBatch

    rng = np.random.default_rng(seed)
    lengths = np.array([5, 2, 3])
    ids = rng.integers(1, n_words, size=(3, 8))
    mask = (np.arange(8)[None] < lengths[:, None]).astype(np.float32)
    return TextBatch(torch.as_tensor(ids), torch.as_tensor(mask), torch.arange(3)), ids, lengths


def check_gru_encoder(encoder_cls) -> bool:
    """``encoder_cls(n_words, emb_dim, hidden1, hidden2, dropout)`` with the layers ``embedding``,
    ``gru1`` (bidirectional), ``gru2`` must compute what :class:`GRUEncoder` computes, ignore
    padding, and read each paper backwards from its last real word."""
    from course_lib.torch_models.askgru import GRUEncoder
    from course_lib.torch_models.utils import TextBatch

    ref = GRUEncoder(30, 6, 5, 4, dropout=(0.0, 0.0, 0.0), seed=0).eval()
    got = {}
    if not run_check("your encoder", lambda: got.update(m=encoder_cls(30, 6, 5, 4, (0.0, 0.0, 0.0)))):
        return Verdict(False)
    mine = got["m"].eval()
    try:
        mine.load_state_dict(ref.state_dict())
    except RuntimeError as exc:
        return report(False, "", f"the layers differ from GRUEncoder's (embedding, gru1, gru2): {exc}")
    if getattr(mine, "out_dim", None) != 4:
        return report(False, "", f"out_dim should be hidden2 = 4, got {getattr(mine, 'out_dim', None)}")
    batch, ids, lengths = _padded_batch()
    if not run_check("forward", lambda: got.update(out=mine(batch))):
        return Verdict(False)
    out = got["out"]
    if _returned_none("forward", out):
        return Verdict(False)
    if tuple(out.shape) != (3, 4):
        return report(False, "", f"the output has shape {tuple(out.shape)}, expected (batch=3, hidden2=4)")
    alone = torch.cat([ref(TextBatch(torch.as_tensor(ids[i : i + 1, : lengths[i]]),
                                     torch.ones(1, int(lengths[i])), torch.arange(1))) for i in range(3)])
    own_alone = torch.cat([mine(TextBatch(torch.as_tensor(ids[i : i + 1, : lengths[i]]),
                                          torch.ones(1, int(lengths[i])), torch.arange(1))) for i in range(3)])
    if rel_error(own_alone.detach(), alone.detach()) > 1e-4:
        return report(False, "", "on papers without padding your output differs from the reference: check the "
                                 "bidirectional first layer, the concatenation, and the mean over time")
    err = rel_error(out.detach(), alone.detach())
    if err > 1e-4:
        return report(False, "", f"padding changes your output (relative error {err:.1e}): the backward GRU must "
                                 "start at each paper's last real word (pack the sequences), and the mean must "
                                 "divide by the number of real words")
    # dropout: in training mode two passes must differ; the global RNG is restored afterwards
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if not run_check("your encoder", lambda: got.update(d=encoder_cls(30, 6, 5, 4, (0.5, 0.5, 0.5)))):
            return Verdict(False)
        dropped = got["d"].train()
        if not run_check("forward", lambda: got.update(a=dropped(batch), b=dropped(batch))):
            return Verdict(False)
    if torch.equal(got["a"], got["b"]):
        return report(False, "", "with dropout=(0.5, 0.5, 0.5) in training mode two forward passes give the same "
                                 "output: apply self.drops[0] to the embeddings and self.drops[1], self.drops[2] to "
                                 "the outputs of gru1 and gru2")
    return report(True, "same output as GRUEncoder, and padding never changes it", "")


def _scalar(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _not_one_number(name: str, value) -> bool:
    """True, after a FAIL line, when a cost is not a single number (e.g. one value per pair)."""
    size = int(np.prod(np.shape(value.detach() if isinstance(value, torch.Tensor) else value)))
    if size != 1:
        report(False, "", f"{name} must return one number, the mean cost, got {size} values")
    return size != 1


def check_confidence_loss(fn) -> bool:
    """``fn(pred, target, n_likes, alpha_conf, eps_conf)`` -> ``mean c_ij (pred - target)^2``."""
    pred = torch.tensor([0.9, 0.1, 0.4, -0.2], dtype=torch.float64)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    n_likes = torch.tensor([3.0, 3.0, 40.0, 40.0], dtype=torch.float64)
    got = {}
    if not run_check("confidence_weighted_loss", lambda: got.update(v=fn(pred, target, n_likes, 10.0, 1e-8))):
        return Verdict(False)
    if _returned_none("confidence_weighted_loss", got["v"]) or _not_one_number("confidence_weighted_loss", got["v"]):
        return Verdict(False)
    c = [1 + 10 * math.log(1 + n / 1e-8) for n in (3, 3, 40, 40)]
    want = float(np.mean([ci * (p - t) ** 2 for ci, p, t in zip(c, pred.tolist(), target.tolist())]))
    value = _scalar(got["v"])
    if abs(value - want) > 1e-6 * abs(want):
        uniform = float(np.mean((pred - target).numpy() ** 2))
        hint = (" (that is the unweighted mean: multiply by c_ij)" if abs(value - uniform) < 1e-9 else
                " (check c_ij = 1 + alpha log(1 + |R_i| / eps), and that you average over the pairs)")
        return report(False, "", f"expected {want:.6g}, got {value:.6g}{hint}")
    other = _scalar(fn(pred, target, n_likes, 2.0, 1.0))
    sq = [(p - t) ** 2 for p, t in zip(pred.tolist(), target.tolist())]
    want2 = float(np.mean([(1 + 2 * math.log(1 + n)) * e for n, e in zip(n_likes.tolist(), sq)]))
    no_one = float(np.mean([(1 + 2 * math.log(n)) * e for n, e in zip(n_likes.tolist(), sq)]))
    if abs(other - want2) > 1e-6 * abs(want2):
        if abs(other - want) <= 1e-6 * abs(want):
            hint = "use the arguments alpha_conf and eps_conf, not constants"
        elif abs(other - no_one) <= 1e-6 * abs(no_one):
            hint = "you wrote log(|R_i| / eps); eq. (2) has log(1 + |R_i| / eps) (torch.log1p)"
        else:
            hint = "check c_ij = 1 + alpha log(1 + |R_i| / eps)"
        return report(False, "", f"with alpha_conf=2, eps_conf=1 expected {want2:.6g}, got {other:.6g}: {hint}")
    return report(True, f"loss = {value:.4f}, as eq. (2) with c_ij = 1 + alpha log(1 + |R_i|/eps)", "")


def check_multitask_loss(fn) -> bool:
    """``fn(loss_rec, tag_logits, tags, lambda_mtl, tag_neg_weight)`` -> ``lambda C_R + (1 - lambda) C_T``."""
    from course_lib.torch_models.askgru import multitask_loss, tag_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5))
    tags = (rng.random((4, 5)) < 0.3).astype(np.float64)
    loss_rec = torch.tensor(3.0, dtype=torch.float64)
    got = {}
    z = torch.tensor(logits, requires_grad=True)
    if not run_check("multitask_cost", lambda: got.update(v=fn(loss_rec, z, torch.tensor(tags), 0.3, 0.1))):
        return Verdict(False)
    want = multitask_loss(loss_rec, tag_loss(torch.tensor(logits), torch.tensor(tags), 0.1), 0.3).item()
    if _returned_none("multitask_cost", got["v"]) or _not_one_number("multitask_cost", got["v"]):
        return Verdict(False)
    value = _scalar(got["v"])
    if abs(value - want) > 1e-6 * abs(want):
        only_rec = 0.3 * 3.0
        swapped = multitask_loss(loss_rec, tag_loss(torch.tensor(logits), torch.tensor(tags), 0.1), 0.7).item()
        if abs(value - only_rec) < 1e-9:
            hint = " (the tag term is missing)"
        elif abs(value - swapped) < 1e-9 * abs(swapped):
            hint = " (lambda_mtl weighs the recommendation cost C_R, 1 - lambda_mtl the tag cost C_T)"
        else:
            hint = " (sum the weighted log-likelihood over the tags of a paper, average over papers, and negate it)"
        return report(False, "", f"expected {want:.6g}, got {value:.6g}{hint}")
    if not isinstance(got["v"], torch.Tensor) or not got["v"].requires_grad:
        return report(False, "", "return a torch tensor connected to tag_logits, so that it can be trained")
    got["v"].backward()

    def f(x):
        return _scalar(fn(loss_rec, torch.tensor(x), torch.tensor(tags), 0.3, 0.1))

    err = rel_error(z.grad.numpy(), numerical_gradient(f, logits))
    if err > 1e-5:
        return report(False, "", f"the gradient with respect to the tag logits is off (relative error {err:.1e})")
    return report(True, f"C = {value:.4f} and its gradient match lambda C_R + (1 - lambda) C_T "
                        "(gradient relative error < 1e-5)", "")


def check_saliency(fn) -> bool:
    """``fn(model, texts, paper, user)`` -> ``(n_tokens,)`` numpy array of ``||d r_ij / d e_t||``."""
    from course_lib.torch_models.askgru import AskGRU, GRUEncoder
    from course_lib.torch_models.saliency import word_saliency

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
    for paper, user in ((1, 2), (0, 3)):
        model.train()  # a correct answer switches dropout off itself
        got = {}
        if not run_check("word_saliency", lambda: got.update(v=fn(model, texts, paper, user))):
            return Verdict(False)
        if _returned_none("word_saliency", got["v"]):
            return Verdict(False)
        value = np.asarray(got["v"], dtype=np.float64).ravel()
        want = word_saliency(model, texts, paper, [user], device="cpu")[0]
        if value.shape != want.shape:
            return report(False, "", f"for paper {paper} ({lengths[paper]} words) expected one value per real "
                                     f"word, shape {want.shape}, got {value.shape} (leave the padding out)")
        err = rel_error(value, want)
        if err > 1e-4:
            return report(False, "", f"your saliencies differ from ||d r_ij / d e_t|| (relative error {err:.1e}); "
                                     "use model.eval() (no dropout) and the norm over the embedding dimension")
    return report(True, "one value per word, equal to the norm of the gradient of r_ij w.r.t. each embedding", "")
