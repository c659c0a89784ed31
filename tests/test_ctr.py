"""Collaborative topic regression: text preprocessing, LDA, the ALS updates, the topic updates,
cold-start scores and argument checks."""
import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.ctr import CTR, ctr_counts, lda_topics, project_to_simplex, text_log_likelihood, update_topics
from course_lib.evaluation import evaluate_ranking
from course_lib.splits import cold_start_folds, tag_split, warm_start_folds
from course_lib.synthetic import planted_citeulike


def test_ctr_counts_drop_stop_words_and_numbers_and_rank_by_tfidf():
    texts = ["the gene network of 2004", "gene expression in the yeast", "network motifs and the yeast gene",
             "rare word"]
    counts, words = ctr_counts(texts, n_words=3, min_df=2)
    # candidates in >= 2 docs: gene (cf 3, df 3), network (2, 2), yeast (2, 2); stop words and 2004 gone
    # cf * log(N / df): gene 3 log(4/3) = 0.86, network = yeast = 2 log 2 = 1.39
    assert sorted(words) == ["gene", "network", "yeast"]
    assert counts.shape == (4, 3)
    col = {w: i for i, w in enumerate(words)}
    assert counts[2, col["gene"]] == 1 and counts[0, col["network"]] == 1 and counts[3].nnz == 0
    counts2, words2 = ctr_counts(texts, n_words=2, min_df=2)
    assert sorted(words2) == ["network", "yeast"]


def test_lda_topics_are_distributions_and_deterministic():
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(0.5, size=(30, 25)))
    a = lda_topics(counts, n_topics=4, max_iter=5, seed=1)
    b = lda_topics(counts, n_topics=4, max_iter=5, seed=1)
    assert a.shape == (30, 4)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(a, b)


def _dense_item_update(U, R, theta, a, b, lam):
    """v_j = (U^T C_j U + lam I)^-1 (U^T C_j r_j + lam theta_j), written out densely."""
    V = np.zeros_like(theta)
    for j in range(R.shape[1]):
        c = np.where(R[:, j] > 0, a, b)
        A = U.T @ (c[:, None] * U) + lam * np.eye(U.shape[1])
        V[j] = np.linalg.solve(A, U.T @ (c * R[:, j]) + lam * theta[j])
    return V


def test_one_ctr_iteration_matches_the_closed_form():
    rng = np.random.default_rng(0)
    R = (rng.random((12, 9)) < 0.3).astype(float)
    theta = rng.dirichlet(np.ones(3), size=9)
    model = CTR(k=3, lambda_u=0.1, lambda_v=2.0, n_iter=1).fit(sp.csr_matrix(R), theta)
    # the U step starts from V = theta (initialised with the topic model)
    U = np.zeros((12, 3))
    for i in range(12):
        c = np.where(R[i] > 0, 1.0, 0.01)
        U[i] = np.linalg.solve(theta.T @ (c[:, None] * theta) + 0.1 * np.eye(3), theta.T @ (c * R[i]))
    np.testing.assert_allclose(model.U, U, rtol=1e-8)
    np.testing.assert_allclose(model.V, _dense_item_update(U, R, theta, 1.0, 0.01, 2.0), rtol=1e-8)


@pytest.fixture(scope="module")
def planted():
    data = planted_citeulike(n_users=150, n_papers=200, n_topics=4, doc_len=20, likes_per_user=10,
                             order_matters=False, seed=0)
    theta = lda_topics(ctr_counts(data.texts("abstract"), min_df=1)[0], n_topics=8, max_iter=30, seed=0)
    return data, theta, cold_start_folds(data.likes, n_folds=5, seed=0)[0]


def test_ctr_loss_never_increases_and_cold_papers_use_theta(planted):
    data, theta, fold = planted
    model = CTR(k=8, n_iter=5).fit(fold.train, theta)
    assert np.all(np.diff(model.loss_history) <= 1e-8 * abs(model.loss_history[0]))
    V = model.item_factors()
    np.testing.assert_array_equal(V[fold.test_papers], theta[fold.test_papers])
    warm = np.asarray(fold.train.sum(axis=0)).ravel() > 0  # papers with a training like
    np.testing.assert_array_equal(V[warm], model.V[warm])
    np.testing.assert_array_equal(V[~warm], theta[~warm])


def test_large_lambda_v_pins_items_to_their_topics(planted):
    data, theta, fold = planted
    model = CTR(k=8, lambda_v=1e8, n_iter=2).fit(fold.train, theta)
    np.testing.assert_allclose(model.V, theta, atol=1e-5)


def _cold_recall10(model, fold, n_users):
    cand = fold.test_papers
    return evaluate_ranking(model.score_users(np.arange(n_users), cand), fold.test[:, cand], ks=(10,),
                            metrics=("recall",))["Recall@10"]


def test_ctr_recommends_cold_papers_from_their_topics(planted):
    data, theta, fold = planted
    model = CTR(k=8, n_iter=5).fit(fold.train, theta)
    # 23 cold papers: a random ranking has expected Recall@10 = 10/23 = 0.43 (measured 0.78)
    assert fold.test_papers.size == 23
    assert _cold_recall10(model, fold, data.n_users) > 0.70


def test_updated_topics_beat_fixed_random_topics_on_cold_papers(planted):
    data, _, fold = planted
    counts = ctr_counts(data.texts("abstract"), min_df=1)[0]
    rng = np.random.default_rng(1)
    random_theta = rng.dirichlet(np.ones(8) * 50, size=data.n_papers)  # near-uniform, like CTR(...).fit(R, counts=...)
    fixed = _cold_recall10(CTR(k=8, n_iter=10).fit(fold.train, random_theta), fold, data.n_users)
    learned = _cold_recall10(CTR(k=8, n_iter=10, seed=1).fit(fold.train, counts=counts), fold, data.n_users)
    # fixed random topics stay near chance (measured 0.48; a random ranking gets 10/23 = 0.43);
    # topics learned from the text and the likes find the planted topics (measured 0.65)
    assert fixed < 0.55
    assert learned > fixed + 0.12


def test_item_vectors_beat_their_fixed_topics_in_warm_start():
    data = planted_citeulike(n_users=150, n_papers=200, n_topics=4, doc_len=20, likes_per_user=10,
                             order_matters=False, seed=0)
    fold = warm_start_folds(data.likes, n_folds=5, seed=0)[0]
    theta = lda_topics(ctr_counts(data.texts("abstract"), min_df=1)[0], n_topics=8, max_iter=30, seed=0,
                       doc_topic_prior=1 / 8)
    model = CTR(k=8, n_iter=10).fit(fold.train, theta)

    def recall(V):
        return evaluate_ranking(model.U @ V.T, fold.test, exclude=fold.train, ks=(10,), metrics=("recall",))["Recall@10"]

    # v_j = theta_j + eps_j learnt from the likes (measured 0.227) against theta_j alone (0.153)
    assert recall(model.V) > recall(theta) + 0.05


def test_ctr_mtl_predicts_planted_tags(planted):
    data, theta, fold = planted
    train_papers, test_papers = tag_split(data.paper_tags, fold)
    keep = np.zeros(data.n_papers)
    keep[train_papers] = 1
    tags_train = sp.csr_matrix(sp.diags(keep) @ data.paper_tags)
    model = CTR(k=8, n_iter=5).fit(fold.train, theta, tags=tags_train)
    assert model.S.shape == (data.n_tags, 8)
    scores = model.tag_scores(test_papers)
    hit1 = np.mean(scores.argmax(axis=1) == data.paper_tags[test_papers].indices)
    assert hit1 > 0.6  # chance 1/4
    with pytest.raises(ValueError, match="without tags"):
        CTR(k=8, n_iter=1).fit(fold.train, theta).tag_scores(test_papers)


def test_project_to_simplex_hand_cases():
    x = np.array([[0.5, 0.5, 0.5], [2.0, 0.0, 0.0], [0.6, 0.3, -0.5], [0.2, 0.3, 0.5]])
    # row 3: the sum is 0.4, so 0.05 is added to the two kept entries and the third is clipped
    want = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.65, 0.35, 0.0], [0.2, 0.3, 0.5]])
    np.testing.assert_allclose(project_to_simplex(x), want, atol=1e-12)


def _hand_topics():
    rng = np.random.default_rng(3)
    counts = sp.csr_matrix(rng.poisson(1.0, size=(5, 7)) * (rng.random((5, 7)) < 0.6))
    theta = rng.dirichlet(np.ones(3), size=5)
    beta = rng.dirichlet(np.ones(7), size=3)  # (k, n_words)
    V = theta + 0.2 * rng.standard_normal((5, 3))
    return counts, theta, beta, V


def test_update_topics_e_and_m_steps_match_phi_written_out():
    counts, theta, beta, V = _hand_topics()
    _, new_beta = update_topics(theta, beta, V, counts, lambda_v=2.0, eta=0.01)
    stats = np.zeros((3, 7))
    for j, w in zip(*counts.nonzero()):
        phi = theta[j] * beta[:, w]
        stats[:, w] += counts[j, w] * phi / phi.sum()  # beta_kw ∝ eta + sum_j n_jw phi_jwk
    want = (stats + 0.01) / (stats + 0.01).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(new_beta, want, rtol=1e-10)


def test_update_topics_stays_on_the_simplex_and_raises_each_papers_bound():
    counts, theta, beta, V = _hand_topics()
    new, _ = update_topics(theta, beta, V, counts, lambda_v=2.0)
    np.testing.assert_allclose(new.sum(axis=1), 1.0, atol=1e-12)
    assert new.min() >= 0
    gamma = np.zeros_like(theta)  # expected topic counts under the old theta
    for j, w in zip(*counts.nonzero()):
        phi = theta[j] * beta[:, w]
        gamma[j] += counts[j, w] * phi / phi.sum()

    def bound(t):
        return (gamma * np.log(t)).sum(axis=1) - 0.5 * 2.0 * ((V - t) ** 2).sum(axis=1)

    assert np.all(bound(new) >= bound(theta) - 1e-12)
    assert np.all(bound(new) > bound(theta) + 1e-3)  # every paper moved


def test_update_topics_pulls_a_paper_without_words_to_its_vector():
    counts, theta, beta, V = _hand_topics()
    counts = sp.csr_matrix(counts.toarray() * (np.arange(5) != 2)[:, None])  # paper 2 has no word
    V[2] = [0.7, 0.2, 0.1]  # a point of the simplex: the bound of paper 2 is -|v - theta|^2
    for _ in range(40):
        theta, beta = update_topics(theta, beta, V, counts, lambda_v=2.0)
    np.testing.assert_allclose(theta[2], V[2], atol=1e-4)


def test_item_update_with_updated_topics_equals_the_closed_form():
    rng = np.random.default_rng(0)
    R = (rng.random((12, 9)) < 0.3).astype(float)
    counts, _, _, _ = _hand_topics()
    counts = sp.vstack([counts, counts[:4]]).tocsr()  # 9 papers, 7 words
    theta0 = rng.dirichlet(np.ones(3), size=9)
    beta0 = rng.dirichlet(np.ones(7), size=3)
    one = CTR(k=3, lambda_u=0.1, lambda_v=2.0, n_iter=1).fit(sp.csr_matrix(R), theta0, counts=counts, beta=beta0)
    two = CTR(k=3, lambda_u=0.1, lambda_v=2.0, n_iter=2).fit(sp.csr_matrix(R), theta0, counts=counts, beta=beta0)
    # iteration 2: u_i from v_j of iteration 1, then v_j = (U C_j U^T + lambda_v I)^-1 (U C_j R_j + lambda_v theta_j)
    # with the theta that iteration 1 updated
    U = np.zeros((12, 3))
    for i in range(12):
        c = np.where(R[i] > 0, 1.0, 0.01)
        U[i] = np.linalg.solve(one.V.T @ (c[:, None] * one.V) + 0.1 * np.eye(3), one.V.T @ (c * R[i]))
    assert not np.allclose(one.theta, theta0, atol=1e-3)
    np.testing.assert_allclose(two.U, U, rtol=1e-8)
    np.testing.assert_allclose(two.V, _dense_item_update(U, R, one.theta, 1.0, 0.01, 2.0), rtol=1e-8)


def test_ctr_objective_never_increases_with_topic_updates(planted):
    data, theta, fold = planted
    counts = ctr_counts(data.texts("abstract"), min_df=1)[0]
    _, beta = lda_topics(counts, n_topics=8, max_iter=30, seed=0, return_beta=True)
    for kwargs in ({"theta": theta, "beta": beta}, {}):  # from the topic model, and from random topics
        model = CTR(k=8, n_iter=6).fit(fold.train, counts=counts, **kwargs)
        assert np.all(np.diff(model.loss_history) <= 1e-9 * abs(model.loss_history[0]))
        np.testing.assert_allclose(model.theta.sum(axis=1), 1.0, atol=1e-9)
        assert np.isfinite(text_log_likelihood(model.theta, model.beta, counts))


def test_ctr_random_start_is_seeded(planted):
    data, _, fold = planted
    counts = ctr_counts(data.texts("abstract"), min_df=1)[0]
    a = CTR(k=8, n_iter=2, seed=4).fit(fold.train, counts=counts)
    b = CTR(k=8, n_iter=2, seed=4).fit(fold.train, counts=counts)
    c = CTR(k=8, n_iter=2, seed=5).fit(fold.train, counts=counts)
    np.testing.assert_array_equal(a.V, b.V)
    assert not np.allclose(a.V, c.V)


def test_ctr_rejects_mismatched_topics(planted):
    data, theta, fold = planted
    with pytest.raises(ValueError, match=r"theta must have shape \(n_papers, k\) = \(200, 5\), got \(200, 8\); fit lda"):
        CTR(k=5, n_iter=1).fit(fold.train, theta)


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, r"k \(number of topics and latent factors\) must be an integer >= 1, got 0"),
    ({"k": 2.5}, r"k \(number of topics and latent factors\) must be an integer >= 1, got 2.5"),
    ({"n_iter": 0}, r"n_iter must be an integer >= 1, got 0"),
    ({"lambda_u": -1}, r"lambda_u must be a finite number >= 0, got -1"),
    ({"lambda_v": 0}, r"lambda_v must be a finite number > 0, got 0"),
    ({"lambda_v": float("nan")}, r"lambda_v must be a finite number > 0, got nan"),
    ({"a": 0}, r"a \(confidence of a like\) must be a finite number > 0, got 0"),
    ({"b": -0.1}, r"b \(confidence of a non-like\) must be a finite number >= 0, got -0.1"),
    ({"a": 1.0, "b": 2.0}, r"b \(confidence of a non-like\) must be <= a = 1.0, got 2.0"),
    ({"eta": 0}, r"eta must be a finite number > 0, got 0"),
    ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
])
def test_ctr_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CTR(**kwargs)


def _fit_args():
    rng = np.random.default_rng(0)
    R = sp.csr_matrix((rng.random((6, 5)) < 0.5).astype(float))
    counts = sp.csr_matrix(rng.poisson(1.0, size=(5, 4)).astype(float))
    theta = rng.dirichlet(np.ones(2), size=5)
    beta = rng.dirichlet(np.ones(4), size=2)
    return R, theta, counts, beta


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "train_likes": np.ones(5)}, r"train_likes must be a 2-D \(n_users, n_papers\) matrix, got shape \(5,\)"),
    (lambda a: {**a, "train_likes": -a["train_likes"]}, r"train_likes must hold finite values >= 0"),
    (lambda a: {**a, "theta": None, "counts": None, "beta": None}, r"fit needs theta .* or counts"),
    (lambda a: {**a, "counts": None}, r"beta is only used together with counts="),
    (lambda a: {**a, "beta": None}, r"give theta and beta together"),
    (lambda a: {**a, "theta": a["theta"] * 2}, r"theta rows must be distributions"),
    (lambda a: {**a, "beta": a["beta"][:, :3]}, r"beta must have shape \(k, n_words\) = \(2, 4\), got \(2, 3\)"),
    (lambda a: {**a, "counts": a["counts"][:4]}, r"counts has 4 rows, expected one per paper \(5\)"),
    (lambda a: {**a, "counts": -a["counts"]}, r"counts must hold finite word counts >= 0"),
    (lambda a: {**a, "tags": sp.csr_matrix(np.ones((4, 3)))}, r"tags has 4 rows, expected one per paper \(5\)"),
])
def test_ctr_fit_refuses_bad_inputs_before_any_work(change, message):
    R, theta, counts, beta = _fit_args()
    args = change({"train_likes": R, "theta": theta, "counts": counts, "beta": beta})
    with pytest.raises(ValueError, match=message):
        CTR(k=2, n_iter=1).fit(**args)


def test_topic_model_helpers_refuse_bad_arguments():
    counts = sp.csr_matrix(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"n_topics must be an integer >= 1, got 0"):
        lda_topics(counts, n_topics=0)
    with pytest.raises(ValueError, match=r"doc_topic_prior must be a finite number > 0, got 0"):
        lda_topics(counts, n_topics=2, doc_topic_prior=0)
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1, got -1"):
        lda_topics(counts, n_topics=2, max_iter=-1)
    with pytest.raises(ValueError, match="counts is empty"):
        lda_topics(sp.csr_matrix((3, 4)), n_topics=2)
    with pytest.raises(ValueError, match=r"n_words must be an integer >= 1, got 0"):
        ctr_counts(["a text"], n_words=0)
    with pytest.raises(ValueError, match=r"min_df must be an integer >= 1, got 0"):
        ctr_counts(["a text"], min_df=0)
