"""Collaborative topic regression (CTR; Wang and Blei, KDD 2011), the baseline of Ask the GRU.

Each paper gets topic proportions ``theta_j`` from LDA on its text; its latent vector is
``v_j = theta_j + eps_j`` with ``eps_j ~ N(0, lambda_v^-1 I)``, users ``u_i ~ N(0, lambda_u^-1 I)``,
and the likes are fitted with the confidence-weighted squared loss (``a`` on likes, ``b`` on the
rest). Alternating least squares solves for ``U`` and ``V`` in turn; the ``V`` step pulls each
``v_j`` towards ``theta_j`` (:func:`course_lib.baselines.als_update_items` with ``prior=theta``).

As in the authors' code by default, ``theta`` stays fixed at the LDA output (the joint update of
``theta`` is an option there and is left out here). Prediction: ``u_i . v_j`` for papers with
training likes (in-matrix) and ``u_i . theta_j`` for cold papers (out-of-matrix), Wang and Blei
section 4.3.

*CTR-MTL* (Bansal et al. 2016, section 4.1.1) adds tag factors ``s_l`` fitted to the paper-tag matrix
by the same weighted squared loss: the tags behave like extra users of the papers, so ALS rotates
among three blocks ``U``, ``S``, ``V``.

Defaults are the settings of Bansal et al. 2016, section 4.1.2 (from Wang and Blei): ``K = 200``,
``lambda_u = 0.01``, ``lambda_v = 100``, ``a = 1``, ``b = 0.01``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from course_lib.baselines import als_update_items, als_update_users, wmf_loss
from course_lib.data import check_ids


def ctr_counts(texts, n_words: int = 8000, min_df: int = 2) -> tuple[sp.csr_matrix, list[str]]:
    """Bag-of-words counts for the topic model: ``(n_docs, n_kept)`` and the kept words.

    CTR "is sensitive to good pre-processing" (Bansal et al. 4.1.2): as for the CiteULike-a
    release, stop words and numbers are removed and the ``n_words`` words with the highest total
    TF-IDF (``collection frequency * idf``) are kept (8,000 in the released ``vocabulary.dat``).
    Words in fewer than ``min_df`` documents cannot inform a topic and are dropped first.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from course_lib.text import NUM, tokenize

    docs = [[w for w in tokenize(t) if w != NUM and len(w) > 1 and w not in ENGLISH_STOP_WORDS] for t in texts]
    if not docs:
        raise ValueError("ctr_counts got no documents")
    index: dict[str, int] = {}
    rows, cols = [], []
    for i, doc in enumerate(docs):
        for w in doc:
            rows.append(i)
            cols.append(index.setdefault(w, len(index)))
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(docs), len(index)))
    counts.sum_duplicates()
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    cf = np.asarray(counts.sum(axis=0)).ravel()
    score = np.where(df >= min_df, cf * np.log(len(docs) / np.maximum(df, 1)), -np.inf)
    keep = np.argsort(-score, kind="stable")[:n_words]
    keep = np.sort(keep[np.isfinite(score[keep])])
    if keep.size == 0:
        raise ValueError(f"no word occurs in >= {min_df} documents; lower min_df or give more text")
    words = np.array(list(index))[keep].tolist()
    return sp.csr_matrix(counts[:, keep]), words


def lda_topics(counts, n_topics: int = 200, max_iter: int = 20, seed: int = 0) -> np.ndarray:
    """Topic proportions ``theta`` ``(n_docs, n_topics)`` (rows sum to 1) from scikit-learn's
    variational LDA (batch updates). Documents without a kept word get the uniform vector."""
    from sklearn.decomposition import LatentDirichletAllocation

    counts = sp.csr_matrix(counts)
    if counts.shape[0] == 0 or counts.nnz == 0:
        raise ValueError("counts is empty: the topic model needs documents with words")
    lda = LatentDirichletAllocation(n_components=n_topics, learning_method="batch", max_iter=max_iter,
                                    random_state=seed)
    theta = lda.fit_transform(counts)
    return (theta / theta.sum(axis=1, keepdims=True)).astype(np.float64)


class CTR:
    """Collaborative topic regression with fixed LDA topics; CTR-MTL when ``fit`` gets ``tags``.

    After ``fit``: ``U`` ``(n_users, k)``, ``V`` ``(n_papers, k)``, ``S`` ``(n_tags, k)`` or None,
    ``warm`` (papers with a training like) and ``loss_history`` (the CTR objective after each
    iteration; ALS never increases it).
    """

    def __init__(self, k: int = 200, lambda_u: float = 0.01, lambda_v: float = 100.0, a: float = 1.0,
                 b: float = 0.01, n_iter: int = 10):
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k (number of topics and latent factors) must be a positive int, got {k!r}")
        if not isinstance(n_iter, (int, np.integer)) or n_iter <= 0:
            raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
        self.k, self.lambda_u, self.lambda_v, self.a, self.b, self.n_iter = k, lambda_u, lambda_v, a, b, n_iter
        self.U = self.V = self.S = self.theta = self.warm = None
        self.loss_history: list[float] = []

    def fit(self, train_likes, theta, tags=None) -> "CTR":
        """``train_likes`` ``(n_users, n_papers)``; ``theta`` ``(n_papers, k)`` from :func:`lda_topics`;
        ``tags`` ``(n_papers, n_tags)`` training tags for CTR-MTL (leave out the test papers' tags)."""
        R = sp.csr_matrix(train_likes, dtype=np.float64)
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (R.shape[1], self.k):
            raise ValueError(f"theta has shape {theta.shape}, expected (n_papers={R.shape[1]}, k={self.k}); "
                             "fit lda_topics with n_topics=k on the papers' text")
        n_users = R.shape[0]
        if tags is not None:
            tags = sp.csr_matrix(tags, dtype=np.float64)
            if tags.shape[0] != R.shape[1]:
                raise ValueError(f"tags has {tags.shape[0]} rows, expected one per paper ({R.shape[1]})")
            R = sp.vstack([R, tags.T]).tocsr()  # tags act as extra users of the papers
        V = theta.copy()  # "we initialized CTR with the output of a topic model"
        self.loss_history = []
        for _ in range(self.n_iter):
            U = als_update_users(V, R, self.a, self.b, self.lambda_u)
            V = als_update_items(U, R, self.a, self.b, self.lambda_v, prior=theta)
            self.loss_history.append(wmf_loss(U, V, R, self.a, self.b, self.lambda_u, self.lambda_v, prior=theta))
        self.U, self.S = U[:n_users], (U[n_users:] if tags is not None else None)
        self.V, self.theta = V, theta
        self.warm = np.asarray(sp.csr_matrix(train_likes).sum(axis=0)).ravel() > 0
        return self

    def item_factors(self) -> np.ndarray:
        """``v_j`` for warm papers, ``theta_j`` for cold ones (out-of-matrix prediction)."""
        if self.V is None:
            raise ValueError("CTR is not fitted yet: call .fit(...) first")
        return np.where(self.warm[:, None], self.V, self.theta)

    def score_users(self, users, papers=None) -> np.ndarray:
        """``(len(users), len(papers))`` scores (all papers by default)."""
        V = self.item_factors()
        users = check_ids(users, self.U.shape[0], "user")
        papers = np.arange(V.shape[0]) if papers is None else check_ids(papers, V.shape[0], "paper")
        return self.U[users] @ V[papers].T

    def tag_scores(self, papers) -> np.ndarray:
        """CTR-MTL tag scores ``v_j . s_l``: ``(len(papers), n_tags)``."""
        if self.S is None:
            raise ValueError("this CTR was fitted without tags; pass tags= to fit for CTR-MTL")
        V = self.item_factors()
        return V[check_ids(papers, V.shape[0], "paper")] @ self.S.T
