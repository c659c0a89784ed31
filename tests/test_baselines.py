"""Popularity, content k-NN and WMF: hand cases, the ALS closed form, and planted data."""
import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.baselines import (
    WMF,
    ContentKNN,
    PopularityFlip,
    PopularityItems,
    als_update_items,
    als_update_users,
    wmf_loss,
)
from course_lib.evaluation import evaluate_ranking
from course_lib.metrics import top_k

LIKES = sp.csr_matrix(np.array([[1, 0, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=np.float32))


def test_popularity_flip_ranks_active_users_first():
    model = PopularityFlip().fit(LIKES)
    scores = model.score([2, 0])
    assert scores.shape == (2, 4)
    assert scores[0].tolist() == [2, 3, 0, 1]
    assert top_k(scores, 4)[1].tolist() == [1, 0, 3, 2]
    with pytest.raises(ValueError, match=r"paper ids must be in \[0, 3\)"):
        model.score([3])


def test_popularity_items_ranks_most_liked_papers_first():
    scores = PopularityItems().fit(LIKES).score(np.array([1]))
    assert scores.tolist() == [[3, 1, 2]]
    assert top_k(scores, 3).tolist() == [[0, 2, 1]]


def test_content_knn_hand_case():
    # unit vectors: p0 = (1, 0), p1 = (1, 1)/sqrt2, p2 = (0, 1); user 0 likes p0 and p2, user 1 none
    tfidf = sp.csr_matrix(np.array([[2.0, 0.0], [3.0, 3.0], [0.0, 0.5]]))
    likes = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0]]))
    c = 1 / np.sqrt(2)
    mean = ContentKNN().fit(likes, tfidf)
    assert mean.score_users([0, 1]) == pytest.approx(np.array([[0.5, c, 0.5], [0, 0, 0]]))
    knn1 = ContentKNN(k=1).fit(likes, tfidf)
    assert knn1.score_users([0]) == pytest.approx(np.array([[1.0, c, 1.0]]))
    knn5 = ContentKNN(k=5).fit(likes, tfidf)  # fewer papers than k: sum over all of them
    assert knn5.score_users([0]) == pytest.approx(np.array([[1.0, 2 * c, 1.0]]))
    assert knn1.score_papers([1, 2]) == pytest.approx(knn1.score_users([0, 1])[:, [1, 2]].T)


def test_content_knn_top_k_matches_brute_force_in_both_directions():
    rng = np.random.default_rng(2)
    tfidf = sp.csr_matrix(rng.random((12, 8)) * (rng.random((12, 8)) < 0.5))
    likes = sp.csr_matrix(rng.random((30, 12)) < 0.3)
    X = tfidf.toarray()
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
    cos = X @ X.T  # (12, 12)
    want = np.array([[np.sort(cos[p, lib])[::-1][:3].sum() for p in range(12)]
                     for lib in (np.flatnonzero(r) for r in likes.toarray())])  # (30, 12)
    knn = ContentKNN(k=3).fit(likes, tfidf)
    assert knn.score_users([4, 7]) == pytest.approx(want[[4, 7]])  # per-user path
    assert knn.score_papers(np.arange(12)) == pytest.approx(want.T)  # paper-block path


def _dense_update(Y, R, a, b, lam, prior):
    """x_i = (Y^T C_i Y + lam I)^-1 (Y^T C_i r_i + lam prior_i), with C_i built densely."""
    out = []
    for i, r in enumerate(R):
        C = np.diag(np.where(r > 0, a, b))
        A = Y.T @ C @ Y + lam * np.eye(Y.shape[1])
        out.append(np.linalg.solve(A, Y.T @ C @ r + lam * prior[i]))
    return np.array(out)


def test_als_half_steps_equal_dense_closed_form():
    rng = np.random.default_rng(0)
    R = (rng.random((6, 5)) < 0.4).astype(float)
    R[2] = 0  # a user without likes and ...
    R[:, 3] = 0  # ... a cold item
    # with k = 3, rows with <= 1 like take the Woodbury path and the others the direct solve
    assert {0, 1, 2} <= set(R.sum(axis=1)) and {0, 1, 2, 3} <= set(R.sum(axis=0))
    U, V = rng.standard_normal((6, 3)), rng.standard_normal((5, 3))
    prior = rng.standard_normal((5, 3))
    a, b, lu, lv = 1.0, 0.05, 0.3, 2.0
    got_u = als_update_users(V, sp.csr_matrix(R), a, b, lu)
    assert got_u == pytest.approx(_dense_update(V, R, a, b, lu, np.zeros((6, 3))), rel=1e-10, abs=1e-12)
    got_v = als_update_items(U, sp.csr_matrix(R), a, b, lv, prior=prior)
    assert got_v == pytest.approx(_dense_update(U, R.T, a, b, lv, prior), rel=1e-10, abs=1e-12)
    # the cold item gets the ridge solution (b U^T U + lv I)^-1 lv prior_3, not the prior itself
    assert not np.allclose(got_v[3], prior[3])
    # lambda = 0 leaves B singular-prone, so every row takes the direct solve: same closed form
    got_0 = als_update_users(V, sp.csr_matrix(R[[0, 3, 4]]), a, b, 0.0)
    assert got_0 == pytest.approx(_dense_update(V, R[[0, 3, 4]], a, b, 0.0, np.zeros((3, 3))), rel=1e-8)


def test_wmf_loss_matches_dense_formula():
    rng = np.random.default_rng(1)
    R = (rng.random((7, 6)) < 0.3).astype(float)
    U, V = rng.standard_normal((7, 2)), rng.standard_normal((6, 2))
    C = np.where(R > 0, 1.5, 0.1)
    want = np.sum(C * (R - U @ V.T) ** 2) + 0.2 * np.sum(U**2) + 0.3 * np.sum(V**2)
    assert wmf_loss(U, V, sp.csr_matrix(R), 1.5, 0.1, 0.2, 0.3) == pytest.approx(want)


def _planted(seed=0, n_users=200, n_papers=120, n_groups=4):
    """Users and papers in 4 planted groups: a like has probability 0.3 inside the user's group
    and 0.02 outside (a rank-4 structure that popularity cannot see); 25% held out as test."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, n_groups, n_users)
    topic = rng.integers(0, n_groups, n_papers)
    p = np.where(group[:, None] == topic[None, :], 0.3, 0.02)
    likes = rng.random((n_users, n_papers)) < p
    test = likes & (rng.random(likes.shape) < 0.25)
    return sp.csr_matrix(likes & ~test), sp.csr_matrix(test)


def test_wmf_beats_popularity_on_planted_low_rank_data():
    train, test = _planted()
    wmf = WMF(k=4, lambda_u=0.1, lambda_v=0.1, a=1.0, b=0.05, n_iter=6, seed=0).fit(train)
    users = np.arange(train.shape[0])
    r_wmf = evaluate_ranking(wmf.score_users(users), test, train, ks=(10,))["Recall@10"]
    r_pop = evaluate_ranking(PopularityItems().fit(train).score(users), test, train, ks=(10,))["Recall@10"]
    assert r_wmf > r_pop + 0.20, (r_wmf, r_pop)  # measured: 0.374 vs 0.095
    # ALS is exact coordinate descent, so the objective never goes up
    assert np.all(np.diff(wmf.loss_history) <= 1e-9 * abs(wmf.loss_history[0]))
    again = WMF(k=4, lambda_u=0.1, lambda_v=0.1, a=1.0, b=0.05, n_iter=6, seed=0).fit(train)
    assert np.array_equal(again.U, wmf.U)
    assert wmf.score_papers([5]) == pytest.approx(wmf.score_users(users)[:, [5]].T)


def test_baseline_errors():
    with pytest.raises(ValueError, match="not fitted"):
        WMF(k=2).score_users([0])
    with pytest.raises(ValueError, match=r"b \(confidence of a non-like\) must be <= a = 0.01, got 1.0"):
        WMF(a=0.01, b=1.0)
    with pytest.raises(ValueError, match="tfidf has 2 rows"):
        ContentKNN().fit(LIKES, sp.csr_matrix(np.ones((2, 4))))
    with pytest.raises(ValueError, match="singular.*use lambda > 0"):
        als_update_users(np.ones((3, 2)), LIKES, a=1.0, b=0.0, lambda_u=0.0)
    with pytest.raises(ValueError, match=r"V must be \(n_items=3, k\)"):
        als_update_users(np.ones((4, 2)), LIKES)


@pytest.mark.parametrize("make, message", [
    (lambda: WMF(k=0), r"k \(number of latent factors\) must be an integer >= 1, got 0"),
    (lambda: WMF(k="8"), r"k \(number of latent factors\) must be an integer >= 1, got '8'"),
    (lambda: WMF(n_iter=-2), r"n_iter must be an integer >= 1, got -2"),
    (lambda: WMF(lambda_u=-0.5), r"lambda_u must be a finite number >= 0, got -0.5"),
    (lambda: WMF(lambda_v=float("inf")), r"lambda_v must be a finite number >= 0, got inf"),
    (lambda: WMF(a=0), r"a \(confidence of a like\) must be a finite number > 0, got 0"),
    (lambda: WMF(b=-1), r"b \(confidence of a non-like\) must be a finite number >= 0, got -1"),
    (lambda: WMF(seed=-1), r"seed must be an integer >= 0, got -1"),
    (lambda: ContentKNN(k=0), r"k \(neighbours; None = mean over all of a user's papers\) must be an integer >= 1, got 0"),
    (lambda: ContentKNN(k=2.5), r"k \(neighbours; None = mean over all of a user's papers\) must be an integer >= 1, got 2.5"),
])
def test_baseline_settings_are_checked_when_built(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("fit, message", [
    (lambda: PopularityFlip().fit(np.ones(3)), r"train_likes must be a 2-D \(n_users, n_papers\) matrix, got shape \(3,\)"),
    (lambda: PopularityItems().fit(-LIKES), r"train_likes must hold finite values >= 0"),
    (lambda: PopularityItems().fit(np.array([[1.0, np.nan]])), r"train_likes must hold finite values >= 0"),
    (lambda: PopularityFlip().fit(np.array([["a", "b"]])), r"train_likes must hold numbers \(1 = like\), got dtype <U1"),
    (lambda: WMF(k=2, n_iter=1).fit(np.ones((2, 2, 2))), r"train_likes must be a 2-D .* got shape \(2, 2, 2\)"),
    (lambda: ContentKNN().fit(LIKES, np.ones(3)), r"tfidf must be a 2-D \(n_papers, vocabulary\) matrix, got shape \(3,\)"),
    (lambda: ContentKNN().fit(LIKES, np.array([[1.0], [np.inf], [0.0]])), r"tfidf contains NaN or infinite weights"),
    (lambda: als_update_users(np.ones((3, 2)), LIKES, a=-1.0), r"a \(confidence of a like\) must be a finite number > 0, got -1.0"),
    (lambda: als_update_items(np.ones((4, 2)), LIKES, lambda_v=-1.0), r"lambda_v must be a finite number >= 0, got -1.0"),
    (lambda: als_update_items(np.ones((4, 2)), LIKES, prior=np.ones((3, 3))), r"prior must be \(n_items=3, k=2\), got shape \(3, 3\)"),
])
def test_baseline_inputs_are_checked_before_any_work(fit, message):
    with pytest.raises(ValueError, match=message):
        fit()
