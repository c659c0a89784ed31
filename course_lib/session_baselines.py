"""The session-based baselines of GRU4Rec (Hidasi et al. 2016, Section 4.1), numpy/scipy only.

* :class:`Pop`: the most popular training items, whatever the session did.
* :class:`SPop`: the items clicked most often in the current session, ties broken by global
  popularity.
* :class:`ItemKNN`: items similar to the current click; similarity is the cosine of the items'
  session vectors, regularised by ``lmbd`` so that rarely seen items do not get high similarities
  by chance: ``sim(i, j) = n_ij / ((n_i + lmbd) ** alpha * (n_j + lmbd) ** (1 - alpha))`` with
  ``n_ij`` the sessions that contain both items and ``n_i`` the sessions that contain ``i``
  (``alpha=0.5``, ``lmbd=0`` is the plain cosine; the regulariser is placed as in the authors'
  baseline code).
* :class:`BPRMF`: BPR matrix factorisation with sessions as users (Rendle et al. 2009); a session
  being scored is represented by the average of the feature vectors of its items so far.

All follow the session scorer protocol of ``docs/ARCHITECTURE.md`` (``item_ids``, ``reset``,
``reset_slots``, ``score_next``) so that ``course_lib.evaluation.evaluate_sessions`` scores them
with the same code as GRU4Rec.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from course_lib.validation import (
    check_finite, check_fraction, check_int, check_memory, check_nonnegative, check_positive,
)


def _encode(train: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item ids (sorted), the column index of every event, and a 0-based session index."""
    missing = [c for c in ("SessionId", "ItemId") if c not in train.columns]
    if missing:
        raise ValueError(f"train frame needs columns SessionId and ItemId, missing {missing}")
    if len(train) == 0:
        raise ValueError("train frame is empty: a baseline needs at least one event")
    if train[["SessionId", "ItemId"]].isna().any().any():
        raise ValueError("train frame has missing SessionId/ItemId values: drop those rows first")
    item_ids, cols = np.unique(train["ItemId"].to_numpy(), return_inverse=True)
    _, sess = np.unique(train["SessionId"].to_numpy(), return_inverse=True)
    return item_ids, cols.astype(np.int64), sess.astype(np.int64)


class _SessionScorer:
    """What every baseline shares: the item columns and a check of ``score_next``'s input."""

    item_ids: np.ndarray | None = None

    def _check(self, item_idx) -> np.ndarray:
        if self.item_ids is None:
            raise ValueError(f"{type(self).__name__} is not fitted yet: call fit(train) first")
        idx = np.asarray(item_idx, dtype=np.int64)
        if idx.shape != (self.n_slots,):
            raise ValueError(f"item_idx must have shape ({self.n_slots},) (one item per slot), got {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.item_ids)):
            raise ValueError(f"item_idx must be column indices in [0, {len(self.item_ids)})")
        return idx

    def reset(self, n_slots: int) -> None:
        self.n_slots = int(n_slots)

    def reset_slots(self, mask) -> None:
        pass

    def keep_slots(self, mask) -> None:
        """Keep only the slots where ``mask`` is True (the evaluation drops finished slots)."""
        self.n_slots = int(np.count_nonzero(mask))


class Pop(_SessionScorer):
    """POP: always the most popular training items (paper, Section 4.1)."""

    def fit(self, train: pd.DataFrame) -> "Pop":
        self.item_ids, cols, _ = _encode(train)
        self.popularity = np.bincount(cols, minlength=len(self.item_ids)).astype(np.float64)
        return self

    def score_next(self, item_idx) -> np.ndarray:
        idx = self._check(item_idx)
        return np.broadcast_to(self.popularity, (len(idx), len(self.item_ids)))


class SPop(Pop):
    """S-POP: items counted in the current session, ties broken by global popularity.

    score = (clicks on the item in this session) + popularity / (max popularity + 1); the second
    term is below 1, so it only orders items with the same session count.
    """

    def reset(self, n_slots: int) -> None:
        super().reset(n_slots)
        self.counts = np.zeros((self.n_slots, len(self.item_ids)), dtype=np.float64)  # (n_slots, n_items)
        self._tiebreak = self.popularity / (self.popularity.max() + 1.0)

    def reset_slots(self, mask) -> None:
        self.counts[np.asarray(mask, dtype=bool)] = 0.0

    def keep_slots(self, mask) -> None:
        super().keep_slots(mask)
        self.counts = self.counts[np.asarray(mask, dtype=bool)]

    def score_next(self, item_idx) -> np.ndarray:
        idx = self._check(item_idx)
        self.counts[np.arange(len(idx)), idx] += 1.0
        return self.counts + self._tiebreak


class ItemKNN(_SessionScorer):
    """Item-to-item cosine similarity over sessions with a regulariser (paper, Section 4.1).

    ``sim(i, j) = n_ij / ((n_i + lmbd) ** alpha * (n_j + lmbd) ** (1 - alpha))``, ``sim(i, i) = 0``; only the
    ``n_sims`` most similar items of each item are kept (0 = all). The scores of a slot are the
    similarities to its current item.
    """

    def __init__(self, lmbd: float = 20.0, alpha: float = 0.5, n_sims: int = 100):
        self.lmbd = check_nonnegative("lmbd", lmbd)
        self.alpha = check_fraction("alpha", alpha, upper_inclusive=True)
        self.n_sims = check_int("n_sims", n_sims, minimum=0)

    def fit(self, train: pd.DataFrame) -> "ItemKNN":
        self.item_ids, cols, sess = _encode(train)
        n_items = len(self.item_ids)
        # (n_sessions, n_items) binary: a session counts once per item however often it was clicked
        occ = sp.csr_matrix((np.ones(len(cols)), (sess, cols)), shape=(sess.max() + 1, n_items))
        occ.sum_duplicates()  # scipy 1.13 keeps a repeated (session, item) pair as two entries here
        occ.data[:] = 1.0
        pairs = float(min(np.sum(occ.getnnz(axis=1).astype(np.float64) ** 2), float(n_items) ** 2))
        check_memory(4 * 16.0 * pairs, f"item-KNN's co-occurrence counts (up to {pairs:,.0f} item pairs)",
                     "train on fewer or shorter sessions")
        cooc = (occ.T @ occ).tocsr()  # (n_items, n_items): sessions with both items
        support = np.asarray(occ.sum(axis=0)).ravel()  # (n_items,)
        coo = cooc.tocoo()
        keep = coo.row != coo.col
        r, c, v = coo.row[keep], coo.col[keep], coo.data[keep]
        sim = v / ((support[r] + self.lmbd) ** self.alpha * (support[c] + self.lmbd) ** (1 - self.alpha))
        self.sims = sp.csr_matrix((sim, (r, c)), shape=(n_items, n_items))
        if self.n_sims:
            self.sims = _top_per_row(self.sims, self.n_sims)
        return self

    def score_next(self, item_idx) -> np.ndarray:
        idx = self._check(item_idx)
        return self.sims[idx].toarray()  # (n_slots, n_items)


def _top_per_row(mat: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of every row of a csr matrix."""
    rows, cols, vals = [], [], []
    for i in range(mat.shape[0]):
        lo, hi = mat.indptr[i], mat.indptr[i + 1]
        v, c = mat.data[lo:hi], mat.indices[lo:hi]
        if len(v) > k:
            top = np.argpartition(-v, k - 1)[:k]
            v, c = v[top], c[top]
        rows.append(np.full(len(v), i))
        cols.append(c)
        vals.append(v)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=mat.shape)


class BPRMF(_SessionScorer):
    """BPR-MF (Rendle et al. 2009) with training sessions as users (paper, Section 4.1).

    Training maximises ``log sigmoid(s_u . (q_i - q_j) + b_i - b_j)`` for each event (u, i) and a
    uniformly drawn negative item j, by SGD in shuffled mini-batches of ``batch_size`` events (the
    gradients of a mini-batch are summed, so one step does what ``batch_size`` single-event SGD
    steps would do). A new session is scored with the mean of the feature vectors q of its items
    so far: ``score_j = mean_i(q_i) . q_j + b_j``.
    """

    def __init__(self, n_factors: int = 100, n_epochs: int = 10, learning_rate: float = 0.01,
                 lambda_session: float = 0.0, lambda_item: float = 0.0, sigma: float = 0.05,
                 batch_size: int = 100, seed: int = 0):
        self.n_factors = check_int("n_factors", n_factors)
        self.n_epochs = check_int("n_epochs", n_epochs)
        self.learning_rate = check_positive("learning_rate", learning_rate)
        self.lambda_session = check_nonnegative("lambda_session", lambda_session)
        self.lambda_item = check_nonnegative("lambda_item", lambda_item)
        self.sigma = check_positive("sigma", sigma)
        self.batch_size = check_int("batch_size", batch_size)
        self.seed = check_int("seed", seed, minimum=0)

    def fit(self, train: pd.DataFrame, progress: bool = False) -> "BPRMF":
        self.item_ids, cols, sess = _encode(train)
        n_items, n_sess, k = len(self.item_ids), int(sess.max()) + 1, self.n_factors
        check_memory(8.0 * (n_sess + n_items) * k, f"the BPR-MF factors ({n_sess} sessions + {n_items} items) x {k}",
                     "lower n_factors")
        rng = np.random.default_rng(self.seed)
        S = rng.uniform(-self.sigma, self.sigma, (n_sess, k))  # session factors (n_sessions, k)
        Q = rng.uniform(-self.sigma, self.sigma, (n_items, k))  # item factors (n_items, k)
        b = np.zeros(n_items)
        lr = self.learning_rate
        self.history = []
        for _ in tqdm(range(self.n_epochs), desc="BPR-MF", disable=not progress, leave=False):
            order = rng.permutation(len(cols))
            negs = rng.integers(0, n_items, len(cols))
            total = 0.0
            for lo in range(0, len(order), self.batch_size):
                e = order[lo : lo + self.batch_size]
                u, i, j = sess[e], cols[e], negs[e]
                su, qi, qj = S[u], Q[i], Q[j]  # (m, k) each
                x = (su * (qi - qj)).sum(1) + b[i] - b[j]
                total += np.logaddexp(0.0, -x).sum()  # -log sigmoid(x)
                g = 1.0 / (1.0 + np.exp(x))  # d(log sigmoid x)/dx = sigmoid(-x)
                np.add.at(S, u, lr * (g[:, None] * (qi - qj) - self.lambda_session * su))
                np.add.at(Q, i, lr * (g[:, None] * su - self.lambda_item * qi))
                np.add.at(Q, j, lr * (-g[:, None] * su - self.lambda_item * qj))
                np.add.at(b, i, lr * g)
                np.add.at(b, j, -lr * g)
            loss = total / len(cols)
            check_finite(loss, where=f"BPR-MF epoch {len(self.history) + 1}",
                         cause=f"lower learning_rate (now {self.learning_rate}) or sigma (now {self.sigma})")
            self.history.append({"loss": loss})
        self.Q, self.b = Q, b
        return self

    def reset(self, n_slots: int) -> None:
        super().reset(n_slots)
        self._sum = np.zeros((self.n_slots, self.n_factors))  # (n_slots, k)
        self._n = np.zeros(self.n_slots)

    def reset_slots(self, mask) -> None:
        mask = np.asarray(mask, dtype=bool)
        self._sum[mask] = 0.0
        self._n[mask] = 0.0

    def keep_slots(self, mask) -> None:
        super().keep_slots(mask)
        mask = np.asarray(mask, dtype=bool)
        self._sum, self._n = self._sum[mask], self._n[mask]

    def score_next(self, item_idx) -> np.ndarray:
        idx = self._check(item_idx)
        self._sum += self.Q[idx]
        self._n += 1.0
        return (self._sum / self._n[:, None]) @ self.Q.T + self.b  # (n_slots, n_items)
