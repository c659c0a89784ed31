"""Word vectors: reading word2vec/GloVe text files into a vocabulary's rows, coverage, clear errors,
and CBOW training on a planted corpus (deterministic, cached by corpus and settings)."""
import gzip

import numpy as np
import pytest

from course_lib.text import Vocabulary
from course_lib.word_vectors import WordVectors, corpus_hash, load_word_vectors, train_cbow

VOCAB = Vocabulary(["<PAD>", "<UNK>", "<NUM>", "gene", "protein", "network", "graph"], [0, 4, 2, 10, 6, 3, 5])


def write(path, lines, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_word2vec_file_with_header_is_aligned_with_the_vocabulary(tmp_path):
    path = write(tmp_path / "w2v.txt", ["4 3", "gene 1 2 3", "Graph 0.5 0 -1", "banana 9 9 9", "protein 0 1 0"])
    wv = load_word_vectors(path, VOCAB, dim=3)
    assert wv.matrix.shape == (7, 3) and wv.matrix.dtype == np.float32
    np.testing.assert_array_equal(wv.matrix[3], [1, 2, 3])
    np.testing.assert_array_equal(wv.matrix[6], [0.5, 0, -1])  # "Graph" lowercased to match the vocabulary
    np.testing.assert_array_equal(wv.matrix[[0, 1, 2, 5]], 0.0)
    np.testing.assert_array_equal(wv.found, [False, False, False, True, True, False, True])
    report = wv.coverage(VOCAB.counts)
    # 3 of the 6 non-padding words; tokens: (10 + 6 + 5) of 30
    assert report["found"] == 3 and report["missing"] == 3 and report["vocab_size"] == 6
    assert report["type_coverage"] == pytest.approx(0.5)
    assert report["token_coverage"] == pytest.approx(21 / 30)


def test_glove_file_without_header_gzipped_and_case_kept(tmp_path):
    path = write(tmp_path / "glove.txt.gz", ["gene 1 2", "Network 3 4", "network 5 6"], gz=True)
    wv = load_word_vectors(path, VOCAB, lowercase=False)
    assert wv.dim == 2
    np.testing.assert_array_equal(wv.matrix[5], [5, 6])  # "Network" is not "network" when case is kept
    lower = load_word_vectors(path, VOCAB)
    np.testing.assert_array_equal(lower.matrix[5], [3, 4])  # first occurrence wins


def test_missing_words_random_fill_is_seeded_and_scaled(tmp_path):
    path = write(tmp_path / "v.txt", ["gene 1 -1 1 -1", "protein -1 1 -1 1"])
    a = load_word_vectors(path, VOCAB, missing="random", seed=1)
    b = load_word_vectors(path, VOCAB, missing="random", seed=1)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    np.testing.assert_array_equal(a.matrix[0], 0.0)  # padding stays zero
    filled = a.matrix[[1, 2, 5, 6]]
    assert np.all(filled != 0) and np.abs(filled).max() < 5.0
    np.testing.assert_array_equal(a.matrix[3], [1, -1, 1, -1])


def test_file_errors_name_the_cause(tmp_path):
    path = write(tmp_path / "v.txt", ["gene 1 2 3"])
    with pytest.raises(ValueError, match="3-dimensional vectors but the model expects dim=50"):
        load_word_vectors(path, VOCAB, dim=50)
    with pytest.raises(ValueError, match="shares no word with the vocabulary"):
        load_word_vectors(write(tmp_path / "fr.txt", ["chat 1 2", "chien 3 4"]), VOCAB)
    with pytest.raises(ValueError, match="line 2 has 2 numbers, earlier lines have 3"):
        load_word_vectors(write(tmp_path / "bad.txt", ["gene 1 2 3", "graph 1 2"]), VOCAB)
    with pytest.raises(ValueError, match="does not exist"):
        load_word_vectors(tmp_path / "nope.txt", VOCAB)
    with pytest.raises(ValueError, match="missing must be"):
        load_word_vectors(path, VOCAB, missing="mean")


def planted_corpus(n_docs=120, doc_len=20, seed=0):
    """Two topics with disjoint words; a document uses the words of one topic only. Every word is
    frequent here, so tests switch word2vec's sub-sampling of frequent words off (sample=0)."""
    rng = np.random.default_rng(seed)
    topics = {0: [f"bio{i}" for i in range(6)], 1: [f"net{i}" for i in range(6)]}
    return [list(rng.choice(topics[d % 2], doc_len)) for d in range(n_docs)], topics


def test_cbow_vectors_separate_planted_topics_and_are_deterministic(tmp_path):
    docs, topics = planted_corpus()
    vocab = Vocabulary.build(docs, min_count=1)
    kw = dict(dim=8, window=3, epochs=10, sample=0.0, seed=0, cache_path=tmp_path)
    wv = train_cbow(docs, vocab, use_cache=False, **kw)
    assert wv.matrix.shape == (len(vocab), 8)
    np.testing.assert_array_equal(wv.matrix[0], 0.0)
    assert wv.found[3:].all() and not wv.found[:3].any()  # specials never occur in this corpus
    unit = wv.matrix / np.maximum(np.linalg.norm(wv.matrix, axis=1, keepdims=True), 1e-12)
    rows = {t: [vocab.stoi[w] for w in ws] for t, ws in topics.items()}
    within = np.mean([unit[rows[t]] @ unit[rows[t]].T for t in (0, 1)])
    across = np.mean(unit[rows[0]] @ unit[rows[1]].T)
    assert within - across > 0.5
    again = train_cbow(docs, vocab, use_cache=False, **kw)
    np.testing.assert_array_equal(wv.matrix, again.matrix)


def test_cbow_cache_is_keyed_by_corpus_and_settings(tmp_path):
    docs, _ = planted_corpus(n_docs=20)
    vocab = Vocabulary.build(docs, min_count=1)
    first = train_cbow(docs, vocab, dim=4, epochs=2, cache_path=tmp_path)
    assert len(list(tmp_path.glob("cbow_*.npz"))) == 1
    cached = train_cbow(docs, vocab, dim=4, epochs=2, cache_path=tmp_path)
    assert "cached" in cached.source and "cached" not in first.source
    np.testing.assert_array_equal(first.matrix, cached.matrix)
    train_cbow(docs, vocab, dim=4, epochs=3, cache_path=tmp_path)
    train_cbow(docs[:-1], vocab, dim=4, epochs=2, cache_path=tmp_path)
    assert len(list(tmp_path.glob("cbow_*.npz"))) == 3


def test_cbow_maps_unknown_words_and_rejects_bad_input(tmp_path):
    docs = [["gene", "protein", "kiwi"], ["network", "graph", "gene"]] * 10
    wv = train_cbow(docs, VOCAB, dim=4, epochs=1, use_cache=False)
    assert wv.found[VOCAB.stoi["<UNK>"]]  # "kiwi" trained as <UNK>
    with pytest.raises(ValueError, match=r"not a list of tokens; pass \[tokenize\(t\) for t in texts\]"):
        train_cbow(["gene protein"], VOCAB, use_cache=False)
    with pytest.raises(ValueError, match="no tokens"):
        train_cbow([[], []], VOCAB, use_cache=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=0), r"dim must be an integer >= 1, got 0"),
    (dict(window=-1), r"window must be an integer >= 1, got -1"),
    (dict(epochs=1.5), r"epochs must be an integer >= 1, got 1.5"),
    (dict(negative=0), r"negative must be an integer >= 1, got 0"),
    (dict(sample=-0.1), r"sample must be a finite number >= 0, got -0.1"),
    (dict(seed=-2), r"seed must be an integer >= 0, got -2"),
    (dict(token_docs="gene protein"), r"token_docs is one text; pass a list of token lists"),
    (dict(token_docs=["gene", "protein"]), r"document 0 of token_docs is a string \('gene'\).*one document\? wrap"),
    (dict(vocab={"gene": 3}), r"vocab must be a course_lib.text.Vocabulary \(with itos and stoi\), got dict"),
])
def test_cbow_checks_every_argument_before_training(tmp_path, kwargs, message):
    args = {"token_docs": [["gene", "protein"]] * 4, "vocab": VOCAB, "use_cache": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_cbow(**args)


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=0), r"dim must be an integer >= 1, got 0"),
    (dict(seed=-1), r"seed must be an integer >= 0, got -1"),
    (dict(missing="mean"), r"missing must be one of 'zeros', 'random'; got 'mean'"),
    (dict(vocab=["gene"]), r"vocab must be a course_lib.text.Vocabulary"),
])
def test_load_word_vectors_checks_its_arguments(tmp_path, kwargs, message):
    path = write(tmp_path / "v.txt", ["gene 1 2 3"])
    with pytest.raises(ValueError, match=message):
        load_word_vectors(path, **{"vocab": VOCAB, **kwargs})


@pytest.mark.parametrize("line, message", [
    ("protein 1 nan 3", r"v.txt line 2: the vector of 'protein' has NaN or inf values"),
    ("protein 1 inf 3", r"v.txt line 2: the vector of 'protein' has NaN or inf values"),
    ("protein 1 two 3", r"v.txt line 2: the vector of 'protein' has a value that is not a number \(1 two 3 ...\)"),
])
def test_a_vector_file_with_nan_inf_or_text_is_refused_at_its_line(tmp_path, line, message):
    with pytest.raises(ValueError, match=message):
        load_word_vectors(write(tmp_path / "v.txt", ["gene 1 2 3", line]), VOCAB)


def test_word_vectors_check_their_shapes_and_values():
    with pytest.raises(ValueError, match=r"matrix must have shape \(vocab_size, dim\), got shape \(4,\)"):
        WordVectors(np.zeros(4), np.zeros(4, bool), "x")
    with pytest.raises(ValueError, match=r"found must have one entry per row of matrix, shape \(4,\), got \(3,\)"):
        WordVectors(np.zeros((4, 2)), np.zeros(3, bool), "x")
    with pytest.raises(ValueError, match=r"matrix has NaN or inf in 1 rows"):
        WordVectors(np.array([[0.0, 1.0], [np.inf, 0.0]]), np.ones(2, bool), "x")


def test_corpus_hash_sees_content_and_document_boundaries():
    assert corpus_hash([["a", "b"], ["c"]]) == corpus_hash([["a", "b"], ["c"]])
    assert corpus_hash([["a", "b"], ["c"]]) != corpus_hash([["a"], ["b", "c"]])
    assert corpus_hash([["a", "b"]]) != corpus_hash([["a", "c"]])
