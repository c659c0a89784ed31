"""Build the committed ``tiny`` tier in data/tiny/ from the full data.

Run with the larger tiers available (downloaded, or ``COURSE_DATA_DIR`` pointing at a copy):

    python scripts/build_tiny_data.py

CiteULike: the ``N_PAPERS`` most-liked papers of the 1,929 that have an abstract, and every user
with at least ``MIN_USER_LIKES`` of them; their tags (renumbered) and the citations among them.
RSC15: a seeded sample of ``SESSION_FRACTION`` of the sessions of the 100k slice, re-filtered the
GRU4Rec way so that every test item occurs in training. The output is deterministic; the script
writes data/tiny/SHA256SUMS and prints the counts that data/SOURCE.md reports.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_lib import data  # noqa: E402

N_PAPERS = 400
MIN_USER_LIKES = 4
SESSION_FRACTION = 0.15
SEED = 0


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def _write_lists(path: Path, rows) -> None:
    path.write_text("\n".join(" ".join(str(v) for v in [len(r), *r]) for r in rows) + "\n")


def build_citeulike(out: Path) -> dict:
    full = data.load_citeulike("full")
    with_abstract = np.flatnonzero(full.has_abstract)
    popularity = np.asarray(full.likes[:, with_abstract].sum(axis=0)).ravel()
    order = np.lexsort((with_abstract, -popularity))  # most liked first, ties by index
    papers = np.sort(with_abstract[order[:N_PAPERS]])
    tiny = data.subset_papers(full, papers, tier="tiny", min_user_likes=MIN_USER_LIKES)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({
        "paper_id": tiny.paper_ids,
        "title": [_clean(t) for t in tiny.titles],
        "abstract": [_clean(a) for a in tiny.abstracts],
    }).to_csv(out / "papers.tsv", sep="\t", index=False)
    _write_lists(out / "users.dat", [tiny.likes.indices[a:b] for a, b in zip(tiny.likes.indptr, tiny.likes.indptr[1:])])
    pt = tiny.paper_tags
    _write_lists(out / "item-tag.dat", [pt.indices[a:b] for a, b in zip(pt.indptr, pt.indptr[1:])])
    (out / "tags.dat").write_text("\n".join(tiny.tag_names) + "\n")
    ct = tiny.citations
    _write_lists(out / "citations.dat", [ct.indices[a:b] for a, b in zip(ct.indptr, ct.indptr[1:])])
    (out / "user_ids.txt").write_text("\n".join(str(u) for u in tiny.user_ids) + "\n")
    return tiny.summary()


def _restrict(df: pd.DataFrame, sessions: set, items: set | None) -> tuple[pd.DataFrame, dict]:
    df = df[df["SessionId"].isin(sessions)]
    n0 = len(df)
    if items is not None:
        df = df[df["ItemId"].isin(items)]
    lengths = df.groupby("SessionId")["ItemId"].transform("size")
    kept = df[lengths >= 2]
    return kept, {"events_unknown_item": n0 - len(df), "events_in_short_sessions": len(df) - len(kept)}


def build_sessions(out: Path) -> dict:
    small = data.load_sessions("small")
    rng = np.random.default_rng(SEED)
    pick = lambda df: set(rng.choice(np.sort(df["SessionId"].unique()), size=int(SESSION_FRACTION * df["SessionId"].nunique()), replace=False).tolist())  # noqa: E731
    train_sessions, test_sessions = pick(small.train), pick(small.test)
    train, _ = _restrict(small.train, train_sessions, None)
    test, drop_test = _restrict(small.test, test_sessions, set(train["ItemId"]))
    train_tr, _ = _restrict(small.train_tr, train_sessions, None)
    valid, drop_valid = _restrict(small.valid, train_sessions, set(train_tr["ItemId"]))
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, df in [("train_full", train), ("test", test), ("train_tr", train_tr), ("train_valid", valid)]:
        df.to_csv(out / f"{name}.txt", sep="\t", index=False, float_format="%.3f")
        counts[name] = (len(df), df["SessionId"].nunique(), df["ItemId"].nunique())
    counts["dropped from test"] = drop_test
    counts["dropped from valid"] = drop_valid
    return counts


def main() -> None:
    out = data.TINY_DIR
    print("citeulike", build_citeulike(out / "citeulike-a"))
    print("rsc15 (events, sessions, items)", build_sessions(out / "rsc15"))
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    sums = [f"{data.sha256_of(p)}  {p.relative_to(out).as_posix()}" for p in files]
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print("\n".join(sums))


if __name__ == "__main__":
    main()
