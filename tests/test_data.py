
import numpy as np
import pandas as pd
import pytest

from course_lib import data


def test_tiny_citeulike_counts_and_structure():
    c = data.load_citeulike("tiny")
    assert (c.n_users, c.n_papers, c.likes.nnz) == (933, 400, 6734)
    assert c.likes.dtype == np.float32 and set(np.unique(c.likes.data)) == {1.0}
    assert len(c.titles) == len(c.abstracts) == 400 and all(c.abstracts)
    assert c.paper_tags.shape == (400, c.n_tags) and c.paper_tags.nnz == 8371
    # every tiny user kept at least 4 papers (the build rule) and ids are original indices
    assert np.diff(c.likes.indptr).min() >= 4
    assert c.paper_ids.max() < 16980 and c.user_ids.max() < 5551
    assert c.texts("title+abstract")[0].startswith(c.titles[0])


def test_tiny_sessions_counts_and_order():
    s = data.load_sessions("tiny")
    assert (len(s.train), s.train["SessionId"].nunique(), s.train["ItemId"].nunique()) == (10529, 2669, 1868)
    assert (len(s.test), s.test["SessionId"].nunique()) == (1751, 471)
    assert set(s.test["ItemId"]) <= set(s.train["ItemId"])
    assert s.test.groupby("SessionId").size().min() >= 2
    assert (s.train.groupby("SessionId")["Time"].diff().dropna() >= 0).all()


@pytest.mark.usefixtures("require_small")
def test_full_and_small_reproduce_published_counts():
    full = data.load_citeulike("full")
    assert (full.n_users, full.n_papers, full.likes.nnz) == (5551, 16980, 204986)
    assert full.n_tags == 46391 and full.has_abstract.sum() == 1929
    small = data.load_citeulike("small")
    assert (small.n_users, small.n_papers, small.likes.nnz) == (4915, 1929, 24549)
    assert np.all(np.diff(small.paper_ids) > 0)
    sessions = data.load_sessions("small")
    train = sessions.train
    assert (len(train), train["SessionId"].nunique(), train["ItemId"].nunique()) == (70278, 17794, 2933)
    assert len(sessions.test) == 13568


@pytest.mark.usefixtures("require_small")
def test_abstract_alignment_matches_the_independent_title_match():
    """Our title matching agrees with the index map made separately for ../shared (when present)."""
    mapping = data.local_data_dir() / "citeulike-a" / "abstracts_subset" / "subset_index_map.tsv"
    if not mapping.is_file():
        pytest.skip("no independent index map in COURSE_DATA_DIR")
    expected = pd.read_csv(mapping, sep="\t")["citeulike_a_item_index"].to_numpy()
    assert np.array_equal(data.load_citeulike("small").paper_ids, expected)


def test_unknown_ids_are_named():
    c = data.load_citeulike("tiny")
    with pytest.raises(ValueError, match=r"user ids must be in \[0, 933\), got 6000"):
        c.user_library(6000)
    with pytest.raises(ValueError, match="paper ids must be integers"):
        data.check_ids([1.5], 10, "paper")
    assert list(data.check_ids([0, 9], 10, "paper")) == [0, 9]


def test_unknown_tier_and_field():
    with pytest.raises(ValueError, match="tier must be one of"):
        data.load_citeulike("huge")
    with pytest.raises(ValueError, match="field must be one of"):
        data.load_citeulike("tiny").texts("body")


def test_modified_tiny_file_is_reported(tiny_copy):
    path = tiny_copy / "citeulike-a" / "users.dat"
    path.write_text(path.read_text().replace("5", "6", 1))
    with pytest.raises(data.ChecksumError, match="users.dat was modified.*git checkout data/"):
        data.load_citeulike("tiny")


def test_missing_tiny_file_is_reported(tiny_copy):
    (tiny_copy / "rsc15" / "test.txt").unlink()
    with pytest.raises(data.DataMissingError, match="test.txt is missing"):
        data.load_sessions("tiny")


def test_corrupt_local_copy_names_file_and_source(tmp_path, monkeypatch):
    copy = tmp_path / "copy" / "citeulike-a"
    copy.mkdir(parents=True)
    (copy / "users.dat").write_text("1 0\n")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "copy"))
    with pytest.raises(data.ChecksumError) as err:
        data.locate("citeulike-a/users.dat")
    msg = str(err.value)
    assert "users.dat is corrupt" in msg and "js05212/citeulike-a" in msg and "COURSE_DATA_DIR" in msg


def test_no_network_and_no_copy_says_what_is_missing(empty_data_env, monkeypatch):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(data.DataMissingError) as err:
        data.load_sessions("small")
    msg = str(err.value)
    assert "yoochoose-clicks-100k_train_full.txt" in msg
    assert "rn5l/session-rec" in msg and "COURSE_DATA_DIR" in msg and "course fetch" in msg
    assert "network is unreachable" in msg


def test_download_with_wrong_checksum_is_rejected(empty_data_env, monkeypatch):
    import pooch

    def wrong(url, known_hash, fname, path, progressbar):
        raise ValueError("SHA256 hash of downloaded file does not match the known hash")

    monkeypatch.setattr(pooch, "retrieve", wrong)
    with pytest.raises(data.ChecksumError, match="sha256 is wrong"):
        data.locate("citeulike-a/tags.dat")


def test_download_lands_in_the_cache(empty_data_env, monkeypatch, tmp_path):
    """A successful (simulated) download is verified and then found in the cache without network."""
    import pooch

    payload = b"hello\n"
    spec = data.RemoteFile("citeulike-a/tags.dat", "https://example.invalid/tags.dat",
                           "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
    monkeypatch.setitem(data.REMOTE_FILES, spec.relpath, spec)

    def fake(url, known_hash, fname, path, progressbar):
        (path / fname).write_bytes(payload)
        return str(path / fname)

    monkeypatch.setattr(pooch, "retrieve", fake)
    got = data.locate("citeulike-a/tags.dat")
    assert got.read_bytes() == payload and empty_data_env in got.parents
    monkeypatch.setattr(pooch, "retrieve", None)  # a second call must not download
    assert data.locate("citeulike-a/tags.dat", download=False) == got


def test_malformed_lines_fail_with_file_and_line(tmp_path):
    bad = tmp_path / "users.dat"
    bad.write_text("2 0 1\n1 3\n3 0 1\n")
    with pytest.raises(ValueError, match=r"users.dat:3: the count 3 does not match the 2"):
        data.parse_count_lists(bad, 10)
    bad.write_text("2 0 1\n1 x\n")
    with pytest.raises(ValueError, match=r"users.dat:2: expected integers"):
        data.parse_count_lists(bad, 10)
    bad.write_text("1 12\n")
    with pytest.raises(ValueError, match=r"users.dat:1: .*out of range \[0, 10\)"):
        data.parse_count_lists(bad, 10)
    sessions = tmp_path / "clicks.txt"
    sessions.write_text("SessionId\tItemId\tTime\n1\t5\t10.0\n1\tabc\t11.0\n")
    with pytest.raises(ValueError, match=r"clicks.txt:3: expected 'SessionId<TAB>ItemId<TAB>Time'"):
        data.read_sessions_file(sessions)


def test_mojibake_repair():
    assert data.repair_mojibake("cellâ€“cell") == "cell–cell"
    assert data.repair_mojibake("plain title") == "plain title"
    assert data.repair_mojibake("Gödel") == "Gödel"


def test_subset_papers_keeps_users_with_enough_likes():
    c = data.load_citeulike("tiny")
    sub = data.subset_papers(c, [0, 1, 2], min_user_likes=2)
    expected_users = np.flatnonzero(np.asarray((c.likes[:, [0, 1, 2]] > 0).sum(axis=1)).ravel() >= 2)
    assert np.array_equal(sub.user_ids, c.user_ids[expected_users])
    assert sub.likes.shape == (len(expected_users), 3)
