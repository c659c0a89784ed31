"""The PyTorch side of ranking: torch tensors in, numpy out.

``course_lib.metrics`` and ``course_lib.evaluation`` are numpy only (the Theano environment has no
torch). A PyTorch model ranks its own scores here, where they are (CPU or GPU), and hands numpy
ranks to the evaluation: no ``(n_slots, n_items)`` score matrix is copied to the host.
"""
from __future__ import annotations

import numpy as np
import torch

from course_lib import metrics
from course_lib.metrics import TIE_MODES, combine_ties


def to_numpy(x) -> np.ndarray:
    """A tensor (any device, with or without grad) or an array as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


@torch.no_grad()
def rank_of_targets(scores: torch.Tensor, targets, ties: str = "average") -> np.ndarray:
    """1-based rank (n,) of ``scores[i, targets[i]]`` within row ``i`` of ``scores`` (n, n_items),
    as :func:`course_lib.metrics.rank_of_targets` computes it (same tie modes, float64 numpy out)."""
    if ties not in TIE_MODES:
        raise ValueError(f"ties must be one of {TIE_MODES}, got {ties!r}")
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n, n_items), got shape {tuple(scores.shape)}")
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets,
                        device=scores.device).long()
    n, n_items = scores.shape
    if t.shape != (n,):
        raise ValueError(f"targets must have shape ({n},) (one column index per score row), got {tuple(t.shape)}")
    if n and (int(t.min()) < 0 or int(t.max()) >= n_items):
        raise ValueError(f"targets must be in [0, {n_items})")
    if scores.device.type == "cpu":
        # numpy's comparisons and counts are several times faster than torch's on the CPU, and
        # .numpy() shares the memory
        return metrics.rank_of_targets(scores.float().numpy(), t.numpy(), ties)
    return _rank_on_device(scores, t, ties)


def _rank_on_device(scores: torch.Tensor, t: torch.Tensor, ties: str) -> np.ndarray:
    """The counts with torch operations where the scores are (the GPU path; tests run it on the CPU)."""
    target_scores = scores.gather(1, t.view(-1, 1))  # (n, 1)
    if bool(torch.isnan(target_scores).any()):
        raise ValueError("scores contain NaN; NaN cannot be ranked: check the model for a diverged loss")
    # only the counts the tie mode needs: each is one pass over the scores
    greater = (scores > target_scores).sum(1).cpu().numpy().astype(np.float64) if ties != "pessimistic" else None
    geq = (scores >= target_scores).sum(1).cpu().numpy().astype(np.float64) if ties != "optimistic" else None
    return combine_ties(greater, geq, ties)
