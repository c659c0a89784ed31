"""POP, S-POP, item-KNN and BPR-MF: hand-computed scores, the protocol, and a planted ordering."""
import numpy as np
import pandas as pd
import pytest

from course_lib.evaluation import evaluate_sessions
from course_lib.session_baselines import BPRMF, ItemKNN, Pop, SPop
from course_lib.synthetic import planted_sessions

# items 10, 20, 30, 40; popularity 10:3, 20:4, 30:2, 40:1
TRAIN = pd.DataFrame({
    "SessionId": [1, 1, 1, 2, 2, 3, 3, 3, 4, 4],
    "ItemId": [10, 20, 30, 20, 10, 20, 30, 20, 10, 40],
    "Time": np.arange(10, dtype=float),
})


def test_pop_scores_are_training_counts():
    m = Pop().fit(TRAIN)
    assert m.item_ids.tolist() == [10, 20, 30, 40]
    m.reset(2)
    assert np.array_equal(m.score_next(np.array([0, 3])), [[3, 4, 2, 1]] * 2)


def test_spop_counts_the_session_and_breaks_ties_by_popularity():
    m = SPop().fit(TRAIN)
    m.reset(2)
    m.score_next(np.array([3, 2]))  # slot 0 clicks 40, slot 1 clicks 30
    s = m.score_next(np.array([0, 2]))  # slot 0 clicks 10, slot 1 clicks 30 again
    assert np.argsort(-s[0]).tolist() == [0, 3, 1, 2]  # 10 and 40 (1 click each; 10 more popular), then 20 > 30
    assert np.argsort(-s[1]).tolist() == [2, 1, 0, 3]  # 30 twice, then popularity 20 > 10 > 40
    m.reset_slots(np.array([True, False]))
    s = m.score_next(np.array([1, 2]))
    assert np.argsort(-s[0]).tolist() == [1, 0, 2, 3]  # slot 0 forgot 40 and 10
    assert s[1, 2] == pytest.approx(3 + 2 / 5)  # 3 clicks + popularity / (max + 1)


def test_item_knn_similarity_by_hand():
    m = ItemKNN(lmbd=1.0, alpha=0.5, n_sims=0).fit(TRAIN)
    # sessions containing: 10 -> {1,2,4}, 20 -> {1,2,3}, 30 -> {1,3}, 40 -> {4}
    # sim(10, 20) = |{1,2}| / sqrt((3+1)(3+1)) = 0.5; sim(10, 40) = 1 / sqrt(4 * 2); sim(10, 30) = 1 / sqrt(4 * 3)
    m.reset(1)
    s = m.score_next(np.array([0]))[0]
    assert s == pytest.approx([0.0, 0.5, 1 / np.sqrt(12), 1 / np.sqrt(8)])
    plain = ItemKNN(lmbd=0.0, n_sims=0).fit(TRAIN)  # lambda 0 is the plain cosine
    plain.reset(1)
    assert plain.score_next(np.array([2]))[0] == pytest.approx([1 / np.sqrt(6), 2 / np.sqrt(6), 0.0, 0.0])


def test_item_knn_keeps_only_the_top_neighbours():
    m = ItemKNN(lmbd=1.0, n_sims=1).fit(TRAIN)
    m.reset(1)
    s = m.score_next(np.array([0]))[0]
    assert np.count_nonzero(s) == 1 and s[1] == pytest.approx(0.5)


def test_bpr_mf_scores_with_the_mean_of_the_session_items():
    m = BPRMF(n_factors=4, n_epochs=2, seed=0).fit(TRAIN)
    m.reset(1)
    m.score_next(np.array([0]))
    s = m.score_next(np.array([2]))[0]
    expected = m.Q @ ((m.Q[0] + m.Q[2]) / 2) + m.b
    assert s == pytest.approx(expected)
    again = BPRMF(n_factors=4, n_epochs=2, seed=0).fit(TRAIN)
    assert np.array_equal(again.Q, m.Q)  # same seed, same factors


def test_protocol_input_is_checked():
    m = Pop().fit(TRAIN)
    m.reset(2)
    with pytest.raises(ValueError, match="shape"):
        m.score_next(np.array([0]))
    with pytest.raises(ValueError, match="column indices"):
        m.score_next(np.array([0, 4]))
    with pytest.raises(ValueError, match="not fitted"):
        ItemKNN().score_next(np.array([0]))
    with pytest.raises(ValueError, match="empty"):
        Pop().fit(TRAIN.iloc[:0])


def test_planted_ordering_knn_and_bpr_above_pop():
    data = planted_sessions(n_items=40, n_sessions=500, mean_len=6, seed=3)
    rec = {type(m).__name__: evaluate_sessions(m.fit(data.train), data.test, cutoffs=(5,))["Recall@5"]
           for m in (Pop(), ItemKNN(), BPRMF(learning_rate=0.1, n_epochs=5, seed=0))}
    assert rec["ItemKNN"] > rec["Pop"] + 0.2, rec
    assert rec["BPRMF"] > rec["Pop"] + 0.05, rec


# ------------------------------------------------------------------ arguments checked before any work (issue 12)
@pytest.mark.parametrize("make, match", [
    (lambda: ItemKNN(lmbd=-1.0), r"lmbd must be a finite number >= 0, got -1.0"),
    (lambda: ItemKNN(alpha=1.5), r"alpha must be a number in \[0, 1\], got 1.5"),
    (lambda: ItemKNN(n_sims=-3), r"n_sims must be an integer >= 0, got -3"),
    (lambda: BPRMF(n_factors=0), r"n_factors must be an integer >= 1, got 0"),
    (lambda: BPRMF(n_epochs=0), r"n_epochs must be an integer >= 1, got 0"),
    (lambda: BPRMF(learning_rate=-0.1), r"learning_rate must be a finite number > 0, got -0.1"),
    (lambda: BPRMF(sigma=0.0), r"sigma must be a finite number > 0, got 0.0"),
    (lambda: BPRMF(batch_size=2.5), r"batch_size must be an integer >= 1, got 2.5"),
])
def test_bad_arguments_are_refused_with_their_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bpr_mf_divergence_names_the_epoch():
    from course_lib.validation import TrainingDiverged

    train = pd.DataFrame({"SessionId": [0, 0, 1, 1, 2, 2], "ItemId": [1, 2, 2, 3, 1, 3], "Time": range(6)})
    with pytest.raises(TrainingDiverged, match=r"at BPR-MF epoch 2: lower learning_rate \(now 1e\+300\)"):
        BPRMF(n_factors=4, n_epochs=2, learning_rate=1e300, sigma=1.0).fit(train)


def test_evaluating_an_unfitted_baseline_says_it_is_untrained():
    from course_lib.evaluation import evaluate_sessions

    test = pd.DataFrame({"SessionId": [0, 0], "ItemId": [1, 2], "Time": [0.0, 1.0]})
    with pytest.raises(ValueError, match="ItemKNN is not trained yet"):
        evaluate_sessions(ItemKNN(), test)
