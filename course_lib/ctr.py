"""Collaborative topic regression (CTR; Wang and Blei, KDD 2011), the baseline of Ask the GRU.

The model (Wang and Blei, section 3): paper ``j`` has topic proportions ``theta_j`` (LDA on its
text, topics ``beta``) and a latent vector ``v_j = theta_j + eps_j`` with
``eps_j ~ N(0, lambda_v^-1 I)``; users ``u_i ~ N(0, lambda_u^-1 I)``; likes are fitted with the
confidence-weighted squared loss (``a`` on likes, ``b`` on the rest). Learning maximises

    L = - lambda_u/2 sum_i |u_i|^2 - lambda_v/2 sum_j |v_j - theta_j|^2
        + sum_j sum_n log(sum_k theta_jk beta_k,w_jn) - sum_ij c_ij/2 (r_ij - u_i . v_j)^2

(the paper sets the Dirichlet parameter to 1, so no prior term on ``theta``) by coordinate ascent.
One iteration of :meth:`CTR.fit`:

1. users: ``u_i = (V C_i V^T + lambda_u I)^-1 V C_i R_i``;
2. papers: ``v_j = (U C_j U^T + lambda_v I)^-1 (U C_j R_j + lambda_v theta_j)`` (both by
   :func:`course_lib.baselines.als_update_users` / ``als_update_items``);
3. topic proportions (:func:`update_topics`): ``phi_jwk ∝ theta_jk beta_kw``, then one projected
   gradient step on ``sum_k gamma_jk log theta_jk - lambda_v/2 |v_j - theta_j|^2`` over the simplex,
   with ``gamma_jk = sum_w n_jw phi_jwk``; this is what pulls a paper's topics towards what its
   readers like;
4. topics: ``beta_kw ∝ eta + sum_j n_jw phi_jwk`` (the M-step of LDA).

Steps 3-4 run when ``fit`` gets the word counts (``counts=``); without them ``theta`` stays fixed
(the default of the authors' code). The paper leaves the
details of the gradient step open; they follow cornac's CTR: the step is rescaled to an L1 length
of at most 1, projected onto the simplex (Duchi et al. 2008), and halved from 1/2 until the
objective rises enough (Armijo); ``beta`` is smoothed by ``eta = 0.01``. Where to start: the
output of a topic model (the paper, :func:`lda_topics` with ``return_beta=True``) or random
proportions and topics (cornac, ``theta=None``).

Prediction (section 4.3): ``u_i . v_j`` for papers with training likes (in-matrix) and
``u_i . theta_j`` for papers without (out-of-matrix, cold start).

*CTR-MTL* (Bansal et al. 2016, section 4.1.1) adds tag factors ``s_l`` fitted to the paper-tag matrix
by the same weighted squared loss: the tags behave like extra users of the papers, so ALS rotates
among three blocks ``U``, ``S``, ``V``.

Defaults are the settings of Bansal et al. 2016, section 4.1.2 (from Wang and Blei): ``K = 200``,
``lambda_u = 0.01``, ``lambda_v = 100``, ``a = 1``, ``b = 0.01``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from course_lib.baselines import als_update_items, als_update_users, binary_likes, check_confidences, wmf_loss
from course_lib.data import check_ids
from course_lib.validation import check_finite, check_int, check_nonnegative, check_positive, check_shape


def ctr_counts(texts, n_words: int = 8000, min_df: int = 2) -> tuple[sp.csr_matrix, list[str]]:
    """Bag-of-words counts for the topic model: ``(n_docs, n_kept)`` and the kept words.

    CTR "is sensitive to good pre-processing" (Bansal et al. 4.1.2): as for the CiteULike-a
    release, stop words and numbers are removed and the ``n_words`` words with the highest total
    TF-IDF (``collection frequency * idf``) are kept (8,000 in the released ``vocabulary.dat``).
    Words in fewer than ``min_df`` documents cannot inform a topic and are dropped first.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    from course_lib.text import NUM, tokenize

    n_words = check_int("n_words", n_words)
    min_df = check_int("min_df", min_df)
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


def lda_topics(counts, n_topics: int = 200, max_iter: int = 20, seed: int = 0, doc_topic_prior: float = 1.0,
               return_beta: bool = False):
    """Topic proportions ``theta`` ``(n_docs, n_topics)`` (rows sum to 1) from scikit-learn's
    variational LDA (batch updates); with ``return_beta`` also the topics ``beta``
    ``(n_topics, n_words)`` (rows sum to 1), to start :meth:`CTR.fit` with ``counts=``.

    ``doc_topic_prior`` is the Dirichlet parameter of the proportions. CTR's model sets it to 1
    (Wang and Blei, section 3); scikit-learn's default, ``1 / n_topics``, makes each paper's
    ``theta`` nearly one-hot (on CiteULike title + abstract with K = 200, the largest proportion
    averaged 0.77), which pins ``v_j`` to a single topic at ``lambda_v = 100``: warm-start
    Recall@50 fell from 0.535 to 0.117 (fold 0, ``benchmarks/results/ctr_cornac.md``).
    Documents without a kept word get the prior mean, the uniform vector.
    """
    from sklearn.decomposition import LatentDirichletAllocation

    n_topics = check_int("n_topics", n_topics)
    max_iter = check_int("max_iter", max_iter)
    seed = check_int("seed", seed, minimum=0)
    doc_topic_prior = check_positive("doc_topic_prior", doc_topic_prior)
    counts = _check_counts(counts)
    if counts.nnz == 0:
        raise ValueError("counts is empty: the topic model needs documents with words")
    lda = LatentDirichletAllocation(n_components=n_topics, doc_topic_prior=doc_topic_prior, learning_method="batch",
                                    max_iter=max_iter, random_state=seed)
    theta = lda.fit_transform(counts)
    theta = (theta / theta.sum(axis=1, keepdims=True)).astype(np.float64)
    if not return_beta:
        return theta
    return theta, lda.components_ / lda.components_.sum(axis=1, keepdims=True)


def _check_counts(counts, n_docs: int | None = None) -> sp.csr_matrix:
    if not sp.issparse(counts):
        counts = np.asarray(counts)
        if counts.ndim != 2:
            raise ValueError(f"counts must be a 2-D (n_docs, n_words) matrix of word counts, got shape {counts.shape}")
    counts = sp.csr_matrix(counts, dtype=np.float64)
    if n_docs is not None and counts.shape[0] != n_docs:
        raise ValueError(f"counts has {counts.shape[0]} rows, expected one per paper ({n_docs})")
    if counts.nnz and (not np.all(np.isfinite(counts.data)) or counts.data.min() < 0):
        raise ValueError("counts must hold finite word counts >= 0 (from ctr_counts)")
    counts.sum_duplicates()
    counts.eliminate_zeros()
    return counts


def _check_proportions(name: str, x, shape: tuple, meaning: str, hint: str) -> np.ndarray:
    """``x`` as float64 of ``shape`` whose rows are distributions (>= 0, summing to 1)."""
    x = np.asarray(x, dtype=np.float64)
    try:
        check_shape(name, x.shape, shape, meaning)
    except ValueError as err:
        raise ValueError(f"{err}; {hint}") from None
    if not np.all(np.isfinite(x)) or x.min(initial=0.0) < 0 or not np.allclose(x.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError(f"{name} rows must be distributions (entries >= 0 summing to 1); {hint}")
    return x


def project_to_simplex(x: np.ndarray) -> np.ndarray:
    """Euclidean projection of every row of ``x`` ``(n, k)`` onto the probability simplex
    (Duchi, Shalev-Shwartz, Singer and Chandra 2008, figure 1)."""
    x = np.asarray(x, dtype=np.float64)
    desc = -np.sort(-x, axis=1)  # (n, k)
    excess = np.cumsum(desc, axis=1) - 1.0
    kept = (desc - excess / np.arange(1, x.shape[1] + 1) > 0).sum(axis=1)  # >= 1 per row
    tau = excess[np.arange(x.shape[0]), kept - 1] / kept
    return np.maximum(x - tau[:, None], 0.0)


def _word_probabilities(theta: np.ndarray, beta_t: np.ndarray, counts: sp.csr_matrix, block: int = 20_000):
    """``p_jw = sum_k theta_jk beta_kw`` for every stored ``(j, w)`` of ``counts`` ``(nnz,)``, in blocks
    of entries so that no ``(nnz, k)`` array is built at once."""
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    p = np.empty(counts.nnz)
    for s in range(0, counts.nnz, block):
        sl = slice(s, s + block)
        p[sl] = np.einsum("ik,ik->i", theta[rows[sl]], beta_t[counts.indices[sl]])
    return p


def text_log_likelihood(theta: np.ndarray, beta: np.ndarray, counts) -> float:
    """``sum_j sum_w n_jw log(sum_k theta_jk beta_kw)``: the text term of the CTR objective."""
    counts = _check_counts(counts)
    p = _word_probabilities(np.asarray(theta, dtype=np.float64), np.asarray(beta, dtype=np.float64).T, counts)
    with np.errstate(divide="ignore"):
        return float(np.sum(counts.data * np.log(p)))


def _simplex_objective(theta, gamma, V, lambda_v):
    """``sum_k gamma_k log theta_k - lambda_v/2 |v - theta|^2`` per row, with ``0 log 0 = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        text = np.where(gamma > 0, gamma * np.log(theta), 0.0)
    return text.sum(axis=1) - 0.5 * lambda_v * np.sum((V - theta) ** 2, axis=1)


def update_topics(theta, beta, V, counts, lambda_v: float = 100.0, eta: float = 0.01, max_halvings: int = 30):
    """One pass of steps 3-4 of CTR (module docstring): new ``(theta, beta)``.

    ``theta`` ``(n_docs, k)`` and ``beta`` ``(k, n_words)`` are distributions per row, ``V``
    ``(n_docs, k)`` the paper vectors, ``counts`` ``(n_docs, n_words)``. The E-step never builds
    ``phi``: with ``Q_jw = n_jw / p_jw``, ``gamma = theta * (Q beta^T)`` and the topic statistics are
    ``beta * (theta^T Q)``. A row whose step does not raise its objective keeps its ``theta``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    beta_t = np.asarray(beta, dtype=np.float64).T  # (n_words, k)
    counts = sp.csr_matrix(counts)
    p = _word_probabilities(theta, beta_t, counts)
    Q = sp.csr_matrix((counts.data / p, counts.indices, counts.indptr), shape=counts.shape)
    gamma = theta * np.asarray(Q @ beta_t)  # (n_docs, k) expected topic counts per paper
    stats = beta_t * np.asarray(Q.T @ theta)  # (n_words, k) expected word counts per topic

    with np.errstate(divide="ignore", invalid="ignore"):
        grad = np.where(theta > 0, gamma / theta, 0.0) + lambda_v * (V - theta)  # (n_docs, k)
    grad /= np.maximum(np.abs(grad).sum(axis=1, keepdims=True), 1.0)
    direction = project_to_simplex(theta + grad) - theta  # stays in the simplex for steps in [0, 1]
    f_old = _simplex_objective(theta, gamma, V, lambda_v)
    slope = np.sum(grad * direction, axis=1)
    new, step = theta.copy(), np.full(theta.shape[0], 0.5)
    todo = np.flatnonzero(slope > 0)
    for _ in range(max_halvings):
        if todo.size == 0:
            break
        cand = theta[todo] + step[todo, None] * direction[todo]
        ok = _simplex_objective(cand, gamma[todo], V[todo], lambda_v) >= f_old[todo] + 0.5 * step[todo] * slope[todo]
        new[todo[ok]] = cand[ok]
        step[todo[~ok]] *= 0.5
        todo = todo[~ok]
    beta_t = stats + eta
    return new, (beta_t / beta_t.sum(axis=0)).T


class CTR:
    """Collaborative topic regression; CTR-MTL when ``fit`` gets ``tags``.

    After ``fit``: ``U`` ``(n_users, k)``, ``V`` ``(n_papers, k)``, ``theta`` ``(n_papers, k)``,
    ``beta`` ``(k, n_words)`` or None (fixed topics), ``S`` ``(n_tags, k)`` or None, ``warm`` (papers
    with a training like) and ``loss_history``: minus the objective ``L`` of the module docstring
    after each iteration (plus ``- eta sum log beta``, the smoothing of the topics), which coordinate
    ascent never increases.
    """

    def __init__(self, k: int = 200, lambda_u: float = 0.01, lambda_v: float = 100.0, a: float = 1.0,
                 b: float = 0.01, n_iter: int = 10, eta: float = 0.01, seed: int = 0):
        self.k = check_int("k (number of topics and latent factors)", k)
        self.n_iter = check_int("n_iter", n_iter)
        self.lambda_u = check_nonnegative("lambda_u", lambda_u)
        self.lambda_v = check_positive("lambda_v", lambda_v)
        self.a, self.b = check_confidences(a, b)
        self.eta = check_positive("eta", eta)
        self.seed = check_int("seed", seed, minimum=0)
        self.U = self.V = self.S = self.theta = self.beta = self.warm = None
        self.loss_history: list[float] = []

    def fit(self, train_likes, theta=None, tags=None, counts=None, beta=None) -> "CTR":
        """Fit by coordinate ascent (module docstring).

        ``train_likes`` ``(n_users, n_papers)``; ``theta`` ``(n_papers, k)`` topic proportions;
        ``tags`` ``(n_papers, n_tags)`` training tags for CTR-MTL (leave out the test papers' tags);
        ``counts`` ``(n_papers, n_words)`` word counts (:func:`ctr_counts`) to update ``theta`` and the
        topics ``beta`` ``(k, n_words)`` as the paper does. Three ways to call it:

        * ``fit(R, theta)``: fixed topic proportions;
        * ``fit(R, theta, counts=counts, beta=beta)``: start from a topic model
          (``lda_topics(counts, k, return_beta=True)``) and update both;
        * ``fit(R, counts=counts)``: start from random proportions and topics (seeded), as cornac does.
        """
        R = binary_likes(train_likes)
        n_users, n_papers = R.shape
        if counts is None:
            if theta is None:
                raise ValueError("fit needs theta (fixed topic proportions) or counts (word counts, to learn them)")
            if beta is not None:
                raise ValueError("beta is only used together with counts= (the word counts of the papers)")
        else:
            counts = _check_counts(counts, n_papers)
            if (theta is None) != (beta is None):
                raise ValueError("give theta and beta together (lda_topics(counts, k, return_beta=True)), or neither "
                                 "to start from random topics")
        if theta is None:
            rng = np.random.default_rng(self.seed)
            theta = rng.random((n_papers, self.k))
            theta /= theta.sum(axis=1, keepdims=True)
            beta = rng.random((self.k, counts.shape[1]))
            beta /= beta.sum(axis=1, keepdims=True)
        hint = "fit lda_topics with n_topics=k on the papers' text"
        theta = _check_proportions("theta", theta, (n_papers, self.k), "(n_papers, k)", hint)
        if counts is not None:
            beta = _check_proportions("beta", beta, (self.k, counts.shape[1]), "(k, n_words)",
                                      "use lda_topics(counts, k, return_beta=True)")
        if tags is not None:
            tags = binary_likes(tags, "tags")
            if tags.shape[0] != n_papers:
                raise ValueError(f"tags has {tags.shape[0]} rows, expected one per paper ({n_papers})")
            R = sp.vstack([R, tags.T]).tocsr()  # tags act as extra users of the papers

        V = theta.copy()  # "we initialized CTR with the output of a topic model"
        self.loss_history = []
        for it in range(self.n_iter):
            U = als_update_users(V, R, self.a, self.b, self.lambda_u)
            V = als_update_items(U, R, self.a, self.b, self.lambda_v, prior=theta)
            if counts is not None:
                theta, beta = update_topics(theta, beta, V, counts, self.lambda_v, self.eta)
            loss = 0.5 * wmf_loss(U, V, R, self.a, self.b, self.lambda_u, self.lambda_v, prior=theta)
            if counts is not None:
                loss -= text_log_likelihood(theta, beta, counts) + self.eta * float(np.sum(np.log(beta)))
            self.loss_history.append(check_finite(loss, where=f"CTR iteration {it + 1}",
                                                  cause="check the likes and counts for huge values"))
        self.U, self.S = U[:n_users], (U[n_users:] if tags is not None else None)
        self.V, self.theta, self.beta = V, theta, beta
        self.warm = np.diff(sp.csc_matrix(R[:n_users]).indptr) > 0
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
