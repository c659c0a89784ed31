"""Ranking metrics for top-M recommendation and next-item prediction (pure numpy).

Two families share this module:

* **List metrics** for a score matrix ``scores`` of shape ``(n_rows, n_cols)`` (rows are queries:
  users in warm/cold start, papers in the flip scenario; columns are candidates) and a binary
  ``test`` matrix of the same shape. Every function takes ``(scores, test, k, exclude=None)``;
  ``exclude`` (e.g. the training likes) holds entries that are never recommended. Rows without
  test items are skipped, and the mean is taken over the remaining rows.

  Recall@M, as Ask the GRU defines it (Bansal et al. 2016, section 4.1, "Evaluation Metric", after
  Wang and Blei 2011): for one row, ``|top-M ∩ test_row| / |test_row|``, the number of its test
  items in its top-M list divided by the number of its test items (not by M, which would be
  precision, and not by ``min(M, |test_row|)``, so a row with more than M test items cannot reach
  1); then the mean over the rows that have a test item. The paper averages this per-user value
  over users.

* **Rank metrics** for one target per event (GRU4Rec, Hidasi et al. 2016, Sec. 4): the rank of the
  target among all candidates, then Recall@K (= hit rate, the target is in the top K) and MRR@K
  (``1 / rank`` when ``rank <= K``, else 0).

Ties: ``top_k`` breaks ties by the lower column index, so results never depend on the sort
algorithm. ``rank_of_targets`` reports ties explicitly (optimistic, pessimistic or average rank),
because a model that gives every item the same score must not look perfect.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

LIST_METRICS = ("recall", "precision", "hr", "ndcg", "mrr")
METRIC_LABELS = {"recall": "Recall", "precision": "Precision", "hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}
TIE_MODES = ("average", "optimistic", "pessimistic")


# --------------------------------------------------------------------------- validation helpers


def _check_k(k, what: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"{what} must be a positive integer (a list length such as 20 or 50), got {k!r}")
    return int(k)


def as_array(scores, what: str = "scores") -> np.ndarray:
    """``scores`` as a numpy array; anything numpy can read is accepted (a CPU torch tensor without
    grad too), otherwise a ``ValueError`` that says how to convert it."""
    if isinstance(scores, np.ndarray):
        return scores
    try:
        return np.asarray(scores)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{what} must be a numpy array, got a {type(scores).__name__} that numpy cannot read "
                         f"({exc}); convert it first, e.g. course_lib.torch_models.ranking.to_numpy(x) "
                         "for a torch tensor") from None


def _as_scores(scores) -> np.ndarray:
    arr = as_array(scores)
    if arr.ndim != 2:
        raise ValueError(
            f"scores must be a 2-D array (n_rows, n_cols), got shape {arr.shape}; "
            "for a single query use scores[None, :]"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"scores must be real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        rows = np.flatnonzero(np.isnan(arr).any(axis=1))
        raise ValueError(
            f"scores contain NaN in rows {rows[:5].tolist()}{' ...' if rows.size > 5 else ''}; "
            "NaN cannot be ranked: check the model for a diverged loss or a division by zero"
        )
    return arr


def _as_binary_csr(mat, shape: tuple[int, int], what: str) -> sp.csr_matrix:
    """A csr matrix with explicit zeros removed and every stored value set to 1."""
    if not sp.issparse(mat):
        mat = np.asarray(mat)
        if mat.ndim != 2:
            raise ValueError(f"{what} must be a 2-D (sparse) matrix, got shape {mat.shape}")
    if tuple(mat.shape) != tuple(shape):
        raise ValueError(
            f"{what} has shape {tuple(mat.shape)} but scores have shape {tuple(shape)}; "
            f"both must be (n_rows, n_cols) with the same rows (queries) and columns (candidates)"
        )
    out = sp.csr_matrix(mat, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


# --------------------------------------------------------------------------- top-k lists


def top_k(scores, k: int, exclude=None) -> np.ndarray:
    """Column indices of the ``k`` highest scores of each row, best first.

    ``scores`` ``(n_rows, n_cols)``; ``exclude`` an optional sparse (or dense) matrix of the same
    shape whose non-zero entries are never returned (e.g. the training likes). Ties are broken by
    the lower column index. ``k`` larger than ``n_cols`` is clipped to ``n_cols``. When a row has
    fewer than ``k`` allowed columns, the list is padded with ``-1``.

    Returns ``(n_rows, min(k, n_cols))`` int64. Cost: a ``np.partition`` for the k-th score, a few
    elementwise passes, and a sort of the ``k`` winners per row.
    """
    scores = _as_scores(scores)
    k = _check_k(k)
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    # Sort key: ascending = best first. Excluded entries become NaN, which numpy's sort and
    # partition always put last, after any -inf score a model may legitimately produce.
    key = -np.asarray(scores, dtype=np.float64)  # (n_rows, n_cols), a fresh array
    excl = np.zeros(key.shape, dtype=bool)
    if exclude is not None:
        ex = _as_binary_csr(exclude, key.shape, "exclude")
        excl[ex.nonzero()] = True
        key[excl] = np.nan
    if n_rows == 0 or k == 0:
        return np.zeros((n_rows, k), dtype=np.int64)

    # The k winners of a row: every column strictly better than the k-th key, plus the
    # lowest-index columns equal to it. A NaN k-th key means fewer than k allowed columns: all of
    # them win, and the lowest-index excluded columns fill the list (they become -1 below).
    kth = np.partition(key, k - 1, axis=1)[:, k - 1 : k]  # (n_rows, 1)
    better, equal = key < kth, key == kth  # (n_rows, n_cols) each
    short = np.isnan(kth[:, 0])
    if short.any():
        better[short], equal[short] = ~excl[short], excl[short]
    need = k - better.sum(axis=1)  # >= 1 by definition of the k-th key
    _, eq_cols = np.nonzero(equal)  # row-major, so each row's tied columns are contiguous
    first_eq = np.r_[0, np.cumsum(equal.sum(axis=1))[:-1]]
    last_col = eq_cols[first_eq + need - 1]  # (n_rows,) index of the last tied column kept
    winners = better | (equal & (np.arange(n_cols) <= last_col[:, None]))  # k per row
    part = np.nonzero(winners)[1].reshape(n_rows, k)  # (n_rows, k), in index order
    # a stable sort of index-ordered candidates breaks ties by the lower index
    order = np.argsort(np.take_along_axis(key, part, axis=1), axis=1, kind="stable")
    out = np.take_along_axis(part, order, axis=1)
    out[np.take_along_axis(excl, out, axis=1)] = -1
    return out


def _hits(scores, test, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """``hits`` ``(n_rows, min(k, n_cols))`` bool: is the item at each list position a test item;
    ``n_rel`` ``(n_rows,)``: number of test items per row."""
    scores = _as_scores(scores)
    test = _as_binary_csr(test, scores.shape, "test")
    lists = top_k(scores, k, exclude)
    n_rel = np.diff(test.indptr).astype(np.int64)
    test_dense = test.toarray().astype(bool)  # (n_rows, n_cols)
    hits = np.take_along_axis(test_dense, np.maximum(lists, 0), axis=1) & (lists >= 0)
    return hits, n_rel


def metrics_from_hits(
    hits: np.ndarray, n_rel: np.ndarray, ks: Sequence[int], metrics: Sequence[str] = LIST_METRICS
) -> dict[str, np.ndarray]:
    """Per-row list metrics from a hit matrix (see ``_hits``); rows with ``n_rel == 0`` are NaN.

    Keys are ``"Recall@50"``, ``"NDCG@100"``, ... Definitions (binary relevance):

    * Recall@k = hits in top k / |test| (the module docstring's Recall@M)
    * Precision@k = hits in top k / k
    * HR@k = 1 if any test item is in the top k
    * MRR@k = 1 / position of the first hit in the top k (0 if none)
    * NDCG@k = DCG@k / IDCG@k with DCG = sum over hits of 1 / log2(position + 1) and the ideal DCG
      over ``min(k, |test|)`` hits.
    """
    ks = [_check_k(k, "each k") for k in ks]
    unknown = [m for m in metrics if m not in LIST_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(LIST_METRICS)}")
    hits = np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_rel)
    valid = n_rel > 0
    denom = np.where(valid, n_rel, 1).astype(np.float64)
    positions = np.arange(1, hits.shape[1] + 1)
    discount = 1.0 / np.log2(positions + 1.0)  # (list_len,)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]  # (n_rows, min(k, list_len))
        n_hit = h.sum(axis=1).astype(np.float64)
        for m in metrics:
            if m == "recall":
                val = n_hit / denom
            elif m == "precision":
                val = n_hit / k
            elif m == "hr":
                val = (n_hit > 0).astype(np.float64)
            elif m == "mrr":
                first = np.argmax(h, axis=1) if h.shape[1] else np.zeros(h.shape[0], dtype=np.int64)
                val = np.where(n_hit > 0, 1.0 / (first + 1.0), 0.0)
            else:  # ndcg
                dcg = (h * discount[: h.shape[1]]).sum(axis=1)
                ideal_len = np.minimum(np.minimum(n_rel, k), h.shape[1])
                cum = np.concatenate([[0.0], np.cumsum(discount)])
                idcg = cum[ideal_len]
                val = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)
            out[f"{METRIC_LABELS[m]}@{k}"] = np.where(valid, val, np.nan)
    return out


def _mean_over_valid(per_row: np.ndarray) -> float:
    if np.all(np.isnan(per_row)):
        raise ValueError(
            "no row of `test` has a test item, so the metric is undefined; "
            "check that the test matrix is not empty and is aligned with the score rows"
        )
    return float(np.nanmean(per_row))


def _single(metric: str, scores, test, k, exclude) -> float:
    k = _check_k(k)
    hits, n_rel = _hits(scores, test, k, exclude)
    return _mean_over_valid(metrics_from_hits(hits, n_rel, [k], [metric])[f"{METRIC_LABELS[metric]}@{k}"])


def recall_per_row(scores, test, m: int = 50, exclude=None) -> np.ndarray:
    """Recall@m of every row ``(n_rows,)``: its test items in its top m / its test items (see the
    module docstring); NaN where the row has no test item."""
    m = _check_k(m, "m")
    hits, n_rel = _hits(scores, test, m, exclude)
    return metrics_from_hits(hits, n_rel, [m], ["recall"])[f"Recall@{m}"]


def recall_at_m(scores, test, ms: Sequence[int] = (50, 100), exclude=None) -> dict[int, float]:
    """Recall@M for each M in ``ms``: per row, its test items in its top M / its test items, averaged
    over the rows with test items (the module docstring's definition)."""
    if isinstance(ms, (int, np.integer)):
        ms = [ms]
    ms = [_check_k(m, "each M") for m in ms]
    hits, n_rel = _hits(scores, test, max(ms), exclude)
    per = metrics_from_hits(hits, n_rel, ms, ["recall"])
    return {m: _mean_over_valid(per[f"Recall@{m}"]) for m in ms}


def precision_at_k(scores, test, k: int, exclude=None) -> float:
    """Mean over rows with test items of (test items in the top k) / k."""
    return _single("precision", scores, test, k, exclude)


def hit_rate_at_k(scores, test, k: int, exclude=None) -> float:
    """Fraction of rows (with test items) that have at least one test item in the top k."""
    return _single("hr", scores, test, k, exclude)


def mrr_at_k(scores, test, k: int, exclude=None) -> float:
    """Mean reciprocal rank of the first test item in the top k (0 when none is there)."""
    return _single("mrr", scores, test, k, exclude)


def ndcg_at_k(scores, test, k: int, exclude=None) -> float:
    """NDCG@k with binary relevance, log2 discount and ideal DCG over ``min(k, |test|)`` items."""
    return _single("ndcg", scores, test, k, exclude)


# --------------------------------------------------------------------------- ranks of one target


def rank_of_targets(scores, targets, ties: str = "average") -> np.ndarray:
    """1-based rank of ``scores[i, targets[i]]`` within row ``i`` (float64 numpy).

    ``scores`` ``(n, n_items)``, ``targets`` ``(n,)`` column indices. With ``g`` the number of
    strictly greater scores and ``ge`` the number of greater-or-equal scores (the target included):
    ``optimistic = 1 + g``, ``pessimistic = ge``, ``average = (1 + g + ge) / 2``. (A PyTorch model
    ranks its tensors where they are with ``course_lib.torch_models.ranking.rank_of_targets``.)
    """
    if ties not in TIE_MODES:
        raise ValueError(f"ties must be one of {TIE_MODES}, got {ties!r}")
    scores = _as_scores(scores)
    targets = as_array(targets, "targets")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integer column indices, got dtype {targets.dtype}")
    if targets.ndim != 1 or targets.shape[0] != scores.shape[0]:
        raise ValueError(
            f"targets must have shape ({scores.shape[0]},) (one column index per score row), got {tuple(targets.shape)}"
        )
    if targets.size and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        bad = targets[(targets < 0) | (targets >= scores.shape[1])]
        raise ValueError(f"targets must be in [0, {scores.shape[1]}), got {bad[:5].tolist()}")
    target_scores = scores[np.arange(scores.shape[0]), targets][:, None]  # (n, 1)
    # only the counts the tie mode needs: each is one pass over the scores
    greater = np.count_nonzero(scores > target_scores, axis=1).astype(np.float64) if ties != "pessimistic" else None
    geq = np.count_nonzero(scores >= target_scores, axis=1).astype(np.float64) if ties != "optimistic" else None
    return combine_ties(greater, geq, ties)


def combine_ties(greater, geq, ties: str):
    """The rank from ``greater`` (strictly greater scores) and ``geq`` (greater or equal, the target
    included) in tie mode ``ties`` (see :func:`rank_of_targets`)."""
    if ties == "optimistic":
        return 1.0 + greater
    if ties == "pessimistic":
        return geq
    return (1.0 + greater + geq) / 2.0


def session_metrics_from_ranks(ranks, cutoffs: Sequence[int] = (20,)) -> dict[str, float]:
    """Recall@K (the target is in the top K; equal to HR@K with one target) and MRR@K
    (``1 / rank`` if ``rank <= K`` else 0), averaged over events (Hidasi et al. 2016, Sec. 4).

    ``ranks`` is a 1-D array of 1-based (possibly fractional) ranks.
    """
    if isinstance(cutoffs, (int, np.integer)):
        cutoffs = [cutoffs]
    cutoffs = [_check_k(c, "each cutoff") for c in cutoffs]
    ranks = as_array(ranks, "ranks").astype(np.float64).ravel()
    if ranks.size == 0:
        raise ValueError("ranks is empty: there is no prediction to average; check the test set")
    if np.isnan(ranks).any() or (ranks < 1).any():
        raise ValueError("ranks must be 1-based numbers >= 1 without NaN (see rank_of_targets)")
    out: dict[str, float] = {}
    for k in cutoffs:
        inside = ranks <= k
        out[f"Recall@{k}"] = float(inside.mean())
        out[f"MRR@{k}"] = float(np.where(inside, 1.0 / ranks, 0.0).mean())
    return out
