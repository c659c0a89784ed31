"""Checks for notebook 07 (your own data): turning a published count-list file into named columns."""
from __future__ import annotations

from . import Fail, Mistake, Verdict, call, check, diagnose, passed

# the count-list format of CiteULike-a/-t's users.dat: line u is "N i1 ... iN"; user 2 has no item
_LINES = ["2 10 4", "1 4", "0", "3 7 10 12"]
_EXPECTED = [(0, 10), (0, 4), (1, 4), (3, 7), (3, 10), (3, 12)]


def _rows(lines, skip_count=True, first_user=0) -> list[tuple[int, int]]:
    """The (user, item) rows a reading of ``lines`` gives, right or with one of the common slips."""
    return [(u + first_user, int(i)) for u, line in enumerate(lines) for i in line.split()[1 if skip_count else 0:]]


@check("count_lists_to_frame", expects="a pandas DataFrame with the columns 'user' and 'item', one row per "
       "listed item, users numbered by line from 0, in file order")
def check_count_lists_to_frame(count_lists_to_frame) -> Verdict:
    """``count_lists_to_frame(lines)`` must return a DataFrame with columns ``user`` (the line
    number, from 0) and ``item``, one row per listed item, in file order."""
    import pandas as pd

    got = call("count_lists_to_frame", count_lists_to_frame, list(_LINES))
    if not isinstance(got, pd.DataFrame) or not {"user", "item"} <= set(got.columns):
        raise Fail(f"return a pandas DataFrame with the columns 'user' and 'item' (one row per listed item); "
                   f"got {type(got).__name__}" + (f" with columns {list(got.columns)}" if isinstance(got, pd.DataFrame) else ""))
    try:
        rows = [(int(u), int(i)) for u, i in zip(got["user"], got["item"])]
    except (TypeError, ValueError):
        raise Fail("the 'user' and 'item' columns must hold whole numbers: convert each field with int(...)") from None
    if rows == _EXPECTED:
        return passed("one row per (user, item), users numbered by line from 0, the count N left out")
    raise diagnose(rows, [
        Mistake("the first number of a line is the count N, not an item: skip it", when=lambda r: r == _rows(_LINES, False)),
        Mistake("users are numbered from 0 (the first line is user 0)", when=lambda r: r == _rows(_LINES, first_user=1)),
        Mistake("keep the items in the order of the file", when=lambda r: r != _EXPECTED and sorted(r) == sorted(_EXPECTED)),
        Mistake("a line whose count is 0 lists no item: it gives no row, but it still takes a user number",
                when=lambda r: r == [(u if u < 2 else u - 1, i) for u, i in _EXPECTED]),
    ], fallback=f"for the lines {_LINES} expected the rows {_EXPECTED}, got {rows[:8]}")
