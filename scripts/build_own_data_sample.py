"""Build data/own/: a small sample of public data in the plain named-column format of
course_lib.own_data, the way such datasets are usually published (string ids, ISO times, one row
per tag, a pre-tokenised text column). Made from the committed tiny tier (data/tiny, whose
provenance is data/SOURCE.md); deterministic, so a rebuild gives the same bytes.

    python scripts/build_own_data_sample.py
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from course_lib.data import load_citeulike, load_sessions
from course_lib.text import tokenize

OUT = Path(__file__).resolve().parent.parent / "data" / "own"
N_PAPERS, MIN_USER_LIKES, MIN_TAG_PAPERS, N_ITEMS, LAST_DAYS = 40, 3, 4, 15, 3


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cul = load_citeulike("tiny")
    popular = np.argsort(-np.asarray(cul.likes.sum(axis=0)).ravel(), kind="stable")[:N_PAPERS]
    papers = np.sort(popular)
    doc = [f"cul-{int(cul.paper_ids[p])}" for p in papers]  # string item ids, as in most public dumps
    pd.DataFrame({"doc": doc, "title": [cul.titles[p] for p in papers],
                  "title_tokens": [" ".join(tokenize(cul.titles[p], keep_hyphens=True)) for p in papers]}
                 ).to_csv(OUT / "papers.tsv", sep="\t", index=False)
    sub = cul.likes[:, papers].tocoo()
    keep_users = np.flatnonzero(np.bincount(sub.row, minlength=cul.n_users) >= MIN_USER_LIKES)
    mask = np.isin(sub.row, keep_users)
    likes = pd.DataFrame({"reader": [f"u{int(cul.user_ids[u])}" for u in sub.row[mask]],
                          "doc": [doc[c] for c in sub.col[mask]]}).sort_values(["reader", "doc"])
    likes.to_csv(OUT / "likes.csv", index=False)
    tags = cul.paper_tags[papers]
    tags = tags[:, np.flatnonzero(np.asarray(tags.sum(axis=0)).ravel() >= MIN_TAG_PAPERS)].tocoo()
    pd.DataFrame({"doc": [doc[r] for r in tags.row], "tag": [cul.tag_names[t] for t in np.flatnonzero(np.asarray(cul.paper_tags[papers].sum(axis=0)).ravel() >= MIN_TAG_PAPERS)[tags.col]]}
                 ).sort_values(["doc", "tag"]).to_csv(OUT / "tags.csv", index=False)

    s = load_sessions("tiny")
    ev = pd.concat([s.train, s.test]).sort_values(["SessionId", "Time"], kind="stable")
    ev = ev[ev.Time >= ev.Time.max() - LAST_DAYS * 86400]
    top = ev.ItemId.value_counts(sort=True).index[:N_ITEMS]
    ev = ev[ev.ItemId.isin(top)]
    ev = ev[ev.groupby("SessionId").ItemId.transform("size") >= 2]
    clicks = pd.DataFrame({"visit": ev.SessionId.to_numpy(), "product": [f"sku-{int(i)}" for i in ev.ItemId],
                           "timestamp": pd.to_datetime(ev.Time.round(3), unit="s", utc=True)
                           .dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(r"\d{3}Z$", "Z", regex=True)})
    clicks.to_csv(OUT / "clicks.csv", index=False)
    for f in sorted(OUT.glob("*.*sv")):
        print(f"{f.name}: {f.stat().st_size:,} bytes, sha256 {hashlib.sha256(f.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
