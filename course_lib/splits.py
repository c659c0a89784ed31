"""Train/test splits of the course: the Ask-the-GRU protocol and the GRU4Rec session split.

Likes (CiteULike): ``scipy.sparse.csr_matrix (n_users, n_papers)``. Every split returns a
:class:`Fold` whose ``train`` and ``test`` have the shape of the input, are disjoint and add up
to it, so a model is always trained on ``fold.train`` and scored on ``fold.test``.

* :func:`warm_start_folds`, :func:`cold_start_folds`: Ask the GRU, section 4.1 (following
  Wang & Blei's CTR protocol): 5 folds per user (warm) or 5 folds of papers (cold); papers with
  fewer than 5 likes always stay in training.
* :func:`flip_split`: the hands-on task's flip scenario (rank the users for a paper); the test
  likes are the same kind of matrix, evaluation uses ``fold.test.T`` (papers as queries).
* :func:`validation_split`: a validation fold carved out of ``fold.train`` the same way, for
  early stopping on recall (Ask the GRU, section 4.1.2).
* :func:`flip_protocol`: the hands-on task's evaluation split, cold and warm flip at once, with
  a validation fold (a :class:`FlipProtocol`; notebooks 01, 03, 06 and ``course bench hybrid``;
  evaluated by :func:`course_lib.evaluation.evaluate_flip_protocol`).
* :func:`tag_split`: tag prediction in cold start (section 4.2, "Tag Prediction").
* :func:`session_split_by_time`: GRU4Rec's split of session clicks by time (section 4), after the
  filtering of :func:`course_lib.clicks.preprocess_clicks`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_lib.clicks import check_clicks, click_counts, drop_short_sessions

FOLD_KINDS = ("warm", "cold", "flip-warm", "flip-cold")
DAY_SECONDS = 86400.0


@dataclass
class Fold:
    """One train/test split of a likes matrix.

    ``train``, ``test``: csr with the shape of the likes, disjoint, ``train + test == likes``.
    ``test_papers``: sorted paper indices that are evaluated (cold start: the held-out papers,
    flip: the papers with test likes), None for warm start (users are the queries there).
    ``kind``: one of ``FOLD_KINDS``; :func:`validation_split` uses it to split ``train`` again
    the same way.
    """

    train: sp.csr_matrix
    test: sp.csr_matrix
    test_papers: np.ndarray | None = None
    fold: int = 0
    kind: str = "warm"

    def __post_init__(self):
        if not (sp.issparse(self.train) and sp.issparse(self.test)):
            raise ValueError("Fold.train and Fold.test must be scipy.sparse matrices (n_users, n_papers)")
        if self.train.shape != self.test.shape:
            raise ValueError(f"Fold.train {self.train.shape} and Fold.test {self.test.shape} must have the same shape")
        if self.kind not in FOLD_KINDS:
            raise ValueError(f"Fold.kind must be one of {FOLD_KINDS}, got {self.kind!r}")

    @property
    def test_users(self) -> np.ndarray:
        """Users with at least one test like."""
        return np.flatnonzero(np.diff(self.test.indptr))

    def summary(self) -> dict:
        out = {
            "kind": self.kind,
            "fold": self.fold,
            "train likes": int(self.train.nnz),
            "test likes": int(self.test.nnz),
            "test users": int(self.test_users.size),
        }
        if self.test_papers is not None:
            out["test papers"] = int(self.test_papers.size)
        return out


# ---------------------------------------------------------------- checks and helpers

def _check_likes(likes, what: str = "likes") -> sp.csr_matrix:
    if not sp.issparse(likes):
        raise ValueError(f"{what} must be a scipy.sparse matrix (n_users, n_papers), got "
                         f"{type(likes).__name__}; wrap it with scipy.sparse.csr_matrix(...)")
    if len(likes.shape) != 2:
        raise ValueError(f"{what} must be 2-D (n_users, n_papers), got shape {likes.shape}")
    out = sp.csr_matrix(likes, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.sort_indices()
    if out.nnz == 0:
        raise ValueError(f"{what} has no nonzero entry: there is nothing to split; "
                         "check that the data loaded (e.g. data.likes.nnz)")
    if not np.all(np.isfinite(out.data)):
        raise ValueError(f"{what} contains NaN or inf; clean the matrix before splitting")
    return out


def _check_n_folds(n_folds: int) -> int:
    if int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds}; use n_folds=5 as in the paper")
    return int(n_folds)


def _check_frac(frac: float, name: str) -> float:
    if not 0.0 < frac < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {frac}; e.g. {name}=0.2")
    return float(frac)


def _split_by_mask(likes: sp.csr_matrix, test_mask: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Two csr matrices of ``likes``' shape: the entries where ``test_mask`` (over nnz) is False / True."""
    train, test = likes.copy(), likes.copy()
    train.data = np.where(test_mask, 0, likes.data).astype(likes.data.dtype)
    test.data = np.where(test_mask, likes.data, 0).astype(likes.data.dtype)
    train.eliminate_zeros()
    test.eliminate_zeros()
    return train, test


def _nnz_rows(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))


def _paper_counts(likes: sp.csr_matrix) -> np.ndarray:
    return np.bincount(likes.indices, minlength=likes.shape[1])


def _check_min_likes_warm(min_paper_likes: int) -> None:
    if min_paper_likes < 2:
        raise ValueError(f"min_paper_likes must be >= 2 in warm start, got {min_paper_likes}: a test "
                         "paper needs another like left in training; the paper uses 5")


def _row_folds(likes: sp.csr_matrix, eligible: np.ndarray, n_folds: int, rng) -> np.ndarray:
    """Fold of every nonzero (-1 = always train): each row's eligible entries, shuffled, are dealt
    round-robin into ``n_folds`` folds starting at a random fold, so fold sizes differ by <= 1."""
    folds = np.full(likes.nnz, -1, dtype=np.int64)
    idx = np.flatnonzero(eligible)
    rows = _nnz_rows(likes)[idx]
    order = np.lexsort((rng.random(idx.size), rows))  # by row, random inside a row
    rows_sorted = rows[order]
    rank = np.arange(idx.size) - np.searchsorted(rows_sorted, rows_sorted, side="left")
    offset = rng.integers(n_folds, size=likes.shape[0])
    folds[idx[order]] = (rank + offset[rows_sorted]) % n_folds
    return folds


def _keep_a_training_like(likes: sp.csr_matrix, folds: np.ndarray, n_folds: int, rng) -> np.ndarray:
    """Warm start needs every test paper to keep a training like in its fold. Where all likes of a
    paper fell into one fold, move one of them (at random) to another random fold; with >= 2
    likes per paper both folds then keep a training like."""
    cols = likes.indices
    total = _paper_counts(likes)
    in_fold = folds >= 0
    per = np.bincount(cols[in_fold] * n_folds + folds[in_fold], minlength=likes.shape[1] * n_folds)
    per = per.reshape(likes.shape[1], n_folds)
    for paper, fold in zip(*np.nonzero((per == total[:, None]) & (per > 0))):
        candidates = np.flatnonzero((cols == paper) & (folds == fold))
        folds[rng.choice(candidates)] = (fold + 1 + rng.integers(n_folds - 1)) % n_folds
    return folds


# ---------------------------------------------------------------- Ask the GRU, section 4.1

def warm_start_folds(likes, n_folds: int = 5, seed: int = 0, min_paper_likes: int = 5) -> list[Fold]:
    """In-matrix prediction (Ask the GRU, section 4.1, "Warm-Start").

    Each user's likes are split into ``n_folds`` folds; likes of papers with fewer than
    ``min_paper_likes`` likes always stay in training. Every other like is in the test set of
    exactly one fold, and every test paper keeps at least one training like in its fold (where
    chance put all of a paper's likes into one fold, one of them is moved to another fold; this
    slightly unbalances a few users' folds). Evaluate with ``exclude=fold.train``.
    """
    likes = _check_likes(likes)
    n_folds = _check_n_folds(n_folds)
    _check_min_likes_warm(min_paper_likes)
    rng = np.random.default_rng(seed)
    eligible = _paper_counts(likes)[likes.indices] >= min_paper_likes
    if not eligible.any():
        raise ValueError(f"no paper has >= {min_paper_likes} likes, so no like can be tested; "
                         "lower min_paper_likes or use more data")
    folds = _row_folds(likes, eligible, n_folds, rng)
    folds = _keep_a_training_like(likes, folds, n_folds, rng)
    return [Fold(*_split_by_mask(likes, folds == f), None, f, "warm") for f in range(n_folds)]


def cold_start_folds(likes, n_folds: int = 5, seed: int = 0, min_paper_likes: int = 5) -> list[Fold]:
    """New papers without likes (Ask the GRU, section 4.1, "Cold-Start").

    The papers with >= ``min_paper_likes`` likes are split into ``n_folds`` groups (the others
    always stay in training, as in the paper); in fold ``f`` every like of group ``f`` moves to
    ``test``, so those papers (``fold.test_papers``) have no training like at all. Evaluate with
    users as queries and only ``fold.test_papers`` as candidates.
    """
    likes = _check_likes(likes)
    n_folds = _check_n_folds(n_folds)
    if min_paper_likes < 1:
        raise ValueError(f"min_paper_likes must be >= 1, got {min_paper_likes}: a paper without "
                         "likes has nothing to test")
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero(_paper_counts(likes) >= min_paper_likes)
    if eligible.size < n_folds:
        raise ValueError(f"only {eligible.size} papers have >= {min_paper_likes} likes, fewer than "
                         f"n_folds={n_folds}; lower min_paper_likes or n_folds")
    groups = np.array_split(rng.permutation(eligible), n_folds)
    out = []
    for f, group in enumerate(groups):
        test_papers = np.sort(group).astype(np.int64)
        train, test = _split_by_mask(likes, np.isin(likes.indices, test_papers))
        out.append(Fold(train, test, test_papers, f, "cold"))
    return out


# ---------------------------------------------------------------- flip scenario, validation

def _hold_out_papers(likes: sp.csr_matrix, frac: float, min_paper_likes: int, rng, kind: str, fold: int) -> Fold:
    eligible = np.flatnonzero(_paper_counts(likes) >= max(1, min_paper_likes))
    if eligible.size < 2:
        raise ValueError(f"only {eligible.size} papers have >= {min_paper_likes} likes; "
                         "lower min_paper_likes to hold out whole papers")
    n_test = int(np.clip(np.floor(frac * eligible.size + 0.5), 1, eligible.size - 1))
    test_papers = np.sort(rng.choice(eligible, size=n_test, replace=False)).astype(np.int64)
    train, test = _split_by_mask(likes, np.isin(likes.indices, test_papers))
    return Fold(train, test, test_papers, fold, kind)


def _hold_out_users_per_paper(likes: sp.csr_matrix, frac: float, min_paper_likes: int, rng, fold: int) -> Fold:
    by_paper = sp.csr_matrix(likes.T)  # (n_papers, n_users)
    by_paper.sort_indices()
    n_likes = np.diff(by_paper.indptr)
    eligible_papers = n_likes >= min_paper_likes
    if not eligible_papers.any():
        raise ValueError(f"no paper has >= {min_paper_likes} likes; lower min_paper_likes")
    # round(frac * n), but at least 1 test user and at least 1 training user per eligible paper
    n_hold = np.where(eligible_papers, np.clip(np.floor(frac * n_likes + 0.5), 1, n_likes - 1), 0)
    rows = _nnz_rows(by_paper)
    order = np.lexsort((rng.random(by_paper.nnz), rows))
    rows_sorted = rows[order]
    rank = np.arange(by_paper.nnz) - np.searchsorted(rows_sorted, rows_sorted, side="left")
    held = np.zeros(by_paper.nnz, dtype=bool)
    held[order] = rank < n_hold[rows_sorted]
    train_t, test_t = _split_by_mask(by_paper, held)
    test = sp.csr_matrix(test_t.T)
    test_papers = np.flatnonzero(np.diff(test_t.indptr)).astype(np.int64)
    return Fold(sp.csr_matrix(train_t.T), test, test_papers, fold, "flip-warm")


def flip_split(likes, mode: str = "cold", test_frac: float = 0.2, seed: int = 0,
               min_paper_likes: int = 5) -> Fold:
    """The flip scenario of the hands-on task: rank the users for a paper.

    ``mode="cold"``: ``test_frac`` of the papers with >= ``min_paper_likes`` likes are held out
    entirely (new papers, found from their text alone). ``mode="warm"``: for every paper with
    >= ``min_paper_likes`` likes, ``round(test_frac * n)`` of its ``n`` users are held out (at least
    one, and at least one stays in training). ``fold.test_papers`` lists the query papers;
    evaluate with ``fold.test.T`` (papers x users) and ``exclude=fold.train.T``.
    """
    likes = _check_likes(likes)
    test_frac = _check_frac(test_frac, "test_frac")
    rng = np.random.default_rng(seed)
    if mode == "cold":
        return _hold_out_papers(likes, test_frac, min_paper_likes, rng, "flip-cold", 0)
    if mode == "warm":
        _check_min_likes_warm(min_paper_likes)
        return _hold_out_users_per_paper(likes, test_frac, min_paper_likes, rng, 0)
    raise ValueError(f"mode must be 'cold' or 'warm', got {mode!r}")


def validation_split(fold: Fold, frac: float = 0.1, seed: int = 0, min_paper_likes: int = 5) -> Fold:
    """Split ``fold.train`` again the way ``fold`` was made, for early stopping.

    Returns a Fold with ``train + test == fold.train`` (the test fold untouched):
    ``warm``: each user's likes of papers with >= ``min_paper_likes`` training likes are held out
    with probability ``frac`` (systematic sampling inside the user's shuffled likes, so a user
    with ``n`` such likes loses floor or ceil of ``frac * n``), and every held-out paper keeps a
    training like; ``cold`` / ``flip-cold``: ``frac`` of the papers held out entirely;
    ``flip-warm``: ``frac`` of each paper's users.
    """
    if not isinstance(fold, Fold):
        raise ValueError(f"validation_split expects a Fold, got {type(fold).__name__}")
    frac = _check_frac(frac, "frac")
    train = _check_likes(fold.train, "fold.train")
    rng = np.random.default_rng(seed)
    if fold.kind in ("cold", "flip-cold"):
        return _hold_out_papers(train, frac, min_paper_likes, rng, fold.kind, fold.fold)
    if fold.kind == "flip-warm":
        _check_min_likes_warm(min_paper_likes)
        return _hold_out_users_per_paper(train, frac, min_paper_likes, rng, fold.fold)
    if fold.kind != "warm":
        raise ValueError(f"fold.kind must be one of {FOLD_KINDS}, got {fold.kind!r}")
    _check_min_likes_warm(min_paper_likes)
    counts = _paper_counts(train)
    eligible = counts[train.indices] >= min_paper_likes
    idx = np.flatnonzero(eligible)
    rows = _nnz_rows(train)[idx]
    order = np.lexsort((rng.random(idx.size), rows))
    rows_sorted = rows[order]
    rank = np.arange(idx.size) - np.searchsorted(rows_sorted, rows_sorted, side="left")
    start = rng.random(train.shape[0])[rows_sorted]
    # entry k of a row is held out when frac*k + start crosses an integer: P = frac exactly
    crossed = np.floor(frac * (rank + 1) + start) - np.floor(frac * rank + start) > 0
    held = np.zeros(train.nnz, dtype=bool)
    held[idx[order]] = crossed
    # a paper whose training likes were all held out gets one back
    cols = train.indices
    held_per = np.bincount(cols[held], minlength=train.shape[1])
    for paper in np.flatnonzero((held_per == counts) & (counts > 0)):
        held[rng.choice(np.flatnonzero((cols == paper) & held))] = False
    new_train, valid = _split_by_mask(train, held)
    return Fold(new_train, valid, None, fold.fold, "warm")


@dataclass
class FlipProtocol:
    """One split of a likes matrix for cold and warm flip evaluation, from :func:`flip_protocol`.

    ``train``/``valid`` ``(n_users, n_papers)`` likes to train / early-stop on; ``cold_test`` the
    likes of the cold papers ``cold_papers``; ``warm_test`` the held-out likes of ``warm_papers``
    (their other likes are in ``train`` and are excluded from the ranking).
    """

    train: sp.csr_matrix
    valid: sp.csr_matrix
    cold_test: sp.csr_matrix
    cold_papers: np.ndarray
    warm_test: sp.csr_matrix
    warm_papers: np.ndarray

    @property
    def train_papers(self) -> np.ndarray:
        """Papers with at least one training like (the only ones a model may train on)."""
        return np.flatnonzero(np.diff(self.train.tocsc().indptr) > 0)


def flip_protocol(likes, test_frac: float = 0.2, valid_frac: float = 0.1, seed: int = 0,
                  min_paper_likes: int = 5) -> FlipProtocol:
    """The hands-on task's split: cold and warm flip evaluation from one likes matrix (seeded).

    In this order: ``test_frac`` of the papers with >= ``min_paper_likes`` likes are held out
    entirely (**cold**: a model sees only their text; :func:`flip_split` ``"cold"``, seed
    ``seed``); then ``valid_frac`` of the remaining papers are held out entirely for early
    stopping (cold validation; :func:`validation_split`, seed ``seed + 1``); then, of the papers
    with >= ``min_paper_likes`` likes left in training, ``test_frac`` of each paper's users are
    held out (**warm**; :func:`flip_split` ``"warm"``, seed ``seed + 2``).
    """
    cold = flip_split(likes, "cold", test_frac, seed=seed, min_paper_likes=min_paper_likes)
    val = validation_split(cold, valid_frac, seed=seed + 1, min_paper_likes=min_paper_likes)
    warm = flip_split(val.train, "warm", test_frac, seed=seed + 2, min_paper_likes=min_paper_likes)
    return FlipProtocol(warm.train, val.test, cold.test, cold.test_papers, warm.test, warm.test_papers)


def tag_split(paper_tags, fold: Fold, return_info: bool = False):
    """Papers to train / test tag prediction in cold start (Ask the GRU, section 4.2).

    Test papers are ``fold.test_papers`` that have at least one tag (a paper without tags cannot
    be evaluated), train papers are all other papers with tags. Returns
    ``(train_papers, test_papers)``; with ``return_info=True`` also a dict with the untagged
    papers of each side (``"untagged_train"``, ``"untagged_test"``), so nothing disappears unseen.
    """
    if not isinstance(fold, Fold) or fold.test_papers is None:
        raise ValueError("tag prediction is evaluated in cold start: pass a fold from "
                         "cold_start_folds(...) or flip_split(..., mode='cold')")
    if not sp.issparse(paper_tags):
        raise ValueError(f"paper_tags must be a scipy.sparse matrix (n_papers, n_tags), got "
                         f"{type(paper_tags).__name__}")
    n_papers = fold.train.shape[1]
    if paper_tags.shape[0] != n_papers:
        raise ValueError(f"paper_tags has {paper_tags.shape[0]} rows but the fold has {n_papers} "
                         "papers; pass data.paper_tags of the same dataset")
    tagged = np.diff(sp.csr_matrix(paper_tags).indptr) > 0
    is_test = np.zeros(n_papers, dtype=bool)
    is_test[fold.test_papers] = True
    train_papers = np.flatnonzero(~is_test & tagged)
    test_papers = np.flatnonzero(is_test & tagged)
    if return_info:
        info = {"untagged_train": np.flatnonzero(~is_test & ~tagged),
                "untagged_test": np.flatnonzero(is_test & ~tagged)}
        return train_papers, test_papers, info
    return train_papers, test_papers


# ---------------------------------------------------------------- sessions (GRU4Rec, section 4)

def session_split_by_time(df, days: float = 1, min_session_len: int = 2) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """GRU4Rec's split (Hidasi et al. 2016, section 4): sessions whose last event lies within the
    last ``days`` days of the data go to test, the rest to train (a session is never cut).
    Test events whose item does not occur in train are removed (the models cannot score them),
    then test sessions shorter than ``min_session_len``.

    Returns ``(train, test, counts)``; ``counts`` has the test events and sessions removed by
    each filter.
    """
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    data = check_clicks(df)
    end = data.groupby("SessionId")["Time"].max()
    split_time = data["Time"].max() - days * DAY_SECONDS
    test_sessions = end.index[end >= split_time]
    in_test = data["SessionId"].isin(test_sessions)
    train, test = data[~in_test].reset_index(drop=True), data[in_test]
    if len(train) == 0:
        raise ValueError(f"every session ends within the last {days} day(s); use a smaller `days`")
    counts = {"train": dict(zip(("events", "sessions", "items"), click_counts(train))),
              "test before filtering": dict(zip(("events", "sessions", "items"), click_counts(test)))}
    known = test["ItemId"].isin(train["ItemId"].unique())
    counts["test events with items not in train"] = int((~known).sum())
    test = test[known]
    short = drop_short_sessions(test, min_session_len)
    counts["test sessions too short"] = int(test["SessionId"].nunique() - short["SessionId"].nunique())
    counts["test events in too short sessions"] = int(len(test) - len(short))
    test = short.reset_index(drop=True)
    counts["test"] = dict(zip(("events", "sessions", "items"), click_counts(test)))
    counts["split time"] = float(split_time)
    return train, test, counts
