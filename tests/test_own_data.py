"""Own-data loaders: named columns into CiteULike / Sessions, clear errors, RSC15 preprocessing."""
import numpy as np
import pandas as pd
import pytest

from course_lib import clicks, splits
from course_lib.data import CiteULike, Sessions
from course_lib.own_data import SAMPLE_DIR, OwnCiteULike, load_citeulike_files, load_sessions_file
from course_lib.text import prepare_text


def _write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path):
    likes = _write(tmp_path / "likes.csv", "who,what\nann,p2\nann,p1\nbob,p2\nann,p2\ncid,p3\n")
    texts = _write(tmp_path / "texts.tsv", "what\tbody\n"
                   "p1\tsmall-world networks\np2\tgene regulation\np3\tdeep nets\np4\tnever liked\n")
    tags = _write(tmp_path / "tags.csv", "what,label\np1,graphs\np2,biology\np1,networks\np2,biology\n")
    return likes, texts, tags


def test_interactions_texts_tags_fill_citeulike_as_computed_by_hand(files):
    likes, texts, tags = files
    c = load_citeulike_files(likes, texts, tags, user="who", item="what", text="body", tag="label")
    assert isinstance(c, CiteULike) and isinstance(c, OwnCiteULike)
    # items in the order of the texts file (p4 has no like and is kept), users by first appearance
    assert c.paper_ids.tolist() == ["p1", "p2", "p3", "p4"] and c.user_ids.tolist() == ["ann", "bob", "cid"]
    assert c.likes.toarray().tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    assert c.report["duplicate likes merged"] == 1 and c.report["items without likes"] == 1
    assert c.tag_names == ["biology", "graphs", "networks"]
    assert c.paper_tags.toarray().tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert c.texts("title+abstract")[0] == "small-world networks"
    assert c.citations.shape == (4, 4) and c.citations.nnz == 0


def test_pretokenised_texts_are_used_as_given(files):
    likes, texts, _ = files
    c = load_citeulike_files(likes, texts, user="who", item="what", text="body", tokenized=True)
    assert c.texts("title")[0] == ["small-world", "networks"]
    vocab, _ = prepare_text(c.texts("title+abstract"), min_count=1)
    assert "small-world" in vocab and "small" not in vocab  # re-tokenising would have split it
    assert c.texts("title")[3] == ["never", "liked"]


def test_numeric_ids_stay_numbers_and_no_texts_gives_empty_texts(tmp_path):
    likes = _write(tmp_path / "l.tsv", "user\titem\n10\t7\n11\t7\n11\t3\n")
    c = load_citeulike_files(likes)
    assert c.paper_ids.dtype == np.int64 and c.paper_ids.tolist() == [7, 3]
    assert c.likes.toarray().tolist() == [[1, 0], [1, 1]] and c.titles == ["", ""]


def test_missing_column_names_the_file_and_the_columns_found(files):
    likes, texts, _ = files
    with pytest.raises(ValueError, match=r"has no column 'user'; its columns are \['who', 'what'\]: name the column that holds it: user="):
        load_citeulike_files(likes, texts, item="what", text="body")
    with pytest.raises(ValueError, match="is the separator right"):
        load_citeulike_files(likes, texts, user="who", item="what", text="body", sep="\t")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_citeulike_files(likes.parent / "nope.csv")


def test_mixed_id_types_are_refused():
    frame = pd.DataFrame({"user": [1, "b"], "item": ["x", "y"]})
    with pytest.raises(ValueError, match="mixes id types"):
        load_citeulike_files(frame)
    likes = pd.DataFrame({"user": ["a", "b"], "item": [1, 2]})
    texts = pd.DataFrame({"item": ["1", "2"], "text": ["t", "u"]})
    with pytest.raises(ValueError, match="numbers but the texts ids are strings"):
        load_citeulike_files(likes, texts)


def test_unknown_items_and_empty_ids_are_refused(files, tmp_path):
    likes, texts, _ = files
    extra = _write(tmp_path / "more.csv", "who,what\nann,p9\n")
    with pytest.raises(ValueError, match=r"\['p9'\] have no row in the texts file"):
        load_citeulike_files(extra, texts, user="who", item="what", text="body")
    holes = _write(tmp_path / "holes.csv", "who,what\nann,p1\n,p2\n")
    with pytest.raises(ValueError, match=r"column 'user' is empty on line\(s\) \[3\]"):
        load_citeulike_files(holes, texts, user="who", item="what", text="body")
    bad_tags = _write(tmp_path / "t.csv", "what,label\np7,x\n")
    with pytest.raises(ValueError, match=r"tags: item\(s\) \['p7'\] are not among the items"):
        load_citeulike_files(likes, texts, bad_tags, user="who", item="what", text="body", tag="label")


def _events():
    day = 86400.0
    rows = []
    # sessions 0-2 at the start of day 0 and 3-5 later that day with items a..c (each item >= 5 events), session 6 of
    # length 1, session 7 on day 2 (test), session 8 has a rare item
    for s in range(6):
        t = (s // 3) * 0.7 * day + s * 100.0
        rows += [(f"s{s}", "a", t), (f"s{s}", "b", t + 10), (f"s{s}", "c", t + 20)]
    rows += [("s6", "a", 700.0)]
    rows += [("s7", "a", 2 * day), ("s7", "b", 2 * day + 5), ("s8", "rare", 2 * day + 9), ("s8", "a", 2 * day + 12)]
    return pd.DataFrame(rows, columns=["sid", "sku", "t"])


def test_sessions_are_preprocessed_exactly_like_rsc15():
    ev = _events()
    iso = ev.assign(t=pd.to_datetime(ev.t, unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    s = load_sessions_file(iso, session="sid", item="sku", time="t", valid_days=0.5)
    assert isinstance(s, Sessions)
    # the same preprocessing by hand on numbered ids
    codes = pd.DataFrame({"SessionId": pd.factorize(ev.sid)[0], "ItemId": pd.factorize(ev.sku)[0],
                          "Time": ev.t.astype(float)})
    clean, _ = clicks.preprocess_clicks(codes)
    train, test, _ = splits.session_split_by_time(clean, days=1)
    pd.testing.assert_frame_equal(s.train, train)
    pd.testing.assert_frame_equal(s.test, test)
    assert s.meta["item_ids"][s.test.ItemId].tolist() == ["a", "b"]  # s8 lost 'rare', then was too short
    assert s.meta["counts"]["cleaning"]["input"] == {"events": 23, "sessions": 9, "items": 4}
    assert s.meta["counts"]["cleaning"]["output"]["sessions"] == 7


def test_session_errors_name_the_problem():
    ev = _events()
    with pytest.raises(ValueError, match=r"column 'item' is empty on line\(s\) \[3\]"):
        load_sessions_file(ev.assign(sku=ev.sku.where(ev.index != 1, "")), session="sid", item="sku", time="t")
    with pytest.raises(ValueError, match="cannot read the time 'yesterday' on line 2"):
        load_sessions_file(ev.astype({"t": str}).assign(t=lambda d: d.t.where(d.index != 0, "yesterday")),
                           session="sid", item="sku", time="t")
    with pytest.raises(ValueError, match="no event is left after filtering"):
        load_sessions_file(ev.drop_duplicates("sid"), session="sid", item="sku", time="t")
    with pytest.raises(ValueError, match="has no column 'session'"):
        load_sessions_file(ev, item="sku", time="t")
    with pytest.raises(ValueError, match="time_unit must be"):
        load_sessions_file(ev, session="sid", item="sku", time="t", time_unit="h")


def test_the_shipped_sample_loads():
    c = load_citeulike_files(SAMPLE_DIR / "likes.csv", SAMPLE_DIR / "papers.tsv", SAMPLE_DIR / "tags.csv",
                             user="reader", item="doc", text="title")
    assert c.summary() == {"users": 318, "papers": 40, "likes": 1351, "tags": 64, "tag assignments": 364,
                           "papers with abstract": 0}
    s = load_sessions_file(SAMPLE_DIR / "clicks.csv", session="visit", item="product", time="timestamp")
    assert s.summary().loc["train"].tolist() == [382, 122, 15] and s.summary().loc["test"].tolist() == [229, 77, 15]
