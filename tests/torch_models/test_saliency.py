"""Per-word saliency ||d r_ij / d e_t|| (Ask the GRU, section 4.3)."""
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_lib.checks import numerical_gradient, rel_error
from course_lib.torch_models import askgru as ag
from course_lib.torch_models.saliency import paper_saliency, top_users, word_saliency

torch.set_num_threads(1)
N_TOPICS, VOCAB = 4, 40


def planted_one_word(n_papers=240, n_users=80, seed=0):
    """Each paper: 6-12 filler words (ids 5..39) with ONE topic word (id 1 + topic) at a random place;
    each user likes 12 papers of one topic. The topic word is the only thing that matters."""
    rng = np.random.default_rng(seed)
    width = 12
    ids = np.zeros((n_papers, width), np.int64)
    lengths = rng.integers(6, width + 1, n_papers)
    topic = rng.integers(0, N_TOPICS, n_papers)
    for j in range(n_papers):
        ids[j, : lengths[j]] = rng.integers(1 + N_TOPICS, VOCAB, lengths[j])
        ids[j, rng.integers(0, lengths[j])] = 1 + topic[j]
    mask = (np.arange(width)[None] < lengths[:, None]).astype(np.float32)
    user_topic = rng.integers(0, N_TOPICS, n_users)
    rows, cols = [], []
    for i in range(n_users):
        members = np.flatnonzero(topic == user_topic[i])
        k = min(12, members.size)
        cols += rng.choice(members, k, replace=False).tolist()
        rows += [i] * k
    likes = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_papers))
    return SimpleNamespace(ids=ids, mask=mask, lengths=lengths), likes, topic


@pytest.fixture(scope="module")
def trained():
    texts, likes, topic = planted_one_word()
    cold = np.arange(200, 240)
    keep = np.ones(likes.shape[1], np.float32)
    keep[cold] = 0
    train = sp.csr_matrix(likes @ sp.diags(keep))
    train.eliminate_zeros()
    # no dropout: on 200 tiny papers it only slows down what the test needs the model to learn
    model = ag.AskGRU(ag.GRUEncoder(VOCAB, 16, 16, 16, dropout=(0.0, 0.0, 0.0), seed=0), likes.shape[0],
                      likes.shape[1])
    ag.fit(model, train, texts, batch_users=32, max_updates=400, eval_every=100, lr=1e-2, progress=False,
           device="cpu")
    return model, texts, topic, cold


def test_planted_topic_word_gets_the_highest_saliency(trained):
    model, texts, topic, cold = trained
    hits = []
    for j in cold:
        sal, users = paper_saliency(model, texts, j, n_top=5, device="cpu")
        assert sal.shape == (texts.lengths[j],) and users.size == 5
        hits.append(texts.ids[j, np.argmax(sal)] == 1 + topic[j])
    # chance is about 1/9 (one topic word among 6-12 words)
    assert np.mean(hits) >= 0.85


def test_saliency_matches_finite_differences():
    texts, likes, _ = planted_one_word(n_papers=20, n_users=5)
    model = ag.AskGRU(ag.GRUEncoder(VOCAB, 5, 4, 3, seed=1), 5, 20, seed=1).double().eval()
    with torch.no_grad():
        model.warm[3] = True
        model.item_emb[3] = 0.3
    paper, user = 3, 2
    sal = word_saliency(model, texts, paper, [user], device="cpu")[0]
    n = texts.lengths[paper]
    words = texts.ids[paper, :n]
    assert len(set(words.tolist())) == n  # distinct words: a word's row is a single position
    table = model.encoder.embedding.weight

    def r_of(row_values, w):
        with torch.no_grad():
            old = table[w].clone()
            table[w] = torch.as_tensor(row_values)
            r = ag.score(model, texts, users=[user], papers=[paper], device="cpu")[0, 0]
            table[w] = old
        return float(r)

    expected = []
    for w in words:
        x = table[w].detach().numpy().copy()
        expected.append(np.linalg.norm(numerical_gradient(lambda v: r_of(v, w), x, h=1e-4)))
    assert rel_error(sal, np.array(expected)) < 1e-3


def test_embed_saliency_is_flat():
    texts, _, _ = planted_one_word(n_papers=10, n_users=3)
    model = ag.AskGRU(ag.EmbedEncoder(VOCAB, 6, seed=0), 3, 10).eval()
    sal = word_saliency(model, texts, 4, [0, 2], device="cpu")
    n = texts.lengths[4]
    for row, u in zip(sal, [0, 2]):
        expected = model.user_emb[u].norm().item() / n  # d mean / d e_t = I / n
        np.testing.assert_allclose(row, np.full(n, expected), rtol=1e-5)


def test_top_users_are_the_highest_scored_and_the_mean_is_over_them(trained):
    model, texts, _, cold = trained
    paper = int(cold[0])
    scores = ag.score(model, texts, papers=[paper], device="cpu")[:, 0]
    users = top_users(model, texts, paper, n_top=4, device="cpu")
    assert np.all(np.diff(scores[users]) <= 0)
    assert scores[users[-1]] >= np.sort(scores)[-4]
    mean, used = paper_saliency(model, texts, paper, n_top=4, device="cpu")
    np.testing.assert_allclose(mean, word_saliency(model, texts, paper, users, device="cpu").mean(axis=0),
                               rtol=1e-6)
    one, used_one = paper_saliency(model, texts, paper, user=int(users[0]), device="cpu")
    assert used_one.tolist() == [users[0]]
    np.testing.assert_allclose(one, word_saliency(model, texts, paper, [users[0]], device="cpu")[0], rtol=1e-6)


def test_saliency_rejects_bad_ids(trained):
    model, texts, _, _ = trained
    with pytest.raises(ValueError, match="paper ids"):
        word_saliency(model, texts, 10_000, [0], device="cpu")
    with pytest.raises(ValueError, match="user ids"):
        word_saliency(model, texts, 0, [-1], device="cpu")
