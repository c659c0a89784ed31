"""Exercise checks: one module per notebook (``nb00``, ``nb01``, ...), built on the small core below.

A check prints ``PASS: ...`` when the learner's answer is right, and otherwise one ``FAIL: ...``
line that names the mistake, and returns the verdict as a :class:`Verdict`. Whatever the learner
hands in (None, a dict, a tensor where an array was expected, a function that raises or returns
NaN), the cell shows a sentence, never a traceback from inside the check. The one exception is
deliberate: an exercise that still raises ``NotImplementedError`` prints what to do and raises
again, so that "Run all" in a student notebook stops at the first unfinished exercise.

The core
--------
* :func:`check` decorates a check function. Inside it, anything wrong with the answer raises
  :class:`Fail`; the decorator prints the ``FAIL:`` line. Should the check itself break on an
  answer nobody foresaw, the decorator still prints a ``FAIL:`` line with what was expected.
* :func:`call` runs the learner's function: a raise, a ``None`` result or a non-callable become a
  :class:`Fail` that says what was expected (with a hint per exception type, if given).
* :func:`as_array`, :func:`as_scalar`, :func:`as_tensor`, :func:`as_symbolic` turn an answer into
  the expected kind (numpy, one number, torch tensor, Theano/PyTensor expression), or fail with
  what was expected and :func:`describe` of what came (shape-specific hints via ``shape_hints``).
* :class:`Mistake` and :func:`diagnose`: test the answer against the signatures of the common
  mistakes (the value a wrong formula gives on the same input, or a predicate) and fail with the
  hint of the first that matches; only when none matches, with the ``fallback`` (expected/got).
* :func:`passed` prints the PASS line. Print only numbers that are stable across machines
  (nbval compares PASS lines): round them, or print bounds instead of measured errors.
* Helpers: :func:`close` (an ``allclose`` that never raises), :func:`rel_error`,
  :func:`numerical_gradient`, :func:`check_torch_gradient`, :func:`compile_symbolic` (compile a
  learner's graph or fail), :func:`check_beats` (a trained model beats a baseline).
* Meta-tests (``tests/checks``): every check gets its right answer (the PASS line exactly as the
  notebook stores it), at least three plausible wrong answers, each with the hint it must print,
  and :data:`WRONG_KINDS`, which it must answer with a ``FAIL:`` line and no exception.

The core imports numpy only; torch and the Theano backend are imported by the functions that need
them, so this package and the checks of notebooks 00 and 06 import without torch.

Example: a check of ``mean_ratings(ratings) -> (n_items,)``, the mean rating of each item::

    from course_lib.checks import Mistake, as_array, call, check, close, diagnose, passed

    @check("mean_ratings", expects="a numpy array (n_items,): the mean rating of each item")
    def check_mean_ratings(mean_ratings):
        ratings = np.array([[5.0, 0.0, 3.0], [4.0, 2.0, 0.0]])  # (users, items), 0 = not rated
        rated = ratings > 0
        want = ratings.sum(0) / rated.sum(0)
        got = as_array("mean_ratings", call("mean_ratings", mean_ratings, ratings),
                       shape=want.shape, shape_hints={(2,): "one mean per ITEM (column): reduce axis 0"})
        if not close(got, want):
            raise diagnose(got, [
                Mistake("the 0 entries are missing ratings: leave them out of the mean", ratings.mean(0)),
                Mistake("you summed the ratings; divide by how many users rated the item", ratings.sum(0)),
            ], fallback=f"expected {want.round(4).tolist()}, got {got.round(4).tolist()}")
        return passed("the mean over the users who rated each item")

``raise diagnose(...)`` reads as what it does: it builds the :class:`Fail` to raise. A second
helper check of the same exercise (for instance with another argument value, to catch an argument
that is ignored) is just more code in the same function: the first :class:`Fail` ends it.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
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


def _raises(*args: Any, **kwargs: Any) -> Any:
    raise ValueError("an error inside the learner's function")


WRONG_KINDS: list = [None, {"a": 1}, lambda *a, **k: None, lambda *a, **k: {"a": 1}, lambda *a, **k: "text",
                     lambda *a, **k: [[1], [2, 3]], lambda *a, **k: float("nan"), _raises]
"""Answers of the wrong kind that every check must turn into a ``FAIL:`` line without raising: no
function at all, and functions that return None, a dict, a string, a ragged list, NaN, or raise."""


def report(ok: bool, pass_msg: str, fail_msg: str) -> Verdict:
    """Print ``PASS: pass_msg`` or ``FAIL: fail_msg`` and return the verdict."""
    print(("PASS: " + pass_msg) if ok else ("FAIL: " + fail_msg))
    return Verdict(ok)


def passed(msg: str) -> Verdict:
    return report(True, msg, "")


class Fail(Exception):
    """A wrong answer, with the sentence the learner sees after ``FAIL:``."""


def check(name: str, expects: str) -> Callable:
    """Decorator of a check: a :class:`Fail` raised inside becomes a ``FAIL:`` line and a false
    :class:`Verdict`; any other error (an answer the check did not foresee) too, with ``expects``.

    ``name`` is what the learner wrote (``"recall_at_m"``); ``expects`` says what a right answer
    looks like, in words (``"one number: the mean Recall@m over the queries with test items"``).
    """

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(*args, **kwargs) -> Verdict:
            try:
                with warnings.catch_warnings():
                    # the check's own probes (a variant dividing by zero, say) must not print warnings
                    warnings.simplefilter("ignore")
                    with np.errstate(all="ignore"):
                        verdict = fn(*args, **kwargs)
            except Fail as fail:
                return report(False, "", str(fail))
            except NotImplementedError:
                raise  # printed by `call`; raised again so that "Run all" stops here
            except Exception as exc:  # noqa: BLE001  (an answer of a kind the check did not foresee)
                return report(False, "", f"{name} gave an answer this check could not use ({_exc_text(exc)}); "
                                         f"expected {expects}")
            return verdict if isinstance(verdict, Verdict) else Verdict(bool(verdict))

        return run

    return wrap


def _exc_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def call(name: str, fn: Any, *args: Any, expects: str | None = None,
         errors: dict[type, str] | None = None, allow_none: bool = False, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` for a learner's ``fn``; a :class:`Fail` if it cannot be called,
    raises, or returns None (a missing ``return``).

    ``expects`` completes the message of a raise (what the function should return); ``errors``
    maps exception types to a hint for that kind of error (``{IndexError: "doc ids index ..."}``).
    ``NotImplementedError`` (an exercise not done yet) is printed and raised again.
    """
    if not callable(fn):
        raise Fail(f"{name} should be a function (or class) you defined, got {describe(fn)}")
    try:
        value = fn(*args, **kwargs)
    except NotImplementedError:
        print(f"FAIL: {name} is not implemented yet: replace the `raise NotImplementedError` line.")
        raise
    except Exception as exc:  # noqa: BLE001  (the learner's code may raise anything)
        hint = next((h for t, h in (errors or {}).items() if isinstance(exc, t)), None)
        tail = f": {hint}" if hint else (f"; it should return {expects}" if expects else "")
        raise Fail(f"{name} raised {_exc_text(exc)}{tail}") from None
    if value is None and not allow_none:
        raise Fail(f"{name} returned None: end the function with `return ...`")
    return value


def describe(value: Any) -> str:
    """What an answer is, in words: ``"a numpy array of shape (2, 3) (float64)"``, ``"None"``."""
    if value is None:
        return "None"
    module = type(value).__module__ or ""
    if module.startswith("torch") and hasattr(value, "shape"):
        return f"a torch tensor of shape {tuple(value.shape)}"
    if is_symbolic(value):
        return "a symbolic expression"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape} ({value.dtype})"
    if module.startswith("scipy.sparse"):
        return f"a scipy sparse matrix of shape {value.shape}"
    if isinstance(value, (bool, np.bool_)):
        return f"the bool {bool(value)}"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"the number {value!r}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, dict):
        return f"a dict with keys {list(value)[:5]}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if callable(value):
        return f"a function ({getattr(value, '__name__', type(value).__name__)}), not its result"
    return f"a {type(value).__name__}"


def is_symbolic(value: Any) -> bool:
    """True for a Theano/PyTensor symbolic variable (not yet computed)."""
    return hasattr(value, "owner") and hasattr(value, "type") and not _is_torch(value)


def _is_torch(value: Any) -> bool:
    return (type(value).__module__ or "").startswith("torch") and hasattr(value, "detach")


def as_array(name: str, value: Any, *, shape: tuple | None = None, what: str | None = None,
             shape_hints: dict[tuple, str] | None = None, returned: bool = True) -> np.ndarray:
    """The answer as a float64 numpy array (from numpy, a list, a number or a torch tensor), or a
    :class:`Fail` that says what was expected. ``shape_hints`` maps wrong shapes to their hint;
    ``returned=False`` words the message for a value the learner built rather than returned."""
    what = what or (f"an array of shape {tuple(shape)}" if shape is not None else "numbers")
    must = "must return" if returned else "must be"
    if value is None or isinstance(value, (dict, str, set)) or callable(value) or is_symbolic(value):
        raise Fail(f"{name} {must} {what}, got {describe(value)}")
    if (type(value).__module__ or "").startswith("scipy.sparse"):
        raise Fail(f"{name} {must} {what} as a dense array, got {describe(value)} (use .toarray())")
    try:
        if _is_torch(value):
            value = value.detach().cpu()
            if hasattr(value, "is_complex") and value.is_complex():
                raise TypeError
            value = value.double().numpy()
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError
        arr = arr.astype(np.float64)
    except Exception:  # noqa: BLE001  (ragged lists, tensors on odd devices, objects)
        raise Fail(f"{name} {must} {what}, got {describe(value)}") from None
    if shape is not None and arr.shape != tuple(shape):
        hint = (shape_hints or {}).get(arr.shape)
        raise Fail(f"{name} returned shape {arr.shape}, expected {tuple(shape)}" + (f": {hint}" if hint else
                                                                                       (f" ({what})" if what else "")))
    return arr


def as_scalar(name: str, value: Any, *, what: str = "one number",
              shape_hints: dict[tuple, str] | None = None, returned: bool = True) -> float:
    """The answer as a Python float (from a number, or a one-element array or tensor)."""
    arr = as_array(name, value, what=what, returned=returned)
    if arr.size != 1:
        hint = (shape_hints or {}).get(arr.shape)
        raise Fail(f"{name} {'must return' if returned else 'must be'} {what}, got {describe(value)}"
                   + (f": {hint}" if hint else ""))
    return float(arr.reshape(()))


def as_tensor(name: str, value: Any, *, shape: tuple | None = None, need_grad: bool = False,
              what: str | None = None, shape_hints: dict[tuple, str] | None = None):
    """The answer as a torch tensor (a numpy array or a float is refused: gradients could not flow).

    ``need_grad``: the tensor must be connected to inputs that require a gradient."""
    what = what or (f"a torch tensor of shape {tuple(shape)}" if shape is not None else "a torch tensor")
    if not _is_torch(value):
        extra = " built with torch operations, so that gradients can flow" if need_grad else ""
        raise Fail(f"{name} must return {what}{extra}; got {describe(value)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        hint = (shape_hints or {}).get(tuple(value.shape))
        raise Fail(f"{name} returned shape {tuple(value.shape)}, expected {tuple(shape)}" + (f": {hint}" if hint else ""))
    if need_grad and not value.requires_grad:
        raise Fail(f"{name} returned a tensor that carries no gradient: build it from the inputs with torch "
                   "operations only (no .item(), .numpy(), .detach() or a new torch.tensor(...))")
    return value


def as_symbolic(name: str, value: Any):
    """The answer as a Theano/PyTensor symbolic expression, or a :class:`Fail`."""
    if not is_symbolic(value):
        raise Fail(f"{name} returned {describe(value)}; it must return a symbolic expression built from its "
                   "inputs with T.* operations (no numpy, no .eval())")
    return value


def compile_symbolic(name: str, inputs: list, outputs: Any, **kwargs):
    """``compat.function(inputs, outputs, **kwargs)`` for a graph built by the learner's code, or a
    :class:`Fail` saying that the expression does not fit the inputs."""
    from course_lib.theano_models.compat import function  # noqa: PLC0415  (Theano track only)

    try:
        return function(inputs, outputs, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise Fail(f"the expression returned by {name} could not be compiled ({_exc_text(exc)}): build it "
                   "from the given symbolic inputs only") from None


def close(a: Any, b: Any, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """``np.allclose`` of two answers of the same shape; False (never an error) otherwise."""
    try:
        a = np.asarray(a.detach().cpu().double() if _is_torch(a) else a, dtype=np.float64)
        b = np.asarray(b.detach().cpu().double() if _is_torch(b) else b, dtype=np.float64)
    except Exception:  # noqa: BLE001
        return False
    return a.shape == b.shape and bool(np.all(np.isfinite(a) == np.isfinite(b))) and \
        bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


@dataclass
class Mistake:
    """A common mistake and how to recognise it: ``signature`` is what that mistake returns on the
    check's input (a value, or a function of no arguments computing it, evaluated only when
    needed); ``when`` is a predicate on the answer. The first mistake that matches gives its hint."""

    hint: str
    signature: Any = None
    when: Callable[[Any], bool] | None = None

    def matches(self, got: Any, rtol: float, atol: float) -> bool:
        try:
            if self.when is not None:
                return bool(self.when(got))
            sig = self.signature() if callable(self.signature) else self.signature
            return close(got, sig, rtol, atol)
        except Exception:  # noqa: BLE001  (a signature that cannot be computed does not match)
            return False


def find_mistake(got: Any, mistakes: list[Mistake], rtol: float = 1e-6, atol: float = 1e-9) -> str | None:
    """The hint of the first mistake whose signature matches ``got``, or None."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return next((m.hint for m in mistakes if m.matches(got, rtol, atol)), None)


def diagnose(got: Any, mistakes: list[Mistake], fallback: str, *, rtol: float = 1e-6, atol: float = 1e-9,
             prefix: str = "") -> Fail:
    """The :class:`Fail` to raise: ``prefix`` + the hint of the mistake that matches, else ``fallback``."""
    hint = find_mistake(got, mistakes, rtol, atol)
    return Fail(prefix + hint if hint else fallback)


def rel_error(a: Any, b: Any) -> float:
    """Largest relative error between two arrays, as in CS231n gradient checks (inf where a NaN or
    an inf makes them incomparable, so that ``err > tol`` catches it)."""
    a = np.asarray(a.detach().cpu().double() if _is_torch(a) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu().double() if _is_torch(b) else b, dtype=np.float64)
    err = float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
    return math.inf if math.isnan(err) else err


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


def check_torch_gradient(name: str, fn: Callable, x0: np.ndarray, tol: float = 1e-6) -> None:
    """Autograd through the learner's ``fn`` (a float64 tensor in, a tensor out) against central
    differences of the same function; a :class:`Fail` when no gradient flows or they disagree."""
    import torch  # noqa: PLC0415  (torch track only)

    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    out = as_tensor(name, call(name, fn, x), need_grad=True)
    out.sum().backward()
    if x.grad is None:
        raise Fail(f"no gradient reaches the input of {name}: build the result with torch operations only")

    def value(a):
        return float(np.sum(as_array(name, call(name, fn, torch.tensor(a, dtype=torch.float64)))))

    err = rel_error(x.grad.numpy(), numerical_gradient(value, x0))
    if not err <= tol:
        raise Fail(f"the gradient of {name} differs from finite differences (relative error {err:.1e}): is every "
                   "step a differentiable torch operation (no rounding, argmax or in-place change of the input)?")



def weighted_mse_reference(scores, targets, alpha: float, *, weights: str = "likes", reduce: str = "papers",
                           square: bool = True) -> float:
    """The task sheet's weighted MSE on numpy arrays ``(papers, users)``, or one of its common slips:
    ``weights`` "likes" (alpha on the likes, 1 elsewhere: right), "non_likes", "none", "plus_one"
    (1 + alpha), "all"; ``reduce`` "papers" (sum over the users, mean over the papers: right),
    "entries", "sum"; ``square=False`` takes absolute errors. Notebooks 01 (PyTorch) and 06
    (Theano) check the same exercise with it."""
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    err = (t - s) ** 2 if square else np.abs(t - s)
    w = {"likes": 1 + (alpha - 1) * t, "non_likes": t + alpha * (1 - t), "none": np.ones_like(t),
         "plus_one": 1 + alpha * t, "all": alpha * np.ones_like(t)}[weights]
    per = w * err
    return float({"papers": per.sum(1).mean(), "entries": per.mean(), "sum": per.sum()}[reduce])


def weighted_mse_mistakes(scores, targets, alpha: float) -> list["Mistake"]:
    """The common slips of the weighted MSE exercise, each with its hint (see :func:`weighted_mse_reference`)."""
    ref = functools.partial(weighted_mse_reference, scores, targets, alpha)
    return [
        Mistake("you averaged over every (paper, user) entry; sum over the users of a paper, then average over "
                "the papers", ref(reduce="entries")),
        Mistake("alpha weighs the LIKES (targets 1), not the non-likes", ref(weights="non_likes")),
        Mistake("you forgot the weight alpha on the likes", ref(weights="none")),
        Mistake("off by one: a like weighs alpha, not alpha + 1 (the weight is 1 elsewhere)", ref(weights="plus_one")),
        Mistake("alpha weighs only the likes; the other entries weigh 1", ref(weights="all")),
        Mistake("you summed over the papers too; average over the papers of the batch", ref(reduce="sum")),
        Mistake("square the errors (you took their absolute value)", ref(square=False)),
        Mistake("the loss is a sum of squares, never negative: check the sign", -ref()),
    ]


@check("the results table", expects="results[name][metric] numbers for the model and the baseline")
def check_beats(results: dict, model: str = "hybrid", baseline: str = "popularity", metric: str = "cold R@50") -> Verdict:
    """``results[name][metric]``: the trained model must beat the baseline on ``metric``."""
    if not isinstance(results, dict):
        raise Fail(f"results must be a dict of rows {{name: {{metric: value}}}}, got {describe(results)}")
    missing = [row for row in (model, baseline) if row not in results]
    if missing:
        raise Fail(f"results needs the rows {model!r} and {baseline!r}; it has {sorted(map(str, results))}")
    values = []
    for row in (model, baseline):
        if not isinstance(results[row], dict) or metric not in results[row]:
            raise Fail(f"results[{row!r}] has no {metric!r}: evaluate it with the same metrics as the other rows")
        values.append(as_scalar(f"results[{row!r}][{metric!r}]", results[row][metric], returned=False))
    got, base = values
    if math.isnan(got):
        raise Fail(f"{model} has {metric} = NaN: the training diverged; lower the learning rate")
    if not got > base:
        raise Fail(f"{model} ({got:.3f}) does not beat {baseline} ({base:.3f}) on {metric}: train longer, check "
                   "the learning curve, or lower the learning rate")
    return passed(f"{model} beats {baseline} on {metric}")
