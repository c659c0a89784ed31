"""Checks for notebook 00 (start here): Recall@M and the popularity baseline. numpy and scipy only."""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from . import Fail, Mistake, as_array, as_scalar, call, check, close, diagnose, passed


def _hand_case():
    # 3 queries x 5 candidates; the third query has no test item and must be skipped.
    # Recall@2: query 0 finds 1 of its 3 test items (1/3), query 1 finds its only one (1): mean 2/3.
    scores = np.array([[0.9, 0.8, 0.1, 0.3, 0.2],
                       [0.1, 0.2, 0.3, 0.4, 0.5],
                       [0.5, 0.4, 0.3, 0.2, 0.1]])
    test = sp.csr_matrix(np.array([[1, 0, 0, 1, 1],
                                   [0, 0, 0, 0, 1],
                                   [0, 0, 0, 0, 0]], dtype=np.float32))
    return scores, test


def _cases():
    """The hand case at m = 2, then random 20 x 30 cases (some queries without test items) at m = 1, 5, 10."""
    cases = [(*_hand_case(), 2)]
    rng = np.random.default_rng(0)
    for trial in range(5):
        s = rng.normal(size=(20, 30))
        t = sp.random(20, 30, density=0.15, random_state=trial, format="csr")
        t.data[:] = 1.0
        cases += [(s, t, m) for m in (1, 5, 10)]
    return cases


def _recall_variant(scores, test, m, *, keep_empty=False, divide="n", lowest=False, extra=0, micro=False,
                    any_hit=False) -> float:
    """Recall@m as written with one common mistake (the defaults give the right formula)."""
    relevant = test.toarray() > 0
    order = np.argsort(scores if lowest else -scores, axis=1, kind="stable")[:, : m + extra]
    hits = np.take_along_axis(relevant, order, axis=1).sum(1).astype(float)
    n = relevant.sum(1).astype(float)
    keep = np.ones(len(n), bool) if keep_empty else n > 0
    if micro:
        return float(hits[keep].sum() / n[keep].sum())
    if any_hit:
        return float(np.mean(hits[keep] > 0))
    denominator = {"n": n, "m": np.full_like(n, m), "min": np.minimum(n, m)}[divide]
    return float(np.mean(np.where(n[keep] > 0, hits[keep] / np.maximum(denominator[keep], 1), 0.0)))


_RECALL_MISTAKES = [  # (hint, variant arguments)
    ("you averaged over all the queries; skip queries that have no test item (they cannot be recalled)",
     dict(keep_empty=True)),
    ("you divided the hits by m (that is precision@m); Recall@M divides by the number of test items of the query",
     dict(divide="m")),
    ("you took the LOWEST scores; the top-M list holds the highest scores", dict(lowest=True)),
    ("you divided by min(m, number of test items); Recall@M divides by all the test items of the query",
     dict(divide="min")),
    ("your top list holds m + 1 items: take the first m columns of the sorted order", dict(extra=1)),
    ("your top list holds m - 1 items: take the first m columns of the sorted order", dict(extra=-1)),
    ("you pooled all queries (total hits / total test items); average the per-query recalls instead",
     dict(micro=True)),
    ("you counted a query as 1 when any of its test items is in the top m (hit rate); Recall@M is the share "
     "of its test items that are found", dict(any_hit=True)),
]


@check("recall_at_m", expects="one number: the mean over the queries with test items of |top-m ∩ test| / |test|")
def check_recall_at_m(recall_at_m):
    """``recall_at_m(scores, test, m)`` must return the mean over queries with test items of
    |top-m ∩ test| / |test| (Bansal et al. 2016, Sec. 5.2)."""
    from course_lib import metrics  # noqa: PLC0415  (the course's reference implementation)

    got, want = [], []
    for scores, test, m in _cases():
        value = as_scalar("recall_at_m", call("recall_at_m", recall_at_m, scores, test, m,
                                              expects="one number (a float)"),
                          what="one number (the mean over the queries)",
                          shape_hints={(3,): "you returned one value per query; average them over the queries that "
                                             "have test items", (2,): "average the per-query values into one number"})
        if math.isnan(value):
            raise Fail("recall_at_m returned NaN: a query without test items divides 0 by 0; leave such queries "
                       "out of the mean")
        got.append(value)
        want.append(metrics.recall_at_m(scores, test, ms=(m,))[m])
    got, want = np.array(got), np.array(want)
    if close(got, want):
        return passed("recall_at_m matches the hand-made case and course_lib.metrics on random cases")
    cases = _cases()
    mistakes = [Mistake(hint, lambda kw=kw: [_recall_variant(*case, **kw) for case in cases])
                for hint, kw in _RECALL_MISTAKES]
    if not np.isclose(got[0], want[0]):
        fallback = f"on the hand-made case Recall@2 should be {want[0]:.4f}, you returned {got[0]:.4f}"
    else:
        k = int(np.flatnonzero(~np.isclose(got, want))[0])
        fallback = (f"on a random 20x30 case Recall@{cases[k][2]} should be {want[k]:.4f}, you returned {got[k]:.4f} "
                    "(the hand-made case was right: check m other than 2 and queries without test items)")
    raise diagnose(got, mistakes, fallback)


@check("popularity_scores", expects="a numpy array (len(papers), n_users): every row holds each user's number "
                                     "of training likes")
def check_popularity_scores(popularity_scores):
    """``popularity_scores(train_likes, papers)`` -> ``(len(papers), n_users)``: user activity."""
    likes = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=np.float32))  # (users, papers)
    papers = np.array([2, 0])
    activity = np.array([2.0, 0.0, 3.0, 1.0])
    want = np.tile(activity, (2, 1))
    value = as_array("popularity_scores", call("popularity_scores", popularity_scores, likes, papers),
                     what="an array (len(papers), n_users) = (2, 4)")
    shape_hints = {
        (4, 2): "rows are the papers asked, columns the users: you returned (n_users, n_papers)",
        (4,): "one row per paper asked: repeat the row of user activity once for each paper",
        (1, 4): "one row per paper asked: repeat the row of user activity once for each paper",
        (8, 1): "train_likes.sum(axis=1) is an (n_users, 1) matrix: flatten it to a vector before repeating it",
        (3, 4): "one row per paper in `papers` (2 of them), not one per paper of the matrix (3)",
        (2, 3): "a user's score is the number of papers in the user's training library: sum over the papers "
                "axis (axis=1) to get one number per user",
        (2, 2): "a user's score is the number of papers in the user's training library, one column per user",
    }
    if value.shape != want.shape:
        hint = shape_hints.get(value.shape, "")
        raise Fail(f"expected shape {want.shape} = (number of papers asked, number of users), got {value.shape}"
                   + (f": {hint}" if hint else ""))
    if close(value, want):
        return passed("every paper ranks the most active users first")
    paper_pop = np.asarray(likes.sum(axis=0)).ravel()
    raise diagnose(value, [
        Mistake("you scored papers by their popularity; in the flip scenario we rank USERS, so a user's score is "
                "the number of papers in the user's training library",
                when=lambda v: np.allclose(v, np.tile(paper_pop[papers][:, None], (1, 4)))),
        Mistake("you normalised the counts; the exercise asks for each user's number of training likes",
                when=lambda v: np.allclose(v / v.max(), want / want.max())),
        Mistake("a user's score is how many papers the user LIKED, not a 0/1 flag", (want > 0) * 1.0),
    ], f"expected {want.tolist()}, got {np.round(value, 4).tolist()}")
