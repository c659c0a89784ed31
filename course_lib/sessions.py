"""The framework-neutral half of GRU4Rec, shared by the PyTorch and the Theano track.

Everything here uses only numpy and pandas, so ``course_lib.theano_models.gru4rec`` can import it
without torch (the Theano track must also run in the original Theano 1.0.5 environment, where
torch is not installed). ``course_lib.torch_models.gru4rec`` re-exports these names. Because
both tracks use this code, they see the same data, the same steps and, for the same seed, the
same negatives:

* :func:`prepare_sessions` checks a ``SessionId, ItemId, Time`` frame and puts it in training
  order (``GRU4Rec.prepare`` calls it); :func:`training_arrays` turns it into item columns,
  session offsets and popularity;
* :func:`session_parallel_batches` yields the :class:`Step` of session-parallel mini-batches
  (paper, Section 3.1.1);
* :class:`SampleStore` draws the extra negatives from a precomputed store (numpy arrays; the
  PyTorch track keeps a subclass that moves each store to its device);
* :func:`gru4rec_params` checks the constructor arguments that both tracks share and builds their
  ``params`` dict, to which a track adds its own keys; :class:`GRU4RecSettings`, the base of both
  tracks' ``GRU4Rec``, keeps them as attributes.
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterator, NamedTuple

import numpy as np
import pandas as pd

from course_lib.validation import (
    check_choice, check_fraction, check_int, check_memory, check_nonnegative, check_positive, clamp_count,
)

LOSSES = ("cross-entropy", "bpr-max", "top1-max", "bpr", "top1")
COLUMNS = ("SessionId", "ItemId", "Time")


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
def parse_final_act(name: str) -> tuple[str, float | None]:
    """``(kind, parameter)`` of a final activation name, for both tracks: ``linear`` and
    ``softmax`` (softmax lives in the cross-entropy loss) give ``("linear", None)``; ``tanh`` and
    ``relu`` no parameter; ``elu-<alpha>`` and ``leaky-<slope>`` their number (alone: 1.0 and
    0.01). Anything else is a ``ValueError`` that lists the valid names."""
    if name in ("linear", "softmax"):
        return "linear", None
    if name in ("tanh", "relu"):
        return name, None
    for prefix, default in (("elu", 1.0), ("leaky", 0.01)):
        if name == prefix or (isinstance(name, str) and name.startswith(prefix + "-")):
            if "-" not in name:
                return prefix, default
            try:
                return prefix, float(name.split("-", 1)[1])
            except ValueError:
                raise ValueError(f"final_act {name!r}: the part after '{prefix}-' must be a number, "
                                 f"as in '{prefix}-0.5'") from None
    raise ValueError(f"final_act must be linear, softmax, tanh, relu, elu-<alpha> or leaky-<slope>, got {name!r}")


def check_slot_items(item_idx, hidden, item_ids) -> np.ndarray:
    """The ``item_idx`` given to a session scorer's ``score_next``, checked: one column index in
    ``[0, len(item_ids))`` per slot of ``hidden`` (the model's list of hidden states, ``None``
    before ``reset``). Returns it as an int64 array; raises ``ValueError`` saying what to do otherwise."""
    if hidden is None:
        raise ValueError("call model.reset(n_slots) before score_next, to start the hidden states")
    n_slots, n_items = hidden[0].shape[0], len(item_ids)
    idx = np.asarray(item_idx, dtype=np.int64)
    if idx.shape != (n_slots,):
        raise ValueError(f"item_idx must have shape ({n_slots},) (one item per slot), got {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_items):
        raise ValueError(f"item_idx must be column indices in [0, {n_items}); map raw ids "
                         "with np.searchsorted(model.item_ids, ids) and skip unknown ones")
    return idx


# GRU4Rec()'s defaults, and where they come from. The official code's are in the comments; they
# differ where the course's small catalogues call for it (see the GRU4Rec docstrings).
DEFAULTS = dict(
    layers=(100,),  # official [100]
    loss="cross-entropy",  # official "cross-entropy"
    final_act="linear",  # official: none for cross-entropy, elu_param=0.5 inside BPR-max
    n_sample=2048,  # official 2048; clamped to the number of training items, with a warning
    sample_alpha=0.75,  # official 0.5
    logq=0.0,  # official 0.0
    bpreg=1.0,  # official 1.0
    embedding=0,  # official 0 (one-hot input); "layersize" = the first layer's size, as official
    constrained_embedding=False,  # official True
    dropout_p_embed=0.0, dropout_p_hidden=0.0,  # official 0.0 and 0.0
    optimizer="adagrad",  # official: Adagrad with momentum, the only one it has
    learning_rate=0.05,  # official 0.05
    momentum=0.0,  # official 0.0
    batch_size=32,  # official 64
    n_epochs=10,  # official 10
    sample_store_size=10_000_000,  # official 10,000,000 (sample_cache_max_size)
    seed=0,  # official: torch's global generator, and numpy seed 42 for the weights
    dropout_state="dropped",  # official: the dropped-out state is carried
)


def gru4rec_params(layers=DEFAULTS["layers"], loss=DEFAULTS["loss"], final_act=DEFAULTS["final_act"],
                   n_sample=DEFAULTS["n_sample"], sample_alpha=DEFAULTS["sample_alpha"], logq=DEFAULTS["logq"],
                   bpreg=DEFAULTS["bpreg"], embedding=DEFAULTS["embedding"],
                   constrained_embedding=DEFAULTS["constrained_embedding"], dropout_p_embed=DEFAULTS["dropout_p_embed"],
                   dropout_p_hidden=DEFAULTS["dropout_p_hidden"], optimizer=DEFAULTS["optimizer"],
                   learning_rate=DEFAULTS["learning_rate"], momentum=DEFAULTS["momentum"],
                   batch_size=DEFAULTS["batch_size"], n_epochs=DEFAULTS["n_epochs"],
                   sample_store_size=DEFAULTS["sample_store_size"], seed=DEFAULTS["seed"],
                   dropout_state=DEFAULTS["dropout_state"]) -> dict:
    """Check the GRU4Rec arguments that both tracks share, before any work, and return them as plain
    Python values (``layers`` a list of ints, ``embedding="layersize"`` resolved to ``layers[0]``).

    Each bad value is a ``ValueError`` naming the argument, the value and what is allowed. What
    depends on the data (``n_sample`` larger than the catalogue) is checked by the trainer.
    """
    check_choice("loss", loss, LOSSES)
    check_choice("optimizer", optimizer, ("adagrad", "adam"))
    check_choice("dropout_state", dropout_state, ("kept", "dropped"))
    parse_final_act(final_act)
    if isinstance(layers, (str, bytes)) or not (np.isscalar(layers) or isinstance(layers, (list, tuple, np.ndarray))):
        raise ValueError(f"layers must be a list of hidden sizes such as [100], got {layers!r}")
    layers = [layers] if np.isscalar(layers) else list(layers)
    if not layers:
        raise ValueError("layers must be a list of hidden sizes such as [100], got []")
    layers = [check_int(f"layers[{k}]", h, minimum=1) for k, h in enumerate(layers)]
    if embedding == "layersize":
        embedding = layers[0]
    embedding = check_int("embedding", embedding, minimum=0)
    if not isinstance(constrained_embedding, (bool, np.bool_)):
        raise ValueError(f"constrained_embedding must be True or False, got {constrained_embedding!r}")
    return dict(layers=layers, loss=loss, final_act=final_act, n_sample=check_int("n_sample", n_sample, minimum=0),
                sample_alpha=check_nonnegative("sample_alpha", sample_alpha), logq=check_nonnegative("logq", logq),
                bpreg=check_nonnegative("bpreg", bpreg), embedding=embedding,
                constrained_embedding=bool(constrained_embedding),
                dropout_p_embed=check_fraction("dropout_p_embed", dropout_p_embed),
                dropout_p_hidden=check_fraction("dropout_p_hidden", dropout_p_hidden), optimizer=optimizer,
                learning_rate=check_positive("learning_rate", learning_rate),
                momentum=check_fraction("momentum", momentum),
                batch_size=check_int("batch_size", batch_size, minimum=1),
                n_epochs=check_int("n_epochs", n_epochs, minimum=1),
                sample_store_size=check_int("sample_store_size", sample_store_size, minimum=1),
                seed=check_int("seed", seed, minimum=0), dropout_state=dropout_state)


class GRU4RecSettings:
    """The hyperparameters that both tracks' ``GRU4Rec`` keep as attributes of the constructor
    arguments' names (checked by :func:`gru4rec_params`); each track adds its own switches."""

    # architecture
    layers: list[int]
    embedding: int
    constrained_embedding: bool
    final_act: str
    # loss and negatives
    loss: str
    n_sample: int
    sample_alpha: float
    logq: float
    bpreg: float
    # regularisation
    dropout_p_embed: float
    dropout_p_hidden: float
    dropout_state: str
    # optimisation
    optimizer: str
    learning_rate: float
    momentum: float
    batch_size: int
    n_epochs: int
    sample_store_size: int
    seed: int

    def _set_settings(self, args: dict) -> None:
        """Check the shared arguments among ``args`` (a constructor's ``locals()``: the names of
        ``DEFAULTS`` are taken, the rest ignored) and keep them as attributes."""
        for name, value in gru4rec_params(**{k: args[k] for k in DEFAULTS}).items():
            setattr(self, name, value)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def prepare_sessions(df: pd.DataFrame, what: str = "train") -> tuple[pd.DataFrame, dict]:
    """Validate a session frame and put it in training order.

    Events are sorted by time inside each session (the paper's protocol reads a session in
    time order) and sessions by their first event. Sessions of one event carry no
    (input, target) pair and are dropped. Both are counted in the returned report.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{what} frame needs columns {list(COLUMNS)}, missing {missing}")
    if len(df) == 0:
        raise ValueError(f"{what} frame is empty: give it at least one session with 2 events")
    if df[list(COLUMNS)].isna().any().any():
        raise ValueError(f"{what} frame has missing values in {list(COLUMNS)}: drop those rows first")
    df = df[list(COLUMNS)]
    report = {"events_in": len(df), "sessions_in": int(df["SessionId"].nunique())}
    t, sid = df["Time"].to_numpy(), df["SessionId"].to_numpy()
    back_in_time = (sid[1:] == sid[:-1]) & (t[1:] < t[:-1])
    report["sessions_resorted"] = int(np.unique(sid[1:][back_in_time]).size)
    size = df.groupby("SessionId")["ItemId"].transform("size")
    report["sessions_len1_dropped"] = int((size == 1).sum())
    df = df[size > 1]
    if len(df) == 0:
        raise ValueError(f"every session of the {what} frame has a single event; GRU4Rec needs sessions of >= 2")
    start = df.groupby("SessionId")["Time"].transform("min")
    df = (df.assign(_start=start).sort_values(["_start", "SessionId", "Time"], kind="stable")
          .drop(columns="_start").reset_index(drop=True))
    report["events_used"], report["sessions_used"] = len(df), int(df["SessionId"].nunique())
    return df, report


def read_sessions(path, session_col: str = "SessionId", item_col: str = "ItemId", time_col: str | None = "Time",
                  sep: str | None = None) -> pd.DataFrame:
    """Read any CSV/TSV of clicks into the course's session frame (``SessionId``, ``ItemId``, ``Time``).

    ``session_col``, ``item_col`` and ``time_col`` name the file's columns (``time_col=None``: the
    file's order is the time order). ``sep`` is the separator (None: tab for ``.tsv``/``.txt``
    files whose first line has a tab, else a comma). Ids are kept as read (numbers or strings);
    times are numbers or anything ``pandas.to_datetime`` reads (then Unix seconds). Events are
    sorted by session, then time (stable). Every problem is a ``ValueError`` naming the file.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: give the path of a CSV or TSV file of clicks")
    if sep is None:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
        sep = "\t" if "\t" in first else ","
    try:
        df = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} cannot be read as a table ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                         "check the file and --sep") from None
    wanted = {"session": session_col, "item": item_col} | ({"time": time_col} if time_col else {})
    missing = [f"{col!r} (the {what} column)" for what, col in wanted.items() if col not in df.columns]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(missing)}; its columns are {list(df.columns)}: "
                         "name yours with session_col / item_col / time_col (--session-col, --item-col, --time-col)")
    out = pd.DataFrame({"SessionId": df[session_col].to_numpy(), "ItemId": df[item_col].to_numpy()})
    if time_col is None:
        out["Time"] = np.arange(len(df), dtype=np.float64)
    else:
        t = df[time_col]
        if not pd.api.types.is_numeric_dtype(t):
            parsed = pd.to_datetime(t, errors="coerce", utc=True)
            if parsed.isna().any():
                bad = t[parsed.isna()].iloc[0]
                raise ValueError(f"{path}: the time column {time_col!r} has a value that is neither a number nor a "
                                 f"date ({bad!r}); fix it, or pass time_col=None to use the file order")
            t = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        out["Time"] = t.to_numpy(dtype=np.float64)
    if out.isna().any().any():
        raise ValueError(f"{path} has empty cells in the session, item or time column: drop those rows first")
    return out.sort_values(["SessionId", "Time"], kind="stable").reset_index(drop=True)


def training_arrays(train: pd.DataFrame):
    """Turn a training frame into what both tracks train on: ``(report, item_ids, item_idx,
    offsets, popularity)``. Items are the distinct ``ItemId`` (column ``j`` = ``item_ids[j]``);
    ``offsets`` are the session boundaries in the time-sorted events; dropped length-1 sessions and
    re-sorted sessions are counted in ``report`` and warned about, never silently lost."""
    df, report = prepare_sessions(train, "train")
    if report["sessions_len1_dropped"] or report["sessions_resorted"]:
        warnings.warn(f"GRU4Rec.fit: dropped {report['sessions_len1_dropped']} length-1 sessions and "
                      f"re-sorted {report['sessions_resorted']} sessions by time", stacklevel=3)
    item_ids = np.unique(df["ItemId"].to_numpy())
    item_idx = np.searchsorted(item_ids, df["ItemId"].to_numpy())  # (n_events,)
    sess = df["SessionId"].to_numpy()
    offsets = np.r_[0, np.flatnonzero(sess[1:] != sess[:-1]) + 1, len(sess)]
    pop = np.bincount(item_idx, minlength=len(item_ids)).astype(np.float64)
    return report, item_ids, item_idx, offsets, pop


class TrainingData(NamedTuple):
    """What both trainers need from a training frame (:func:`training_data`).

    ``item_ids`` (n_items,) raw ids, score column ``j`` = ``item_ids[j]``; ``item_idx`` (n_events,)
    the column of every event in training order; ``offsets`` (n_sessions + 1,) the session bounds;
    ``popularity`` (n_items,) event counts; ``n_sample`` the extra negatives per step (clamped to
    the catalogue); ``p_sample`` (n_items,) their sampling distribution; ``log_q_target`` and
    ``log_q_sample`` (n_items,) the log-probability of a column being a target or a sample (or the
    log of the raw counts with ``logq_counts``); ``n_pairs`` the (input, target) pairs of an epoch.
    """

    report: dict
    item_ids: np.ndarray
    item_idx: np.ndarray
    offsets: np.ndarray
    popularity: np.ndarray
    n_sample: int
    p_sample: np.ndarray
    log_q_target: np.ndarray
    log_q_sample: np.ndarray
    n_pairs: int


def training_data(train: pd.DataFrame, n_sample: int, sample_alpha: float, batch_size: int, n_layers_units: int,
                  sample_store_size: int, logq_counts: bool = False) -> TrainingData:
    """Prepare ``train`` for either trainer and check what depends on the data before any step.

    ``n_sample`` larger than the number of training items is clamped to it (one warning): drawing
    more negatives than there are items only repeats them at a higher cost. The memory of the
    sample store and of a step's ``(batch, batch + n_sample)`` score matrices (``n_layers_units``:
    the sum of the hidden sizes, for the activations) is checked against what is free.
    """
    report, item_ids, item_idx, offsets, pop = training_arrays(train)
    n_items = len(item_ids)
    n_sample = clamp_count("n_sample", n_sample, n_items, "items in the training data")
    store = min(sample_store_size, n_sample * len(item_idx)) if n_sample else 0
    check_memory(8.0 * store, f"the store of sampled negatives ({store:,} items)", "lower sample_store_size")
    cols = batch_size + n_sample
    # scores, their gradient and the loss's intermediates: about 8 (batch, cols) float32 matrices
    check_memory(4.0 * 8 * batch_size * cols + 4.0 * 6 * batch_size * n_layers_units,
                 f"a training step's ({batch_size}, {cols}) score matrices", "lower batch_size or n_sample")
    p_target = pop / pop.sum()
    p_sample = pop**sample_alpha / (pop**sample_alpha).sum()
    # log q of a column: targets follow popularity, samples popularity ** alpha; as probabilities,
    # or (logq_counts, the authors' PyTorch code) as the raw counts n_j and n_j ** alpha
    q_target, q_sample = (pop, pop**sample_alpha) if logq_counts else (p_target, p_sample)
    n_pairs = len(item_idx) - (len(offsets) - 1)  # (input, target) pairs: events minus sessions
    return TrainingData(report, item_ids, item_idx, offsets, pop, n_sample, p_sample, np.log(q_target),
                        np.log(q_sample), n_pairs)


def start_training(model, train: pd.DataFrame, step_fn, default_step) -> tuple[TrainingData, Callable]:
    """What both tracks' trainers do first: check ``step_fn`` (None means ``default_step``), prepare
    ``train`` (:func:`training_data`), record the data report, item ids and popularity on ``model``
    and initialise its weights for those items. Returns the data and the step function."""
    step_fn = default_step if step_fn is None else step_fn
    if not callable(step_fn):
        raise ValueError(f"step_fn must be a function (model, batch, hidden, optimizer) -> (loss, new_hidden), "
                         f"got {type(step_fn).__name__}")
    data = training_data(train, model.n_sample, model.sample_alpha, model.batch_size, sum(model.layers),
                         model.sample_store_size, model.logq_counts)
    model.data_report, model.item_ids, model.popularity = data.report, data.item_ids, data.popularity
    model.init_weights(len(data.item_ids))
    return data, step_fn


def diverged_cause(model) -> str:
    """What to try when a GRU4Rec loss or score becomes NaN or infinite (the message of
    :class:`course_lib.validation.TrainingDiverged`)."""
    return (f"lower learning_rate (now {model.learning_rate}), use another loss than {model.loss!r}, "
            "or check the input for extreme values")


def epoch_record(model, epoch: int, total: float, n_ev: int, secs: float, valid, eval_cutoff: int) -> dict:
    """One entry of a trainer's ``history``: mean loss, events and events/s of the epoch, and
    Recall/MRR@``eval_cutoff`` of ``model`` on ``valid`` when given (both tracks)."""
    rec = {"epoch": epoch + 1, "loss": total / max(n_ev, 1), "events": n_ev, "seconds": secs,
           "events_per_s": n_ev / secs}
    if valid is not None:
        from course_lib.evaluation import evaluate_sessions

        res = evaluate_sessions(model, valid, cutoffs=(eval_cutoff,))
        rec.update({k: v for k, v in res.items() if "@" in k})  # Recall@K, MRR@K on valid
    return rec


class Batch(NamedTuple):
    """One training step of session-parallel mini-batches, as a trainer hands it to a step function
    (arrays of the track: torch tensors on the model's device, or numpy).

    * ``x`` (B,) int: the score column of each active slot's current item (the input);
    * ``y`` (B,) int: the column of the item clicked next (the target of row i is column i);
    * ``sample`` (S,) int or None: the extra negatives, shared by every row (columns B .. B + S - 1);
    * ``reset`` (B, 1) bool or None: True where a new session starts in the slot, so its hidden
      state must be zeroed before the step (None when no session starts);
    * ``log_q`` (B + S,) float or None: log-probability of each output column being drawn, for the
      logQ correction (None when ``model.logq == 0``);
    * ``weight``: ``B / batch_size``; a step multiplies its loss by it before the gradient, so a
      shrunken tail batch weighs in proportion to its size, as in the authors' code.
    """

    x: object
    y: object
    sample: object
    reset: object
    log_q: object
    weight: float


# ---------------------------------------------------------------------------------------------
# Session-parallel mini-batches (Section 3.1.1, Figure 2)
# ---------------------------------------------------------------------------------------------
class Step(NamedTuple):
    """One step of session-parallel training.

    ``slots`` (n_active,) are the batch slots in use; ``inp``/``out`` (n_active,) the positions of
    the current and the next event of each slot's session in the event array; ``reset``
    (n_active,) is True where a new session starts in that slot, so its hidden state is zeroed.
    """

    slots: np.ndarray
    inp: np.ndarray
    out: np.ndarray
    reset: np.ndarray


def session_parallel_batches(offsets: np.ndarray, batch_size: int) -> Iterator[Step]:
    """Yield the steps of one epoch of session-parallel mini-batches (paper, Section 3.1.1).

    ``offsets`` (n_sessions + 1,) marks where each session starts in the event array (sessions
    already in training order, every session at least 2 events long). Slot ``k`` follows one
    session; when it ends, the next unused session takes the slot and ``reset`` flags it. When no
    session is left, the slot leaves the batch and the batch shrinks, so the last sessions are
    trained on as well instead of being dropped (the authors' code stops at that point).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    if lengths.size and lengths.min() < 2:
        raise ValueError(
            f"every session needs at least 2 events to give a (input, target) pair; "
            f"session {int(np.argmin(lengths))} has {int(lengths.min())}: drop length-1 sessions first"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_sessions = len(lengths)
    n_slots = min(batch_size, n_sessions)
    slots = np.arange(n_slots)
    start = offsets[:n_slots].copy()
    end = offsets[1 : n_slots + 1].copy()
    reset = np.ones(n_slots, dtype=bool)
    next_session = n_slots
    while len(slots):
        # every active session has at least (minlen - 1) predictions left: step through them at once
        minlen = int((end - start).min())
        for i in range(minlen - 1):
            yield Step(slots, start + i, start + i + 1, reset if i == 0 else np.zeros(len(slots), bool))
        start = start + minlen - 1
        done = np.flatnonzero(end - start <= 1)
        reset = np.zeros(len(slots), dtype=bool)
        alive = np.ones(len(slots), dtype=bool)
        for k in done:
            if next_session < n_sessions:
                start[k], end[k] = offsets[next_session], offsets[next_session + 1]
                reset[k] = True
                next_session += 1
            else:
                alive[k] = False
        if not alive.all():
            slots, start, end, reset = slots[alive], start[alive], end[alive], reset[alive]


# ---------------------------------------------------------------------------------------------
# Negative samples
# ---------------------------------------------------------------------------------------------
class SampleStore:
    """Extra negatives drawn with probability ``p`` in chunks of ``n_sample`` from a precomputed
    store (the authors' ``sample_store_size`` trick: one big draw instead of one per step).

    ``next()`` returns the next chunk (``n_sample`` item columns, numpy) or None when
    ``n_sample <= 0``. Both tracks draw from this class (the PyTorch track through a subclass that
    moves the store to its device), so they see the same negatives for the same seed. The first
    store is drawn here, before training starts (as the authors' code does), so an epoch's time
    counts only the redraws when a store is used up.
    """

    def __init__(self, p: np.ndarray, n_sample: int, store_size: int, seed: int, max_chunks: int):
        self.n_sample = n_sample
        self.cdf = np.cumsum(p)
        self.cdf[-1] = 1.0 + 1e-9
        self.rng = np.random.default_rng(seed)
        # no bigger than what training will use: a tiny data set need not draw 10 million items
        self.n_chunks = max(1, min(store_size // max(n_sample, 1), max_chunks))
        self.store, self.pos = (self._draw() if n_sample > 0 else None), 0

    def _convert(self, draw: np.ndarray):
        """The stored form of a fresh (n_chunks, n_sample) draw; a subclass may move it elsewhere."""
        return draw

    def _draw(self):
        draw = np.searchsorted(self.cdf, self.rng.random(self.n_chunks * self.n_sample), side="right")
        return self._convert(draw.reshape(self.n_chunks, self.n_sample))

    def next(self):
        if self.n_sample <= 0:
            return None
        if self.pos >= len(self.store):
            self.store, self.pos = self._draw(), 0
        self.pos += 1
        return self.store[self.pos - 1]
