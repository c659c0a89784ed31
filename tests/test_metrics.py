"""Metrics on hand-computed cases, against a brute-force reference, and their error messages."""
import math

import numpy as np
import pytest
import scipy.sparse as sp

from course_lib import metrics as M

# Row 0: test {1, 4}; row 1: test {2}, column 1 excluded (and tied with column 2); row 2: no test.
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5],
        [0.1, 0.4, 0.4, 0.3, 0.2],
        [0.5, 0.4, 0.3, 0.2, 0.1],
    ]
)
TEST = sp.csr_matrix(np.array([[0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
EXCLUDE = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
L3 = math.log2(3)


def test_top_k_orders_breaks_ties_by_index_and_excludes():
    assert M.top_k(SCORES, 3).tolist() == [[0, 1, 2], [1, 2, 3], [0, 1, 2]]
    assert M.top_k(SCORES, 3, EXCLUDE).tolist() == [[0, 1, 2], [2, 3, 4], [0, 1, 2]]
    # every score equal: the lowest indices win
    assert M.top_k(np.zeros((1, 6)), 4).tolist() == [[0, 1, 2, 3]]


def test_top_k_pads_with_minus_one_when_too_few_allowed_and_clips_k():
    excl = sp.csr_matrix(np.array([[1, 0, 1, 1]]))
    assert M.top_k(np.array([[4.0, 3.0, 2.0, 1.0]]), 3, excl).tolist() == [[1, -1, -1]]
    assert M.top_k(np.array([[1.0, 2.0]]), 10).tolist() == [[1, 0]]


def _brute_top_k(scores, k, excl):
    out = []
    for s, e in zip(scores, excl):
        allowed = [j for j in range(len(s)) if not e[j]]
        allowed.sort(key=lambda j: (-s[j], j))
        row = allowed[:k]
        out.append(row + [-1] * (min(k, len(s)) - len(row)))
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3, 7, 12, 20])
def test_top_k_matches_brute_force_with_many_ties(k):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(40, 12)).astype(float)  # many ties, also at the k-th place
    scores[0] = -np.inf  # a row of -inf next to excluded entries
    excl = rng.random((40, 12)) < 0.3
    excl[1] = True
    assert np.array_equal(M.top_k(scores, k, sp.csr_matrix(excl)), _brute_top_k(scores, k, excl))


def test_list_metrics_hand_case():
    # row 0 list [0,1,2]: hit at position 2 of 2 test items; row 1 list [2,3,4]: hit at position 1
    ndcg_row0 = (1 / L3) / (1 + 1 / L3)
    assert M.recall_at_m(SCORES, TEST, ms=(1, 3), exclude=EXCLUDE) == pytest.approx({1: 0.5, 3: 0.75})
    assert M.precision_at_k(SCORES, TEST, 3, EXCLUDE) == pytest.approx(1 / 3)
    assert M.hit_rate_at_k(SCORES, TEST, 1, EXCLUDE) == pytest.approx(0.5)
    assert M.mrr_at_k(SCORES, TEST, 3, EXCLUDE) == pytest.approx(0.75)
    assert M.ndcg_at_k(SCORES, TEST, 3, EXCLUDE) == pytest.approx((ndcg_row0 + 1.0) / 2)
    per_row = M.recall_per_row(SCORES, TEST, 3, EXCLUDE)
    assert per_row[:2] == pytest.approx([0.5, 1.0]) and np.isnan(per_row[2])
    # without the exclusion, row 1 ranks the excluded (tied, lower-index) column 1 first
    assert M.mrr_at_k(SCORES, TEST, 3) == pytest.approx((0.5 + 0.5) / 2)
    assert M.ndcg_at_k(SCORES, TEST, 3) == pytest.approx((ndcg_row0 + 1 / L3) / 2)


def test_list_metrics_match_brute_force_on_random_data():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((30, 25))
    test = rng.random((30, 25)) < 0.15
    excl = (rng.random((30, 25)) < 0.2) & ~test
    k = 6
    lists = _brute_top_k(scores, k, excl)
    rec, ndcg, mrr = [], [], []
    for row, t in zip(lists, test):
        if not t.any():
            continue
        hits = [j >= 0 and t[j] for j in row]
        rec.append(sum(hits) / t.sum())
        ndcg.append(
            sum(h / math.log2(p + 2) for p, h in enumerate(hits))
            / sum(1 / math.log2(p + 2) for p in range(min(k, t.sum())))
        )
        mrr.append(next((1 / (p + 1) for p, h in enumerate(hits) if h), 0.0))
    args = (scores, sp.csr_matrix(test), k, sp.csr_matrix(excl))
    assert M.recall_at_m(scores, sp.csr_matrix(test), [k], sp.csr_matrix(excl))[k] == pytest.approx(np.mean(rec))
    assert M.ndcg_at_k(*args) == pytest.approx(np.mean(ndcg))
    assert M.mrr_at_k(*args) == pytest.approx(np.mean(mrr))


RANK_CASE = np.array([[3.0, 1.0, 3.0, 2.0], [3.0, 1.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
RANK_WANT = {"optimistic": [1, 4, 1], "pessimistic": [2, 4, 4], "average": [1.5, 4, 2.5]}  # targets 0, 1, 2


def test_rank_of_targets_tie_modes():
    for ties, want in RANK_WANT.items():
        got = M.rank_of_targets(RANK_CASE, np.array([0, 1, 2]), ties)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.tolist() == want


def test_session_metrics_from_ranks():
    ranks = np.array([1.0, 2.5, 4.0, 30.0])
    out = M.session_metrics_from_ranks(ranks, cutoffs=(3, 20))
    assert out == pytest.approx({"Recall@3": 0.5, "MRR@3": 0.35, "Recall@20": 0.75, "MRR@20": 0.4125})
    assert M.session_metrics_from_ranks(ranks.tolist(), 3)["MRR@3"] == pytest.approx(0.35)


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="same rows"):
        M.recall_at_m(SCORES, TEST[:2], ms=(3,))
    with pytest.raises(ValueError, match="positive integer"):
        M.top_k(SCORES, 0)
    with pytest.raises(ValueError, match="ties must be one of"):
        M.rank_of_targets(SCORES, np.array([0, 0, 0]), ties="random")
    bad = SCORES.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN in rows \[1\]"):
        M.top_k(bad, 2)
    with pytest.raises(ValueError, match="NaN"):
        M.rank_of_targets(bad, np.array([0, 0, 0]))
    with pytest.raises(ValueError, match="targets must be in"):
        M.rank_of_targets(SCORES, np.array([0, 5, 0]))
    with pytest.raises(ValueError, match="no row of `test`"):
        M.ndcg_at_k(SCORES, sp.csr_matrix(SCORES.shape), 2)
