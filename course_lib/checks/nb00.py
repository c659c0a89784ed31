"""Checks for notebook 00 (start here): Recall@M and the popularity baseline."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import report, run_check
from .. import metrics
from ..baselines import PopularityFlip


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


_MISTAKES = {
    4 / 9: "you averaged over all 3 queries; skip queries that have no test item",
    1 / 2: "you divided the hits by m; Recall@M divides by the number of test items of the query",
    1 / 6: "you took the LOWEST scores; the top-M list holds the highest scores",
}


def check_recall_at_m(recall_at_m) -> bool:
    """``recall_at_m(scores, test, m)`` must return the mean over queries with test items of
    |top-m ∩ test| / |test| (Bansal et al. 2016, Sec. 5.2)."""
    scores, test = _hand_case()
    got = {}
    if not run_check("recall_at_m", lambda: got.update(v=recall_at_m(scores, test, 2))):
        return False
    value = float(np.asarray(got["v"]))
    if not np.isclose(value, 2 / 3):
        hint = next((h for v, h in _MISTAKES.items() if np.isclose(value, v)), "")
        return report(False, "", f"on the hand-made case Recall@2 should be 0.6667, you returned {value:.4f}"
                                 + (f": {hint}" if hint else ""))
    rng = np.random.default_rng(0)
    for trial in range(5):
        s = rng.normal(size=(20, 30))
        t = sp.random(20, 30, density=0.15, random_state=trial, format="csr")
        t.data[:] = 1.0
        for m in (1, 5, 10):
            want = metrics.recall_at_m(s, t, ms=(m,))[m]
            mine = float(np.asarray(recall_at_m(s, t, m)))
            if not np.isclose(mine, want, atol=1e-9):
                return report(False, "", f"on a random 20x30 case Recall@{m} should be {want:.4f}, "
                                         f"you returned {mine:.4f}")
    return report(True, "recall_at_m matches the hand-made case and course_lib.metrics on random cases", "")


def check_popularity_scores(popularity_scores) -> bool:
    """``popularity_scores(train_likes, papers)`` -> ``(len(papers), n_users)``: user activity."""
    likes = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=np.float32))
    papers = np.array([2, 0])
    got = {}
    if not run_check("popularity_scores", lambda: got.update(v=popularity_scores(likes, papers))):
        return False
    value = np.asarray(got["v"], dtype=float)
    want = PopularityFlip().fit(likes).score(papers)
    if value.shape != want.shape:
        return report(False, "", f"expected shape {want.shape} = (number of papers asked, number of users), got {value.shape}")
    if np.allclose(value, np.tile(np.asarray(likes.sum(axis=0)).ravel()[papers][:, None], (1, 4))):
        return report(False, "", "you scored papers by their popularity; in the flip scenario we rank USERS, "
                                 "so a user's score is the number of papers in the user's training library")
    if not np.allclose(value, want):
        return report(False, "", f"expected {want.tolist()}, got {value.tolist()}")
    return report(True, "every paper ranks the most active users first", "")
