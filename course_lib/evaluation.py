"""The one evaluation module of the course: every model, notebook and benchmark calls it.

* ``evaluate_ranking``: top-M list metrics where rows are queries (users in warm/cold start, papers
  in the flip scenario) and columns are candidates; scores may come as a dense array or be computed
  in row chunks by a callable, so a 16,980 x 5,551 score matrix never has to sit in memory.
* ``evaluate_flip``: the flip scenario of the RecSys Summer School 2017 hands-on task (find users
  for a paper) on top of ``evaluate_ranking``.
* ``evaluate_sessions``: next-item prediction as in GRU4Rec (Hidasi et al. 2016, Sec. 4): test
  sessions are fed event by event in session-parallel mini-batches, the hidden state is carried
  inside a session and reset between sessions, and the next item is ranked against **all**
  training items.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .data import check_ids
from .metrics import (
    LIST_METRICS,
    _as_binary_csr,
    _check_k,
    _hits,
    as_array,
    metrics_from_hits,
    rank_of_targets,
    session_metrics_from_ranks,
)
from .validation import check_memory, check_same_id_kind


def evaluate_ranking(
    scores: np.ndarray | Callable[[np.ndarray], np.ndarray],
    test,
    exclude=None,
    ks: Sequence[int] = (50, 100),
    metrics: Sequence[str] = LIST_METRICS,
    chunk_size: int = 1024,
    return_per_row: bool = False,
) -> dict:
    """Recall / precision / HR / NDCG / MRR at every k in ``ks``, averaged over queries.

    ``scores``: dense ``(n_rows, n_cols)`` array, or a callable ``rows -> (len(rows), n_cols)`` block
    (a numpy array, or anything numpy reads) called with int64 row indices in chunks of ``chunk_size``. Only rows that have
    test items are scored. ``test``/``exclude``: ``(n_rows, n_cols)`` sparse matrices; entries of
    ``exclude`` (usually the training likes) are never recommended.

    Returns ``{"Recall@50": ..., "NDCG@100": ..., "n_queries": rows evaluated, "n_skipped": rows
    without test items}``; with ``return_per_row`` also ``"per_row"``: ``{name: (n_rows,) array}``
    with NaN on skipped rows. Recall@M follows Bansal et al. 2016, Sec. 4.1.
    """
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    ks = [_check_k(k, "each k") for k in ks]
    if not ks:
        raise ValueError("ks is empty: pass list lengths such as ks=(50, 100)")
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in LIST_METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown or metrics}; choose from {list(LIST_METRICS)}")
    chunk_size = _check_k(chunk_size, "chunk_size")
    if not sp.issparse(test):
        raise ValueError(f"test must be a scipy sparse matrix (n_rows, n_cols), got {type(test).__name__}")

    if callable(scores):
        shape = tuple(test.shape)
        get_block = scores
    else:
        scores = as_array(scores)
        if scores.ndim != 2:
            raise ValueError(f"scores must be a 2-D array (n_rows, n_cols), got shape {scores.shape}")
        shape = scores.shape

        def get_block(rows):
            return scores[rows]

    test = _as_binary_csr(test, shape, "test")
    if exclude is not None:
        exclude = _as_binary_csr(exclude, shape, "exclude")
        overlap = int(test.multiply(exclude).nnz)
        if overlap:
            raise ValueError(
                f"{overlap} test entries are also in `exclude`, so they could never be recommended; "
                "make the split disjoint (a liked paper is either training or test, not both)"
            )
    n_rel = np.diff(test.indptr)
    rows_eval = np.flatnonzero(n_rel > 0).astype(np.int64)
    if rows_eval.size == 0:
        raise ValueError(
            "no row of `test` has a test item, so there is nothing to evaluate; "
            "check the split (e.g. transpose the likes for the flip scenario)"
        )

    if callable(scores):
        check_memory(8.0 * 4 * min(chunk_size, rows_eval.size) * shape[1],
                     f"a block of {min(chunk_size, rows_eval.size)} x {shape[1]} scores", "lower chunk_size")
    per_row = {}
    k_max = max(ks)
    for start in range(0, rows_eval.size, chunk_size):
        rows = rows_eval[start : start + chunk_size]
        block = as_array(get_block(rows), "the block the score callable returned")
        if block.shape != (rows.size, shape[1]):
            raise ValueError(
                f"the score callable returned shape {block.shape} for {rows.size} rows; "
                f"expected ({rows.size}, {shape[1]}) (one row per requested row, one column per candidate)"
            )
        if np.issubdtype(block.dtype, np.floating) and np.isnan(block).any():
            bad = rows[np.isnan(block).any(axis=1)]
            raise ValueError(
                f"scores contain NaN for rows {bad[:5].tolist()}; NaN cannot be ranked: "
                "check the model for a diverged loss or a division by zero"
            )
        hits, rel = _hits(block, test[rows], k_max, None if exclude is None else exclude[rows])
        for name, vals in metrics_from_hits(hits, rel, ks, metrics).items():
            per_row.setdefault(name, np.full(shape[0], np.nan))[rows] = vals
    result: dict = {name: float(vals[rows_eval].mean()) for name, vals in per_row.items()}
    result["n_queries"] = int(rows_eval.size)
    result["n_skipped"] = int(shape[0] - rows_eval.size)
    if return_per_row:
        result["per_row"] = per_row
    return result


def evaluate_flip(
    paper_scores: np.ndarray | Callable[[np.ndarray], np.ndarray],
    likes_test,
    likes_train=None,
    papers=None,
    ks: Sequence[int] = (50, 100),
    metrics: Sequence[str] = LIST_METRICS,
    chunk_size: int = 1024,
    return_per_row: bool = False,
) -> dict:
    """Flip scenario: for each paper, rank the users (RecSys Summer School 2017 hands-on task).

    ``likes_test``/``likes_train``: ``(n_users, n_papers)`` like matrices; they are transposed so
    that papers become queries. ``papers``: the evaluated paper indices (default: all). ``paper_scores``
    is ``(len(papers), n_users)`` (row ``i`` belongs to ``papers[i]``) or a callable that receives
    **paper indices** and returns ``(len(indices), n_users)``. Training likes are excluded when
    given (warm flip); leave ``likes_train=None`` for cold papers, which have none.
    """
    if not sp.issparse(likes_test):
        raise ValueError(f"likes_test must be a scipy sparse (n_users, n_papers) matrix, got {type(likes_test).__name__}")
    n_users, n_papers = likes_test.shape
    papers = np.arange(n_papers) if papers is None else check_ids(papers, n_papers, "paper")
    test = sp.csr_matrix(likes_test.T)[papers]  # (len(papers), n_users)
    exclude = None
    if likes_train is not None:
        if tuple(likes_train.shape) != (n_users, n_papers):
            raise ValueError(
                f"likes_train has shape {tuple(likes_train.shape)} but likes_test has {(n_users, n_papers)}; "
                "both must be (n_users, n_papers)"
            )
        exclude = sp.csr_matrix(likes_train.T)[papers]
    if callable(paper_scores):
        scorer = paper_scores

        def scores(rows):
            return scorer(papers[rows])
    else:
        scores = paper_scores
    return evaluate_ranking(scores, test, exclude, ks, metrics, chunk_size, return_per_row)


# --------------------------------------------------------------------------- sessions


def _prepare_session_events(model, test: pd.DataFrame, unknown_items: str):
    """Map items to score columns, drop what cannot be evaluated, and return session offsets."""
    if getattr(model, "item_ids", None) is None:
        raise ValueError(f"this {type(model).__name__} is not trained yet (it has no item_ids): call "
                         "model.fit(train) first, or load a trained model")
    if unknown_items not in ("drop", "raise"):
        raise ValueError(f"unknown_items must be 'drop' or 'raise', got {unknown_items!r}")
    missing = [c for c in ("SessionId", "ItemId", "Time") if c not in test.columns]
    if missing:
        raise ValueError(f"test frame lacks columns {missing}; it needs SessionId, ItemId and Time")
    if len(test) == 0:
        raise ValueError("the test set is empty: there is no session to evaluate")
    sid = test["SessionId"].to_numpy()
    times = test["Time"].to_numpy(dtype=np.float64)
    new_session = np.r_[True, sid[1:] != sid[:-1]]
    if pd.Index(sid[new_session]).has_duplicates:
        raise ValueError(
            "the events of a session are not contiguous in the test frame; "
            "sort it first: test.sort_values(['SessionId', 'Time'], kind='stable')"
        )
    back_in_time = (~new_session[1:]) & (times[1:] < times[:-1])
    if back_in_time.any():
        bad = sid[1:][back_in_time][:5].tolist()
        raise ValueError(
            f"times go backwards inside sessions {bad}; "
            "sort the test frame with test.sort_values(['SessionId', 'Time'], kind='stable')"
        )

    check_same_id_kind(np.asarray(model.item_ids), test["ItemId"].to_numpy(), "test")
    item_ids = pd.Index(np.asarray(model.item_ids))
    if item_ids.has_duplicates:
        raise ValueError(
            f"model.item_ids has repeated ids (e.g. {item_ids[item_ids.duplicated()][:5].tolist()}); "
            "score column j must belong to exactly one item id"
        )
    cols = item_ids.get_indexer(test["ItemId"].to_numpy())  # -1 where unknown
    unknown = cols < 0
    if unknown.any() and unknown_items == "raise":
        ids = pd.unique(test["ItemId"].to_numpy()[unknown])
        raise ValueError(
            f"{int(unknown.sum())} test events have items the model never saw in training "
            f"({ids.size} distinct, e.g. {ids[:10].tolist()}); "
            "drop them with unknown_items='drop' (GRU4Rec's protocol) or filter the test set"
        )
    keep = ~unknown
    sid, cols = sid[keep], cols[keep]
    if sid.size:
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
        lengths = np.diff(np.r_[starts, sid.size])
    else:
        starts = lengths = np.zeros(0, dtype=np.int64)
    long_enough = lengths >= 2
    n_short = int((~long_enough).sum())
    starts, lengths = starts[long_enough], lengths[long_enough]
    if starts.size == 0:
        raise ValueError(
            "no test session has 2 or more events with items known to the model, so there is no "
            f"next item to predict ({int(unknown.sum())} unknown events dropped, {n_short} short sessions)"
        )
    return cols.astype(np.int64), starts.astype(np.int64), lengths.astype(np.int64), int(unknown.sum()), n_short


def evaluate_sessions(
    model,
    test: pd.DataFrame,
    cutoffs: Sequence[int] = (5, 10, 20),
    ties: str = "average",
    batch_size: int = 512,
    unknown_items: str = "drop",
) -> dict:
    """Next-item Recall@K and MRR@K over all training items, session-parallel (GRU4Rec, Sec. 3.1.1, 4).

    ``model`` follows the session scorer protocol (docs/ARCHITECTURE.md): ``item_ids``,
    ``reset(n_slots)``, ``reset_slots(mask)``, ``score_next(item_idx) -> (n_slots, n_items)`` numpy
    scores; a model that also has ``rank_next(item_idx, targets, ties) -> (n_slots,)`` ranks its own
    scores (the PyTorch GRU4Rec does, on its device) and is called instead of ``score_next``.
    ``test`` has columns SessionId, ItemId, Time, sorted by SessionId then Time.

    Each of ``n_slots = min(batch_size, n_sessions)`` slots follows one session; at each step every
    active slot feeds its current item and the next item is ranked (``ties`` as in
    ``rank_of_targets``). When a session ends, the next waiting session takes its slot and only
    that slot is reset. Once no session is waiting, finished slots leave the batch: a model with
    ``keep_slots(mask)`` keeps only the states of the slots still busy (every course model has
    it), so the last steps cost what their few sessions cost; without it, finished slots keep
    running on item 0 and their outputs are ignored. Every test event with a next item is scored,
    the last sessions too (the official GRU4Rec evaluation stops when one session is left, for
    models trained without extra samples).

    Events whose item is not in ``model.item_ids`` are dropped (``unknown_items="drop"``, counted in
    ``n_unknown_dropped``) or reported (``"raise"``); sessions left with fewer than 2 events are
    dropped and counted in ``n_short_sessions_dropped``.
    """
    if isinstance(cutoffs, (int, np.integer)):
        cutoffs = [cutoffs]
    cutoffs = [_check_k(c, "each cutoff") for c in cutoffs]
    batch_size = _check_k(batch_size, "batch_size")
    if ties not in ("average", "optimistic", "pessimistic"):
        raise ValueError(f"ties must be 'average', 'optimistic' or 'pessimistic', got {ties!r}")
    cols, starts, lengths, n_unknown, n_short = _prepare_session_events(model, test, unknown_items)
    n_items = len(model.item_ids)
    n_sessions = starts.size
    n_slots = min(batch_size, n_sessions)
    # the score block, the comparisons with the targets and a copy of the active rows
    check_memory(4.0 * 3 * n_slots * n_items, f"the ({n_slots}, {n_items}) score matrix of a step",
                 "lower batch_size")
    rank_next = getattr(model, "rank_next", None)
    keep_slots = getattr(model, "keep_slots", None)

    t0 = time.perf_counter()
    model.reset(n_slots)
    slot_pos = starts[:n_slots].copy()  # index into `cols` of each slot's current event
    slot_end = starts[:n_slots] + lengths[:n_slots]  # one past the slot's last event
    active = np.ones(n_slots, dtype=bool)
    n_active = n_slots
    next_session = n_slots
    rank_chunks = []
    while n_active:
        # an idle slot reads item 0 and "predicts" item 0; its rank is dropped below
        current = np.where(active, cols[np.minimum(slot_pos, cols.size - 1)], 0)  # (n_slots,)
        if rank_next is not None:
            targets = np.where(active, cols[np.minimum(slot_pos + 1, cols.size - 1)], 0)
            ranks = as_array(rank_next(current, targets, ties), "model.rank_next's ranks")
            if ranks.shape != (n_slots,):
                raise ValueError(f"model.rank_next returned shape {ranks.shape}; expected ({n_slots},) = (n_slots,)")
            rank_chunks.append(ranks if n_active == n_slots else ranks[active])
        else:
            scores = as_array(model.score_next(current), "model.score_next's scores")  # (n_slots, n_items)
            if scores.shape != (n_slots, n_items):
                raise ValueError(
                    f"model.score_next returned shape {scores.shape}; expected ({n_slots}, {n_items}) "
                    "= (n_slots, len(model.item_ids))"
                )
            rows = np.flatnonzero(active)
            if n_active < n_slots:
                scores = scores[rows]
            rank_chunks.append(rank_of_targets(scores, cols[slot_pos[rows] + 1], ties))  # (n_active,)

        slot_pos[active] += 1
        finished = active & (slot_pos + 1 >= slot_end)
        if finished.any():
            fin = np.flatnonzero(finished)
            n_new = min(fin.size, n_sessions - next_session)
            refill = fin[:n_new]
            new = np.arange(next_session, next_session + n_new)
            next_session += n_new
            slot_pos[refill] = starts[new]
            slot_end[refill] = starts[new] + lengths[new]
            active[fin[n_new:]] = False
            n_active -= fin.size - n_new
            if n_new:
                mask = np.zeros(n_slots, dtype=bool)
                mask[refill] = True
                model.reset_slots(mask)
            if keep_slots is not None and n_active < n_slots and n_active:
                # no session is waiting: shrink the batch to the busy slots, in their order
                keep_slots(active.copy())
                slot_pos, slot_end = slot_pos[active], slot_end[active]
                active = np.ones(n_active, dtype=bool)
                n_slots = n_active

    ranks = np.concatenate(rank_chunks)
    seconds = time.perf_counter() - t0
    result = session_metrics_from_ranks(ranks, cutoffs)
    result.update(
        n_events=int(ranks.size),
        n_sessions=int(n_sessions),
        n_unknown_dropped=n_unknown,
        n_short_sessions_dropped=n_short,
        seconds=float(seconds),
        events_per_second=float(ranks.size / seconds) if seconds > 0 else float("inf"),
    )
    return result


# --------------------------------------------------------------------------- the flip protocol


def evaluate_flip_protocol(protocol, score_papers: Callable[[np.ndarray], np.ndarray],
                           ks: Sequence[int] = (50, 100)) -> dict[str, float]:
    """Recall@k of the hands-on task's split (a :class:`course_lib.splits.FlipProtocol`) at once:
    ``cold R@k`` and ``warm R@k``.

    ``score_papers(papers) -> (len(papers), n_users)``. The cold papers are ranked without
    exclusions (they have no training likes), the warm papers with their training likes excluded
    (:func:`evaluate_flip`).
    """
    cold = evaluate_flip(score_papers(protocol.cold_papers), protocol.cold_test, None, protocol.cold_papers, ks=ks,
                         metrics=("recall",))
    warm = evaluate_flip(score_papers(protocol.warm_papers), protocol.warm_test, protocol.train, protocol.warm_papers,
                         ks=ks, metrics=("recall",))
    return {**{f"cold R@{k}": cold[f"Recall@{k}"] for k in ks}, **{f"warm R@{k}": warm[f"Recall@{k}"] for k in ks}}
