"""Collaborative topic regression: text preprocessing, LDA, the ALS updates, cold-start scores."""
import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.ctr import CTR, ctr_counts, lda_topics
from course_lib.evaluation import evaluate_ranking
from course_lib.splits import cold_start_folds, tag_split
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


def test_ctr_recommends_cold_papers_from_their_topics(planted):
    data, theta, fold = planted
    model = CTR(k=8, n_iter=5).fit(fold.train, theta)
    cand = fold.test_papers
    res = evaluate_ranking(model.score_users(np.arange(data.n_users), cand), fold.test[:, cand], ks=(10,),
                           metrics=("recall",))
    # 40 cold papers: chance Recall@10 = 0.25
    assert res["Recall@10"] > 0.45


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


def test_ctr_rejects_mismatched_topics(planted):
    data, theta, fold = planted
    with pytest.raises(ValueError, match="theta has shape"):
        CTR(k=5, n_iter=1).fit(fold.train, theta)
    with pytest.raises(ValueError, match="k \\(number"):
        CTR(k=0)
