"""The core of the exercise checks: a FAIL line instead of a traceback, hints chosen by the
signature of the mistake, and the type/shape coercion every check uses."""
import numpy as np
import pytest
import torch

from course_lib.checks import (Fail, Mistake, Verdict, as_array, as_scalar, as_tensor, call, check, check_beats,
                               close, describe, diagnose, find_mistake)


@check("double", expects="an array twice the input")
def _check_double(fn):
    x = np.array([1.0, 2.0, 3.0])
    got = as_array("double", call("double", fn, x), shape=(3,), shape_hints={(1,): "one value per input"})
    if not close(got, 2 * x):
        raise diagnose(got, [Mistake("you squared the input", x ** 2), Mistake("you added one", when=lambda v: close(v, x + 1))],
                       f"expected {(2 * x).tolist()}, got {got.tolist()}")
    return Verdict(True)


def _out(capsys) -> str:
    return capsys.readouterr().out


def test_a_right_answer_passes_and_a_fail_line_names_the_matching_mistake(capsys):
    assert _check_double(lambda x: 2 * x)
    assert _out(capsys) == ""
    assert not _check_double(lambda x: x ** 2)
    assert _out(capsys) == "FAIL: you squared the input\n"
    assert not _check_double(lambda x: x + 1)
    assert _out(capsys) == "FAIL: you added one\n"
    assert not _check_double(lambda x: 3 * x)  # no signature matches: expected/got
    assert _out(capsys) == "FAIL: expected [2.0, 4.0, 6.0], got [3.0, 6.0, 9.0]\n"


@pytest.mark.parametrize("answer, message", [
    (None, "double should be a function (or class) you defined, got None"),
    ({"a": 1}, "double should be a function (or class) you defined, got a dict with keys ['a']"),
    (lambda x: None, "double returned None: end the function with `return ...`"),
    (lambda x: {"a": 1}, "double must return an array of shape (3,), got a dict with keys ['a']"),
    (lambda x: "text", "double must return an array of shape (3,), got the string 'text'"),
    (lambda x: [[1, 2], [3]], "double must return an array of shape (3,), got a list of 2 items"),
    (lambda x: np.array([1.0]), "double returned shape (1,), expected (3,): one value per input"),
    (lambda x: np.ones((3, 2)), "double returned shape (3, 2), expected (3,) (an array of shape (3,))"),
    (lambda x: 1 / 0, "double raised ZeroDivisionError: division by zero"),
])
def test_a_wrong_type_or_a_raise_is_one_fail_line(answer, message, capsys):
    assert not _check_double(answer)
    assert _out(capsys) == f"FAIL: {message}\n"


def test_torch_tensors_and_lists_are_accepted_where_numbers_are_expected(capsys):
    assert _check_double(lambda x: torch.tensor(2 * x, requires_grad=True))
    assert _check_double(lambda x: (2 * x).tolist())


def test_not_implemented_is_printed_and_raised_again_so_run_all_stops(capsys):
    def not_done(x):
        raise NotImplementedError("Exercise 1: double")

    with pytest.raises(NotImplementedError, match="Exercise 1"):
        _check_double(not_done)
    assert _out(capsys) == "FAIL: double is not implemented yet: replace the `raise NotImplementedError` line.\n"


def test_a_check_that_breaks_on_an_unforeseen_answer_still_prints_what_was_expected(capsys):
    @check("thing", expects="a dict with the key 'a'")
    def fragile(answer):
        return answer["a"] > 0  # a KeyError / TypeError on anything else

    assert not fragile([1])
    assert _out(capsys) == ("FAIL: thing gave an answer this check could not use (TypeError: list indices must be "
                            "integers or slices, not str); expected a dict with the key 'a'\n")


def test_call_gives_the_hint_of_the_exception_type():
    def bad(i):
        return [1, 2][i]

    with pytest.raises(Fail, match="bad raised IndexError: list index out of range: ids index rows"):
        call("bad", bad, 5, errors={IndexError: "ids index rows"})
    with pytest.raises(Fail, match="bad raised IndexError: list index out of range; it should return a number"):
        call("bad", bad, 5, expects="a number")


def test_as_scalar_as_tensor_and_describe():
    assert as_scalar("f", np.array([[2.5]])) == 2.5
    assert as_scalar("f", torch.tensor(1.5)) == 1.5
    with pytest.raises(Fail, match=r"f must return one number, got a numpy array of shape \(2,\) \(float64\): avg"):
        as_scalar("f", np.ones(2), shape_hints={(2,): "avg"})
    with pytest.raises(Fail, match="loss must be one number, got None"):
        as_scalar("loss", None, returned=False)
    with pytest.raises(Fail, match="must return a torch tensor built with torch operations"):
        as_tensor("f", np.ones(2), need_grad=True)
    with pytest.raises(Fail, match="carries no gradient"):
        as_tensor("f", torch.ones(2), need_grad=True)
    assert describe(torch.zeros(2, 3)) == "a torch tensor of shape (2, 3)"
    assert describe(3) == "the number 3"
    assert describe(len) == "a function (len), not its result"


def test_close_never_raises_and_signatures_that_fail_to_compute_do_not_match():
    assert not close(np.ones(2), np.ones(3))
    assert not close(np.ones(2), "x")
    assert close(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert not close(np.array([np.inf]), np.array([1e308]))
    mistakes = [Mistake("broken", lambda: 1 / 0), Mistake("half", 0.5)]
    assert find_mistake(0.5, mistakes) == "half"
    assert find_mistake(0.7, mistakes) is None


def test_check_beats(capsys):
    assert check_beats({"m": {"cold R@50": 0.3}, "pop": {"cold R@50": 0.2}}, "m", "pop")
    assert _out(capsys) == "PASS: m beats pop on cold R@50\n"
    assert not check_beats({"m": {"cold R@50": 0.1}, "pop": {"cold R@50": 0.2}}, "m", "pop")
    assert "m (0.100) does not beat pop (0.200) on cold R@50" in _out(capsys)
    assert not check_beats({"m": {"warm R@50": 0.3}, "pop": {"cold R@50": 0.2}}, "m", "pop")
    assert "results['m'] has no 'cold R@50'" in _out(capsys)
    assert not check_beats({"m": {"cold R@50": float("nan")}, "pop": {"cold R@50": 0.2}}, "m", "pop")
    assert "NaN: the training diverged" in _out(capsys)
    assert not check_beats(None, "m", "pop")
    assert "results must be a dict" in _out(capsys)
