"""Notebook 07's check: the right answer passes, each typical mistake gets its own FAIL line, nothing raises."""
import pandas as pd
import pytest

from course_lib.checks import WRONG_KINDS, nb07


def _rows(lines, skip_count=True, first_user=0, sort=False, skip_empty_lines=False):
    kept = [line for line in lines if not (skip_empty_lines and line.split()[0] == "0")]
    rows = [(u + first_user, int(i)) for u, line in enumerate(kept) for i in line.split()[1 if skip_count else 0:]]
    return pd.DataFrame(sorted(rows) if sort else rows, columns=["user", "item"])


def test_right_answer_passes(capsys):
    assert nb07.check_count_lists_to_frame(lambda lines: _rows(lines))
    assert capsys.readouterr().out == (
        "PASS: one row per (user, item), users numbered by line from 0, the count N left out\n")


@pytest.mark.parametrize("answer, words", [
    (lambda lines: _rows(lines, skip_count=False), "the count N, not an item"),
    (lambda lines: _rows(lines, first_user=1), "numbered from 0"),
    (lambda lines: _rows(lines, sort=True), "order of the file"),
    (lambda lines: _rows(lines, skip_empty_lines=True), "it still takes a user number"),
    (lambda lines: [(0, 10)], "return a pandas DataFrame"),
    (lambda lines: pd.DataFrame({"u": [0], "i": [1]}), "columns ['u', 'i']"),
    (lambda lines: pd.DataFrame({"user": ["a"], "item": ["b"]}), "whole numbers"),
    (lambda lines: pd.DataFrame({"user": [0], "item": [99]}), "expected the rows"),
])
def test_mistakes_get_their_own_fail_line(capsys, answer, words):
    assert not nb07.check_count_lists_to_frame(answer)
    out = capsys.readouterr().out
    assert out.startswith("FAIL:") and words in out, out


@pytest.mark.parametrize("answer", WRONG_KINDS + [pd.DataFrame(), "text"])
def test_wrong_kinds_fail_without_raising(capsys, answer):
    assert not nb07.check_count_lists_to_frame(answer)
    assert capsys.readouterr().out.startswith("FAIL:")
