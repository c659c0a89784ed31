"""Session clicks (RSC15) made ready for GRU4Rec: the frame checked, then GRU4Rec's filtering.

Frames have the columns ``SessionId``, ``ItemId``, ``Time`` (Unix seconds). The full RSC15
preprocessing of GRU4Rec (Hidasi et al. 2016, section 4), in this order::

    clicks, c1 = preprocess_clicks(raw)                        # len-1 sessions, items < 5 events, len-1 again
    train, test, c2 = splits.session_split_by_time(clicks, 1)  # sessions ending on the last day -> test
    train_tr, valid, c3 = splits.session_split_by_time(train, 1)  # the same again, for tuning

Each function returns a dict of counts next to the frames, so nothing is dropped silently. The
split by time is a split and lives in :mod:`course_lib.splits`; :func:`check_clicks` and
:func:`drop_short_sessions` serve both.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SESSION_COLUMNS = ("SessionId", "ItemId", "Time")


def check_clicks(df, what: str = "df") -> pd.DataFrame:
    """``df``'s three columns as int64, int64, float64 Unix seconds, sorted by session then time,
    or a ``ValueError`` that says what is wrong with the frame and how to fix it."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame with columns {SESSION_COLUMNS}, "
                         f"got {type(df).__name__}")
    missing = [c for c in SESSION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; expected {SESSION_COLUMNS} "
                         "(rename with df.rename(columns={...}))")
    if len(df) == 0:
        raise ValueError(f"{what} has no events")
    out = df[list(SESSION_COLUMNS)].copy()
    if out.isna().any().any():
        raise ValueError(f"{what} has missing values in {list(out.columns[out.isna().any()])}; drop them first")
    if pd.api.types.is_datetime64_any_dtype(out["Time"]):
        # Unix seconds whatever the datetime resolution (ns, us, ...)
        out["Time"] = (out["Time"] - pd.Timestamp(0, tz=out["Time"].dt.tz)) / pd.Timedelta(seconds=1)
    elif not pd.api.types.is_numeric_dtype(out["Time"]):
        raise ValueError(f"{what}['Time'] must be Unix seconds (numbers) or datetimes, got dtype "
                         f"{out['Time'].dtype}; convert with pd.to_datetime(df['Time'])")
    out = out.astype({"SessionId": np.int64, "ItemId": np.int64, "Time": np.float64})
    sid, time = out["SessionId"].to_numpy(), out["Time"].to_numpy()
    step = np.diff(sid)
    if np.all(step >= 0) and np.all((step > 0) | (np.diff(time) >= 0)):
        return out.reset_index(drop=True)  # already in order: skip a copy of a possibly huge frame
    return out.sort_values(["SessionId", "Time"], kind="stable").reset_index(drop=True)


def drop_short_sessions(df: pd.DataFrame, min_len: int) -> pd.DataFrame:
    """The events of the sessions with at least ``min_len`` events."""
    lengths = df.groupby("SessionId")["ItemId"].transform("size")
    return df[lengths >= min_len]


def click_counts(df: pd.DataFrame) -> tuple[int, int, int]:
    """``(events, sessions, items)`` of a click frame."""
    return len(df), int(df["SessionId"].nunique()), int(df["ItemId"].nunique())


def preprocess_clicks(df, min_session_len: int = 2, min_item_support: int = 5) -> tuple[pd.DataFrame, dict]:
    """GRU4Rec's RSC15 filtering (Hidasi et al. 2016, section 4), in the paper's order:
    drop sessions shorter than ``min_session_len``, then items with fewer than
    ``min_item_support`` events, then the sessions that became too short.

    Returns the filtered frame (sorted by session and time) and the counts of events, sessions and
    items before, after each step, and at the end.
    """
    if min_session_len < 1 or min_item_support < 1:
        raise ValueError(f"min_session_len and min_item_support must be >= 1, got "
                         f"{min_session_len} and {min_item_support}")
    data = check_clicks(df)
    counts = {"input": click_counts(data)}
    data = drop_short_sessions(data, min_session_len)
    counts["after dropping short sessions"] = click_counts(data)
    support = data.groupby("ItemId")["SessionId"].transform("size")
    data = data[support >= min_item_support]
    counts["after dropping rare items"] = click_counts(data)
    data = drop_short_sessions(data, min_session_len).reset_index(drop=True)
    counts["output"] = click_counts(data)
    if len(data) == 0:
        raise ValueError(f"no event is left after filtering (min_session_len={min_session_len}, "
                         f"min_item_support={min_item_support}); lower the thresholds")
    return data, {k: dict(zip(("events", "sessions", "items"), v)) for k, v in counts.items()}
