"""Paragraph vectors: the loss against its formula and finite differences, the hand-written SGD step
against autograd, learning a planted topic structure, inference for unseen documents, gensim parity."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_lib.torch_models import paragraph2vec as p2v
from course_lib.torch_models.paragraph2vec import ParagraphVectors, negative_sampling_loss
from course_lib.validation import TrainingDiverged




def planted_docs(n_docs=60, n_topics=3, words_per_topic=8, n_common=6, doc_len=30, seed=0):
    """Documents whose topic decides most of their words: ids 2..2+n_common are shared by all
    topics, then each topic owns ``words_per_topic`` ids. Returns (docs, topics, vocab_size)."""
    rng = np.random.default_rng(seed)
    topics = np.arange(n_docs) % n_topics
    docs = []
    for t in topics:
        own = 2 + n_common + t * words_per_topic + rng.integers(0, words_per_topic, doc_len)
        common = 2 + rng.integers(0, n_common, doc_len)
        docs.append(np.where(rng.random(doc_len) < 0.7, own, common))
    return docs, topics, 2 + n_common + n_topics * words_per_topic


def nn_topic_accuracy(vectors, topics, ref_vectors=None, ref_topics=None):
    """Share of documents whose nearest other document (by cosine) has the same topic."""
    ref_vectors = vectors if ref_vectors is None else ref_vectors
    ref_topics = topics if ref_topics is None else ref_topics
    a = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    b = ref_vectors / np.linalg.norm(ref_vectors, axis=1, keepdims=True)
    sims = a @ b.T
    if ref_vectors is vectors:
        np.fill_diagonal(sims, -np.inf)
    return float(np.mean(ref_topics[sims.argmax(1)] == topics))


# --------------------------------------------------------------------------- loss
def test_loss_matches_formula_on_hand_values():
    h = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    pos = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    neg = torch.tensor([[[1.0, 1.0], [-1.0, 0.0]], [[0.0, 0.0], [2.0, 2.0]]])
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    # example 0: pos score 2, neg scores 1 and -1; example 1: pos score -1, neg scores 0 and -1
    expected = [-np.log(sig(2.0)) - np.log(sig(-1.0)) - np.log(sig(1.0)),
                -np.log(sig(-1.0)) - np.log(sig(0.0)) - np.log(sig(1.0))]
    np.testing.assert_allclose(negative_sampling_loss(h, pos, neg).numpy(), expected, rtol=1e-6)


def test_loss_stays_finite_for_large_scores():
    h = torch.full((1, 4), 50.0)
    loss = negative_sampling_loss(h, -h, h.unsqueeze(1).expand(1, 3, 4))
    assert torch.isfinite(loss).all()
    assert loss.item() == pytest.approx(4 * 2500.0 * 4, rel=1e-6)  # 4 terms of -log sigma(-10000) ~ 10000


def test_loss_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True),
            torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True),
            torch.randn(3, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda *a: negative_sampling_loss(*a).sum(), args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["dbow", "dm"])
def test_hand_written_sgd_step_equals_autograd(mode):
    docs, _, vocab_size = planted_docs(n_docs=6, doc_len=10)
    m = ParagraphVectors(vocab_size, dim=5, mode=mode, window=2, epochs=1, seed=1, device="cpu",
                         dm_update="exact").fit(docs, progress=False)
    gen = torch.Generator().manual_seed(3)
    doc = torch.tensor([0, 1, 1, 4])
    target = torch.randint(2, vocab_size, (4,), generator=gen)
    negatives = torch.randint(2, vocab_size, (4, 3), generator=gen)
    negatives[0, 0] = target[1]  # a row that is both a true and a noise word in the same batch
    context = torch.randint(0, vocab_size, (4, 4), generator=gen) if mode == "dm" else None
    lr = 0.1
    before = {k: v.clone() for k, v in m.state_dict().items()}
    loss = m.loss(m.doc_vectors, doc, target, negatives, context).sum()
    loss.backward()
    expected = {name: p.detach() - lr * p.grad for name, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    m.load_state_dict(before)
    step_loss = m.sgd_step(m.doc_vectors, doc, target, negatives, context, lr=lr)
    assert step_loss.item() == pytest.approx(loss.item(), rel=1e-6)
    names = {"doc_vectors.weight", "out_vectors.weight"} | ({"word_vectors.weight"} if mode == "dm" else set())
    assert set(expected) == names
    for name in names:
        torch.testing.assert_close(m.state_dict()[name], expected[name], rtol=1e-5, atol=1e-6)


def test_word2vec_dm_update_gives_inputs_the_undivided_gradient():
    docs, _, vocab_size = planted_docs(n_docs=4, doc_len=10)
    steps = {}
    for rule in ("exact", "word2vec"):
        m = ParagraphVectors(vocab_size, dim=4, mode="dm", window=1, epochs=1, seed=0, device="cpu",
                             dm_update=rule).fit(docs, progress=False)
        before = m.doc_vectors.weight.clone()
        # paragraph 2 with both context words present: 1 + n_c = 3 inputs
        m.sgd_step(m.doc_vectors, torch.tensor([2]), torch.tensor([5]), torch.tensor([[9, 12]]),
                   torch.tensor([[3, 4]]), lr=0.5)
        steps[rule] = (m.doc_vectors.weight - before)[2]
    torch.testing.assert_close(steps["word2vec"], 3.0 * steps["exact"], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------- sampling
def test_noise_distribution_is_unigram_to_the_three_quarters():
    counts = np.array([0, 7, 16, 1, 0])  # <PAD>, <UNK>, then words
    p = p2v.noise_distribution(counts, 0.75)
    expected = np.array([0.0, 0.0, 8.0, 1.0, 0.0]) / 9.0  # 16^0.75 = 8, 1^0.75 = 1; <UNK> excluded
    np.testing.assert_allclose(p, expected)
    with pytest.raises(ValueError, match="no known word"):
        p2v.noise_distribution([3, 4, 0])


def test_keep_probability_formula():
    counts = np.array([0, 0, 900, 100])  # 1,000 tokens, threshold = 0.01 * 1000 = 10
    p = p2v.keep_probability(counts, sample=0.01)
    assert p[2] == pytest.approx((np.sqrt(900 / 10) + 1) * 10 / 900)
    assert p[3] == pytest.approx(min(1.0, (np.sqrt(10) + 1) * 10 / 100))
    np.testing.assert_array_equal(p2v.keep_probability(counts, 0.0), 1.0)


def test_sampled_noise_words_follow_the_distribution():
    docs, _, vocab_size = planted_docs(n_docs=30)
    m = ParagraphVectors(vocab_size, dim=4, epochs=1, device="cpu").fit(docs, progress=False)
    counts = np.bincount(np.concatenate(docs), minlength=vocab_size)
    cdf = m.noise_cdf
    draws = torch.searchsorted(cdf, torch.rand(200_000, generator=torch.Generator().manual_seed(0),
                                               dtype=torch.float64)).numpy()
    freq = np.bincount(draws, minlength=vocab_size) / draws.size
    np.testing.assert_allclose(freq, p2v.noise_distribution(counts), atol=3e-3)


# ------------------------------------------------------------------- learning
@pytest.mark.parametrize("mode", ["dbow", "dm"])
def test_learns_planted_topics_and_loss_decreases(mode):
    docs, topics, vocab_size = planted_docs()
    m = ParagraphVectors(vocab_size, dim=16, mode=mode, window=2, epochs=30, batch_size=128, lr=0.05,
                         seed=0, device="cpu").fit(docs, progress=False)
    assert len(m.loss_history) == 30
    assert m.loss_history[-1] < 0.85 * m.loss_history[0]
    # chance is 1/3 for 3 balanced topics
    assert nn_topic_accuracy(m.vectors, topics) >= 0.9


def test_infer_recovers_topics_of_unseen_documents_and_freezes_words():
    docs, topics, vocab_size = planted_docs(n_docs=90)
    train, held = np.arange(60), np.arange(60, 90)
    m = ParagraphVectors(vocab_size, dim=16, epochs=30, batch_size=128, lr=0.05, seed=0, device="cpu")
    m.fit([docs[i] for i in train], progress=False)
    words_before = m.out_vectors.weight.clone()
    inferred = m.infer([docs[i] for i in held])
    torch.testing.assert_close(m.out_vectors.weight, words_before, rtol=0, atol=0)
    assert inferred.shape == (30, 16) and inferred.dtype == np.float32
    assert nn_topic_accuracy(inferred, topics[held], m.vectors, topics[train]) >= 0.9
    # re-inferring a training document lands near its trained vector: its own row is among the
    # 5 closest of the 60 trained vectors far more often than chance (5/60)
    again = m.infer([docs[i] for i in train[:20]])
    sims = (again / np.linalg.norm(again, axis=1, keepdims=True)) @ (
        m.vectors / np.linalg.norm(m.vectors, axis=1, keepdims=True)).T
    own_rank = (sims > sims[np.arange(20), np.arange(20)][:, None]).sum(1)
    assert np.mean(own_rank < 5) >= 0.5


def test_same_seed_same_vectors_and_other_seed_differs():
    docs, _, vocab_size = planted_docs(n_docs=20)
    make = lambda seed: ParagraphVectors(vocab_size, dim=6, mode="dm", window=2, epochs=3, seed=seed,  # noqa: E731
                                         device="cpu").fit(docs, progress=False)
    a, b, c = make(0), make(0), make(1)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.infer(docs[:3]), b.infer(docs[:3]))
    assert not np.allclose(a.vectors, c.vectors)


def test_save_and_load_round_trip(tmp_path):
    docs, _, vocab_size = planted_docs(n_docs=20)
    m = ParagraphVectors(vocab_size, dim=6, mode="dm", window=2, epochs=3, seed=0, device="cpu")
    m.fit(docs, progress=False)
    m.save(tmp_path / "pv.pt")
    loaded = ParagraphVectors.load(tmp_path / "pv.pt", device="cpu")
    np.testing.assert_array_equal(loaded.vectors, m.vectors)
    assert loaded.loss_history == m.loss_history and loaded.mode == "dm"
    np.testing.assert_array_equal(loaded.infer(docs[:2]), m.infer(docs[:2]))


def test_accepts_encoded_corpus_and_drops_padding_and_unknown():
    from course_lib.text import prepare_text

    vocab, enc = prepare_text(["alpha beta gamma alpha", "beta gamma delta zeta", "alpha zzz"], min_count=2)
    docs = p2v.compact_docs(enc)
    assert [d.tolist() for d in docs] == [[vocab.stoi[w] for w in "alpha beta gamma alpha".split()],
                                          [vocab.stoi["beta"], vocab.stoi["gamma"]], [vocab.stoi["alpha"]]]


def test_bad_input_errors():
    docs, _, vocab_size = planted_docs(n_docs=10)
    with pytest.raises(ValueError, match="mode"):
        ParagraphVectors(vocab_size, mode="skipgram")
    with pytest.raises(ValueError, match="before infer"):
        ParagraphVectors(vocab_size, device="cpu").infer(docs)
    with pytest.raises(ValueError, match="documents 1 have no known word"):
        ParagraphVectors(vocab_size, device="cpu").fit([docs[0], np.array([0, 1, 1])], progress=False)
    with pytest.raises(ValueError, match="vocab_size"):
        ParagraphVectors(5, device="cpu").fit(docs, progress=False)
    m = ParagraphVectors(vocab_size, epochs=1, device="cpu").fit(docs, progress=False)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.infer([np.array([3, vocab_size + 4])])
    with pytest.raises(ValueError, match=r"document ids must be in \[0, 10\)"):
        m.most_similar(10)


@pytest.mark.parametrize("kwargs, message", [
    (dict(vocab_size=2), r"vocab_size must be an integer > 2 \(ids 0 and 1 are <PAD> and <UNK>\).*got 2"),
    (dict(vocab_size=30.5), r"vocab_size must be an integer > 2 .*got 30.5"),
    (dict(dim=0), r"dim must be an integer >= 1, got 0"),
    (dict(window=-2), r"window must be an integer >= 1, got -2"),
    (dict(negative=0), r"negative must be an integer >= 1, got 0"),
    (dict(epochs=2.5), r"epochs must be an integer >= 1, got 2.5"),
    (dict(batch_size=0), r"batch_size must be an integer >= 1, got 0"),
    (dict(lr=-0.1), r"lr must be a finite number > 0, got -0.1"),
    (dict(lr=float("nan")), r"lr must be a finite number > 0, got nan"),
    (dict(sample=-1e-3), r"sample must be a finite number >= 0, got -0.001"),
    (dict(ns_exponent=float("inf")), r"ns_exponent must be a finite number, got inf"),
    (dict(seed=-1), r"seed must be an integer >= 0, got -1"),
    (dict(mode="skipgram"), r"mode must be one of 'dbow', 'dm'; got 'skipgram'"),
    (dict(dm_update="mean"), r"dm_update must be one of 'word2vec', 'exact'; got 'mean'"),
])
def test_every_setting_is_checked_before_any_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ParagraphVectors(**{"vocab_size": 30, "device": "cpu", **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    (dict(dim=0), r"dim must be an integer >= 1, got 0"),
    (dict(mode="cbow"), r"mode must be one of 'dbow', 'dm'; got 'cbow'"),
    (dict(seed=-3), r"seed must be an integer >= 0, got -3"),
])
def test_gensim_comparison_checks_the_same_settings(kwargs, message):
    docs, _, _ = planted_docs(n_docs=4)
    with pytest.raises(ValueError, match=message):
        p2v.gensim_doc2vec(docs, **kwargs)


@pytest.mark.parametrize("corpus, message", [
    ("some raw text", r"the corpus is one text; encode the texts first"),
    (["a paper title", "another"], r"document 0 is text \('a paper title'\), not word ids"),
    (np.array([3, 4, 5]), r"shape \(n_docs, max_len\) of word ids, got shape \(3,\): one document\? wrap it"),
    ([3, 4, 5], r"document 0 must be a sequence of word ids, got the single number 3; one document\? wrap it"),
    ([np.array([3.0, 4.0])], r"document 0 holds float64 values; word ids are integers"),
    ([np.array([3, -4])], r"word ids must be >= 0 \(0 is <PAD>\), got -4 in document 0"),
    ([np.array([[3, 4]])], r"document 0 must be a sequence of word ids, got shape \(1, 2\)"),
])
def test_a_corpus_of_the_wrong_kind_is_named(corpus, message):
    with pytest.raises(ValueError, match=message):
        ParagraphVectors(30, device="cpu").fit(corpus, progress=False)


def test_infer_and_neighbours_check_their_arguments():
    docs, _, vocab_size = planted_docs(n_docs=10)
    with pytest.raises(ValueError, match="not trained yet: call fit"):
        ParagraphVectors(vocab_size, device="cpu").most_similar(0)
    m = ParagraphVectors(vocab_size, epochs=1, device="cpu").fit(docs, progress=False)
    for kwargs, message in [(dict(epochs=0), r"epochs must be an integer >= 1, got 0"),
                            (dict(lr=0.0), r"lr must be a finite number > 0, got 0.0"),
                            (dict(seed=-1), r"seed must be an integer >= 0, got -1")]:
        with pytest.raises(ValueError, match=message):
            m.infer(docs[:2], **kwargs)
    with pytest.raises(ValueError, match=r"topn must be an integer >= 1, got 0"):
        m.most_similar(0, topn=0)
    rel = p2v.relevance_from_features(sp.identity(10, format="csr"))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 9\], got 10"):
        p2v.neighbour_precision(m.vectors, rel, k=10)
    bad = m.vectors.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"vectors has 1 rows with NaN or inf: .*lower lr"):
        p2v.neighbour_precision(bad, rel, k=2)
    with pytest.raises(ValueError, match=r"vectors must have shape \(n_docs, dim\) = \(any, any\), got \(10,\)"):
        p2v.most_similar(np.ones(10), 0)


def test_a_diverging_run_stops_with_the_step_and_the_cause():
    docs, _, vocab_size = planted_docs(n_docs=10)
    with pytest.raises(TrainingDiverged, match=r"the loss became (nan|inf) at PV-DBOW epoch \d+, step \d+: .*lower lr "
                                               r"\(now 1e\+30\)"):
        ParagraphVectors(vocab_size, lr=1e30, epochs=5, batch_size=16, device="cpu").fit(docs, progress=False)


def test_wrong_shapes_in_the_loss_are_named():
    h, pos, neg = torch.zeros(4, 8), torch.zeros(4, 8), torch.zeros(4, 5, 8)
    with pytest.raises(ValueError, match=r"pos_out must have shape \(batch, dim\) = \(4, 8\), got \(4, 7\)"):
        negative_sampling_loss(h, torch.zeros(4, 7), neg)
    with pytest.raises(ValueError, match=r"neg_out must have shape \(batch, K, dim\) = \(4, any, 8\), got \(4, 8\)"):
        negative_sampling_loss(h, pos, torch.zeros(4, 8))
    with pytest.raises(ValueError, match=r"h must have shape \(batch, dim\) = \(any, any\), got \(8,\)"):
        negative_sampling_loss(torch.zeros(8), pos, neg)
    m = ParagraphVectors(20, dim=8, mode="dm", window=2, device="cpu")
    table = torch.nn.Embedding(3, 8)
    doc, target, negatives = torch.tensor([0, 2]), torch.tensor([5, 6]), torch.tensor([[7, 8], [9, 3]])
    context = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 0]])
    assert m.loss(table, doc, target, negatives, context).shape == (2,)
    for args, message in [
        ((torch.tensor([0, 3]), target, negatives, context), r"doc ids must be in \[0, 3\), got 3"),
        ((doc, torch.tensor([5, 20]), negatives, context), r"target ids must be in \[0, 20\), got 20"),
        ((doc, target, torch.tensor([7, 8]), context), r"negatives must have shape \(batch, K\) = \(2, any\), got \(2,\)"),
        ((doc, target, negatives, context[:, :3]), r"context must have shape \(batch, 2 \* window\) = \(2, 4\), got \(2, 3\)"),
        ((doc, target, negatives, None), r"mode='dm' needs the context word ids"),
    ]:
        with pytest.raises(ValueError, match=message):
            m.loss(table, *args)
        with pytest.raises(ValueError, match=message):
            m.sgd_step(table, *args)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got -1"):
        m.sgd_step(table, doc, target, negatives, context, lr=-1)


@pytest.mark.parametrize("counts, message", [
    (np.array([0, 0, 3, -1]), r"counts must be finite and >= 0"),
    (np.array([[0, 0, 3]]), r"counts must be one count per word id, shape \(vocab,\), got shape \(1, 3\)"),
])
def test_noise_and_subsampling_tables_check_their_counts(counts, message):
    with pytest.raises(ValueError, match=message):
        p2v.noise_distribution(counts)
    with pytest.raises(ValueError, match=message):
        p2v.keep_probability(counts, 1e-3)
    with pytest.raises(ValueError, match=r"sample must be a finite number >= 0, got -1"):
        p2v.keep_probability(np.array([0, 0, 3]), -1)


# -------------------------------------------------------------- evaluation
def test_relevance_neighbour_precision_and_most_similar_on_a_hand_case():
    tags = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]]))
    rel = p2v.relevance_from_features(tags)
    expected = np.array([[0, 1, 0, 0, 1], [1, 0, 0, 0, 1], [0, 0, 0, 1, 1], [0, 0, 1, 0, 1], [1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(rel.toarray(), expected)
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.05]])
    # nearest of 0 is 1, of 1 is 0, of 2 is 3, of 3 is 2 (all relevant); of 4 is 2 (cos > 0), relevant
    res = p2v.neighbour_precision(vectors, rel, k=1)
    assert res["precision"] == pytest.approx(1.0)
    assert res["random"] == pytest.approx(np.mean([2, 2, 2, 2, 4]) / 4)
    # two nearest: 0 -> {1, 3}, 1 -> {0, 3}, 2 -> {3, 1}, 3 -> {2, 1}, 4 -> {2, 3}
    res2 = p2v.neighbour_precision(vectors, rel, k=2)
    assert res2["precision"] == pytest.approx(np.mean([0.5, 0.5, 0.5, 0.5, 1.0]))
    top = p2v.most_similar(vectors, 0, topn=2)
    assert [i for i, _ in top] == [1, 3]
    assert top[0][1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    with pytest.raises(ValueError, match="shape"):
        p2v.neighbour_precision(vectors[:3], rel)


def test_paper_vectors_fits_train_papers_and_infers_cold_ones():
    docs, topics, vocab_size = planted_docs(n_docs=45)
    cold = np.arange(0, 45, 5)
    train = np.setdiff1d(np.arange(45), cold)
    table, model = p2v.paper_vectors(docs, train, vocab_size=vocab_size, dim=12, epochs=25, lr=0.05,
                                     batch_size=128, seed=0, device="cpu")
    assert table.shape == (45, 12)
    np.testing.assert_array_equal(table[train], model.vectors)
    np.testing.assert_array_equal(table[cold], model.infer([docs[i] for i in cold]))
    assert nn_topic_accuracy(table[cold], topics[cold], table[train], topics[train]) >= 0.85


def test_ours_matches_gensim_doc2vec_on_planted_topics():
    docs, topics, vocab_size = planted_docs(n_docs=60)
    relevant = p2v.relevance_from_features(sp.csr_matrix(np.eye(3)[topics]))
    rows = p2v.compare_with_gensim(docs, relevant, vocab_size, k=5, dim=16, epochs=30, seed=0, device="cpu",
                                   batch_size=128, lr=0.05)
    ours, theirs = rows
    assert ours["model"] == "ours PV-DBOW" and theirs["model"] == "gensim PV-DBOW"
    assert ours["random"] == pytest.approx(19 / 59)
    assert ours["precision@5"] >= 0.85 and theirs["precision@5"] >= 0.85
    assert abs(ours["precision@5"] - theirs["precision@5"]) <= 0.1
