import numpy as np
import pytest
import scipy.sparse as sp

from course_lib.text import (NUM, NUM_ID, PAD, PAD_ID, UNK, UNK_ID, EncodedCorpus, Vocabulary, count_matrix,
                             encode_corpus, idf_vector, prepare_text, tfidf_matrix, tokenize)


# ---------------------------------------------------------------- tokenize

def test_tokenize_strips_citeulike_latex():
    # a real CiteULike-a abstract fragment (paper 0), with its BibTeX escapes
    text = (r"Oltvai, Z. N. \& Barab\{\'a\}si, A. L. (2000) Nature 407, 651-654. "
            r"{T}he {\\textless}I{\\textgreater}E. coli{\\textless}/I{\\textgreater}")
    assert tokenize(text) == ["oltvai", "z", "n", "barabasi", "a", "l", NUM, "nature", NUM, NUM, NUM,
                              "the", "e", "coli"]


def test_tokenize_accents_math_and_html():
    assert tokenize("Barabási") == tokenize(r"Barab\'{a}si") == tokenize(r'Barab{\"a}si') == ["barabasi"]
    assert tokenize(r"a $\alpha$-stable law with \times 2") == ["a", "alpha", "stable", "law", "with", "times", NUM]
    assert tokenize("<p>Genetic <i>algorithms</i> &amp; more</p>") == ["genetic", "algorithms", "more"]
    # escaped twice in CiteULike-a: &amp;quot; and &lt;em&gt;
    assert tokenize("of &amp;quot;Turbo Codes&amp;quot; with &lt;em&gt;k&lt;/em&gt;") == \
        ["of", "turbo", "codes", "with", "k"]


def test_tokenize_numbers():
    assert tokenize("In 2000, 3.5% of 1,000 cells (p53, 2000s, 1.5-fold)") == \
        ["in", NUM, NUM, "of", NUM, "cells", "p53", "2000s", NUM, "fold"]


def test_tokenize_hyphens_split_by_default():
    assert tokenize("graph-theoretic protein-protein") == ["graph", "theoretic", "protein", "protein"]
    assert tokenize("graph-theoretic co-expression", keep_hyphens=True) == ["graph-theoretic", "co-expression"]


def test_tokenize_rejects_non_string():
    with pytest.raises(ValueError, match="expects a string"):
        tokenize(["already", "tokens"])


# ---------------------------------------------------------------- Vocabulary

DOCS = [["b", "a", "c", "a"], ["a", "b", NUM, "d"], ["c", "e", "b"]]  # a:3 b:3 c:2 d:1 e:1 <NUM>:1


def test_vocabulary_order_counts_and_unk():
    vocab = Vocabulary.build(DOCS, min_count=2)
    # specials first, then frequency desc, ties alphabetical
    assert vocab.itos == [PAD, UNK, NUM, "a", "b", "c"]
    assert vocab.stoi["c"] == 5 and len(vocab) == 6
    # d and e (1 each) went to <UNK>
    assert vocab.counts.tolist() == [0, 2, 1, 3, 3, 2]
    assert vocab.counts.sum() == sum(len(d) for d in DOCS)


def test_vocabulary_max_size_moves_the_rest_to_unk():
    vocab = Vocabulary.build(DOCS, min_count=1, max_size=5)
    assert vocab.itos == [PAD, UNK, NUM, "a", "b"]
    assert vocab.counts[UNK_ID] == 4  # c, c, d, e


def test_vocabulary_encode_decode():
    vocab = Vocabulary.build(DOCS, min_count=2)
    assert vocab.encode(["a", "zzz", NUM, "c", PAD]) == [3, UNK_ID, NUM_ID, 5, UNK_ID]
    assert vocab.decode([3, 4, 0, 0]) == ["a", "b"]
    assert vocab.decode(np.array([3, 0]), skip_pad=False) == ["a", PAD]
    with pytest.raises(ValueError, match=r"word ids must be in \[0, 6\), got 6"):
        vocab.decode([6])
    with pytest.raises(ValueError, match="tokenize"):
        vocab.encode("a b")
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(DOCS, min_count=0)


def test_vocabulary_build_accepts_raw_text():
    assert Vocabulary.build(["A b a", "a 12"], min_count=2).itos == [PAD, UNK, NUM, "a"]


# ---------------------------------------------------------------- encode_corpus

def test_encode_corpus_pads_masks_and_truncates():
    vocab = Vocabulary.build(DOCS, min_count=2)
    corpus = encode_corpus([["a", "b", "c", "a", "b"], ["c"], ["x", "a"]], vocab, max_len=4)
    assert isinstance(corpus, EncodedCorpus)
    assert corpus.ids.dtype == np.int64 and corpus.mask.dtype == np.float32 and corpus.lengths.dtype == np.int64
    np.testing.assert_array_equal(corpus.ids, [[3, 4, 5, 3], [5, 0, 0, 0], [UNK_ID, 3, 0, 0]])
    np.testing.assert_array_equal(corpus.mask, [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(corpus.lengths, [4, 1, 2])
    assert corpus.n_truncated == 1 and corpus.n_empty == 0


def test_encode_corpus_width_is_longest_document():
    vocab = Vocabulary.build(DOCS, min_count=2)
    assert encode_corpus([["a"], ["a", "b"]], vocab, max_len=300).ids.shape == (2, 2)


def test_encode_corpus_empty_document():
    vocab = Vocabulary.build(DOCS, min_count=2)
    with pytest.raises(ValueError, match="document 1 has no tokens"):
        encode_corpus(["a b", "... !!", "c"], vocab)
    corpus = encode_corpus(["a b", "... !!", "c"], vocab, allow_empty=True)
    assert corpus.n_empty == 1
    np.testing.assert_array_equal(corpus.ids[1], [UNK_ID, 0])
    assert corpus.lengths[1] == 1


# ---------------------------------------------------------------- TF-IDF

def test_tfidf_against_hand_computation():
    vocab = Vocabulary.build(DOCS, min_count=2)  # <PAD> <UNK> <NUM> a b c
    X = tfidf_matrix(DOCS, vocab, normalize=False).toarray()
    n = 3
    # document frequencies: <UNK> 2 (d in doc 1, e in doc 2), <NUM> 1, a 2, b 3, c 2
    idf = np.array([0.0, np.log(n / 2), np.log(n / 1), np.log(n / 2), np.log(n / 3), np.log(n / 2)])
    tf = np.array([[0, 0, 0, 2, 1, 1], [0, 1, 1, 1, 1, 0], [0, 1, 0, 0, 1, 1]], dtype=float)
    np.testing.assert_allclose(X, tf * idf, atol=1e-12)
    np.testing.assert_allclose(idf_vector(DOCS, vocab), idf, atol=1e-12)

    Xs = tfidf_matrix(DOCS, vocab, sublinear_tf=True, normalize=False).toarray()
    np.testing.assert_allclose(Xs[0, 3], (1 + np.log(2)) * np.log(1.5))

    Xn = tfidf_matrix(DOCS, vocab).toarray()
    np.testing.assert_allclose(np.linalg.norm(Xn, axis=1), 1.0)
    assert np.all(Xn[:, PAD_ID] == 0)


def test_tfidf_smooth_matches_sklearn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["the cat sat on the mat", "the dog sat", "a cat and a dog and a bird", "bird bird bird"]
    vocab, corpus = prepare_text(texts, min_count=1)
    ours = tfidf_matrix(corpus, vocab, smooth_idf=True).toarray()
    sk = TfidfVectorizer(analyzer=lambda s: tokenize(s), vocabulary=vocab.itos[3:], smooth_idf=True)
    theirs = sk.fit_transform(texts).toarray()
    np.testing.assert_allclose(ours[:, 3:], theirs, atol=1e-10)
    assert np.all(ours[:, :3] == 0)  # no <UNK> or <NUM> in these texts, <PAD> never


def test_tfidf_of_encoded_corpus_counts_truncated_text():
    vocab = Vocabulary.build(DOCS, min_count=2)
    full = count_matrix(DOCS, vocab).toarray()
    cut = count_matrix(encode_corpus(DOCS, vocab, max_len=2), vocab).toarray()
    np.testing.assert_array_equal(full.sum(axis=1), [4, 4, 3])
    np.testing.assert_array_equal(cut.sum(axis=1), [2, 2, 2])
    assert sp.issparse(tfidf_matrix(encode_corpus(DOCS, vocab), vocab))
    np.testing.assert_allclose(tfidf_matrix(encode_corpus(DOCS, vocab), vocab).toarray(),
                               tfidf_matrix(DOCS, vocab).toarray())


def test_prepare_text_end_to_end():
    texts = ["Deep networks for text.", "Text networks in 2016.", "Deep text, deep networks!"]
    vocab, corpus = prepare_text(texts, min_count=2, max_len=3)
    assert vocab.itos == [PAD, UNK, NUM, "deep", "networks", "text"]
    assert vocab.decode(corpus.ids[1]) == ["text", "networks", UNK]
    assert corpus.n_truncated == 3  # every text has 4 tokens
    np.testing.assert_array_equal(corpus.ids[2], [3, 5, 3])
