"""Checks for notebook 01 (beginner): TF-IDF weights, the weighted average of word vectors,
the merge, the weighted-MSE loss, one training step of the hybrid recommender, and the training
run that uses that step. The results table is checked by the shared :func:`check_beats`."""
from __future__ import annotations

import numpy as np
import torch

from . import (Fail, Mistake, as_array, as_scalar, as_tensor, call, check, close, describe, diagnose, passed,
               weighted_mse_mistakes, weighted_mse_reference)
from . import check_beats  # noqa: F401  (the notebook's results cell calls nb01.check_beats)


def _hand_corpus():
    # 3 papers over a vocabulary of 5 ids (0 = padding); word 2 is in every paper -> idf 0;
    # word 3 occurs 3 times in 2 papers, word 4 too; word 1 occurs nowhere
    ids = np.array([[2, 3, 3, 0], [2, 4, 0, 0], [2, 3, 4, 4]])
    mask = (ids > 0).astype(np.float32)
    return ids, mask


def _idf_variant(ids, mask, n_words, *, df="papers", n=None, log=np.log, smooth=0.0):
    """idf as written with one common mistake (the defaults give log(N / df))."""
    if df == "papers":
        counts = sum(np.bincount(np.unique(r[m > 0]), minlength=n_words) for r, m in zip(ids, mask))
    else:
        counts = np.bincount(ids[mask > 0], minlength=n_words)
    counts = counts.astype(float)
    n = len(ids) if n is None else n
    out = np.zeros(n_words)
    seen = counts > 0
    out[seen] = log(n / (counts[seen] + smooth))
    out[0] = 0.0
    return out


@check("idf", expects="a numpy array (vocab_size,) with log(N / df) per word id, 0 for padding and unseen words")
def check_idf(idf_fn):
    """``idf_fn(ids, mask, vocab_size) -> (vocab_size,)`` with ``log(N / df)``, 0 for unseen words and padding."""
    ids, mask = _hand_corpus()
    value = as_array("idf", call("idf", idf_fn, ids, mask, 5), shape=(5,), what="one idf per word id (vocab_size,)",
                     shape_hints={(3,): "one value per word id (vocab_size of them), not one per paper",
                                  (4,): "one value per word id 0 .. vocab_size - 1, padding id 0 included"})
    want = _idf_variant(ids, mask, 5)
    if close(value, want):
        return passed("idf = log(N / df): the word in every paper weighs 0, padding 0, unseen words 0")
    if not np.all(np.isfinite(value)):
        bad = np.flatnonzero(~np.isfinite(value)).tolist()
        raise Fail(f"idf is inf or NaN for word ids {bad}: padding (id 0) and words that occur in no paper "
                   "(df = 0) must get 0, not log(N / 0)")
    occurrences = ("word 3 appears 3 times but in only 2 papers: df counts PAPERS containing the word, not "
                   "occurrences (use each paper's set of words)")
    raise diagnose(value, [
        Mistake(occurrences, _idf_variant(ids, mask, 5, df="occurrences")),
        Mistake("wrong logarithm: idf uses the natural log (np.log), not log10",
                _idf_variant(ids, mask, 5, log=np.log10)),
        Mistake("wrong logarithm: idf uses the natural log (np.log), not log2", _idf_variant(ids, mask, 5, log=np.log2)),
        Mistake("you smoothed df (+1); the formula here is log(N / df) exactly", _idf_variant(ids, mask, 5, smooth=1.0)),
        Mistake("N is the number of PAPERS (rows of ids), not the number of words",
                lambda: _idf_variant(ids, mask, 5, n=mask.sum())),
        Mistake("N is the number of PAPERS (rows of ids), not the vocabulary size", _idf_variant(ids, mask, 5, n=5)),
        Mistake("word 1 occurs in no paper: its idf must be 0, not log(N / 1)", when=lambda v: np.isclose(v[1], np.log(3))),
        Mistake(occurrences, when=lambda v: np.isclose(v[3], 0) and np.isclose(v[4], 0)),
        Mistake(f"idf[0] is {value[0]:.3f}; id 0 is padding and must get 0 (use the mask)", when=lambda v: v[0] != 0),
        Mistake("you computed log(df / N); idf is log(N / df)", when=lambda v: np.isclose(v[3], np.log(2 / 3))),
        Mistake("take the log: idf is log(N / df), not N / df", when=lambda v: np.isclose(v[3], 3 / 2)),
    ], f"expected {np.round(want, 4).tolist()}, got {np.round(value, 4).tolist()}")


def _average_variant(ids, mask, vectors, idf, *, weights="idf", divide="weights", use_mask=True, tf=True):
    """The weighted average as written with one common mistake (defaults: the right one)."""
    m = mask if use_mask else np.ones_like(mask)
    if not tf:  # each distinct word once
        m = m.copy()
        for r in range(len(ids)):
            _, first = np.unique(ids[r], return_index=True)
            keep = np.zeros(ids.shape[1], bool)
            keep[first] = True
            m[r] *= keep
    w = (idf[ids] if weights == "idf" else np.ones(ids.shape)) * m  # (B, L)
    total = (w[..., None] * vectors[ids]).sum(1)  # (B, dim)
    denominator = {"weights": w.sum(1), "count": m.sum(1), "none": np.ones(len(ids)),
                   "all_weights": idf[ids].sum(1)}[divide]
    return total / denominator[:, None]


@check("weighted_average", expects="a (B, dim) tensor: the idf-weighted mean of the word vectors of each paper")
def check_weighted_average(avg_fn):
    """``avg_fn(ids, mask, word_vectors, idf) -> (B, dim)`` torch: the TF-IDF weighted mean."""
    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(6, 4, generator=gen)
    # padding (id 0) has a non-zero weight here, so a weight that skips the mask shows up
    idf = torch.tensor([0.7, 0.5, 1.0, 2.0, 0.3, 1.5])
    ids = torch.tensor([[1, 3, 3, 0, 0], [5, 2, 4, 1, 2]])
    mask = (ids > 0).float()
    value = as_array("weighted_average", call("weighted_average", avg_fn, ids, mask, vectors, idf),
                     shape=(2, 4), what="the paper vectors (B, dim) = (2, 4)",
                     shape_hints={(2, 5, 4): "sum the weighted word vectors over the positions (dim=1)",
                                  (2, 5): "multiply the weights by the word VECTORS (vectors[ids], (B, L, dim)) and "
                                          "sum over the positions",
                                  (4,): "one vector per paper: do not average over the batch"})
    a = [ids.numpy()] + [x.numpy().astype(np.float64) for x in (mask, vectors, idf)]
    want = _average_variant(*a)
    if close(value, want, rtol=1e-5, atol=1e-6):
        return passed("a repeated word counts tf times, each word weighs idf, padding 0, weights sum to 1")
    raise diagnose(value, [
        Mistake("you took the plain mean of the word vectors; weight each word by its idf",
                _average_variant(*a, weights="ones", divide="count")),
        Mistake("you summed idf-weighted vectors but did not divide by the sum of the weights",
                _average_variant(*a, divide="none")),
        Mistake("you divided by the number of words; divide by the sum of the idf weights, so that the weights "
                "of a paper sum to 1", _average_variant(*a, divide="count")),
        Mistake("padding positions carry weight: their weight must be 0 (multiply the weights by the mask)",
                _average_variant(*a, use_mask=False)),
        Mistake("the sum of the weights includes the padding positions: divide by the sum over the real words only",
                _average_variant(*a, divide="all_weights")),
        Mistake("a word that occurs twice must count twice (that is the TF part): weight every position, not "
                "each distinct word once", _average_variant(*a, tf=False)),
    ], f"expected {np.round(want, 3).tolist()}, got {np.round(value, 3).tolist()}", rtol=1e-5, atol=1e-6)


@check("merge", expects="a tensor: (B, item_dim + content_dim) for 'concat', (B, item_dim) for 'sum'")
def check_merge(merge_fn):
    """``merge_fn(item_vec, content_vec, how, W) -> tensor``: concat ``[v ; c]`` or sum ``v + c @ W.T``."""
    gen = torch.Generator().manual_seed(1)
    v, c, W = torch.randn(3, 4, generator=gen), torch.randn(3, 6, generator=gen), torch.randn(4, 6, generator=gen)
    cat = as_array("merge(..., 'concat', ...)", call("merge(..., 'concat', ...)", merge_fn, v, c, "concat", W),
                   what="a (B, item_dim + content_dim) tensor")
    if cat.shape != (3, 10):
        hint = {(3, 4): "for how='concat' you returned (B, item_dim), the size of the sum: check the `how` argument",
                (6, 4): "concatenate along the feature dimension (dim=1), not the batch", (3, 6): "the item vector "
                "is missing: concatenate [item_vec ; content_vec]"}.get(cat.shape, "")
        raise Fail(f"the concatenation has shape {cat.shape}, expected (3, 10)" + (f": {hint}" if hint else ""))
    if not close(cat, torch.cat([v, c], 1), atol=1e-6):
        raise diagnose(cat, [
            Mistake("concat should put the item vector first, then the content vector, along dim 1",
                    torch.cat([c, v], 1)),
        ], "concat should put the item vector first, then the content vector, along dim 1 (the values differ)")
    # item_dim == content_dim here, so a projection that is applied the wrong way round computes
    # (instead of raising) and can be recognised
    v4, c4, W4 = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen), torch.randn(4, 4, generator=gen)
    sum_mistakes = [
        Mistake("W has shape (item_dim, content_dim): the content is projected by W's transpose", v4 + c4 @ W4),
        Mistake("project the content to the item size with W before adding it to the item vector", v4 + c4),
        Mistake("you projected the item vector; W maps the CONTENT vector to the item size", v4 @ W4 + c4),
        Mistake("you projected the item vector; W maps the CONTENT vector to the item size", v4 @ W4.T + c4),
        Mistake("the sum adds the projected content TO the item vector: the item vector is missing", c4 @ W4.T),
    ]
    square = call("merge(..., 'sum', ...)", merge_fn, v4, c4, "sum", W4)
    square = as_array("merge(..., 'sum', ...)", square, shape=(3, 4), what="a (B, item_dim) tensor",
                      shape_hints={(3, 8): "for how='sum' you returned the concatenation: check the `how` argument"})
    if not close(square, v4 + c4 @ W4.T, atol=1e-6):
        raise diagnose(square, sum_mistakes, "sum should project the content to the item size with W (shape "
                                             "(item_dim, content_dim)) and add it to the item vector", atol=1e-6)
    summed = as_array("merge(..., 'sum', ...)", call("merge(..., 'sum', ...)", merge_fn, v, c, "sum", W),
                      what="a (B, item_dim) tensor")
    if summed.shape != (3, 4):
        hint = {(3, 10): ": for how='sum' you returned the concatenation; check the `how` argument",
                (3, 6): ": the sum lives in the item space (B, item_dim)"}.get(summed.shape, "")
        raise Fail(f"the sum has shape {summed.shape}, expected (3, 4){hint}")
    if not close(summed, v + c @ W.T, atol=1e-6):
        raise Fail("sum should project the content to the item size with W (shape (item_dim, content_dim)) and add "
                   "it to the item vector")
    return passed("concat gives (B, item_dim + content_dim); sum gives (B, item_dim) with the projection W")


@check("weighted_mse", expects="one number as a torch tensor: the mean over the papers of the weighted squared "
                               "errors summed over the users")
def check_weighted_mse(wmse_fn):
    """``wmse_fn(scores, targets, alpha)``: ``1/B sum_i [alpha sum_pos (1-s)^2 + sum_neg s^2]``."""
    gen = torch.Generator().manual_seed(2)
    s = torch.randn(4, 9, generator=gen)
    t = (torch.rand(4, 9, generator=gen) < 0.3).float()
    out = call("weighted_mse", wmse_fn, s.clone().requires_grad_(True), t, 10.0)
    value = as_scalar("weighted_mse", out, what="one number (the mean over the papers of the batch)",
                      shape_hints={(4,): "you returned one loss per paper: average them over the papers",
                                   (9,): "sum over the users of a paper (dim=1), then average over the papers",
                                   (4, 9): "you returned the weighted error of every entry: sum over the users of a "
                                           "paper, then average over the papers"})
    want = weighted_mse_reference(s.numpy(), t.numpy(), 10.0)
    if not np.isclose(value, want, rtol=1e-5):
        raise diagnose(value, weighted_mse_mistakes(s.numpy(), t.numpy(), 10.0),
f"expected {want:.4f}, got {value:.4f}", rtol=1e-5)
    other = as_scalar("weighted_mse", call("weighted_mse", wmse_fn, s, t, 3.0))
    if not np.isclose(other, weighted_mse_reference(s.numpy(), t.numpy(), 3.0), rtol=1e-5):
        raise Fail("with alpha=3 the loss is wrong although alpha=10 was right: use the alpha argument, not a "
                   "constant")
    as_tensor("weighted_mse", out, need_grad=True)
    return passed(f"weighted MSE = {want:.4f} on the test case, as the formula says")


class _MeanEncoder(torch.nn.Module):
    """A minimal content encoder: the mean of trainable word vectors."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 3)
        self.out_dim = 3

    def forward(self, batch):
        return (self.emb(batch.ids) * batch.mask[..., None]).sum(1) / batch.mask.sum(1, keepdim=True)


def _step_case(**dropout):
    from course_lib.torch_models.hybrid import HybridRecommender  # noqa: PLC0415
    from course_lib.torch_models.utils import TextBatch  # noqa: PLC0415

    torch.manual_seed(0)  # the encoder's initial vectors; the caller forks the global generator
    model = HybridRecommender(7, 5, _MeanEncoder(), item_dim=3, seed=0, **dropout)
    model.set_known_papers(np.ones(5, bool))
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    batch = TextBatch(ids, (ids > 0).float(), torch.tensor([0, 3]))
    targets = torch.zeros(2, 7)
    targets[0, [1, 2]] = 1
    targets[1, 6] = 1
    return model, batch, targets


def _loss(model, batch, targets, alpha, **kw) -> float:
    with torch.no_grad():
        return weighted_mse_reference(model(batch).numpy(), targets.numpy(), alpha, **kw)


@check("training_step", expects="the loss before the update, as a Python float")
def check_training_step(step_fn):
    """``step_fn(model, optimizer, batch, targets, alpha) -> float``: one update in training mode
    (dropout on) that lowers the loss, with the optimizer it is given."""
    with torch.random.fork_rng(devices=[]):
        return _check_training_step(step_fn)


def _check_training_step(step_fn):
    model, batch, targets = _step_case()
    opt = torch.optim.Adagrad(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = _loss(model, batch, targets, 5.0)
    # what an earlier batch's backward() leaves behind; NaN, so that adding to it cannot go unseen
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    value = call("training_step", step_fn, model, opt, batch, targets, 5.0, expects="the loss as a Python float")
    if not isinstance(value, float):
        raise Fail(f"return the loss as a Python float (a tensor would keep the whole graph in memory), got "
                   f"{describe(value)}")
    params = list(model.parameters())
    grads = [p.grad for p in params]
    if not all(torch.isfinite(p).all() for p in params):
        raise Fail("the check left NaN gradients in .grad before calling your step (as an earlier batch would leave "
                   "its gradients) and your update used them: clear the old gradients before computing new ones")
    if all(torch.equal(before[k], v) for k, v in model.state_dict().items()):
        if all(g is None or not torch.any(g != 0) for g in grads):
            raise Fail("no weight changed and no gradient is left after your step: compute the gradients of the "
                       "loss (after clearing the old ones, before the optimizer's step)")
        raise Fail("the gradients were computed but no weight changed: let the optimizer take its step")
    if not all(int(s["step"]) == 1 for s in opt.state.values() if "step" in s):
        raise Fail("the weights moved, but not through the optimizer the step was given: update them with "
                   "`optimizer` (it keeps Adagrad's running sums between steps)")
    if not np.isclose(value, start, rtol=1e-5):
        raise diagnose(value, [
            Mistake("you returned the loss AFTER the update; return the one computed before the optimizer's step",
                    lambda: _loss(model, batch, targets, 5.0)),
            Mistake("the returned loss uses alpha = 10: use the alpha argument",
                    lambda: weighted_mse_reference(_forward(model, before, batch).detach().numpy(), targets.numpy(), 10.0)),
            Mistake("the returned loss averages over every (paper, user) entry: use the weighted MSE of Exercise 4",
                    lambda: weighted_mse_reference(_forward(model, before, batch).detach().numpy(), targets.numpy(), 5.0,
                                                   reduce="entries")),
        ], f"the returned loss {value:.4f} is not the loss before the update ({start:.4f}); compute it with the "
           "model's forward pass and your weighted MSE", rtol=1e-5)
    losses = [value] + [as_scalar("training_step", call("training_step", step_fn, model, opt, batch, targets, 5.0))
                        for _ in range(4)]
    if not losses[-1] < losses[0]:
        raise Fail(f"the loss did not go down over 5 steps ({losses[0]:.4f} -> {losses[-1]:.4f}): the update must "
                   "follow the gradient of the loss DOWN (minimise it, do not maximise it)")
    _check_train_mode(step_fn)
    return passed(f"five steps lower the loss on one batch from {losses[0]:.3f} to {losses[-1]:.3f}")


def _forward(model, state, batch):
    """The model's scores with the weights ``state`` (the model's own weights are put back)."""
    now, mode = {k: v.clone() for k, v in model.state_dict().items()}, model.training
    model.load_state_dict(state)
    try:
        with torch.no_grad():
            return model.eval()(batch)
    finally:
        model.load_state_dict(now)
        model.train(mode)


def _check_train_mode(step_fn) -> None:
    """The model comes in evaluation mode, as after an evaluation pass: the step must switch dropout on."""
    model, batch, targets = _step_case(dropout_user=0.5, dropout_item=0.5)
    model.eval()
    no_dropout = _loss(model, batch, targets, 5.0)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.1)
    torch.manual_seed(1)
    value = as_scalar("training_step", call("training_step", step_fn, model, opt, batch, targets, 5.0))
    if np.isclose(value, no_dropout, rtol=1e-6):
        raise Fail("on a model with dropout that came in evaluation mode (as after an evaluation pass) your step "
                   "trained with dropout off: put the model in training mode inside the step")


def _history_arrays(name: str, history, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The per-epoch losses and validation metric of a ``train_hybrid`` history."""
    if not isinstance(history, dict) or "loss" not in history or metric not in history:
        raise Fail(f"{name} must be the dict that train_hybrid returns (with 'loss' and {metric!r}), got "
                   f"{describe(history)}")
    loss = as_array(f"{name}['loss']", history["loss"], what="a list with one loss per epoch", returned=False).ravel()
    valid = as_array(f"{name}[{metric!r}]", history[metric], what="a list with one value per epoch",
                     returned=False).ravel()
    if loss.size == 0 or valid.size == 0:
        raise Fail(f"{name} holds no epoch: the training ran no step")
    return loss, valid


@check("your training run", expects="the histories train_hybrid returned for your run and for the reference run")
def check_your_training(history, reference, metric: str = "valid_Recall@50", loss_rtol: float = 0.01,
                        recall_atol: float = 0.02):
    """After the training cell: ``history`` (``train_hybrid`` with the learner's ``training_step`` as
    ``step_fn``) trained the model as ``reference`` (the library's step, same model, seed and
    settings) did: the loss fell, the mean loss of every epoch agrees to ``loss_rtol`` (same start,
    same batches), and the best validation value is within ``recall_atol`` of the reference's."""
    loss, valid = _history_arrays("history", history, metric)
    ref_loss, ref_valid = _history_arrays("reference", reference, metric)
    if not np.all(np.isfinite(loss)):
        epoch = int(np.flatnonzero(~np.isfinite(loss))[0]) + 1
        raise Fail(f"your run's loss became NaN or infinite in epoch {epoch}: lower the learning rate, or check that "
                   "your step returns the weighted MSE of the batch")
    if len(loss) > 1 and loss[-1] > 1.5 * loss[0]:
        raise Fail(f"the loss rose from {loss[0]:.4g} to {loss[-1]:.4g}: your step climbs the loss; the update must "
                   "follow its gradient down")
    if len(loss) > 1 and loss[-1] > 0.9 * loss[0]:
        raise Fail(f"the loss did not go down over {len(loss)} epochs ({loss[0]:.4g} -> {loss[-1]:.4g}): your step "
                   "must update the model that train_hybrid trains (build the optimizer over THAT model's "
                   "parameters, and call your training_step on it)")
    if len(valid) > 2 and np.ptp(valid) == 0 and np.ptp(ref_valid) > 0:
        raise Fail(f"the loss fell but the validation {metric} stayed at {valid[0]:.3f} in every epoch: the model that "
                   "train_hybrid scores is not the one your step trains; call your training_step on the model "
                   "passed to train_hybrid")
    n = min(len(loss), len(ref_loss))
    if not close(loss[:n], ref_loss[:n], rtol=loss_rtol, atol=0.0):
        raise diagnose(loss[:n], [
            Mistake(f"your first epoch is close to the reference's ({loss[0]:.4g} vs {ref_loss[0]:.4g}) but later "
                    "epochs part from it: use the same optimizer and learning rate as the reference (Adagrad, lr=LR)",
                    when=lambda _: abs(loss[0] / ref_loss[0] - 1) <= 0.2),
        ], f"your run's mean loss per epoch ({np.round(loss[:3], 4).tolist()} ...) differs from the reference's "
           f"({np.round(ref_loss[:3], 4).tolist()} ...), though both start from the same weights and see the same "
           "batches: give your step the same alpha (ALPHA) and optimizer (Adagrad, lr=LR) as the reference")
    best, ref_best = float(np.max(valid)), float(np.max(ref_valid))
    if not best >= ref_best - recall_atol:
        raise Fail(f"your run's best {metric} is {best:.3f}, the reference's {ref_best:.3f}: the losses agree, so "
                   "score the model after training (train_hybrid restores the best epoch's weights)")
    return passed(f"your training step trained the model as the library's step does: from the same start, the "
                  f"same loss in every epoch (within {loss_rtol:.0%}) and the same best {metric} (within "
                  f"{recall_atol}).")
