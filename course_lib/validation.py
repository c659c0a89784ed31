"""Argument checks shared by every trainer and model of both tracks (numpy only).

A hyperparameter or an input that cannot work is refused before any work starts, with a
``ValueError`` that names the argument, the value and what is allowed, e.g.
``ValueError("learning_rate must be > 0, got -0.1")``. Two more failures get their own types,
so a caller can tell them apart from a bad argument:

* :class:`TrainingDiverged` (a ``ValueError``): a loss or a score became NaN or infinite during
  training; the message names the step and the likely cause;
* :class:`AllocationTooLarge` (a ``MemoryError``): a call would allocate more memory than the
  machine has free; the message gives both numbers and what to lower.
"""
from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Iterable

import numpy as np


class TrainingDiverged(ValueError):
    """A loss or a score became NaN or infinite while training."""


class AllocationTooLarge(MemoryError):
    """A planned allocation is larger than the memory available."""


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------
def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None).

    Floats with an integral value (``10.0``) are accepted; ``True``, ``2.5`` or ``"10"`` are not."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and _is_real(value) and float(value).is_integer():
        ok, value = True, int(value)
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if not ok:
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {allowed}, got {value}")
    return value


def check_positive(name: str, value) -> float:
    """``value`` as a finite ``float`` > 0 (learning rates, regularisation weights, temperatures)."""
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value) -> float:
    """``value`` as a finite ``float`` >= 0 (weights that may be switched off with 0)."""
    if not _is_real(value) or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_real(name: str, value) -> float:
    """``value`` as a finite ``float`` of any sign (exponents, offsets)."""
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_fraction(name: str, value, upper_inclusive: bool = False) -> float:
    """``value`` as a ``float`` in ``[0, 1)`` (dropout rates), or ``[0, 1]`` with ``upper_inclusive``."""
    if _is_real(value):
        v = float(value)
        if 0.0 <= v < 1.0 or (upper_inclusive and v == 1.0):
            return v
    raise ValueError(f"{name} must be a number in [0, 1{']' if upper_inclusive else ')'}, got {value!r}")


def check_choice(name: str, value, choices: Iterable):
    """``value`` if it is one of ``choices``; otherwise a ``ValueError`` listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


_clamp_warned: set[tuple[str, int, int]] = set()


def clamp_count(name: str, value: int, available: int, what: str) -> int:
    """``min(value, available)``, with one warning per (name, value, available) when it clamps.

    For sample counts that may not exceed what exists (``n_sample`` negatives out of the
    catalogue, say): ``what`` names the pool in the warning (``"items in the training data"``)."""
    value = check_int(name, value, minimum=0)
    if value <= available:
        return value
    key = (name, value, int(available))
    if key not in _clamp_warned:
        _clamp_warned.add(key)
        warnings.warn(f"{name}={value} is more than the {available} {what}; using {name}={available}",
                      stacklevel=3)
    return int(available)


# ---------------------------------------------------------------------------------------------
# Arrays
# ---------------------------------------------------------------------------------------------
def check_shape(name: str, shape, expected: tuple, meaning: str) -> None:
    """Raise unless ``shape`` matches ``expected`` (``None`` matches any size on that axis).

    ``meaning`` names the axes in the message, e.g. ``"(batch, n_items)"``:
    ``ValueError("scores must have shape (batch, n_items) = (32, any), got (32,)")``."""
    shape = tuple(int(s) for s in shape)
    ok = len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))
    if not ok:
        want = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {meaning} = {want}, got {shape}")


def check_same_id_kind(train_ids, other_ids, other: str = "test") -> None:
    """Raise when the ids of ``other`` are of another kind (numbers vs strings) than the training ids,
    which would otherwise only show up as "every test item is unknown"."""
    a, b = np.asarray(train_ids), np.asarray(other_ids)
    if a.size == 0 or b.size == 0:
        return

    def kind(x: np.ndarray) -> str:
        if np.issubdtype(x.dtype, np.number) or x.dtype == bool:
            return "numbers"
        if x.dtype.kind in "US" or all(isinstance(v, str) for v in x.ravel()[:100]):
            return "strings"
        return f"{x.dtype} values"

    ka, kb = kind(a), kind(b)
    if ka != kb:
        raise ValueError(f"the training ids are {ka} but the {other} ids are {kb} (e.g. {b.ravel()[0]!r}): "
                         f"read both files the same way, e.g. with the same dtype for the id column")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def check_finite(value: float, *, where: str, cause: str) -> float:
    """``value`` if it is finite; else :class:`TrainingDiverged` naming ``where`` it happened
    (``"epoch 2, step 31"``) and the likely ``cause`` (``"lower learning_rate (now 0.5)"``)."""
    v = float(value)
    if not math.isfinite(v):
        raise TrainingDiverged(f"the loss became {v} at {where}: {cause}")
    return v


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def check_memory(n_bytes: float, what: str, fix: str, fraction: float = 0.8) -> None:
    """Raise :class:`AllocationTooLarge` when ``n_bytes`` exceeds ``fraction`` of the available memory.

    ``what`` names the allocation (``"the (batch, n_sample) score matrix"``), ``fix`` what to lower."""
    free = available_memory()
    if free is not None and n_bytes > fraction * free:
        raise AllocationTooLarge(f"{what} would need {_gb(n_bytes)} but only {_gb(free)} of memory is "
                                 f"available: {fix}")
