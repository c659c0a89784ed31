import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.data import CiteULike, Sessions
from course_lib.splits import cold_start_folds
from course_lib.synthetic import ORDER_WORDS, planted_citeulike, planted_sessions, planted_word_order, signal_words
from course_lib.text import count_matrix, prepare_text


@pytest.fixture(scope="module")
def order_data():
    return planted_citeulike(order_matters=True, seed=0)


@pytest.fixture(scope="module")
def bag_data():
    return planted_citeulike(order_matters=False, seed=0)


def centroid_accuracy(X, y, n_folds=5):
    """Cross-validated nearest-centroid (cosine) accuracy: a bag-of-features classifier."""
    X = X.toarray().astype(np.float64)
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    fold = np.arange(len(y)) % n_folds
    correct = 0
    for f in range(n_folds):
        tr, te = fold != f, fold == f
        centroids = np.stack([X[tr & (y == c)].mean(axis=0) for c in range(y.max() + 1)])
        correct += int((np.argmax(X[te] @ centroids.T, axis=1) == y[te]).sum())
    return correct / len(y)


def features(texts, bigrams=False):
    docs = [t.split() for t in texts]
    if bigrams:
        docs = [[f"{a}_{b}" for a, b in zip(d[:-1], d[1:])] for d in docs]
    vocab, corpus = prepare_text(docs, min_count=1)
    return count_matrix(corpus, vocab)


def test_planted_citeulike_fields(order_data):
    d = order_data
    assert isinstance(d, CiteULike) and d.tier == "synthetic"
    assert d.likes.shape == (300, 400) and d.likes.dtype == np.float32
    assert np.all(np.diff(d.likes.indptr) == 12) and np.all(d.likes.data == 1)
    assert len(d.titles) == len(d.abstracts) == 400 and all(len(a.split()) == 40 for a in d.abstracts)
    assert d.paper_tags.shape == (400, 6) and np.all(np.diff(d.paper_tags.indptr) == 1)
    assert np.bincount(d.paper_tags.indices).tolist() == [67, 67, 67, 67, 66, 66]
    assert d.tag_names == [f"topic{t}" for t in range(6)]
    assert sp.issparse(d.citations) and (d.citations != d.citations.T).nnz == 0
    np.testing.assert_array_equal(d.paper_ids, np.arange(400))
    # the planted words survive the course tokenizer and its min_count=5 vocabulary
    vocab, _ = prepare_text(d.texts("title+abstract"), min_count=5)
    assert all(w in vocab for w in signal_words(6)["pair_a"] + signal_words(6)["pair_b"])


def test_planted_citeulike_seeded():
    a, b, c = (planted_citeulike(n_users=20, n_papers=30, seed=s) for s in (1, 1, 2))
    assert a.abstracts == b.abstracts and (a.likes != b.likes).nnz == 0
    assert a.abstracts != c.abstracts


def test_order_matters_bag_of_words_is_blind(order_data):
    topics = order_data.paper_tags.indices
    words = signal_words(6)
    signal = words["pair_a"] + words["pair_b"]
    # every abstract holds each signal word exactly once: identical signal count vectors
    for text in order_data.abstracts:
        tokens = text.split()
        assert [tokens.count(w) for w in signal] == [1] * 12
    chance = 1 / 6
    bow = centroid_accuracy(features(order_data.abstracts), topics)
    assert bow < chance + 0.1, f"bag of words reads the topic: accuracy {bow:.3f}"
    # the same classifier on bigrams (word order) recovers it
    assert centroid_accuracy(features(order_data.abstracts, bigrams=True), topics) > 0.95


def test_word_choice_bag_of_words_suffices(bag_data):
    topics = bag_data.paper_tags.indices
    assert centroid_accuracy(features(bag_data.abstracts), topics) > 0.95


def test_users_like_their_topics(order_data):
    """A recommender that knows the papers' topics beats random ranking in cold start."""
    d = order_data
    topic_onehot = np.eye(6)[d.paper_tags.indices]  # (n_papers, n_topics)
    fold = cold_start_folds(d.likes, seed=0)[0]
    cand = fold.test_papers
    test = fold.test[:, cand].toarray()
    rng = np.random.default_rng(0)
    noise = rng.random(test.shape)

    def recall_at(scores, m=20):
        top = np.argsort(-scores, axis=1)[:, :m]
        hits = np.take_along_axis(test, top, axis=1).sum(axis=1)
        n = test.sum(axis=1)
        return float(np.mean(hits[n > 0] / n[n > 0]))

    topic_scores = np.asarray(fold.train @ topic_onehot) @ topic_onehot[cand].T + 1e-6 * noise
    r_topic, r_random = recall_at(topic_scores), recall_at(noise)
    assert r_topic > 0.8 and r_topic > r_random + 0.3, (r_topic, r_random)


def test_planted_citeulike_validation():
    with pytest.raises(ValueError, match="doc_len=10 cannot hold"):
        planted_citeulike(doc_len=10)
    with pytest.raises(ValueError, match="likes_per_user"):
        planted_citeulike(n_papers=10, likes_per_user=11)


def test_planted_sessions_successor_beats_popularity():
    s = planted_sessions(seed=0)
    assert isinstance(s, Sessions) and s.tier == "synthetic"
    ids = s.meta["item_ids"]
    np.testing.assert_allclose(s.meta["transitions"].sum(axis=1), 1.0)
    index = {v: i for i, v in enumerate(ids)}
    for df in (s.train, s.test, s.train_tr, s.valid):
        assert list(df.columns) == ["SessionId", "ItemId", "Time"]
        assert (df.groupby("SessionId")["Time"].diff().dropna() > 0).all()
        assert df.groupby("SessionId").size().min() >= 2
    assert s.test["Time"].min() > s.train.groupby("SessionId")["Time"].max().min()
    assert set(s.test["ItemId"]) <= set(s.train["ItemId"])
    assert s.summary().loc["test", "sessions"] > 30

    def pairs(df):
        items = df["ItemId"].map(index).to_numpy()
        same = df["SessionId"].to_numpy()[1:] == df["SessionId"].to_numpy()[:-1]
        return items[:-1][same], items[1:][same]

    cur, nxt = pairs(s.train)
    counts = np.zeros((len(ids), len(ids)))
    np.add.at(counts, (cur, nxt), 1)
    most_popular = np.bincount(s.train["ItemId"].map(index), minlength=len(ids)).argmax()
    cur, nxt = pairs(s.test)
    successor_acc = float(np.mean(counts[cur].argmax(axis=1) == nxt))
    popularity_acc = float(np.mean(nxt == most_popular))
    # planted: the top successor is followed 60-70% of the time
    assert successor_acc > 0.45 and successor_acc > 5 * popularity_acc, (successor_acc, popularity_acc)


def test_planted_sessions_seeded():
    a, b = planted_sessions(n_sessions=100, seed=4), planted_sessions(n_sessions=100, seed=4)
    assert a.train.equals(b.train) and a.test.equals(b.test)
    with pytest.raises(ValueError, match="mean_len"):
        planted_sessions(mean_len=1)


def test_a_small_gru_reads_the_word_order(order_data):
    """The sequence model the planted order is meant for: a 1-layer GRU, max-pooled over the
    real tokens (mask), learns the topic that no bag of words can see."""
    torch = pytest.importorskip("torch")
    from course_lib.torch_models.content import make_text_batch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab, corpus = prepare_text(order_data.abstracts, min_count=5)
    y = torch.as_tensor(order_data.paper_tags.indices, dtype=torch.long)
    emb = torch.nn.Embedding(len(vocab), 16, padding_idx=0)
    gru = torch.nn.GRU(16, 32, batch_first=True)
    head = torch.nn.Linear(32, 6)
    opt = torch.optim.Adam([*emb.parameters(), *gru.parameters(), *head.parameters()], lr=0.01)

    def logits(rows):
        batch = make_text_batch(corpus, rows)
        h, _ = gru(emb(batch.ids))  # (batch, seq_len, 32)
        pooled = h.masked_fill(batch.mask[..., None] == 0, float("-inf")).max(dim=1).values  # (batch, 32)
        return head(pooled)

    rng = np.random.default_rng(0)
    for _ in range(16):
        for rows in np.array_split(rng.permutation(300), 6):
            loss = torch.nn.functional.cross_entropy(logits(rows), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float((logits(np.arange(300, 400)).argmax(dim=1) == y[300:]).float().mean())
    assert acc > 0.9, f"GRU test accuracy {acc:.2f}"


# ------------------------------------------------------------------------- planted word order


def test_planted_word_order_fields_and_tastes():
    d = planted_word_order(seed=0)
    kinds = d.paper_tags.indices
    assert isinstance(d, CiteULike) and d.likes.shape == (200, 300) and d.tag_names == ["b_first", "a_first"]
    assert np.all(np.diff(d.paper_tags.indptr) == 1) and np.bincount(kinds).tolist() == [150, 150]
    assert np.all(np.diff(d.likes.indptr) == 10) and d.citations.nnz == 0
    # taste=1: every like is a paper of the user's kind (u % 2)
    users, papers = d.likes.nonzero()
    assert np.all(kinds[papers] == users % 2)
    noisy = planted_word_order(taste=0.8, seed=0)
    users, papers = noisy.likes.nonzero()
    share = np.mean(noisy.paper_tags.indices[papers] == users % 2)
    assert 0.72 < share < 0.88, share  # 2000 likes: 0.8 +- 4 standard errors


def test_planted_word_order_only_the_order_tells_the_kinds_apart():
    d = planted_word_order(n_papers=400, seed=0)
    kinds = d.paper_tags.indices
    a, b = ORDER_WORDS
    adjacent = 0
    for text, kind in zip(d.abstracts, kinds):
        tokens = text.split()
        assert len(tokens) == 8 and tokens.count(a) == 1 and tokens.count(b) == 1
        assert (tokens.index(a) < tokens.index(b)) == bool(kind)
        adjacent += abs(tokens.index(a) - tokens.index(b)) == 1
    assert adjacent / 400 < 0.4  # P(adjacent) = 7/28: mostly the markers are apart, not a bigram
    bow = centroid_accuracy(features(d.abstracts), kinds)
    assert bow < 0.5 + 0.1, f"bag of words reads the kind: accuracy {bow:.3f}"
    free = planted_word_order(n_papers=400, order_matters=False, seed=0)
    assert centroid_accuracy(features(free.abstracts), free.paper_tags.indices) > 0.95


def test_planted_word_order_seeded_and_validated():
    a, b, c = (planted_word_order(n_users=20, n_papers=30, seed=s) for s in (3, 3, 4))
    assert a.abstracts == b.abstracts and (a.likes != b.likes).nnz == 0
    assert a.abstracts != c.abstracts
    with pytest.raises(ValueError, match="doc_len must be >= 2"):
        planted_word_order(doc_len=1)
    with pytest.raises(ValueError, match="taste"):
        planted_word_order(taste=1.5)
    with pytest.raises(ValueError, match=r"likes_per_user must be in \[1, 15\]"):
        planted_word_order(n_papers=30, likes_per_user=16)
