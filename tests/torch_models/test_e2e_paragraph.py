"""Level (c): paragraph vectors trained jointly with the recommender, and their cold-start inference."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_lib.checks import numerical_gradient, rel_error
from course_lib.evaluation import evaluate_flip
from course_lib.torch_models.e2e_paragraph import EndToEndParagraphVectors, negative_sampling_loss
from course_lib.torch_models.hybrid import HybridRecommender, PaperTexts, train_hybrid




def planted(n_users=120, n_papers=200, n_topics=4, seed=0):
    """Users like papers of one topic; a paper's topic is written in its words."""
    rng = np.random.default_rng(seed)
    tw, n_common, L = 8, 20, 16
    common = 3 + n_topics * tw
    topic = rng.integers(0, n_topics, n_papers)
    ids = np.zeros((n_papers, L), dtype=np.int64)
    for j in range(n_papers):
        ids[j, :6] = 3 + topic[j] * tw + rng.integers(0, tw, 6)
        ids[j, 6:] = common + rng.integers(0, n_common, L - 6)
    counts = np.bincount(ids.ravel(), minlength=common + n_common)
    user_topic = rng.integers(0, n_topics, n_users)
    rows, cols = [], []
    for u in range(n_users):
        mine = np.flatnonzero(topic == user_topic[u])
        chosen = rng.choice(mine, size=min(rng.integers(3, 12), len(mine)), replace=False)
        rows += [u] * len(chosen)
        cols += list(chosen)
    likes = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_papers))
    cold = np.sort(rng.permutation(n_papers)[: n_papers // 5])
    is_cold = np.isin(np.arange(n_papers), cold)
    train = sp.csr_matrix(likes.multiply(~is_cold[None, :]))
    train.eliminate_zeros()
    test = sp.csr_matrix(likes.multiply(is_cold[None, :]))
    test.eliminate_zeros()
    return PaperTexts(ids, np.ones_like(ids, dtype=np.float32), "cpu"), counts, topic, train, test, cold


def test_negative_sampling_loss_matches_formula_and_finite_differences():
    rng = np.random.default_rng(0)
    d, u, n = rng.normal(size=(2, 3)), rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 5, 3))
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected = [np.mean([-np.log(sig(d[b] @ u[b, t])) - sum(np.log(sig(-d[b] @ n[b, t, k])) for k in range(5))
                         for t in range(4)]) for b in range(2)]
    td, tu, tn = torch.tensor(d), torch.tensor(u), torch.tensor(n)
    got = negative_sampling_loss(torch.einsum("bd,btd->bt", td, tu), torch.einsum("bd,btkd->btk", td, tn))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)

    def loss_of(a):
        a = torch.as_tensor(a)
        return negative_sampling_loss(torch.einsum("bd,btd->bt", a, tu), torch.einsum("bd,btkd->btk", a, tn)).sum()

    x = td.clone().requires_grad_(True)
    loss_of(x).backward()
    assert rel_error(x.grad.numpy(), numerical_gradient(lambda a: float(loss_of(a)), d)) < 1e-6


def test_p2v_loss_scores_the_sampled_words_against_the_paper_vector():
    texts, counts, *_ = planted(n_papers=20)
    batch = texts.batch([2, 3])
    enc = EndToEndParagraphVectors(20, counts, dim=4, n_words=6, negative=3, seed=0)
    with torch.no_grad():
        enc.word_out.weight.normal_(generator=torch.Generator().manual_seed(1))
    doc = enc(batch)
    got = enc.p2v_loss(doc, batch, torch.Generator().manual_seed(5))
    words, noise = enc.sample_words(batch, torch.Generator().manual_seed(5))
    u = enc.word_out.weight
    want = negative_sampling_loss(torch.einsum("bd,btd->bt", doc, u[words]), torch.einsum("bd,tkd->btk", doc, u[noise]))
    torch.testing.assert_close(got, want)


def test_aux_loss_is_lambda_times_p2v_and_samples_words_of_the_paper():
    texts, counts, *_ = planted(n_papers=20)
    batch = texts.batch([0, 5, 7])
    enc = EndToEndParagraphVectors(20, counts, dim=6, lambda_p2v=3.0, n_words=40, seed=1)
    with torch.no_grad():
        enc.word_out.weight.normal_()
    words, noise = enc.sample_words(batch, torch.Generator().manual_seed(0))
    assert words.shape == (3, 40) and noise.shape == (40, 5)  # noise words shared by the batch
    for b in range(3):  # positives come from the paper, noise never is padding
        assert set(words[b].tolist()) <= set(batch.ids[b].tolist())
    assert (noise != 0).all()
    enc_a = EndToEndParagraphVectors(20, counts, dim=6, lambda_p2v=3.0, seed=1)
    enc_b = EndToEndParagraphVectors(20, counts, dim=6, lambda_p2v=1.0, seed=1)
    for e in (enc_a, enc_b):
        with torch.no_grad():
            e.word_out.weight.copy_(torch.linspace(-1, 1, e.word_out.weight.numel()).view_as(e.word_out.weight))
    assert enc_a.aux_loss(batch).item() == pytest.approx(3.0 * enc_b.aux_loss(batch).item(), rel=1e-6)
    off = EndToEndParagraphVectors(20, counts, dim=6, lambda_p2v=0.0)
    assert float(off.aux_loss(batch)) == 0.0
    with pytest.raises(ValueError, match="lambda_p2v must be a finite number >= 0"):
        EndToEndParagraphVectors(20, counts, lambda_p2v=-1.0)
    with pytest.raises(ValueError, match=r"init_vectors has shape \(20, 5\), expected \(20, 6\)"):
        EndToEndParagraphVectors(20, counts, dim=6, init_vectors=np.zeros((20, 5)))
    for bad, message in [(dict(n_papers=0), "n_papers must be an integer >= 1, got 0"),
                         (dict(dim=0), "dim must be an integer >= 1, got 0"),
                         (dict(negative=0), "negative must be an integer >= 1"),
                         (dict(infer_steps=0), "infer_steps must be an integer >= 1"),
                         (dict(infer_lr=0.0), "infer_lr must be a finite number > 0"),
                         (dict(ns_exponent=-1.0), "ns_exponent must be a finite number >= 0")]:
        with pytest.raises(ValueError, match=message):
            EndToEndParagraphVectors(**{"n_papers": 20, "word_counts": counts, **bad})
    # the unweighted term a joint loss of your own weighs: aux_loss is lambda_p2v times it
    term, weighted = (EndToEndParagraphVectors(20, counts, dim=6, lambda_p2v=3.0, seed=1) for _ in range(2))
    for e in (term, weighted):
        with torch.no_grad():
            e.word_out.weight.copy_(enc_a.word_out.weight)
    assert term.p2v_term(batch).item() == pytest.approx(weighted.aux_loss(batch).item() / 3.0, rel=1e-6)


def test_word_sampling_has_the_distributions_of_the_shared_numpy_sampler():
    from course_lib.training import noise_cdf, sample_words

    counts = np.array([50, 1, 16, 0, 81])  # noise: word 1 w.p. 1/36, 2 w.p. 8/36, 4 w.p. 27/36
    enc = EndToEndParagraphVectors(2, counts, dim=3, n_words=30_000, negative=2, seed=0)
    np.testing.assert_array_equal(enc.noise_cdf.numpy(), noise_cdf(counts))  # the one shared noise table
    ids = np.array([[2, 2, 1, 0, 0], [2, 3, 4, 1, 1]])
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float32)
    batch = PaperTexts(ids, mask, "cpu").batch([0, 1])
    words, noise = (x.numpy() for x in enc.sample_words(batch, torch.Generator().manual_seed(0)))
    ref_words, ref_noise = sample_words(ids, mask, 30_000, 2, noise_cdf(counts), np.random.default_rng(0))
    # different generators, the same distributions: per-word frequencies within 0.015 (30,000
    # draws per paper, 60,000 noise words: a frequency's standard deviation is <= 0.003)
    for row in range(2):
        np.testing.assert_allclose(np.bincount(words[row], minlength=5) / 30_000,
                                   np.bincount(ref_words[row], minlength=5) / 30_000, atol=0.015)
    assert set(np.unique(words[0])) == {1, 2}  # never padding
    np.testing.assert_allclose(np.bincount(noise.ravel(), minlength=5) / noise.size, [0, 1 / 36, 8 / 36, 0, 27 / 36],
                               atol=0.015)
    np.testing.assert_allclose(np.bincount(ref_noise.ravel(), minlength=5) / ref_noise.size,
                               [0, 1 / 36, 8 / 36, 0, 27 / 36], atol=0.015)


def test_inferred_vectors_recover_the_topic_and_are_seeded():
    texts, counts, topic, train, test, cold = planted()
    warm = np.setdiff1d(np.arange(200), cold)
    enc = EndToEndParagraphVectors(200, counts, dim=16, lambda_p2v=1.0, n_words=16, seed=0)
    opt = torch.optim.Adagrad(enc.parameters(), lr=0.2)
    for _ in range(60):  # paragraph2vec alone on the training papers
        loss = enc.aux_loss(texts.batch(warm))
        opt.zero_grad()
        loss.backward()
        opt.step()
    inferred = enc.infer_vectors(texts.batch(cold))
    again = enc.infer_vectors(texts.batch(cold))
    assert torch.equal(inferred, again)
    trained = enc.doc.weight[warm].detach()
    sim = torch.nn.functional.normalize(inferred, dim=1) @ torch.nn.functional.normalize(trained, dim=1).T
    nearest_topic = topic[warm][sim.argmax(1).numpy()]
    accuracy = float((nearest_topic == topic[cold]).mean())
    assert accuracy > 0.8, accuracy  # chance is 0.25 with four topics


def _cold_recall(lambda_p2v, texts, counts, train, test, cold):
    enc = EndToEndParagraphVectors(200, counts, dim=8, lambda_p2v=lambda_p2v, n_words=16, infer_steps=50, seed=0)
    m = HybridRecommender(120, 200, enc, item_dim=8, merge="concat", seed=0)
    train_hybrid(m, texts, train, None, loss="bpr", n_sample=10, lr=0.1, batch_size=32, epochs=30,
                 progress=False, seed=0)
    before = enc.doc.weight[cold].detach().clone()
    scores = m.score_papers(cold, texts)
    return evaluate_flip(scores, test, papers=cold, ks=(10,))["Recall@10"], before, enc.doc.weight[cold].detach()


def test_joint_loss_makes_cold_papers_recommendable():
    texts, counts, topic, train, test, cold = planted()
    with_text, before, after = _cold_recall(0.3, texts, counts, train, test, cold)
    without, *_ = _cold_recall(0.0, texts, counts, train, test, cold)
    pop = np.asarray(train.sum(1)).ravel()
    pop_recall = evaluate_flip(np.tile(pop, (len(cold), 1)), test, papers=cold, ks=(10,))["Recall@10"]
    assert not torch.allclose(before, after)  # score_papers inferred the cold papers' vectors
    # without the paragraph2vec term a cold paper's vector carries nothing: popularity level
    assert without < pop_recall + 0.05, (without, pop_recall)
    assert with_text > without + 0.1, (with_text, without)
