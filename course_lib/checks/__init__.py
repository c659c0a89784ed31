"""Exercise checks: one module per notebook (``nb00``, ``nb01``, ...).

Every check prints ``PASS: ...`` when the learner's answer is right and otherwise prints
``FAIL: ...`` with what is wrong in words, and returns the verdict as a bool, so a notebook
cell never dies with a bare traceback from inside the course library.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


class Verdict:
    """The result of a check: true when it passed. It has already been printed, so notebooks
    show nothing more for it (no ``True``/``False`` line under the PASS/FAIL message)."""

    def __init__(self, ok: bool):
        self.ok = bool(ok)

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"Verdict({'PASS' if self.ok else 'FAIL'})"

    def _ipython_display_(self) -> None:
        pass


def report(ok: bool, pass_msg: str, fail_msg: str) -> Verdict:
    print(("PASS: " + pass_msg) if ok else ("FAIL: " + fail_msg))
    return Verdict(ok)


def run_check(name: str, fn: Callable[[], Any]) -> Verdict:
    """Call a learner's function and turn an exception into a readable FAIL line.

    ``NotImplementedError`` (an exercise not done yet) is printed and raised again."""
    try:
        fn()
    except NotImplementedError:
        # re-raised so that "Run all" stops at the first unfinished exercise instead of
        # cascading into errors further down
        print(f"FAIL: {name} is not implemented yet: replace the `raise NotImplementedError` line.")
        raise
    except Exception as exc:  # the learner's code may raise anything; name it plainly
        print(f"FAIL: {name} raised {type(exc).__name__}: {exc}")
        return Verdict(False)
    return Verdict(True)


def call_learner(name: str, fn: Callable, *args: Any) -> Any:
    """The learner's ``fn(*args)``, or None after a FAIL line (it raised, see ``run_check``, or returned None)."""
    got = {}
    if not run_check(name, lambda: got.update(value=fn(*args))):
        return None
    if got["value"] is None:
        report(False, "", f"{name} returned None: end the function with `return ...`")
    return got["value"]


def to_numpy(x: Any) -> np.ndarray:
    """A learner's result (numpy, list or torch tensor) as a float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def rel_error(a: Any, b: Any) -> float:
    """Largest relative error between two arrays, as in CS231n gradient checks."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of a scalar function of ``x`` (float64), element by element."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f(x)
        x[i] = old - h
        fm = f(x)
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad


def compare_shapes(name: str, got: Any, expected: tuple) -> bool:
    shape = tuple(np.shape(got))
    if shape != tuple(expected):
        print(f"FAIL: {name} has shape {shape}, expected {tuple(expected)}")
        return False
    return True
