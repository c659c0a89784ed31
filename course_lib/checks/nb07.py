"""Checks for notebook 07 (your own data): turning a published count-list file into named columns."""
from __future__ import annotations

import pandas as pd

from . import Verdict, call_learner, report

# the count-list format of CiteULike-a/-t's users.dat: line u is "N i1 ... iN"; user 2 has no item
_LINES = ["2 10 4", "1 4", "0", "3 7 10 12"]
_EXPECTED = [(0, 10), (0, 4), (1, 4), (3, 7), (3, 10), (3, 12)]


def check_count_lists_to_frame(count_lists_to_frame) -> Verdict:
    """``count_lists_to_frame(lines)`` must return a DataFrame with columns ``user`` (the line
    number, from 0) and ``item``, one row per listed item, in file order."""
    got = call_learner("count_lists_to_frame", count_lists_to_frame, list(_LINES))
    if got is None:
        return Verdict(False)
    if not isinstance(got, pd.DataFrame) or not {"user", "item"} <= set(got.columns):
        return report(False, "", "return a pandas DataFrame with the columns 'user' and 'item', e.g. "
                      "pd.DataFrame(rows, columns=['user', 'item'])")
    rows = [(int(u), int(i)) for u, i in zip(got["user"], got["item"])]
    if rows == _EXPECTED:
        return report(True, "one row per (user, item), users numbered by line from 0, the count N left out", "")
    if len(rows) == len(_EXPECTED) + len(_LINES):  # one extra row per line: N was taken as an item
        return report(False, "", "the first number of a line is the count N, not an item: skip it")
    if rows and min(u for u, _ in rows) == 1:
        return report(False, "", "users are numbered from 0 (the first line is user 0)")
    if len(rows) == len(_EXPECTED) and sorted(rows) == sorted(_EXPECTED):
        return report(False, "", "keep the items in the order of the file")
    return report(False, "", f"for the lines {_LINES} expected {_EXPECTED}, got {rows[:8]}")
