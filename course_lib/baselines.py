"""Baselines for paper recommendation on CiteULike (numpy/scipy, no deep learning framework).

* ``PopularityFlip``: for a paper, recommend the users with the most training likes (the flip
  scenario of the RecSys Summer School 2017 hands-on task).
* ``PopularityItems``: for a user, recommend the most liked papers (warm start).
* ``ContentKNN``: cosine similarity of TF-IDF vectors between a paper and a user's papers; works for
  cold-start papers.
* ``WMF``: weighted matrix factorisation by alternating least squares (Hu, Koren and Volinsky 2008,
  "Collaborative filtering for implicit feedback datasets"), in the notation ``a``/``b``/
  ``lambda_u``/``lambda_v`` of Wang and Blei 2011 (collaborative topic regression, the baseline
  Bansal et al. 2016 compare against). The half-steps ``als_update_users`` and ``als_update_items``
  are reused by collaborative topic regression (``course_lib.ctr``).

Every class has ``fit(...) -> self`` and scoring methods that return dense numpy arrays; the
evaluation lives in ``course_lib.evaluation``.
"""
from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve

from .data import check_ids
from .validation import check_int, check_nonnegative, check_positive


def binary_likes(likes, what: str = "train_likes") -> sp.csr_matrix:
    """``likes`` as a float64 csr matrix of ones (every stored non-zero is a like).

    Refuses anything but a 2-D matrix of finite values >= 0, since a negative or NaN "like" would
    otherwise silently count as one."""
    if not sp.issparse(likes):
        likes = np.asarray(likes)
        if likes.ndim != 2:
            raise ValueError(f"{what} must be a 2-D (n_users, n_papers) matrix, got shape {likes.shape}")
        if not np.issubdtype(likes.dtype, np.number) and likes.dtype != bool:
            raise ValueError(f"{what} must hold numbers (1 = like), got dtype {likes.dtype}")
    out = sp.csr_matrix(likes, dtype=np.float64, copy=True)
    out.sum_duplicates()
    if out.nnz and (not np.all(np.isfinite(out.data)) or out.data.min() < 0):
        raise ValueError(f"{what} must hold finite values >= 0 (1 = like, 0 = no like)")
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def check_confidences(a, b) -> tuple[float, float]:
    """``(a, b)`` as floats if ``a > 0`` and ``0 <= b <= a`` (a like weighs at least as much as a non-like)."""
    a = check_positive("a (confidence of a like)", a)
    b = check_nonnegative("b (confidence of a non-like)", b)
    if b > a:
        raise ValueError(f"b (confidence of a non-like) must be <= a = {a}, got {b}")
    return a, b


def _check_fitted(model, attr: str) -> None:
    if getattr(model, attr, None) is None:
        raise ValueError(f"{type(model).__name__} is not fitted yet: call .fit(...) first")


class PopularityFlip:
    """Score of user ``u`` for any paper = number of papers ``u`` liked in training.

    The same ranking of users is returned for every paper: active users first.
    """

    def __init__(self):
        self.user_counts = None

    def fit(self, train_likes) -> "PopularityFlip":
        likes = binary_likes(train_likes)
        self.n_papers = likes.shape[1]
        self.user_counts = np.asarray(likes.sum(axis=1)).ravel()  # (n_users,)
        return self

    def score(self, papers) -> np.ndarray:
        """``(len(papers), n_users)`` scores."""
        _check_fitted(self, "user_counts")
        papers = check_ids(papers, self.n_papers, "paper")
        return np.tile(self.user_counts, (papers.size, 1))


class PopularityItems:
    """Score of paper ``p`` for any user = number of training users who liked ``p`` (warm start).

    Cold-start papers have no training like, so they all score 0 and tie at the bottom: popularity
    carries no information about them and should not be used as a cold-start baseline (use
    ``ContentKNN`` there).
    """

    def __init__(self):
        self.paper_counts = None

    def fit(self, train_likes) -> "PopularityItems":
        likes = binary_likes(train_likes)
        self.n_users = likes.shape[0]
        self.paper_counts = np.asarray(likes.sum(axis=0)).ravel()  # (n_papers,)
        return self

    def score(self, users) -> np.ndarray:
        """``(len(users), n_papers)`` scores."""
        _check_fitted(self, "paper_counts")
        users = check_ids(users, self.n_users, "user")
        return np.tile(self.paper_counts, (users.size, 1))


class ContentKNN:
    """Content-based nearest neighbours on TF-IDF vectors.

    With ``k=None``: score(u, p) = mean over the user's training papers q of cos(p, q). With ``k``:
    the sum of the ``k`` largest cos(p, q) over the user's papers (all of them when the user has
    fewer than ``k``). Users without training papers score 0 everywhere. Only the text of ``p`` is
    used, so cold-start papers are scored like any other.
    """

    def __init__(self, k: int | None = None):
        self.k = None if k is None else check_int("k (neighbours; None = mean over all of a user's papers)", k)
        self.X = None

    def fit(self, train_likes, tfidf) -> "ContentKNN":
        likes = binary_likes(train_likes)
        if not sp.issparse(tfidf):
            tfidf = np.asarray(tfidf)
        if len(tfidf.shape) != 2:
            raise ValueError(f"tfidf must be a 2-D (n_papers, vocabulary) matrix, got shape {tfidf.shape}")
        if tfidf.shape[0] != likes.shape[1]:
            raise ValueError(
                f"tfidf has {tfidf.shape[0]} rows but train_likes has {likes.shape[1]} papers; "
                "tfidf must be (n_papers, vocabulary) with one row per like-matrix column"
            )
        X = sp.csr_matrix(tfidf, dtype=np.float64, copy=True)
        if X.nnz and not np.all(np.isfinite(X.data)):
            raise ValueError("tfidf contains NaN or infinite weights; check the text features")
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        # papers without any known word keep a zero vector: cosine 0 with everything
        X = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ X
        self.X = sp.csr_matrix(X)  # (n_papers, V), unit rows
        self.likes = likes
        counts = np.asarray(likes.sum(axis=1)).ravel()
        # (n_users, V): mean of the user's unit paper vectors, so profile @ x_p = mean cosine
        self.profiles = sp.csr_matrix(sp.diags(1.0 / np.maximum(counts, 1.0)) @ likes @ self.X)
        return self

    def _block(self, users: np.ndarray, papers: np.ndarray) -> np.ndarray:
        """``(len(users), len(papers))`` scores."""
        if self.k is None:
            return np.asarray((self.profiles[users] @ self.X[papers].T).todense())
        out = np.zeros((users.size, papers.size))
        libs = [self.likes.indices[self.likes.indptr[u] : self.likes.indptr[u + 1]] for u in users]
        if users.size <= papers.size:
            # few users (warm/cold start): each user's papers against the candidate papers
            Xp = self.X[papers]
            for row, lib in enumerate(libs):
                if lib.size:
                    out[row] = self._top_k_sum(np.asarray((self.X[lib] @ Xp.T).todense()), axis=0)
            return out
        # many users (flip): similarities of a block of papers to every paper, then each library
        for start in range(0, papers.size, 256):
            block = slice(start, start + 256)
            sims = np.asarray((self.X[papers[block]] @ self.X.T).todense())  # (<=256, n_papers)
            for row, lib in enumerate(libs):
                if lib.size:
                    out[row, block] = self._top_k_sum(sims[:, lib], axis=1)
        return out

    def _top_k_sum(self, sims: np.ndarray, axis: int) -> np.ndarray:
        """Sum of the ``k`` largest similarities along ``axis`` (all of them if there are fewer)."""
        if sims.shape[axis] > self.k:
            sims = -np.partition(-sims, self.k - 1, axis=axis).take(np.arange(self.k), axis=axis)
        return sims.sum(axis=axis)

    def score_users(self, users) -> np.ndarray:
        """``(len(users), n_papers)`` scores (warm and cold start)."""
        _check_fitted(self, "X")
        users = check_ids(users, self.likes.shape[0], "user")
        return self._block(users, np.arange(self.likes.shape[1]))

    def score_papers(self, papers) -> np.ndarray:
        """``(len(papers), n_users)`` scores (flip scenario)."""
        _check_fitted(self, "X")
        papers = check_ids(papers, self.likes.shape[1], "paper")
        return self._block(np.arange(self.likes.shape[0]), papers).T


# --------------------------------------------------------------------------- WMF by ALS


def _als_half_step(Y: np.ndarray, R: sp.csr_matrix, a: float, b: float, lam: float, prior=None, block: int = 256):
    """Solve every row x_i of ``argmin sum_j c_ij (r_ij - x_i.y_j)^2 + lam ||x_i - prior_i||^2``.

    x_i = (B + (a - b) Y_i^T Y_i)^-1 (a Y_i^T 1 + lam prior_i) with B = b Y^T Y + lam I and Y_i the
    rows of ``Y`` observed in row i of ``R``. The trick of Hu et al. 2008: Y^T C_i Y =
    b Y^T Y + (a - b) Y_i^T Y_i, so B is shared and each row only touches its observed entries.

    Rows with at most k/2 observations (most papers and users in CiteULike) skip the k x k solve:
    by the Woodbury identity, with W = Y B^-1 and z = B^-1 rhs_i,
    x_i = z - W_i^T (I / (a - b) + W_i Y_i^T)^-1 Y_i z, an n_obs x n_obs system. Both paths give
    the same closed form; the other rows are solved in batches of ``block`` k x k systems.
    """
    with _single_threaded_blas():
        return _solve_rows(Y, R, a, b, lam, prior, block)


def _single_threaded_blas():
    """Thousands of small k x k products and solves run faster on one BLAS thread: on a busy
    2-core machine a threaded BLAS made one half-step 3-60x slower in our measurements."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it, BLAS keeps its own thread count
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _solve_rows(Y, R, a, b, lam, prior, block):
    n, k = R.shape[0], Y.shape[1]
    n_obs = np.diff(R.indptr)
    base = b * (Y.T @ Y) + lam * np.eye(k)  # (k, k) = B
    rhs = a * np.asarray(R @ Y)  # (n, k): a Y_i^T 1 for every row at once
    if prior is not None:
        rhs += lam * prior
    X = np.empty((n, k))

    # B is positive definite only when lam > 0; otherwise every row takes the direct solve.
    low = (n_obs <= k // 2) if lam > 0 else np.zeros(n, dtype=bool)
    if low.any():
        B_chol = cho_factor(base)
        W = cho_solve(B_chol, Y.T).T  # (n_y, k) = Y B^-1
        Z = cho_solve(B_chol, rhs[low].T).T  # (n_low, k) = B^-1 rhs_i
        if a > b:
            rows_low = np.flatnonzero(low)
            for pos in np.flatnonzero(n_obs[rows_low] > 0):
                idx = R.indices[R.indptr[rows_low[pos]] : R.indptr[rows_low[pos] + 1]]
                Wi, Yi = W[idx], Y[idx]  # (n_obs, k)
                S = np.eye(idx.size) / (a - b) + Wi @ Yi.T  # (n_obs, n_obs)
                Z[pos] -= Wi.T @ np.linalg.solve(S, Yi @ Z[pos])
        X[low] = Z

    direct = np.flatnonzero(~low)
    for start in range(0, direct.size, block):
        rows = direct[start : start + block]
        A = np.repeat(base[None], rows.size, axis=0)  # (block, k, k)
        for j, i in enumerate(rows):
            Yi = Y[R.indices[R.indptr[i] : R.indptr[i + 1]]]  # (n_obs, k)
            A[j] += (a - b) * (Yi.T @ Yi)
        try:
            X[rows] = np.linalg.solve(A, rhs[rows][..., None])[..., 0]
        except np.linalg.LinAlgError:
            raise ValueError(
                f"a least-squares system is singular (lambda={lam}, b={b}): a row with few "
                "observations is underdetermined without regularisation; use lambda > 0"
            ) from None
    return X


def als_update_users(V: np.ndarray, R, a: float = 1.0, b: float = 0.01, lambda_u: float = 0.01) -> np.ndarray:
    """User half-step of WMF (Wang and Blei 2011, the update of u_i): ``U`` ``(n_users, k)`` given ``V``.

    ``R`` is the binary ``(n_users, n_items)`` like matrix (non-zeros count as 1).
    """
    a, b = check_confidences(a, b)
    lambda_u = check_nonnegative("lambda_u", lambda_u)
    R = binary_likes(R, "R")
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2 or V.shape[0] != R.shape[1]:
        raise ValueError(f"V must be (n_items={R.shape[1]}, k), got shape {V.shape}")
    return _als_half_step(V, R, a, b, lambda_u)


def als_update_items(U: np.ndarray, R, a: float = 1.0, b: float = 0.01, lambda_v: float = 0.01, prior=None) -> np.ndarray:
    """Item half-step (Wang and Blei 2011, the update of v_j): ``V`` ``(n_items, k)`` given ``U``.

    V_j = (U^T C_j U + lambda_v I)^-1 (U^T C_j r_j + lambda_v prior_j). ``prior`` ``(n_items, k)`` is
    the per-item mean (the topic proportions theta_j in CTR); ``None`` means a zero prior (plain WMF).
    """
    a, b = check_confidences(a, b)
    lambda_v = check_nonnegative("lambda_v", lambda_v)
    R = binary_likes(R, "R")
    U = np.asarray(U, dtype=np.float64)
    if U.ndim != 2 or U.shape[0] != R.shape[0]:
        raise ValueError(f"U must be (n_users={R.shape[0]}, k), got shape {U.shape}")
    if prior is not None:
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (R.shape[1], U.shape[1]):
            raise ValueError(f"prior must be (n_items={R.shape[1]}, k={U.shape[1]}), got shape {prior.shape}")
    return _als_half_step(U, sp.csr_matrix(R.T), a, b, lambda_v, prior)


def wmf_loss(U, V, R, a=1.0, b=0.01, lambda_u=0.01, lambda_v=0.01, prior=None) -> float:
    """sum_ij c_ij (r_ij - u_i.v_j)^2 + lambda_u sum ||u_i||^2 + lambda_v sum ||v_j - prior_j||^2,

    computed without the dense ``(n_users, n_items)`` matrix: the sum of b (u_i.v_j)^2 over all
    pairs is b * <U^T U, V^T V>, and observed pairs are corrected one by one.
    """
    R = binary_likes(R, "R")
    rows, cols = R.nonzero()
    pred = np.einsum("ij,ij->i", U[rows], V[cols])  # (nnz,)
    loss = b * float(np.sum((U.T @ U) * (V.T @ V)))
    loss += float(np.sum(a * (1.0 - pred) ** 2 - b * pred**2))
    loss += lambda_u * float(np.sum(U**2))
    loss += lambda_v * float(np.sum((V - (0.0 if prior is None else prior)) ** 2))
    return loss


class WMF:
    """Weighted matrix factorisation for implicit feedback, trained by ALS.

    Confidence ``a`` on observed likes and ``b`` on the rest; ``k`` latent factors. After ``fit``,
    ``U`` is ``(n_users, k)``, ``V`` ``(n_papers, k)`` and ``loss_history`` holds ``wmf_loss`` after
    every iteration (ALS never increases it). Papers without a training like get ``V_j = 0``, so
    WMF cannot rank cold-start papers.
    """

    def __init__(self, k=200, lambda_u=0.01, lambda_v=0.01, a=1.0, b=0.01, n_iter=10, seed=0):
        self.k = check_int("k (number of latent factors)", k)
        self.n_iter = check_int("n_iter", n_iter)
        self.lambda_u = check_nonnegative("lambda_u", lambda_u)
        self.lambda_v = check_nonnegative("lambda_v", lambda_v)
        self.a, self.b = check_confidences(a, b)
        self.seed = check_int("seed", seed, minimum=0)
        self.U = self.V = None
        self.loss_history: list[float] = []

    def fit(self, train_likes) -> "WMF":
        R = binary_likes(train_likes)
        rng = np.random.default_rng(self.seed)
        V = 0.1 * rng.standard_normal((R.shape[1], self.k))  # (n_papers, k); U is solved first
        self.loss_history = []
        for _ in range(self.n_iter):
            U = als_update_users(V, R, self.a, self.b, self.lambda_u)
            V = als_update_items(U, R, self.a, self.b, self.lambda_v)
            self.loss_history.append(wmf_loss(U, V, R, self.a, self.b, self.lambda_u, self.lambda_v))
        self.U, self.V = U, V
        return self

    def score_users(self, users) -> np.ndarray:
        """``(len(users), n_papers)`` scores u_i . v_j."""
        _check_fitted(self, "U")
        users = check_ids(users, self.U.shape[0], "user")
        return self.U[users] @ self.V.T

    def score_papers(self, papers) -> np.ndarray:
        """``(len(papers), n_users)`` scores (flip scenario)."""
        _check_fitted(self, "V")
        papers = check_ids(papers, self.V.shape[0], "paper")
        return self.V[papers] @ self.U.T
