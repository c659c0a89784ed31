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
  ``params`` dict, to which a track adds its own keys.
"""
from __future__ import annotations

import warnings
from typing import Iterator, NamedTuple

import numpy as np
import pandas as pd

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


def gru4rec_params(layers=(100,), loss="cross-entropy", final_act="linear", n_sample=2048, sample_alpha=0.75,
                   logq=0.0, bpreg=1.0, embedding=0, constrained_embedding=False, dropout_p_embed=0.0,
                   dropout_p_hidden=0.0, optimizer="adagrad", learning_rate=0.05, momentum=0.0, batch_size=32,
                   n_epochs=10, sample_store_size=10_000_000, seed=0, dropout_state="dropped") -> dict:
    """Check the GRU4Rec arguments that both tracks share and return them as a ``params`` dict.

    The values are converted to plain Python types, and ``layers`` becomes a list of ints. The
    dict is saved with a model and read back as keyword arguments. A track adds its own keys
    (the PyTorch track: ``reset_after`` and ``logq_counts``).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if optimizer not in ("adagrad", "adam"):
        raise ValueError(f"optimizer must be 'adagrad' or 'adam', got {optimizer!r}")
    layers = [int(layers)] if np.isscalar(layers) else [int(h) for h in layers]
    if not layers or min(layers) < 1:
        raise ValueError(f"layers must be a list of positive hidden sizes, got {layers}")
    for name, p in (("dropout_p_embed", dropout_p_embed), ("dropout_p_hidden", dropout_p_hidden)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {p}")
    if dropout_state not in ("kept", "dropped"):
        raise ValueError(f"dropout_state must be 'kept' or 'dropped', got {dropout_state!r}")
    parse_final_act(final_act)
    return dict(layers=layers, loss=loss, final_act=final_act, n_sample=int(n_sample),
                sample_alpha=float(sample_alpha), logq=float(logq), bpreg=float(bpreg),
                embedding=int(embedding), constrained_embedding=bool(constrained_embedding),
                dropout_p_embed=float(dropout_p_embed), dropout_p_hidden=float(dropout_p_hidden),
                optimizer=optimizer, learning_rate=float(learning_rate), momentum=float(momentum),
                batch_size=int(batch_size), n_epochs=int(n_epochs),
                sample_store_size=int(sample_store_size), seed=int(seed), dropout_state=dropout_state)


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
    moves the store to its device), so they see the same negatives for the same seed.
    """

    def __init__(self, p: np.ndarray, n_sample: int, store_size: int, seed: int, max_chunks: int):
        self.n_sample = n_sample
        self.cdf = np.cumsum(p)
        self.cdf[-1] = 1.0 + 1e-9
        self.rng = np.random.default_rng(seed)
        # no bigger than what training will use: a tiny data set need not draw 10 million items
        self.n_chunks = max(1, min(store_size // max(n_sample, 1), max_chunks))
        self.store, self.pos = None, 0

    def _convert(self, draw: np.ndarray):
        """The stored form of a fresh (n_chunks, n_sample) draw; a subclass may move it elsewhere."""
        return draw

    def next(self):
        if self.n_sample <= 0:
            return None
        if self.store is None or self.pos >= len(self.store):
            draw = np.searchsorted(self.cdf, self.rng.random(self.n_chunks * self.n_sample), side="right")
            self.store = self._convert(draw.reshape(self.n_chunks, self.n_sample))
            self.pos = 0
        self.pos += 1
        return self.store[self.pos - 1]
