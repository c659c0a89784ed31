"""The training loop of the course, and everything about training that does not depend on the framework.

One loop (:func:`train_loop`) trains the hybrid recommender and Ask the GRU in both tracks. A
track only provides the **step**: one update of the model on one mini-batch (autograd and
``torch.optim`` in the PyTorch track, a compiled function with an update list in the Theano track).
The loop draws the batches, calls the step, averages its losses, stops on a NaN or infinite loss
naming the step, evaluates on validation data, keeps the best weights (:class:`EarlyStopping`) and
shows a progress bar. It uses numpy only, so the Theano track never imports torch.

**Your own code plugs in here.** A step, or a loss function, is any callable that returns a number
(the loss that is minimised) or a dict of named numbers whose ``"loss"`` entry is minimised and
whose other entries (``"rec_loss"``, ``"aux_loss"``, ``"loss_tag"``, ...) are recorded too
(:func:`as_losses`). ``train_hybrid`` and ``fit`` of both tracks take ``step_fn=`` (your step
replaces the library's) and ``loss_fn=`` (your loss inside the library's step: tensors in PyTorch,
a graph in Theano). What each one receives is written in the docstring of the trainer that takes
it, and in ``docs/ARCHITECTURE.md``.

Also here, shared by both tracks:

* :func:`check_model_args`, :func:`check_train_args`, :func:`check_paper_texts`,
  :func:`check_fit_args`: every argument checked before any work starts;
* :func:`select_papers`, :func:`paper_batches`, :func:`hybrid_loop`: the hybrid's papers, its
  shuffled mini-batches, and its epochs with early stopping on validation Recall@K;
* :func:`noise_cdf`, :func:`check_p2v_sizes`, :func:`sample_words`: level (c)'s PV-DBOW word
  sampling (Le & Mikolov 2014 with the negative sampling of Mikolov et al. 2013, eq. 4);
* :func:`frequent_tags`, :func:`sample_user_pairs`, :class:`PairBatch`, :class:`History`,
  :func:`askgru_loop`: Ask the GRU's tags, mini-batches, history and updates with early stopping.
"""
from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import scipy.sparse as sp

from course_lib.data import check_ids
from course_lib.evaluation import evaluate_flip, evaluate_ranking
from course_lib.validation import (
    TrainingDiverged, check_choice, check_finite, check_fraction, check_int, check_memory, check_nonnegative,
    check_positive, clamp_count,
)

LOSSES = ("wmse", "bpr", "listwise")
OPTIMIZERS = ("adagrad", "adam")
MERGES = ("concat", "sum")


# --------------------------------------------------------------------------------------------
# The loop


def as_losses(out) -> dict[str, float]:
    """A step's result as named floats: a number is the loss; a mapping must name it ``"loss"``.

    Tensors and 0-d arrays count as numbers (``float()`` is taken), so a compiled Theano function
    with one output, a torch scalar or a Python float all work.
    """
    if isinstance(out, Mapping):
        if "loss" not in out:
            raise ValueError(f"a step or loss function that returns a dict must put the minimised loss under "
                             f"'loss'; got the keys {sorted(out)}")
        items = out.items()
    else:
        items = [("loss", out)]
    losses = {}
    for name, value in items:
        try:
            losses[name] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"the step returned {name} = {value!r}, which is not one number: return the loss "
                             "(e.g. loss.item()), or a dict of such numbers") from None
    return losses


class EarlyStopping:
    """Keep the weights of the best validation value; stop after ``patience`` periods without a better one.

    :meth:`update` takes the validation value after a period (higher is better) and, when it beats
    the best so far, a deep copy of ``model.state_dict()``; :attr:`stop` is True after ``patience``
    periods in a row without improvement; :meth:`restore` loads the best weights back (any model with
    ``state_dict`` / ``load_state_dict``, so it serves both tracks).
    """

    def __init__(self, patience: int = 3):
        self.patience = check_int("patience", patience)
        self.best, self.best_period, self.best_state, self.bad_periods = -math.inf, None, None, 0

    def update(self, value: float, model, period: int) -> bool:
        """Record the validation ``value`` of ``period``; True when it is the best so far."""
        if value > self.best:
            self.best, self.best_period, self.bad_periods = float(value), int(period), 0
            self.best_state = copy.deepcopy(model.state_dict())
            return True
        self.bad_periods += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad_periods >= self.patience

    def restore(self, model) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@dataclass
class TrainingLog:
    """What :func:`train_loop` saw, one entry per period (an epoch, or ``eval_every`` updates).

    ``steps``: the number of steps done at the end of each period; ``losses``: the mean of each named
    loss over the period's steps; ``metrics``: what ``evaluate`` returned after each period;
    ``seconds``: each period's wall time, validation included; ``train_seconds``: its steps alone;
    ``best_period``: the period whose weights the model holds at the end (1-based; the last one
    without validation); ``best_value``: its monitored value (nan without validation).
    """

    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    best_period: int = 0
    best_value: float = float("nan")


def train_loop(step: Callable[[Any], Any], periods: Iterable[Iterable[Any]], *, model=None,
               evaluate: Callable[[int], Mapping[str, float]] | None = None, monitor: str | None = None,
               patience: int = 3, cause: str = "check the inputs for NaN", period_name: str = "epoch",
               total_steps: int | None = None, progress: bool = False, desc: str = "training") -> TrainingLog:
    """Call ``step(batch)`` on every batch of every period; evaluate and early-stop after each period.

    * ``step(batch) -> number | dict``: one update of ``model`` on ``batch`` (see :func:`as_losses`);
    * ``periods``: an iterable of iterables of batches (drawn lazily, so a period's random draws
      happen when it starts, in the same order as a hand-written loop);
    * ``evaluate(period) -> {name: value}`` (optional): validation after each period; ``monitor``
      names the value that early stopping watches (higher is better) with ``patience``; the best
      period's weights are restored at the end (``model`` needs ``state_dict``/``load_state_dict``);
    * a loss that is not finite stops training with :class:`~course_lib.validation.TrainingDiverged`
      naming the period, the step, the loss and ``cause`` (what to change).
    """
    from tqdm.auto import tqdm

    if evaluate is not None and (model is None or monitor is None):
        raise ValueError("train_loop with evaluate= needs model= (to keep its best weights) and monitor=")
    stopper = EarlyStopping(patience)
    log = TrainingLog()
    n_steps = 0
    bar = tqdm(total=total_steps, desc=desc, disable=not progress, leave=False)
    for period, batches in enumerate(periods, start=1):
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        count = 0
        for batch in batches:
            losses = as_losses(step(batch))
            count, n_steps = count + 1, n_steps + 1
            for name, value in losses.items():
                check_finite(value, where=f"{period_name} {period}, step {n_steps} ({name})", cause=cause)
                sums[name] = sums.get(name, 0.0) + value
            bar.update(1)
        if count == 0:
            break
        log.train_seconds.append(time.perf_counter() - t0)
        log.steps.append(n_steps)
        for name, total in sums.items():
            log.losses.setdefault(name, []).append(total / count)
        postfix = {"loss": f"{sums['loss'] / count:.4g}"}
        if evaluate is not None:
            results = evaluate(period)
            for name, value in results.items():
                log.metrics.setdefault(name, []).append(float(value))
            stopper.update(float(results[monitor]), model, period)
            postfix[monitor] = f"{float(results[monitor]):.4f}"
        log.seconds.append(time.perf_counter() - t0)
        bar.set_postfix(postfix)
        if evaluate is not None and stopper.stop:
            break
    bar.close()
    if not log.steps:
        raise ValueError("training ran no step: there was no batch to train on")
    if evaluate is not None:
        stopper.restore(model)
        log.best_period, log.best_value = stopper.best_period, stopper.best
    else:
        log.best_period = len(log.steps)
    return log


def check_plugins(loss_fn=None, step_fn=None) -> None:
    """``loss_fn`` (your loss inside the library's step) or ``step_fn`` (your whole step): functions, not both."""
    if step_fn is not None and loss_fn is not None:
        raise ValueError("pass loss_fn= (your loss inside the library's step) or step_fn= (your whole step), not both")
    for name, fn in (("loss_fn", loss_fn), ("step_fn", step_fn)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{name} must be a function, got {type(fn).__name__}")


def check_text_batch(ids, mask, paper_idx, n_papers: int, encoder=None) -> None:
    """The numeric text inputs of a compiled Theano call ``(ids, mask, paper_idx)``, checked in the
    course's words before running: ``(B, L)``, ``(B, L)``, ``(B,)`` paper ids in ``[0, n_papers)``,
    and whatever the encoder's own ``check`` asks."""
    ids, mask = np.asarray(ids), np.asarray(mask)
    if ids.ndim != 2 or ids.shape != mask.shape or ids.shape[0] != np.asarray(paper_idx).shape[0]:
        raise ValueError(f"ids {ids.shape} and mask {mask.shape} must be (B, L) and paper_idx "
                         f"{np.asarray(paper_idx).shape} (B,): one row per paper")
    check_ids(paper_idx, n_papers, "paper")
    if encoder is not None and hasattr(encoder, "check"):
        encoder.check(ids, mask, paper_idx)


def check_scores_finite(scores: np.ndarray, where: str, cause: str) -> np.ndarray:
    """``scores`` if every entry is finite; else :class:`TrainingDiverged` naming ``where`` and ``cause``."""
    scores = np.asarray(scores)
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise TrainingDiverged(f"{bad} validation scores became NaN or infinite {where}: {cause}")
    return scores


# --------------------------------------------------------------------------------------------
# Arguments


def recall_cutoff(monitor: str) -> int:
    """The ``K`` of ``monitor = "Recall@K"``; a clear error for anything else."""
    if not (isinstance(monitor, str) and monitor.startswith("Recall@") and monitor[7:].isdecimal()
            and int(monitor[7:]) > 0):
        raise ValueError(f"monitor must look like 'Recall@50' (validation Recall at a cut-off K >= 1), "
                         f"got {monitor!r}")
    return int(monitor[7:])


def check_model_args(n_users: int, n_papers: int, item_dim: int, merge: str, encoder=None, hidden=(),
                     init_std: float = 0.05, **dropouts: float) -> None:
    """Check the sizes, ``merge``, ``hidden``, ``init_std``, the encoder's ``out_dim`` and the dropout
    rates of a ``HybridRecommender``; ``dropouts`` are the rates by name, each in [0, 1)."""
    check_choice("merge", merge, MERGES)
    for name, value in (("n_users", n_users), ("n_papers", n_papers), ("item_dim", item_dim)):
        check_int(name, value)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Iterable):
        raise ValueError(f"hidden must be a tuple of layer sizes, e.g. (64,) or () for none; got {hidden!r}")
    for size in hidden:
        check_int("every size in hidden", size)
    check_positive("init_std", init_std)
    if encoder is not None and not isinstance(getattr(encoder, "out_dim", None), numbers.Integral):
        raise ValueError("the content encoder must have an integer attribute `out_dim` (its output size)")
    for name, rate in dropouts.items():
        check_fraction(name, rate)


def check_train_args(shape: tuple[int, int], train_likes, valid_likes=None, *, loss: str = "wmse",
                     optimizer: str = "adagrad", monitor: str = "Recall@50", batch_size: int = 64,
                     epochs: int = 20, patience: int = 3, n_texts: int | None = None, lr: float = 0.1,
                     alpha: float = 50.0, n_sample: int | None = None, weight_decay: float = 0.0) -> None:
    """Check ``train_hybrid``'s arguments against a model with ``shape = (n_users, n_papers)``.

    ``n_texts`` is the number of paper texts passed (one per paper of the model), when known.
    ``n_sample`` (negative users per like, or per paper for weighted MSE) may not exceed the number
    of users: there are no more users to draw from.
    """
    check_choice("loss", loss, LOSSES)
    recall_cutoff(monitor)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    shape = tuple(int(s) for s in shape)
    for name, m in [("train_likes", train_likes), ("valid_likes", valid_likes)]:
        if m is None:
            continue
        if not hasattr(m, "shape") or len(m.shape) != 2:
            raise ValueError(f"{name} must be a (n_users, n_papers) like matrix (scipy sparse or numpy), "
                             f"got {type(m).__name__}")
        if tuple(m.shape) != shape:
            raise ValueError(f"{name} has shape {m.shape}, the model expects (n_users, n_papers) = {shape}")
    check_int("batch_size", batch_size)
    check_int("epochs", epochs)
    if not (isinstance(patience, numbers.Integral) and patience >= 1):
        raise ValueError(f"patience must be >= 1 (epochs without a better validation {monitor} before "
                         f"stopping), got {patience}")
    check_positive("lr", lr)
    check_positive("alpha", alpha)
    check_nonnegative("weight_decay", weight_decay)
    if n_sample is not None:
        check_int("n_sample", n_sample, 1, shape[0])
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


def check_hybrid_memory(selection: "PaperSelection", batch_size: int, loss: str, n_sample: int | None) -> None:
    """Fail fast when one mini-batch of the hybrid would not fit in memory.

    A batch holds ``(batch, n_users)`` scores, targets and their gradients (about 6 float32 arrays),
    and for the sampled losses ``(likes in the batch, n_sample)`` negative users with their scores
    and gradients (about 4 arrays of 8 bytes). The largest batch is the ``batch_size`` most-liked papers.
    """
    n_users = selection.by_paper.shape[1]
    batch = min(batch_size, len(selection.train_papers))
    check_memory(6 * 4 * batch * n_users, f"a mini-batch's ({batch}, {n_users}) score matrices",
                 "lower batch_size")
    if loss != "wmse" or n_sample is not None:
        likes = np.sort(np.diff(selection.by_paper.indptr))[::-1]
        rows = int(likes[:batch].sum()) if loss != "wmse" else batch
        n = n_sample if n_sample is not None else 20
        check_memory(4 * 8 * rows * n, f"the ({rows}, n_sample={n}) negative users of a mini-batch",
                     "lower n_sample or batch_size")


def check_saved_encoder(saved: str | None, encoder) -> None:
    """``load`` of a saved model: the encoder passed must be of the kind that was saved (``saved`` is its
    class name, None for a model without content encoder)."""
    if saved is None and encoder is not None:
        raise ValueError("the saved model has no encoder; call load(path) without encoder=")
    if saved is not None and type(encoder).__name__ != saved:
        raise ValueError(f"the saved model has encoder {saved!r}; pass encoder= a freshly built {saved} with the "
                         f"same sizes (got {type(encoder).__name__ if encoder is not None else None})")


# --------------------------------------------------------------------------------------------
# The hybrid: papers, batches, epochs


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


def prepare_hybrid_run(shape: tuple[int, int], n_texts: int, train_likes, valid_likes, *, loss_fn=None, step_fn=None,
                       **settings) -> PaperSelection:
    """Everything ``train_hybrid`` (both tracks) checks before any work, then :func:`select_papers`:
    the arguments (:func:`check_train_args` with ``settings``), the plug-ins (:func:`check_plugins`)
    and the memory of one mini-batch (:func:`check_hybrid_memory`)."""
    check_train_args(shape, train_likes, valid_likes, n_texts=n_texts, **settings)
    check_plugins(loss_fn, step_fn)
    selection = select_papers(train_likes, valid_likes)
    check_hybrid_memory(selection, settings["batch_size"], settings["loss"], settings["n_sample"])
    return selection


def hybrid_loop(step: Callable[[np.ndarray], Any], model, selection: PaperSelection, train_likes,
                score_papers: Callable[[np.ndarray], np.ndarray], *, batch_size: int, epochs: int, patience: int,
                monitor: str, seed: int, cause: str, progress: bool, desc: str = "hybrid") -> dict[str, list]:
    """The epochs of ``train_hybrid`` (both tracks): shuffled mini-batches of the training papers
    (``np.random.default_rng(seed)``), ``step(papers)`` on each, then, with validation likes, the
    validation papers scored by ``score_papers`` and Recall@50, @100 and @K of
    :func:`course_lib.evaluation.evaluate_flip` (training likes excluded), early stopping on
    ``monitor`` and the best epoch's weights restored.

    Returns the history: one list per named loss of the step (``loss``, and e.g. ``rec_loss``,
    ``aux_loss``), ``epoch``, ``seconds`` (with validation), ``train_seconds`` (the steps alone),
    ``n_steps``, one list per validation metric (``valid_Recall@50``, ...) and ``best_epoch``
    (a one-element list).
    """
    rng = np.random.default_rng(int(seed))
    ks = tuple(sorted({50, 100, recall_cutoff(monitor)}))
    evaluate = None
    if selection.valid_papers is not None:
        def evaluate(epoch: int) -> dict[str, float]:
            scores = check_scores_finite(score_papers(selection.valid_papers), f"after epoch {epoch}", cause)
            res = evaluate_flip(scores, selection.valid_likes, likes_train=train_likes,
                                papers=selection.valid_papers, ks=ks, metrics=("recall",))
            return {f"Recall@{k}": res[f"Recall@{k}"] for k in ks}

    periods = (paper_batches(selection.train_papers, batch_size, rng) for _ in range(epochs))
    per_epoch = math.ceil(len(selection.train_papers) / batch_size)
    log = train_loop(step, periods, model=model, evaluate=evaluate, monitor=monitor, patience=patience,
                     cause=cause, period_name="epoch", total_steps=epochs * per_epoch, progress=progress, desc=desc)
    history: dict[str, list] = {"epoch": list(range(1, len(log.steps) + 1)), **log.losses,
                                "seconds": log.seconds, "train_seconds": log.train_seconds,
                                "n_steps": np.diff([0] + log.steps).tolist()}
    for name, values in log.metrics.items():
        history[f"valid_{name}"] = values
    history["best_epoch"] = [log.best_period]
    return history


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
    check_nonnegative("ns_exponent", ns_exponent)
    counts[0] = 0.0  # padding is not a word
    if (counts < 0).any() or not np.isfinite(counts).all() or counts.sum() <= 0:
        raise ValueError("word_counts must be finite and non-negative with at least one word besides padding")
    noise = counts**ns_exponent
    return np.cumsum(noise / noise.sum())


def check_p2v_sizes(dim: int, lambda_p2v: float, negative: int, n_words: int, infer_steps: int = 100,
                    infer_lr: float = 0.1) -> None:
    """The sizes of a level (c) encoder: ``lambda_p2v >= 0``, ``infer_lr > 0``, the others ``>= 1``."""
    check_int("dim", dim)
    check_nonnegative("lambda_p2v", lambda_p2v)
    check_int("negative", negative)
    check_int("n_words", n_words)
    check_int("infer_steps", infer_steps)
    check_positive("infer_lr", infer_lr)


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


# --------------------------------------------------------------------------------------------
# Ask the GRU (both tracks)

# The settings of section 4.1.2 of the paper, the defaults of both tracks.
EMB_DIM = 200  # K_w = K = 200, "to be consistent with CTR"
HIDDEN1 = 400  # K_h1, first (bidirectional) layer; per direction, as K_h in eq. (6)-(8)
HIDDEN2 = 200  # K_h2, second layer = output dimension K
DROPOUT = (0.1, 0.5, 0.3)  # embedding layer, first-layer output, second-layer output
ALPHA_CONF = 10.0  # alpha in c_ij = 1 + alpha log(1 + |R_i| / eps)
EPS_CONF = 1e-8  # eps in the same formula
BATCH_USERS = 512  # B
REG_USER = 0.01  # "we also regularize the user embeddings with weight 0.01"
MAX_UPDATES = 20_000  # "a maximum of 20k mini-batch updates"



def frequent_tags(paper_tags, min_papers: int = 10) -> tuple[sp.csr_matrix, np.ndarray]:
    """Keep the tags used on at least ``min_papers`` papers (Ask the GRU, section 4.1: "removed tags
    that occur on less than 10 articles"). Returns the ``(n_papers, n_kept)`` binary csr and the kept tag ids."""
    check_int("min_papers", min_papers)
    tags = sp.csr_matrix(paper_tags, dtype=np.float32)
    tags.data[:] = 1.0
    keep = np.flatnonzero(np.asarray((tags > 0).sum(axis=0)).ravel() >= min_papers)
    if keep.size == 0:
        raise ValueError(f"no tag is used on >= {min_papers} papers; lower min_papers for this tier")
    return sp.csr_matrix(tags[:, keep]), keep


def check_encoder_args(n_words: int, emb_dim: int, dropout=(), **hidden: int) -> None:
    """The sizes of an Ask-the-GRU text encoder (both tracks): ``n_words >= 2`` (padding and a word),
    ``emb_dim`` and the ``hidden`` sizes ``>= 1``, each dropout rate in [0, 1)."""
    check_int("n_words", n_words, 2)
    check_int("emb_dim", emb_dim)
    for name, size in hidden.items():
        check_int(name, size)
    for rate in dropout:
        check_fraction("every dropout rate", rate)


def check_askgru_args(encoder, n_users: int, n_papers: int, n_tags: int) -> None:
    """The sizes of an ``AskGRU`` model (both tracks) and its encoder's integer ``out_dim``."""
    check_int("n_users", n_users)
    check_int("n_papers", n_papers)
    check_int("n_tags", n_tags, 0)
    if not isinstance(getattr(encoder, "out_dim", None), numbers.Integral):
        raise ValueError("the text encoder must have an integer attribute `out_dim` (its output size)")


def check_askgru_memory(encoder_config: Mapping, batch_users: int, width: int) -> None:
    """Fail fast when one Ask-the-GRU update would not fit in memory: ``2 * batch_users`` papers of
    ``width`` words, each word carrying its embedding and, in the GRU, the gates and states of both
    layers (``emb_dim + 8 hidden1 + 4 hidden2`` numbers), about three float32 copies with the gradients."""
    per_word = encoder_config.get("emb_dim", 1) + 8 * encoder_config.get("hidden1", 0) \
        + 4 * encoder_config.get("hidden2", 0)
    check_memory(3 * 4 * 2 * batch_users * width * per_word,
                 f"one update's activations (2 x {batch_users} papers x {width} words x {per_word} numbers)",
                 "lower batch_users, or encode the texts with a smaller max_len")


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


@dataclass
class PairBatch:
    """One Ask-the-GRU mini-batch as a loss function sees it: ``2B`` (user, paper) pairs, the ``B``
    liked papers first, then one sampled negative per user.

    ``users`` ``(2B,)``; ``paper_idx`` ``(2B,)``; ``target`` ``(2B,)``: 1 for a liked paper, 0 for
    the negative; ``n_likes`` ``(2B,)``: ``|R_i|``, the training likes of the pair's user; ``conf``
    ``(2B,)``: ``c_ij = 1 + alpha log(1 + |R_i| / eps)``; ``tags`` ``(2B, n_tags)``: the training
    tags of each pair's paper (None when the model has no tag task). numpy arrays from
    :func:`askgru_loop`; tensors or symbolic variables inside a track's step.
    """

    users: Any
    paper_idx: Any
    target: Any
    n_likes: Any
    conf: Any
    tags: Any = None


@dataclass
class History:
    """What ``fit`` saw (both tracks): losses averaged over each evaluation period, validation recall.

    ``update``: the update count at each evaluation; ``loss`` (the minimised cost ``C``), ``loss_rec``
    (``C_R``), ``loss_tag`` (``C_T``): their means over the period (a step that returns only the loss
    leaves the other two empty); ``valid_recall``: Recall@``valid_k`` at each evaluation;
    ``best_update``/``best_recall``: the evaluation whose weights were kept; ``seconds``: the whole
    run; ``n_updates``; ``examples_per_second``: (user, paper) pairs per second of steps;
    ``compile_seconds``: compiling the step (Theano track; 0 in PyTorch).
    """

    update: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    loss_rec: list[float] = field(default_factory=list)
    loss_tag: list[float] = field(default_factory=list)
    valid_recall: list[float] = field(default_factory=list)
    best_update: int = 0
    best_recall: float = float("nan")
    seconds: float = 0.0
    n_updates: int = 0
    examples_per_second: float = 0.0
    compile_seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def check_fit_args(model_shape: tuple[int, int, int], likes, n_texts: int, *, tags=None, lambda_mtl: float = 1.0,
                   tag_neg_weight: float = 0.01, train_papers=None, valid_likes=None, valid_papers=None,
                   valid_exclude=None, valid_k: int = 50, batch_users: int = 512, max_updates: int = 20_000,
                   lr: float = 1e-3, reg_user: float = 0.01, alpha_conf: float = 10.0, eps_conf: float = 1e-8,
                   eval_every: int = 500, patience: int = 5) -> tuple[sp.csr_matrix, sp.csr_matrix | None]:
    """Check Ask the GRU's ``fit`` arguments against a model of ``(n_users, n_papers, n_tags)``,
    before any work. Returns the likes (float32 csr, sorted) and the tags (csr, or None when the
    tag task is off)."""
    n_users, n_papers, n_tags = model_shape
    for name, value in (("batch_users", batch_users), ("max_updates", max_updates), ("eval_every", eval_every),
                        ("patience", patience), ("valid_k", valid_k)):
        check_int(name, value)
    check_positive("lr", lr)
    check_positive("eps_conf", eps_conf)
    for name, value in (("reg_user", reg_user), ("alpha_conf", alpha_conf), ("tag_neg_weight", tag_neg_weight)):
        check_nonnegative(name, value)
    check_fraction("lambda_mtl", lambda_mtl, upper_inclusive=True)
    if not sp.issparse(likes) and not isinstance(likes, np.ndarray):
        raise ValueError(f"likes must be a (n_users, n_papers) like matrix (scipy sparse or numpy), "
                         f"got {type(likes).__name__}")
    likes = sp.csr_matrix(likes, dtype=np.float32)
    if likes.shape != (n_users, n_papers):
        raise ValueError(f"likes has shape {likes.shape}, the model expects ({n_users}, {n_papers})")
    if n_texts != n_papers:
        raise ValueError(f"texts has {n_texts} papers, the model expects {n_papers}")
    if likes.nnz == 0:
        raise ValueError("likes is empty: there is nothing to train on")
    likes.sort_indices()
    if lambda_mtl < 1.0:
        if tags is None:
            raise ValueError(f"lambda_mtl={lambda_mtl} asks for the tag task but tags is None; pass tags= or "
                             "lambda_mtl=1")
        tags = sp.csr_matrix(tags, dtype=np.float32)
        if tags.shape != (n_papers, n_tags) or n_tags == 0:
            raise ValueError(f"tags has shape {tags.shape}; build AskGRU(..., n_tags={tags.shape[1]}) "
                             f"for {n_papers} papers")
    else:
        tags = None
    if train_papers is not None:
        if np.asarray(train_papers).size == 0:
            raise ValueError("train_papers is empty: negatives are drawn from it; pass None to use the papers "
                             "with a training like")
    if valid_likes is not None:
        if tuple(valid_likes.shape) != (n_users, n_papers):
            raise ValueError(f"valid_likes has shape {valid_likes.shape}, the model expects ({n_users}, {n_papers})")
        if valid_exclude is not None and tuple(valid_exclude.shape) != (n_users, n_papers):
            raise ValueError(f"valid_exclude has shape {valid_exclude.shape}, the model expects "
                             f"({n_users}, {n_papers})")
        n_cand = n_papers if valid_papers is None else np.asarray(valid_papers).size
        if valid_k > n_cand:
            raise ValueError(f"valid_k must be an integer in [1, {n_cand}] (the number of validation candidates), "
                             f"got {valid_k}")
    return likes, tags


def askgru_loop(step: Callable[[PairBatch], Any], model, likes: sp.csr_matrix, *, tags, train_papers,
                valid_likes, valid_papers, valid_exclude, valid_k: int, batch_users: int, max_updates: int,
                eval_every: int, patience: int, alpha_conf: float, eps_conf: float, seed: int,
                score_fn: Callable[[np.ndarray], Any], cause: str, progress: bool, desc: str) -> History:
    """The updates of Ask the GRU's ``fit`` (both tracks), section 4.1.2: each draws ``batch_users``
    users with one liked and one not-liked paper (:func:`sample_user_pairs`, ``default_rng(seed)``)
    and calls ``step(PairBatch)``; every ``eval_every`` updates, with validation likes, Recall@``valid_k``
    on ``valid_likes`` (candidates ``valid_papers``, ``valid_exclude`` removed) from
    ``score_fn(candidates)`` (users -> scores, see :func:`course_lib.evaluation.evaluate_ranking`)
    decides early stopping (``patience`` evaluations; the best weights restored).

    ``likes`` and ``tags`` as returned by :func:`check_fit_args`; ``train_papers``: the papers a
    negative is drawn from (None: those with a training like).
    """
    start = time.perf_counter()
    rng = np.random.default_rng(int(seed))
    n_likes = np.diff(likes.indptr)
    users_pool = np.flatnonzero(n_likes)
    batch_users = clamp_count("batch_users", batch_users, users_pool.size, "users with training likes")
    if train_papers is None:
        train_papers = np.flatnonzero(np.asarray(likes.sum(axis=0)).ravel() > 0)
    conf_all = 1.0 + alpha_conf * np.log1p(n_likes / eps_conf)  # (n_users,) c_ij of section 4.1.2

    def batches():
        for _ in range(max_updates):
            users, pos, neg = sample_user_pairs(likes, users_pool, train_papers, batch_users, rng)
            papers = np.concatenate([pos, neg])  # (2B,)
            u = np.concatenate([users, users])
            yield PairBatch(u, papers, np.r_[np.ones(users.size), np.zeros(users.size)], n_likes[u], conf_all[u],
                            None if tags is None else tags[papers].toarray())

    evaluate = None
    if valid_likes is not None:
        cand = np.arange(likes.shape[1]) if valid_papers is None else np.asarray(valid_papers)
        test = sp.csr_matrix(valid_likes)[:, cand]
        excl = None if valid_exclude is None else sp.csr_matrix(valid_exclude)[:, cand]

        def evaluate(period: int) -> dict[str, float]:
            block = score_fn(cand)
            where = f"after update {period * eval_every}"
            res = evaluate_ranking(lambda users: check_scores_finite(block(users), where, cause), test, exclude=excl,
                                   ks=(valid_k,), metrics=("recall",))
            return {"recall": res[f"Recall@{valid_k}"]}

    stream = batches()
    periods = (islice(stream, eval_every) for _ in range(math.ceil(max_updates / eval_every)))
    log = train_loop(step, periods, model=model, evaluate=evaluate, monitor="recall", patience=patience,
                     cause=cause, period_name="evaluation period", total_steps=max_updates, progress=progress,
                     desc=desc)
    pairs_per_step = 2 * batch_users
    hist = History(update=log.steps, loss=log.losses["loss"], loss_rec=log.losses.get("loss_rec", []),
                   loss_tag=log.losses.get("loss_tag", []), valid_recall=log.metrics.get("recall", []),
                   n_updates=log.steps[-1], seconds=time.perf_counter() - start,
                   examples_per_second=pairs_per_step * log.steps[-1] / max(sum(log.train_seconds), 1e-9))
    if evaluate is not None:
        hist.best_update, hist.best_recall = log.steps[log.best_period - 1], log.best_value
    else:
        hist.best_update = log.steps[-1]
    return hist
