"""Notebook 07's check: right answers pass, each typical mistake gets its own FAIL line, nothing raises."""
import pandas as pd
import pytest

from course_lib.checks import nb07


def _rows(lines, skip_count=True, first_user=0, sort=False):
    rows = [(u + first_user, int(i)) for u, line in enumerate(lines) for i in line.split()[1 if skip_count else 0:]]
    return pd.DataFrame(sorted(rows) if sort else rows, columns=["user", "item"])


def test_right_answer_passes(capsys):
    assert nb07.check_count_lists_to_frame(lambda lines: _rows(lines))
    assert capsys.readouterr().out.startswith("PASS:")


@pytest.mark.parametrize("answer, words", [
    (lambda lines: _rows(lines, skip_count=False), "the count N, not an item"),
    (lambda lines: _rows(lines, first_user=1), "numbered from 0"),
    (lambda lines: _rows(lines, sort=True), "order of the file"),
    (lambda lines: [(0, 10)], "return a pandas DataFrame"),
    (lambda lines: None, "returned None"),
    (lambda lines: 1 / 0, "raised ZeroDivisionError"),
    (lambda lines: pd.DataFrame({"user": [0], "item": [99]}), "expected"),
])
def test_mistakes_get_a_fail_line(capsys, answer, words):
    assert not nb07.check_count_lists_to_frame(answer)
    out = capsys.readouterr().out
    assert out.startswith("FAIL:") and words in out, out
