"""Checks for notebook 01 (beginner): TF-IDF weights, the weighted average of word vectors,
the merge, the weighted-MSE loss and one training step of the hybrid recommender."""
from __future__ import annotations

import numpy as np
import torch

from . import Verdict, call_learner, compare_shapes, report, to_numpy


def _hand_corpus():
    # 3 papers over a vocabulary of 5 ids (0 = padding); word 2 is in every paper -> idf 0
    ids = np.array([[2, 3, 3, 0], [2, 4, 0, 0], [2, 3, 4, 4]])
    mask = (ids > 0).astype(np.float32)
    return ids, mask


def check_idf(idf_fn) -> bool:
    """``idf_fn(ids, mask, vocab_size) -> (vocab_size,)`` with ``log(N / df)``, 0 for unseen words and padding."""
    ids, mask = _hand_corpus()
    value = call_learner("idf", idf_fn, ids, mask, 5)
    if value is None:
        return Verdict(False)
    value = to_numpy(value)
    if not compare_shapes("the idf vector", value, (5,)):
        return Verdict(False)
    want = np.array([0.0, 0.0, 0.0, np.log(3 / 2), np.log(3 / 2)])
    if not np.all(np.isfinite(value)):
        bad = np.flatnonzero(~np.isfinite(value)).tolist()
        return report(False, "", f"idf is inf or NaN for word ids {bad}: padding (id 0) and words that occur in no "
                                 "paper (df = 0) must get 0, not log(N / 0)")
    if np.allclose(value, [0, 0, 0, np.log(3 / 3), np.log(3 / 3)]) or np.isclose(value[3], np.log(3 / 3)):
        return report(False, "", "word 3 appears 3 times but in only 2 papers: df counts PAPERS containing "
                                 "the word, not occurrences (use each paper's set of words)")
    if value[0] != 0:
        return report(False, "", f"idf[0] is {value[0]:.3f}; id 0 is padding and must get 0 (use the mask)")
    if np.isclose(value[3], np.log(2 / 3)):
        return report(False, "", "you computed log(df / N); idf is log(N / df)")
    if not np.allclose(value, want):
        return report(False, "", f"expected {np.round(want, 4).tolist()}, got {np.round(value, 4).tolist()}")
    return report(True, "idf = log(N / df): the word in every paper weighs 0, padding 0, unseen words 0", "")


def check_weighted_average(avg_fn) -> bool:
    """``avg_fn(ids, mask, word_vectors, idf) -> (B, dim)`` torch: the TF-IDF weighted mean."""
    from course_lib.torch_models.content import TfidfWordAverage
    from course_lib.torch_models.utils import TextBatch

    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(6, 4, generator=gen)
    idf = torch.tensor([0.0, 0.5, 1.0, 2.0, 0.3, 1.5])
    ids = torch.tensor([[1, 3, 3, 0, 0], [5, 2, 4, 1, 2]])
    mask = (ids > 0).float()
    value = call_learner("weighted_average", avg_fn, ids, mask, vectors, idf)
    if value is None:
        return Verdict(False)
    value = to_numpy(value)
    if not compare_shapes("the paper vectors", value, (2, 4)):
        return Verdict(False)
    want = to_numpy(TfidfWordAverage(vectors.numpy(), idf.numpy())(TextBatch(ids, mask, torch.arange(2))))
    plain = to_numpy((vectors[ids] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
    unnormalised = to_numpy((vectors[ids] * (idf[ids] * mask)[..., None]).sum(1))
    if np.allclose(value, plain):
        return report(False, "", "you took the plain mean of the word vectors; weight each word by its idf")
    if np.allclose(value, unnormalised):
        return report(False, "", "you summed idf-weighted vectors but did not divide by the sum of the weights")
    if np.allclose(value, unnormalised / to_numpy(mask.sum(1, keepdim=True))):
        return report(False, "", "you divided by the number of words; divide by the sum of the idf weights, so "
                                 "that the weights of a paper sum to 1")
    if not np.allclose(value, want, atol=1e-5):
        return report(False, "", f"expected {np.round(want, 3).tolist()}, got {np.round(value, 3).tolist()} "
                                 "(check that padding positions get weight 0)")
    return report(True, "a repeated word counts tf times, each word weighs idf, padding 0, weights sum to 1", "")


def check_merge(merge_fn) -> bool:
    """``merge_fn(item_vec, content_vec, how, W) -> tensor``: concat ``[v ; c]`` or sum ``v + c @ W.T``."""
    gen = torch.Generator().manual_seed(1)
    v, c, W = torch.randn(3, 4, generator=gen), torch.randn(3, 6, generator=gen), torch.randn(4, 6, generator=gen)
    cat = call_learner("merge(..., 'concat', ...)", merge_fn, v, c, "concat", W)
    if cat is None:
        return Verdict(False)
    if not compare_shapes("the concatenation", cat, (3, 10)):
        return Verdict(False)
    if not np.allclose(to_numpy(cat), to_numpy(torch.cat([v, c], 1))):
        return report(False, "", "concat should put the item vector first, then the content vector, along dim 1")
    summed = call_learner("merge(..., 'sum', ...)", merge_fn, v, c, "sum", W)
    if summed is None:
        return Verdict(False)
    if not compare_shapes("the sum", summed, (3, 4)):
        return Verdict(False)
    if not np.allclose(to_numpy(summed), to_numpy(v + c @ W.T), atol=1e-6):
        return report(False, "", "sum should project the content to the item size with W (shape (item_dim, "
                                 "content_dim), so c @ W.T) and add it to the item vector")
    return report(True, "concat gives (B, item_dim + content_dim); sum gives (B, item_dim) with the projection W", "")


def check_weighted_mse(wmse_fn) -> bool:
    """``wmse_fn(scores, targets, alpha)``: ``1/B sum_i [alpha sum_pos (1-s)^2 + sum_neg s^2]``."""
    from course_lib.torch_models.hybrid import weighted_mse_loss

    gen = torch.Generator().manual_seed(2)
    s = torch.randn(4, 9, generator=gen)
    t = (torch.rand(4, 9, generator=gen) < 0.3).float()
    value = call_learner("weighted_mse", wmse_fn, s, t, 10.0)
    if value is None:
        return Verdict(False)
    value = to_numpy(value)
    if value.size != 1:
        return report(False, "", f"weighted_mse must return one number (the mean over the papers of the batch), "
                                 f"got shape {value.shape}")
    value = float(value.reshape(()))
    want = float(weighted_mse_loss(s, t, 10.0))
    err = (t - s) ** 2
    mistakes = {
        float(((t * 10 + (1 - t)) * err).mean()): "you averaged over every (paper, user) entry; "
        "sum over the users of a paper, then average over the papers",
        float(((t + 10 * (1 - t)) * err).sum(1).mean()): "alpha weighs the LIKES (targets 1), not the non-likes",
        float(err.sum(1).mean()): "you forgot the weight alpha on the likes",
    }
    if not np.isclose(value, want, rtol=1e-5):
        hint = next((h for v, h in mistakes.items() if np.isclose(value, v, rtol=1e-5)), "")
        return report(False, "", f"expected {want:.4f}, got {value:.4f}" + (f": {hint}" if hint else ""))
    return report(True, f"weighted MSE = {want:.4f} on the test case, as the formula says", "")


def check_training_step(step_fn) -> bool:
    """``step_fn(model, optimizer, batch, targets, alpha) -> float``: one update that lowers the loss."""
    from course_lib.torch_models.hybrid import HybridRecommender, weighted_mse_loss
    from course_lib.torch_models.utils import TextBatch

    class Mean(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 3)
            self.out_dim = 3

        def forward(self, batch):
            return (self.emb(batch.ids) * batch.mask[..., None]).sum(1) / batch.mask.sum(1, keepdim=True)

    torch.manual_seed(0)
    model = HybridRecommender(7, 5, Mean(), item_dim=3, seed=0)
    model.set_known_papers(np.ones(5, bool))
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    batch = TextBatch(ids, (ids > 0).float(), torch.tensor([0, 3]))
    targets = torch.zeros(2, 7)
    targets[0, [1, 2]] = 1
    targets[1, 6] = 1
    opt = torch.optim.Adagrad(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        start = float(weighted_mse_loss(model(batch), targets, 5.0))
    # what an earlier batch's backward() leaves behind; NaN, so that adding to it cannot go unseen
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    value = call_learner("training_step", step_fn, model, opt, batch, targets, 5.0)
    if value is None:
        return Verdict(False)
    if not isinstance(value, float):
        return report(False, "", f"return the loss as a Python float (loss.item()), got {type(value).__name__}")
    if not np.isclose(value, start, rtol=1e-5):
        return report(False, "", f"the returned loss {value:.4f} is not the loss before the update ({start:.4f}); "
                                 "compute it with the model's forward pass and weighted_mse_loss")
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return report(False, "", "the check left NaN gradients in .grad before calling your step (as an earlier "
                                 "batch would leave its gradients) and your update used them: call "
                                 "optimizer.zero_grad() before loss.backward()")
    if all(torch.equal(before[k], v) for k, v in model.state_dict().items()):
        return report(False, "", "no weight changed: call loss.backward() and optimizer.step()")
    losses = [value] + [call_learner("training_step", step_fn, model, opt, batch, targets, 5.0) for _ in range(4)]
    if None in losses:
        return Verdict(False)
    if not losses[-1] < losses[0]:
        return report(False, "", f"the loss did not go down over 5 steps ({losses[0]:.4f} -> {losses[-1]:.4f}); "
                                 "did you call optimizer.zero_grad() before backward()?")
    return report(True, f"five steps lower the loss on one batch from {losses[0]:.3f} to {losses[-1]:.3f}", "")


def check_beats_popularity(results: dict, model: str = "hybrid", baseline: str = "popularity",
                           metric: str = "cold R@50") -> bool:
    """``results[name][metric]``: the trained model must beat the popularity baseline."""
    if model not in results or baseline not in results:
        return report(False, "", f"results needs the rows {model!r} and {baseline!r}; it has {sorted(results)}")
    got, base = results[model][metric], results[baseline][metric]
    return report(got > base, f"{model} beats {baseline} on {metric}",
                  f"{model} ({got:.3f}) does not beat {baseline} ({base:.3f}) on {metric}: train longer, "
                  "check the learning curve, or lower the learning rate")
