"""The framework-neutral parts of training the hybrid flip recommender, shared by both tracks.

``course_lib.torch_models.hybrid.train_hybrid`` and ``course_lib.theano_models.hybrid.train_hybrid``
run the same loop; only the training step differs (autograd and ``torch.optim`` in one, a compiled
function with an update list in the other). What does not depend on the framework lives here, in
numpy and scipy only (and the course's own numpy evaluation), so the Theano track never imports
torch:

* :func:`check_model_args`, :func:`check_train_args`, :func:`check_paper_texts`: the arguments
  of ``HybridRecommender``, of ``train_hybrid`` and of ``PaperTexts``, checked before any work;
* :func:`select_papers`: which papers are trained on (those with training likes, the model's
  "known" papers) and which are scored for early stopping (those with validation likes);
* :func:`paper_batches`: one epoch's shuffled mini-batches of papers;
* :func:`check_finite`: stop at the first batch whose loss is NaN or infinite, and say why;
* :class:`EarlyStopping`: validation Recall@M after each epoch, the best epoch's weights kept;
* :func:`noise_cdf`, :func:`check_p2v_sizes`, :func:`sample_words`: level (c)'s PV-DBOW word
  sampling (Le & Mikolov 2014 with the negative sampling of Mikolov et al. 2013, eq. 4);
* :func:`sample_user_pairs`: Ask the GRU's mini-batches (users with one positive and one negative
  paper each), drawn the same way by both tracks.
"""
from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from course_lib.evaluation import evaluate_flip

LOSSES = ("wmse", "bpr", "listwise")
OPTIMIZERS = ("adagrad", "adam")
MERGES = ("concat", "sum")


# --------------------------------------------------------------------------------------------
# Arguments and papers


def recall_cutoff(monitor: str) -> int:
    """The ``K`` of ``monitor = "Recall@K"``; a clear error for anything else."""
    if not (isinstance(monitor, str) and monitor.startswith("Recall@") and monitor[7:].isdecimal()
            and int(monitor[7:]) > 0):
        raise ValueError(f"monitor must look like 'Recall@50' (validation Recall at a cut-off K >= 1), "
                         f"got {monitor!r}")
    return int(monitor[7:])


def check_model_args(n_users: int, n_papers: int, item_dim: int, merge: str, encoder=None,
                     **dropouts: float) -> None:
    """Check the sizes, ``merge``, the encoder's ``out_dim`` and the dropout rates of a ``HybridRecommender``.

    ``dropouts`` are the rates by name (``dropout_user=0.1, ...``), each must be in [0, 1).
    """
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
    if n_users < 1 or n_papers < 1 or item_dim < 1:
        raise ValueError(f"n_users, n_papers and item_dim must be >= 1, got {n_users}, {n_papers}, {item_dim}")
    if encoder is not None and not isinstance(getattr(encoder, "out_dim", None), numbers.Integral):
        raise ValueError("the content encoder must have an integer attribute `out_dim` (its output size)")
    for name, rate in dropouts.items():
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate}")


def check_train_args(shape: tuple[int, int], train_likes, valid_likes=None, *, loss: str = "wmse",
                     optimizer: str = "adagrad", monitor: str = "Recall@50", batch_size: int = 64,
                     epochs: int = 20, patience: int = 3, n_texts: int | None = None) -> None:
    """Check ``train_hybrid``'s arguments against a model with ``shape = (n_users, n_papers)``.

    ``n_texts`` is the number of paper texts passed (one per paper of the model), when known.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    recall_cutoff(monitor)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be 'adagrad' or 'adam', got {optimizer!r}")
    shape = tuple(int(s) for s in shape)
    for name, m in [("train_likes", train_likes), ("valid_likes", valid_likes)]:
        if m is None:
            continue
        if not hasattr(m, "shape") or len(m.shape) != 2:
            raise ValueError(f"{name} must be a (n_users, n_papers) like matrix (scipy sparse or numpy), "
                             f"got {type(m).__name__}")
        if tuple(m.shape) != shape:
            raise ValueError(f"{name} has shape {m.shape}, the model expects (n_users, n_papers) = {shape}")
    if batch_size < 1 or epochs < 1:
        raise ValueError(f"batch_size and epochs must be >= 1, got {batch_size}, {epochs}")
    if patience < 1:
        raise ValueError(f"patience must be >= 1 (epochs without a better validation {monitor} before "
                         f"stopping), got {patience}")
    if n_texts is not None and n_texts != shape[1]:
        raise ValueError(f"texts has {n_texts} papers but the model was built for {shape[1]}")


def check_paper_texts(ids, mask) -> None:
    """Every paper's padded word ids and mask ``(n_papers, max_len)``: equal 2-d shapes, and no
    paper without a token (it would have no content and divide by zero in a word average)."""
    ids, mask = np.asarray(ids), np.asarray(mask)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise ValueError(f"ids {ids.shape} and mask {mask.shape} must be equal 2-d shapes (n_papers, max_len)")
    empty = np.flatnonzero(mask.sum(1) == 0)
    if len(empty):
        raise ValueError(f"papers {empty[:5].tolist()} have empty texts; drop them or encode them with at least one "
                         "token")


def binary_likes(likes) -> sp.csr_matrix:
    """1.0 where a like is stored and non-zero (explicit zeros would otherwise count as likes;
    an entry stored twice counts once)."""
    out = sp.csr_matrix(likes, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


@dataclass
class PaperSelection:
    """The papers of one training run, from :func:`select_papers`.

    ``by_paper`` ``(n_papers, n_users)`` binary training likes (a row per paper: the targets of a
    batch); ``known`` ``(n_papers,)`` bool, True for papers with a training like; ``train_papers``
    their indices; ``valid_likes`` the binary validation likes ``(n_users, n_papers)`` and
    ``valid_papers`` the papers with at least one of them (both None without validation).
    """

    by_paper: sp.csr_matrix
    known: np.ndarray
    train_papers: np.ndarray
    valid_likes: sp.csr_matrix | None
    valid_papers: np.ndarray | None


def select_papers(train_likes, valid_likes=None) -> PaperSelection:
    """Train on the papers with training likes; early-stop on the papers with validation likes.

    Papers without a training like are cold: the model's item-ID embedding of them is zero
    (Ask-the-GRU, section 3), so they are never trained on.
    """
    by_paper = binary_likes(train_likes).T.tocsr()  # (n_papers, n_users)
    known = np.diff(by_paper.indptr) > 0
    if not known.any():
        raise ValueError("train_likes is empty: there is nothing to learn from")
    valid_papers = None
    if valid_likes is not None:
        valid_likes = binary_likes(valid_likes)
        valid_papers = np.flatnonzero(np.diff(valid_likes.tocsc().indptr) > 0)
        if len(valid_papers) == 0:
            raise ValueError("valid_likes has no likes; pass None to train without early stopping")
    return PaperSelection(by_paper, known, np.flatnonzero(known), valid_likes, valid_papers)


def paper_batches(papers: np.ndarray, batch_size: int, rng: np.random.Generator):
    """One epoch: ``papers`` in a fresh random order (one ``rng.permutation``), cut into batches."""
    order = rng.permutation(papers)
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def check_finite(rec: float, aux: float, epoch: int, batch: int, lr: float, alpha: float) -> None:
    """Raise at the first batch whose loss ``rec + aux`` is not finite, with what to change."""
    if not math.isfinite(rec + aux):
        raise ValueError(f"the loss became {rec + aux} at epoch {epoch}, batch {batch} (recommendation {rec:.4g}, "
                         f"auxiliary {aux:.4g}); lower lr (now {lr}) or alpha (now {alpha}), or check the inputs "
                         "for NaN")


# --------------------------------------------------------------------------------------------
# Early stopping


class EarlyStopping:
    """Early stopping on validation ``monitor`` (``"Recall@K"``) with the best weights kept aside.

    After each epoch, :meth:`update` appends the validation Recall@50, @100 and @K to the history
    (``valid_Recall@50``, ...) and, when ``monitor`` improved, stores a copy of
    ``model.state_dict()`` and sets ``history["best_epoch"]``; :attr:`stop` is True after
    ``patience`` epochs in a row without improvement. :meth:`finish` loads the best weights back
    (any model with ``state_dict`` / ``load_state_dict``, so it serves both tracks).
    """

    def __init__(self, monitor: str = "Recall@50", patience: int = 3):
        self.monitor, self.patience = monitor, int(patience)
        self.ks = tuple(sorted({50, 100, recall_cutoff(monitor)}))
        self.best, self.best_state, self.bad_epochs = -np.inf, None, 0

    def evaluate(self, scores: np.ndarray, selection: PaperSelection, train_likes) -> dict:
        """Recall@ks of the validation papers' ``scores`` ``(len(valid_papers), n_users)``, training
        likes excluded (:func:`course_lib.evaluation.evaluate_flip`)."""
        return evaluate_flip(scores, selection.valid_likes, likes_train=train_likes, papers=selection.valid_papers,
                             ks=self.ks, metrics=("recall",))

    def update(self, history: dict, epoch: int, results: dict, model) -> float:
        """Record one epoch's validation ``results``; returns the monitored value."""
        for k in self.ks:
            history.setdefault(f"valid_Recall@{k}", []).append(float(results[f"Recall@{k}"]))
        value = float(results[self.monitor])
        if value > self.best:
            self.best, self.bad_epochs = value, 0
            self.best_state = copy.deepcopy(model.state_dict())
            history["best_epoch"] = [epoch]
        else:
            self.bad_epochs += 1
        return value

    @property
    def stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def finish(self, history: dict, model) -> None:
        """Restore the best epoch's weights; without validation the last epoch counts as best."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        else:
            history["best_epoch"] = [history["epoch"][-1]]


# --------------------------------------------------------------------------------------------
# Level (c): the words of the PV-DBOW loss


def noise_cdf(word_counts, ns_exponent: float = 0.75) -> np.ndarray:
    """Cumulative noise distribution ``(vocab_size,)`` over word ids: ``count^ns_exponent``, normalised.

    ``word_counts`` ``(vocab_size,)`` are corpus counts per word id; id 0 (padding) is never a
    noise word whatever its count. Drawing by ``searchsorted`` on this is much faster than a
    multinomial over the vocabulary.
    """
    counts = np.asarray(word_counts, dtype=np.float64).copy()
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(f"word_counts must be a 1-d array over the vocabulary, got shape {counts.shape}")
    counts[0] = 0.0  # padding is not a word
    if (counts < 0).any() or counts.sum() <= 0:
        raise ValueError("word_counts must be non-negative with at least one word besides padding")
    noise = counts**ns_exponent
    return np.cumsum(noise / noise.sum())


def check_p2v_sizes(dim: int, lambda_p2v: float, negative: int, n_words: int) -> None:
    """The sizes of a level (c) encoder: ``lambda_p2v >= 0``, the others ``>= 1``."""
    if lambda_p2v < 0 or negative < 1 or n_words < 1 or dim < 1:
        raise ValueError(f"need lambda_p2v >= 0, negative >= 1, n_words >= 1, dim >= 1; got {lambda_p2v}, "
                         f"{negative}, {n_words}, {dim}")


def sample_words(ids, mask, n_words: int, negative: int, cdf: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The words of one PV-DBOW step for a batch of papers, drawn with ``rng``.

    ``ids``, ``mask`` ``(B, L)``, right-padded (each row's tokens first, then padding). Returns
    ``words`` ``(B, n_words)``: token positions drawn uniformly over each paper's tokens, so a word
    comes up in proportion to its count in the paper; and ``noise`` ``(n_words, negative)``:
    noise words from ``cdf`` (:func:`noise_cdf`), shared by the papers of the batch. Draws, in
    this order: ``rng.random((B, n_words))``, then ``rng.random((n_words, negative))``.
    """
    ids, mask = np.asarray(ids), np.asarray(mask)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise ValueError(f"ids {ids.shape} and mask {mask.shape} must be equal 2-d shapes (papers, max_len)")
    lengths = mask.sum(1).astype(np.int64)
    if (lengths == 0).any():
        raise ValueError("a paper of this batch has an empty text; paragraph vectors need words")
    if ((mask != 0) != (np.arange(mask.shape[1])[None, :] < lengths[:, None])).any():
        raise ValueError("mask must be right-padded (ones for a paper's tokens, then zeros), as "
                         "course_lib.text.encode_corpus makes it")
    pos_at = (rng.random((len(ids), n_words)) * lengths[:, None]).astype(np.int64)  # (B, T)
    words = np.take_along_axis(ids, pos_at, axis=1)
    # clipped: rounding can leave cdf[-1] a hair below 1
    noise = np.minimum(np.searchsorted(cdf, rng.random((n_words, negative)), side="right"), len(cdf) - 1)  # (T, K)
    return words, noise


# --- Ask the GRU (both tracks) ------------------------------------------------------------------

def sample_user_pairs(likes: sp.csr_matrix, users_pool: np.ndarray, train_papers: np.ndarray,
                      batch_users: int, rng: np.random.Generator):
    """One Ask-the-GRU mini-batch (section 4.1.2): ``min(batch_users, len(users_pool))`` distinct
    users, one liked and one not-liked training paper each. Returns ``(users, pos, neg)`` index
    arrays of equal length. Both tracks draw through this, so one generator gives both the same
    batches. A negative that the user likes is redrawn (up to 100 rounds, which rare clashes never
    reach in practice)."""
    users = rng.choice(users_pool, size=min(batch_users, users_pool.size), replace=False)
    starts, ends = likes.indptr[users], likes.indptr[users + 1]
    pos = likes.indices[starts + (rng.random(users.size) * (ends - starts)).astype(np.int64)]
    neg = train_papers[rng.integers(0, train_papers.size, users.size)]
    for _ in range(100):
        clash = np.asarray(likes[users, neg]).ravel() > 0
        if not clash.any():
            break
        neg[clash] = train_papers[rng.integers(0, train_papers.size, int(clash.sum()))]
    return users, pos, neg
