import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from course_lib.evaluation import evaluate_flip_protocol
from course_lib.splits import (Fold, FlipProtocol, cold_start_folds, flip_protocol, flip_split, session_split_by_time,
                               tag_split, validation_split, warm_start_folds)


@pytest.fixture(scope="module")
def likes():
    """(200 users, 150 papers) with a long tail: some papers have < 5 likes."""
    rng = np.random.default_rng(3)
    pop = rng.lognormal(0, 1.2, size=150)
    rows, cols = [], []
    for u in range(200):
        k = rng.integers(3, 20)
        cols.append(rng.choice(150, size=k, replace=False, p=pop / pop.sum()))
        rows.append(np.full(k, u))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(200, 150))


def paper_counts(m):
    return np.bincount(sp.csr_matrix(m).indices, minlength=m.shape[1])


def assert_partition(fold, likes):
    assert fold.train.shape == fold.test.shape == likes.shape
    assert fold.train.multiply(fold.test).nnz == 0
    assert abs(fold.train + fold.test - likes).sum() == 0


# ---------------------------------------------------------------- warm start

def test_warm_folds_partition_and_each_like_tested_once(likes):
    folds = warm_start_folds(likes, n_folds=5, seed=0, min_paper_likes=5)
    assert [f.fold for f in folds] == list(range(5)) and all(f.kind == "warm" for f in folds)
    times_tested = sum(f.test for f in folds).toarray()
    eligible = (paper_counts(likes) >= 5)[None, :] & (likes.toarray() > 0)
    assert eligible.sum() > 1000  # the test is not vacuous
    np.testing.assert_array_equal(times_tested, eligible.astype(float))  # once if eligible, never if not
    for f in folds:
        assert_partition(f, likes)
        test_papers = np.unique(f.test.indices)
        assert paper_counts(f.train)[test_papers].min() >= 1  # every test paper has a training like


def test_warm_folds_are_balanced_per_user(likes):
    folds = warm_start_folds(likes, n_folds=5, seed=1)
    per_user = np.stack([np.diff(f.test.indptr) for f in folds], axis=1)  # (n_users, n_folds)
    spread = per_user.max(axis=1) - per_user.min(axis=1)
    # round-robin gives a spread <= 1; only the few moves that keep a training like break it
    assert np.mean(spread <= 1) >= 0.9


def test_warm_folds_seeded(likes):
    a = warm_start_folds(likes, seed=7)
    b = warm_start_folds(likes, seed=7)
    c = warm_start_folds(likes, seed=8)
    assert all((x.test != y.test).nnz == 0 for x, y in zip(a, b))
    assert any((x.test != y.test).nnz > 0 for x, y in zip(a, c))


def test_warm_small_papers_stay_in_training():
    # paper 0 has 2 likes (< 3): never tested; paper 1 has 3 likes
    m = sp.csr_matrix(np.array([[1, 1], [1, 1], [0, 1]], dtype=np.float32))
    folds = warm_start_folds(m, n_folds=2, seed=0, min_paper_likes=3)
    assert all(f.test[:, 0].nnz == 0 for f in folds)
    assert sum(f.test[:, 1].nnz for f in folds) == 3
    assert all(f.train[:, 1].nnz >= 1 for f in folds)


def test_split_input_validation(likes):
    with pytest.raises(ValueError, match="scipy.sparse"):
        warm_start_folds(likes.toarray())
    with pytest.raises(ValueError, match="n_folds must be an integer >= 2, got 1"):
        warm_start_folds(likes, n_folds=1)
    with pytest.raises(ValueError, match="no nonzero entry"):
        cold_start_folds(sp.csr_matrix((5, 4)))
    with pytest.raises(ValueError, match="min_paper_likes must be >= 2"):
        warm_start_folds(likes, min_paper_likes=1)
    with pytest.raises(ValueError, match="fewer than n_folds"):
        cold_start_folds(likes, n_folds=5, min_paper_likes=1000)


# ---------------------------------------------------------------- cold start

def test_cold_folds(likes):
    folds = cold_start_folds(likes, n_folds=5, seed=0, min_paper_likes=5)
    eligible = np.flatnonzero(paper_counts(likes) >= 5)
    all_test = np.concatenate([f.test_papers for f in folds])
    np.testing.assert_array_equal(np.sort(all_test), eligible)  # papers partitioned into folds
    assert max(f.test_papers.size for f in folds) - min(f.test_papers.size for f in folds) <= 1
    for f in folds:
        assert f.kind == "cold"
        assert_partition(f, likes)
        assert paper_counts(f.train)[f.test_papers].sum() == 0  # new papers: no training like
        np.testing.assert_array_equal(paper_counts(f.test)[f.test_papers], paper_counts(likes)[f.test_papers])
        assert set(np.unique(f.test.indices)) == set(f.test_papers)


# ---------------------------------------------------------------- flip and validation

def test_flip_warm_holds_out_a_fraction_of_each_papers_users(likes):
    fold = flip_split(likes, mode="warm", test_frac=0.2, seed=0, min_paper_likes=5)
    assert_partition(fold, likes)
    n = paper_counts(likes)
    expected = np.where(n >= 5, np.clip(np.floor(0.2 * n + 0.5), 1, n - 1), 0)
    np.testing.assert_array_equal(paper_counts(fold.test), expected)
    np.testing.assert_array_equal(fold.test_papers, np.flatnonzero(n >= 5))


def test_flip_cold(likes):
    fold = flip_split(likes, mode="cold", test_frac=0.2, seed=0)
    assert_partition(fold, likes)
    n_eligible = int((paper_counts(likes) >= 5).sum())
    assert fold.test_papers.size == round(0.2 * n_eligible)
    assert paper_counts(fold.train)[fold.test_papers].sum() == 0
    with pytest.raises(ValueError, match="mode must be 'cold' or 'warm'"):
        flip_split(likes, mode="hot")
    with pytest.raises(ValueError, match=r"test_frac must be in \(0, 1\)"):
        flip_split(likes, test_frac=1.5)


def test_validation_split_warm(likes):
    fold = warm_start_folds(likes, seed=0)[0]
    val = validation_split(fold, frac=0.2, seed=0)
    assert_partition(val, fold.train)
    counts = paper_counts(fold.train)
    n_eligible = int((counts[fold.train.indices] >= 5).sum())
    assert abs(val.test.nnz / n_eligible - 0.2) < 0.02  # systematic sampling: frac of each user's likes
    assert paper_counts(val.train)[np.unique(val.test.indices)].min() >= 1


def test_validation_split_cold_and_flip(likes):
    fold = cold_start_folds(likes, seed=0)[0]
    val = validation_split(fold, frac=0.25, seed=0)
    assert val.kind == "cold" and val.fold == 0
    assert_partition(val, fold.train)
    assert not set(val.test_papers) & set(fold.test_papers)
    assert paper_counts(val.train)[val.test_papers].sum() == 0

    flip = flip_split(likes, mode="warm", seed=0)
    vflip = validation_split(flip, frac=0.25, seed=0)
    assert vflip.kind == "flip-warm"
    assert_partition(vflip, flip.train)


def test_flip_protocol_partitions_the_likes_into_cold_valid_warm_and_train(likes):
    proto = flip_protocol(likes, test_frac=0.2, valid_frac=0.1, seed=4)
    assert isinstance(proto, FlipProtocol)
    parts = [proto.train, proto.valid, proto.cold_test, proto.warm_test]
    assert abs(sum(parts) - likes).sum() == 0  # every like in exactly one part
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            assert a.multiply(b).nnz == 0
    n = paper_counts(likes)
    cold, valid = proto.cold_papers, np.flatnonzero(paper_counts(proto.valid))
    assert cold.size == round(0.2 * (n >= 5).sum())  # 20% of the papers with >= 5 likes
    np.testing.assert_array_equal(cold, np.flatnonzero(paper_counts(proto.cold_test)))
    # cold and validation papers are held out entirely: no training like, no overlap
    assert paper_counts(proto.train)[np.concatenate([cold, valid])].sum() == 0
    assert not set(cold) & set(valid)
    # warm papers keep training likes, and a model may train only on papers with training likes
    assert paper_counts(proto.train)[proto.warm_papers].min() >= 1
    np.testing.assert_array_equal(proto.train_papers, np.flatnonzero(paper_counts(proto.train)))
    assert not set(proto.warm_papers) & (set(cold) | set(valid))


def test_flip_protocol_is_the_documented_chain_of_seeded_splits(likes):
    proto = flip_protocol(likes, seed=7)
    cold = flip_split(likes, "cold", 0.2, seed=7)
    val = validation_split(cold, 0.1, seed=8)
    warm = flip_split(val.train, "warm", 0.2, seed=9)
    for got, want in [(proto.cold_test, cold.test), (proto.valid, val.test), (proto.warm_test, warm.test),
                      (proto.train, warm.train)]:
        assert abs(got - want).sum() == 0
    again = flip_protocol(likes, seed=7)
    assert abs(again.train - proto.train).sum() == 0
    np.testing.assert_array_equal(again.warm_papers, proto.warm_papers)
    assert abs(flip_protocol(likes, seed=8).cold_test - proto.cold_test).sum() > 0
    with pytest.raises(ValueError, match=r"frac must be in \(0, 1\)"):
        flip_protocol(likes, valid_frac=0.0)


def test_evaluate_flip_protocol_by_hand():
    # 3 users x 3 papers. Paper 0 cold (liked by users 1, 2); paper 1 warm: user 0 liked it in
    # training (excluded from its ranking), user 2 is its held-out like.
    z = sp.csr_matrix((3, 3), dtype=np.float32)
    m = lambda rows, cols: sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(3, 3))  # noqa: E731
    proto = FlipProtocol(train=m([0, 1], [1, 2]), valid=z, cold_test=m([1, 2], [0, 0]), cold_papers=np.array([0]),
                         warm_test=m([2], [1]), warm_papers=np.array([1]))
    scores = {0: [0.9, 0.5, 0.1], 1: [0.9, 0.1, 0.5]}  # per paper, the users' scores

    def score_papers(papers):
        return np.array([scores[int(p)] for p in papers])

    got = evaluate_flip_protocol(proto, score_papers, ks=(1, 2))
    # cold paper 0: top 1 = user 0 (not a liker) -> 0; top 2 = users 0, 1 -> 1 of 2
    # warm paper 1: user 0 excluded, top 1 = user 2 -> 1
    assert got == pytest.approx({"cold R@1": 0.0, "cold R@2": 0.5, "warm R@1": 1.0, "warm R@2": 1.0})
    assert list(got) == ["cold R@1", "cold R@2", "warm R@1", "warm R@2"]


def test_no_library_module_or_notebook_imports_the_benchmarks():
    # benchmarks sit on top of the library: nothing below them, and no notebook, may import them
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pattern = re.compile(r"^\s*(from|import)\s+course_lib\.benchmarks|from course_lib import benchmarks", re.M)
    offenders = [str(p.relative_to(root)) for p in (root / "course_lib").rglob("*.py")
                 if "benchmarks" not in p.parts and pattern.search(p.read_text())]
    for nb in sorted((root / "solutions").glob("*.ipynb")) + sorted((root / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
        if pattern.search(code):
            offenders.append(str(nb.relative_to(root)))
    assert offenders == [], offenders


def test_tag_split_reports_untagged_papers():
    likes = sp.csr_matrix(np.ones((3, 5), dtype=np.float32))
    tags = sp.csr_matrix(np.array([[1, 0], [0, 0], [1, 1], [0, 0], [0, 1]], dtype=np.float32))
    fold = Fold(likes, sp.csr_matrix(likes.shape, dtype=np.float32), np.array([1, 2]), 0, "cold")
    train, test, info = tag_split(tags, fold, return_info=True)
    np.testing.assert_array_equal(train, [0, 4])
    np.testing.assert_array_equal(test, [2])
    np.testing.assert_array_equal(info["untagged_train"], [3])
    np.testing.assert_array_equal(info["untagged_test"], [1])
    with pytest.raises(ValueError, match="cold start"):
        tag_split(tags, Fold(likes, likes, None))
    with pytest.raises(ValueError, match="paper_tags has 4 rows but the fold has 5 papers"):
        tag_split(tags[:4], fold)
    with pytest.raises(ValueError, match="must have the same shape"):
        Fold(likes, likes[:2], None)


# ---------------------------------------------------------------- sessions

DAY = 86400.0


def clicks(rows):
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


def test_session_split_by_time_hand_example():
    t0 = 1_400_000_000.0
    rows = [
        (1, 10, t0), (1, 11, t0 + 60),                      # train
        (2, 11, t0 + 0.5 * DAY), (2, 12, t0 + 0.5 * DAY + 9),  # train
        (3, 10, t0 + 1.5 * DAY), (3, 12, t0 + 2.1 * DAY),  # ends in the last day -> test, crosses the split
        (4, 99, t0 + 2.5 * DAY), (4, 10, t0 + 2.6 * DAY),  # test; item 99 unknown -> 1 event -> dropped
        (5, 12, t0 + 2.9 * DAY), (5, 11, t0 + 2.95 * DAY), (5, 98, t0 + 3.0 * DAY),  # test; 98 removed
    ]
    train, test, counts = session_split_by_time(clicks(rows), days=1)
    assert sorted(train["SessionId"].unique()) == [1, 2]
    assert test["SessionId"].tolist() == [3, 3, 5, 5]  # a session is never cut in two
    assert test["ItemId"].tolist() == [10, 12, 12, 11]
    assert counts["test before filtering"] == {"events": 7, "sessions": 3, "items": 5}
    assert counts["test events with items not in train"] == 2
    assert counts["test sessions too short"] == 1
    assert counts["test events in too short sessions"] == 1
    assert counts["test"] == {"events": 4, "sessions": 2, "items": 3}
    assert counts["split time"] == t0 + 2 * DAY


def test_session_split_accepts_datetimes_and_validates():
    df = clicks([(1, 1, 0.0), (1, 2, 10.0), (2, 1, 3 * DAY), (2, 2, 3 * DAY + 5)])
    df_dt = df.assign(Time=pd.to_datetime(df["Time"], unit="s"))
    train, test, _ = session_split_by_time(df_dt, days=1)
    assert train["Time"].tolist() == [0.0, 10.0] and test["SessionId"].tolist() == [2, 2]
    with pytest.raises(ValueError, match="lacks columns"):
        session_split_by_time(df.rename(columns={"ItemId": "item"}))
    with pytest.raises(ValueError, match="use a smaller `days`"):
        session_split_by_time(df, days=10)
    with pytest.raises(ValueError, match="no events"):
        session_split_by_time(df.iloc[:0])
