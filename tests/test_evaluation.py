"""evaluate_ranking / evaluate_flip / evaluate_sessions on hand-made cases."""
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from course_lib.evaluation import evaluate_flip, evaluate_ranking, evaluate_sessions

SCORES = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.4, 0.4, 0.3, 0.2], [0.5, 0.4, 0.3, 0.2, 0.1]])
TEST = sp.csr_matrix(np.array([[0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
EXCLUDE = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
NDCG_ROW0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
EXPECTED = {
    "Recall@1": 0.5, "Precision@1": 0.5, "HR@1": 0.5, "NDCG@1": 0.5, "MRR@1": 0.5,
    "Recall@3": 0.75, "Precision@3": 1 / 3, "HR@3": 1.0, "NDCG@3": (NDCG_ROW0 + 1) / 2, "MRR@3": 0.75,
}


def test_evaluate_ranking_dense_and_chunked_callable_agree_with_hand_numbers():
    dense = evaluate_ranking(SCORES, TEST, EXCLUDE, ks=(1, 3))
    calls = []

    def scorer(rows):
        calls.append(rows.tolist())
        return torch.tensor(SCORES[rows])  # a torch block is accepted too

    chunked = evaluate_ranking(scorer, TEST, EXCLUDE, ks=(1, 3), chunk_size=1, return_per_row=True)
    for res in (dense, chunked):
        assert {k: res[k] for k in EXPECTED} == pytest.approx(EXPECTED)
        assert res["n_queries"] == 2 and res["n_skipped"] == 1
    assert calls == [[0], [1]]  # row 2 has no test item, so it is never scored
    per_row = chunked["per_row"]["Recall@3"]
    assert per_row[:2] == pytest.approx([0.5, 1.0]) and np.isnan(per_row[2])


def test_evaluate_ranking_chunks_do_not_change_results():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, (60, 40)).astype(float)  # ties everywhere
    test = sp.csr_matrix(rng.random((60, 40)) < 0.1)
    train = sp.csr_matrix((rng.random((60, 40)) < 0.2) & ~test.toarray())
    whole = evaluate_ranking(scores, test, train, ks=(5, 20))
    for chunk in (1, 7, 1000):
        assert evaluate_ranking(lambda r: scores[r], test, train, ks=(5, 20), chunk_size=chunk) == whole


def test_evaluate_ranking_errors():
    with pytest.raises(ValueError, match="same rows"):
        evaluate_ranking(SCORES[:2], TEST)
    with pytest.raises(ValueError, match=r"returned shape \(2, 4\) for 2 rows; expected \(2, 5\)"):
        evaluate_ranking(lambda rows: SCORES[rows, :4], TEST, ks=(2,))
    bad = SCORES.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN for rows \[1\]"):
        evaluate_ranking(lambda rows: bad[rows], TEST, chunk_size=1)
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_ranking(SCORES, TEST, metrics=("auc",))
    with pytest.raises(ValueError, match="1 test entries are also in `exclude`"):
        evaluate_ranking(SCORES, TEST, EXCLUDE + TEST.multiply(sp.csr_matrix(np.eye(3, 5, 4))))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_ranking(SCORES, sp.csr_matrix(SCORES.shape))


def test_evaluate_flip_transposes_restricts_and_excludes():
    rng = np.random.default_rng(0)
    likes_test = sp.csr_matrix(rng.random((7, 5)) < 0.3)  # (n_users, n_papers)
    likes_train = sp.csr_matrix((rng.random((7, 5)) < 0.3) & ~likes_test.toarray())
    paper_scores = rng.standard_normal((5, 7))  # (n_papers, n_users)
    papers = np.array([3, 0, 4])
    want = evaluate_ranking(
        paper_scores[papers], sp.csr_matrix(likes_test.T)[papers], sp.csr_matrix(likes_train.T)[papers], ks=(2,)
    )
    got = evaluate_flip(paper_scores[papers], likes_test, likes_train, papers=papers, ks=(2,))
    got_callable = evaluate_flip(lambda p: paper_scores[p], likes_test, likes_train, papers=papers, ks=(2,))
    assert got == pytest.approx(want) and got_callable == pytest.approx(want)
    # a hand case: one paper liked (in test) by user 2 only; users ranked 1 > 2 > 0, user 1 excluded
    hand = evaluate_flip(
        np.array([[0.0, 2.0, 1.0]]), sp.csr_matrix([[0], [0], [1]]), sp.csr_matrix([[0], [1], [0]]), ks=(1,)
    )
    assert hand["Recall@1"] == 1.0 and hand["MRR@1"] == 1.0


# ---------------------------------------------------------------- sessions

ITEM_IDS = np.array([10, 20, 30, 40])
# next-item scores after each item (rows: current item, columns: ITEM_IDS)
TABLE = np.array([[0.0, 5, 3, 1], [1, 0, 2, 2], [4, 9, 0, 1], [1, 1, 1, 1]])


class Markov:
    """First-order Markov scorer: the scores depend on the current item only."""

    item_ids = ITEM_IDS

    def __init__(self, as_torch=False):
        self.as_torch = as_torch

    def reset(self, n_slots):
        self.n_slots = n_slots

    def reset_slots(self, mask):
        assert mask.shape == (self.n_slots,)

    def score_next(self, item_idx):
        out = TABLE[item_idx]
        return torch.tensor(out) if self.as_torch else out


def _frame(sessions):
    rows = [(sid, item, float(t)) for sid, items in sessions for t, item in enumerate(items)]
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


# session 3 loses the unknown item 99; sessions 4 and 5 end up with one event and are dropped.
SESSIONS = _frame([(1, [10, 20, 30]), (2, [20, 40]), (3, [30, 99, 10]), (4, [40]), (5, [99, 20])])
# ranks (average ties): 10->20: 1; 20->30: tie of 30 and 40 -> 1.5; 20->40: 1.5; 30->10: 2


@pytest.mark.parametrize("batch_size", [1, 2, 3, 50])
@pytest.mark.parametrize("as_torch", [False, True])
def test_evaluate_sessions_markov_hand_case(batch_size, as_torch):
    res = evaluate_sessions(Markov(as_torch), SESSIONS, cutoffs=(1, 2), batch_size=batch_size)
    assert res["Recall@1"] == pytest.approx(0.25) and res["MRR@1"] == pytest.approx(0.25)
    assert res["Recall@2"] == pytest.approx(1.0)
    assert res["MRR@2"] == pytest.approx((1 + 1 / 1.5 + 1 / 1.5 + 0.5) / 4)
    assert (res["n_events"], res["n_sessions"]) == (4, 3)
    assert (res["n_unknown_dropped"], res["n_short_sessions_dropped"]) == (2, 2)


def test_evaluate_sessions_tie_modes():
    opt = evaluate_sessions(Markov(), SESSIONS, cutoffs=(1, 2), ties="optimistic")
    pes = evaluate_sessions(Markov(), SESSIONS, cutoffs=(1, 2), ties="pessimistic")
    assert opt["Recall@1"] == pytest.approx(0.75) and opt["MRR@2"] == pytest.approx(3.5 / 4)
    assert pes["Recall@1"] == pytest.approx(0.25) and pes["MRR@2"] == pytest.approx(2.5 / 4)


class Counting:
    """Predicts column ``c`` after ``c`` items since its last reset and the item after the one fed.

    Both must agree for rank 1, so feeding the wrong item, skipping a reset, or resetting a slot
    whose session is still running all push the target down the list.
    """

    item_ids = np.arange(100, 108)

    def reset(self, n_slots):
        self.count = np.zeros(n_slots, dtype=int)
        self.reset_calls = []

    def reset_slots(self, mask):
        self.reset_calls.append(np.flatnonzero(mask).tolist())
        self.count[mask] = 0

    def score_next(self, item_idx):
        self.count += 1
        cols = np.arange(len(self.item_ids))
        return -((cols - self.count[:, None]) ** 2) - (cols - item_idx[:, None] - 1) ** 2


def test_evaluate_sessions_resets_only_the_finished_slot():
    lengths = [3, 6, 2, 4, 2, 5]
    test = _frame([(s, list(100 + np.arange(n))) for s, n in enumerate(lengths)])
    model = Counting()
    res = evaluate_sessions(model, test, cutoffs=(1,), batch_size=2)
    assert res["Recall@1"] == 1.0 and res["MRR@1"] == 1.0
    assert res["n_events"] == sum(n - 1 for n in lengths) and res["n_sessions"] == 6
    # slot 0: session 0 (steps 1-2), 2 (step 3), 3 (steps 4-6), then 5; slot 1: session 1
    # (steps 1-5), 4 (step 6), then idle: both finish at step 6 and only slot 0 is refilled
    assert model.reset_calls == [[0], [0], [1], [0]]


def test_evaluate_sessions_input_errors():
    with pytest.raises(ValueError, match="unknown_items='drop'"):
        evaluate_sessions(Markov(), SESSIONS, unknown_items="raise")
    backwards = SESSIONS.copy()
    backwards.loc[1, "Time"] = -5.0
    with pytest.raises(ValueError, match=r"times go backwards inside sessions \[1\].*sort_values"):
        evaluate_sessions(Markov(), backwards)
    with pytest.raises(ValueError, match="not contiguous"):
        evaluate_sessions(Markov(), SESSIONS.iloc[[0, 3, 1, 2]])
    with pytest.raises(ValueError, match="empty"):
        evaluate_sessions(Markov(), SESSIONS.iloc[:0])
    with pytest.raises(ValueError, match="no test session has 2 or more events"):
        evaluate_sessions(Markov(), _frame([(1, [10]), (2, [99, 20])]))


def test_metrics_and_evaluation_work_without_torch():
    """The Theano environment has no torch: the framework-neutral modules must not need it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "import numpy as np, pandas as pd\n"
        "from course_lib import metrics, evaluation, sessions, session_baselines, validation\n"
        "from course_lib.session_baselines import SPop\n"
        "tr = pd.DataFrame({'SessionId': [0, 0, 1, 1], 'ItemId': [1, 2, 1, 2], 'Time': [0., 1., 2., 3.]})\n"
        "te = pd.DataFrame({'SessionId': [5, 5, 5], 'ItemId': [1, 2, 1], 'Time': [0., 1., 2.]})\n"
        "print(evaluation.evaluate_sessions(SPop().fit(tr), te, cutoffs=(1,))['Recall@1'])\n"
        "print(metrics.rank_of_targets(np.array([[1., 3.]]), np.array([0])))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0.0", "[2.]"]  # S-POP ranks both next items 2nd (item 1 ahead, then a tie)
