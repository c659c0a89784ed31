"""Your own data in the course's structures: plain files (or DataFrames) with named columns.

* :func:`load_citeulike_files` reads interactions (``user``, ``item``), item texts (``item``,
  ``text``, optionally ``abstract``; the text may be pre-tokenised) and tags (``item``, ``tag``)
  into a :class:`~course_lib.data.CiteULike`, so every CiteULike notebook and model runs on them.
* :func:`load_sessions_file` reads click events (``session``, ``item``, ``time``) and applies the
  RSC15 preprocessing of GRU4Rec (:func:`course_lib.clicks.preprocess_clicks`, then
  :func:`course_lib.splits.session_split_by_time` twice) into a :class:`~course_lib.data.Sessions`.

The column names are arguments, so a file with other headers needs no editing. Separators follow
the file name (``.csv``: comma, ``.tsv``/``.tab``/``.txt``: tab) unless ``sep`` is given. Ids
may be numbers or strings; the original ids are kept (``CiteULike.paper_ids`` / ``user_ids``,
``Sessions.meta["item_ids"]``) while the structures use row and column indices, as everywhere.
Nothing is dropped silently: every count is in the returned object's ``meta``/``report``.

:data:`SAMPLE_DIR` holds a small sample in this format (``data/own``, see ``data/SOURCE.md``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from course_lib import clicks, splits
from course_lib.data import DATA_ROOT, TEXT_FIELDS, CiteULike, Sessions
from course_lib.validation import check_same_id_kind

SAMPLE_DIR = DATA_ROOT / "own"


@dataclass
class OwnCiteULike(CiteULike):
    """A :class:`CiteULike` built from your files. ``tokens`` (one token list per paper, title
    tokens then abstract tokens) is set when the texts came pre-tokenised: :meth:`texts` then
    returns token lists, which :func:`course_lib.text.prepare_text` uses as given instead of
    re-tokenising. ``report`` holds the counts of what was read and merged."""

    title_tokens: list[list[str]] | None = None
    abstract_tokens: list[list[str]] | None = None
    report: dict = field(default_factory=dict)

    def texts(self, field: str = "title+abstract"):
        if self.title_tokens is None:
            return super().texts(field)
        if field == "title":
            return [list(t) for t in self.title_tokens]
        if field == "abstract":
            return [list(a) for a in self.abstract_tokens]
        if field == "title+abstract":
            return [list(t) + list(a) for t, a in zip(self.title_tokens, self.abstract_tokens)]
        raise ValueError(f"field must be one of {TEXT_FIELDS}, got {field!r}")


# --------------------------------------------------------------------------------------------
# Reading a table
# --------------------------------------------------------------------------------------------
def _sep_for(path: Path, sep: str | None) -> str:
    if sep is not None:
        return sep
    return "," if path.suffix.lower() == ".csv" else "\t"


def read_table(source, columns: dict[str, str], what: str, sep: str | None = None) -> pd.DataFrame:
    """``source`` (a path or a DataFrame) as a frame with the columns ``columns.keys()``, renamed
    from the file's ``columns.values()``. Ids keep the type pandas infers (numbers or strings);
    a missing column, an empty table or an empty id is a ValueError naming the file and the fix."""
    if isinstance(source, pd.DataFrame):
        df, name = source.copy(), f"the {what} frame"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what} file {path} does not exist; check the path (working directory: {Path.cwd()})")
        # only an empty field is missing: "NA" or "null" can be a word of a text or an id
        df = pd.read_csv(path, sep=_sep_for(path, sep), keep_default_na=False, na_values=[""])
        name = str(path)
    wanted = list(columns.values())
    missing = {k: v for k, v in columns.items() if v not in df.columns}
    if missing:
        if len(df.columns) == 1:
            fix = "is the separator right? pass sep=..."
        else:
            fix = "name the column that holds it: " + ", ".join(f"{k}='...'" for k in missing)
        raise ValueError(f"{name} has no column {', '.join(repr(v) for v in missing.values())}; its columns are "
                         f"{list(df.columns)}: {fix}")
    df = df[wanted].rename(columns={v: k for k, v in columns.items()})
    if len(df) == 0:
        raise ValueError(f"{name} has no rows")
    return df


def _ids(df: pd.DataFrame, col: str, name: str) -> np.ndarray:
    """The id column as numbers (int64) or strings; empty ids and mixtures are refused."""
    values = df[col]
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        rows = (np.flatnonzero(empty.to_numpy())[:5] + 2).tolist()  # +2: header line, 1-based
        raise ValueError(f"{name}: column {col!r} is empty on line(s) {rows}; every row needs an id")
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(np.int64)
    if pd.api.types.is_float_dtype(values):
        arr = values.to_numpy()
        if np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise ValueError(f"{name}: column {col!r} holds fractional numbers (e.g. {arr[arr != np.round(arr)][0]}); ids must be whole numbers or strings")
    kinds = {type(v).__name__ for v in values}
    if len(kinds) > 1:
        ex = {k: next(v for v in values if type(v).__name__ == k) for k in sorted(kinds)}
        raise ValueError(f"{name}: column {col!r} mixes id types ({', '.join(f'{k} like {v!r}' for k, v in ex.items())}); "
                         "make them one type, e.g. df[col] = df[col].astype(str)")
    return values.astype(str).to_numpy()


def _same_kind(ids_a: np.ndarray, ids_b: np.ndarray, other: str) -> None:
    try:
        check_same_id_kind(ids_a, ids_b, other)
    except ValueError as exc:
        raise ValueError(f"item ids: {exc}") from None


# --------------------------------------------------------------------------------------------
# Interactions, texts, tags -> CiteULike
# --------------------------------------------------------------------------------------------
def load_citeulike_files(interactions, texts=None, tags=None, *, user: str = "user", item: str = "item",
                         text: str = "text", abstract: str | None = None, tag: str = "tag",
                         tokenized: bool = False, sep: str | None = None, name: str = "own") -> OwnCiteULike:
    """Build a :class:`OwnCiteULike` (a :class:`~course_lib.data.CiteULike`) from your files.

    ``interactions``: one row per (user, item) like; duplicates count once. ``texts``: one row
    per item with its ``text`` (and ``abstract`` if you name that column); items are numbered in
    the order of this file, so items without likes are kept (cold-start papers). With
    ``tokenized=True`` the texts are whitespace-separated tokens, used as they are. ``tags``: one
    row per (item, tag). Without ``texts`` the items are numbered in order of first like and have
    empty texts. Every item with a like or a tag must have a text row when ``texts`` is given.
    """
    likes_df = read_table(interactions, {"user": user, "item": item}, "interactions", sep)
    users = _ids(likes_df, "user", "interactions")
    like_items = _ids(likes_df, "item", "interactions")
    report = {"interaction rows": int(len(likes_df))}

    if texts is not None:
        cols = {"item": item, "text": text} | ({"abstract": abstract} if abstract else {})
        text_df = read_table(texts, cols, "texts", sep)
        items = _ids(text_df, "item", "texts")
        _same_kind(like_items, items, "texts")
        uniq, first = np.unique(items, return_index=True)
        if uniq.size < items.size:
            dup = items[np.setdiff1d(np.arange(items.size), first)][:5]
            raise ValueError(f"texts: item(s) {dup.tolist()} have more than one row; keep one text per item")
        titles = text_df["text"].fillna("").astype(str).tolist()
        abstracts = text_df["abstract"].fillna("").astype(str).tolist() if abstract else [""] * len(titles)
    else:
        items = pd.unique(like_items)
        titles, abstracts = [""] * len(items), [""] * len(items)
    index = pd.Index(items)
    col = index.get_indexer(like_items)
    if (col < 0).any():
        bad = pd.unique(like_items[col < 0])[:5]
        raise ValueError(f"interactions: item(s) {bad.tolist()} have no row in the texts file "
                         f"({int((col < 0).sum())} likes); add their texts or drop those likes")
    user_ids = pd.unique(users)
    row = pd.Index(user_ids).get_indexer(users)
    likes = sp.csr_matrix((np.ones(len(row), dtype=np.float32), (row, col)), shape=(len(user_ids), len(items)))
    likes.sum_duplicates()
    report["duplicate likes merged"] = int(len(row) - likes.nnz)
    likes.data[:] = 1.0

    tag_names: list[str] = []
    paper_tags = sp.csr_matrix((len(items), 0), dtype=np.float32)
    if tags is not None:
        tag_df = read_table(tags, {"item": item, "tag": tag}, "tags", sep)
        tag_items = _ids(tag_df, "item", "tags")
        _same_kind(items, tag_items, "tags")
        trow = index.get_indexer(tag_items)
        if (trow < 0).any():
            bad = pd.unique(tag_items[trow < 0])[:5]
            raise ValueError(f"tags: item(s) {bad.tolist()} are not among the items; fix their ids or drop those rows")
        tag_values = tag_df["tag"].astype(str).to_numpy()
        tag_names = sorted(set(tag_values.tolist()))
        tcol = pd.Index(tag_names).get_indexer(tag_values)
        paper_tags = sp.csr_matrix((np.ones(len(trow), dtype=np.float32), (trow, tcol)), shape=(len(items), len(tag_names)))
        paper_tags.sum_duplicates()
        paper_tags.data[:] = 1.0
        report["tag rows"] = int(len(tag_df))

    out = OwnCiteULike(name, likes.tocsr(), titles, abstracts, tag_names, paper_tags.tocsr(),
                       sp.csr_matrix((len(items), len(items)), dtype=np.float32),
                       np.asarray(items), np.asarray(user_ids), report=report)
    if tokenized:
        out.title_tokens = [t.split() for t in titles]
        out.abstract_tokens = [a.split() for a in abstracts]
    report.update(users=out.n_users, items=out.n_papers, likes=int(out.likes.nnz),
                  **{"items without likes": int((np.diff(out.likes.tocsc().indptr) == 0).sum())})
    return out


# --------------------------------------------------------------------------------------------
# Click events -> Sessions, preprocessed like RSC15
# --------------------------------------------------------------------------------------------
def _times(values: pd.Series, name: str, time_unit: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values):
        scale = {"s": 1.0, "ms": 1e-3}[time_unit]
        return values.to_numpy(np.float64) * scale
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        first = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise ValueError(f"{name}: cannot read the time {values.iloc[first]!r} on line {first + 2}; use Unix "
                         "seconds or ISO 8601 (2014-04-07T10:51:09Z)")
    return ((parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(np.float64)


def load_sessions_file(events, *, session: str = "session", item: str = "item", time: str = "time",
                       time_unit: str = "s", sep: str | None = None, min_session_len: int = 2,
                       min_item_support: int = 5, test_days: float = 1, valid_days: float = 1,
                       name: str = "own") -> Sessions:
    """Read click events and preprocess them as the course does RSC15 (``course preprocess-rsc15``):
    drop sessions shorter than ``min_session_len``, items with fewer than ``min_item_support``
    events, short sessions again; sessions ending in the last ``test_days`` go to test (items not
    in train removed); the same again on train with ``valid_days`` for train_tr / valid.

    ``time``: Unix seconds (``time_unit="ms"`` for milliseconds) or ISO 8601 strings. Session and
    item ids may be numbers or strings; strings are numbered and the original ids are kept in
    ``meta["session_ids"]`` / ``meta["item_ids"]`` (``ItemId`` ``i`` is ``meta["item_ids"][i]``)."""
    if time_unit not in ("s", "ms"):
        raise ValueError(f"time_unit must be 's' or 'ms', got {time_unit!r}")
    df = read_table(events, {"session": session, "item": item, "time": time}, "events", sep)
    label = "events"
    sessions = _ids(df, "session", label)
    items = _ids(df, "item", label)
    empty_time = df["time"].isna() | (df["time"].astype(str).str.strip() == "")
    if empty_time.any():
        rows = (np.flatnonzero(empty_time.to_numpy())[:5] + 2).tolist()
        raise ValueError(f"{label}: column 'time' is empty on line(s) {rows}; every click needs a time")
    frame, meta = {}, {}
    for key, ids, what in (("SessionId", sessions, "session_ids"), ("ItemId", items, "item_ids")):
        if ids.dtype.kind in "iu":
            frame[key], meta[what] = ids, None  # numbers are kept as they are
        else:
            codes, uniques = pd.factorize(ids)
            frame[key], meta[what] = codes.astype(np.int64), np.asarray(uniques)
    frame["Time"] = _times(df["time"], label, time_unit)
    raw = pd.DataFrame(frame)
    clean, c1 = clicks.preprocess_clicks(raw, min_session_len=min_session_len, min_item_support=min_item_support)
    train, test, c2 = splits.session_split_by_time(clean, days=test_days, min_session_len=min_session_len)
    if len(test) == 0:
        raise ValueError(f"no test session is left: the last {test_days} day(s) have no session of >= "
                         f"{min_session_len} clicks on items seen before; pass a larger test_days")
    train_tr, valid, c3 = splits.session_split_by_time(train, days=valid_days, min_session_len=min_session_len)
    meta["counts"] = {"cleaning": c1, "train/test": c2, "train_tr/valid": c3}
    return Sessions(name, train, test, train_tr, valid, meta=meta)
