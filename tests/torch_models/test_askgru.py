"""Ask the GRU: encoders, losses against their formulas, cold-start item vectors, training."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from course_lib.checks import numerical_gradient, rel_error
from course_lib.evaluation import evaluate_ranking
from course_lib.splits import cold_start_folds, tag_split
from course_lib.synthetic import planted_citeulike
from course_lib.text import prepare_text
from course_lib.torch_models import askgru as ag
from course_lib.torch_models.utils import TextBatch

torch.set_num_threads(1)


def _batch(ids, lengths):
    ids = torch.as_tensor(ids, dtype=torch.long)
    mask = (torch.arange(ids.shape[1])[None, :] < torch.as_tensor(lengths)[:, None]).float()
    return TextBatch(ids * mask.long(), mask, torch.arange(ids.shape[0]))


# ------------------------------------------------------------------------------------ encoders


def test_embed_encoder_is_the_mean_of_the_word_embeddings():
    table = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    enc = ag.EmbedEncoder(5, 3, embeddings=table).eval()
    out = enc(_batch([[1, 2, 4, 0], [3, 0, 0, 0]], [3, 1])).detach().numpy()
    np.testing.assert_allclose(out[0], (table[1] + table[2] + table[4]) / 3, rtol=1e-6)
    np.testing.assert_allclose(out[1], table[3], rtol=1e-6)
    assert enc.out_dim == 3
    assert np.all(enc.embedding.weight[0].detach().numpy() == 0)  # padding row forced to zero


@pytest.mark.parametrize("cls", [ag.EmbedEncoder, ag.GRUEncoder])
def test_padding_never_changes_the_encoding(cls):
    enc = cls(20, 6, 5, 4, seed=1).eval() if cls is ag.GRUEncoder else cls(20, 6, seed=1).eval()
    docs = [[3, 5, 7, 9, 11], [2, 4], [6, 8, 10]]
    lengths = [len(d) for d in docs]
    # each paper alone, without any padding
    alone = torch.cat([enc(_batch([d], [len(d)])) for d in docs])
    # together, padded to width 9 with random ids behind the mask (they must be ignored)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, size=(3, 9))
    for i, d in enumerate(docs):
        ids[i, : len(d)] = d
    mask = (np.arange(9)[None] < np.array(lengths)[:, None]).astype(np.float32)
    padded = enc(TextBatch(torch.as_tensor(ids), torch.as_tensor(mask), torch.arange(3)))
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-6)
    assert padded.shape == (3, enc.out_dim)


def test_gru_encoder_shapes_and_bidirectional_first_layer():
    enc = ag.GRUEncoder(30, emb_dim=8, hidden1=6, hidden2=5).eval()
    assert enc.out_dim == 5
    assert enc.gru1.bidirectional and enc.gru1.hidden_size == 6
    assert enc.gru2.input_size == 12  # the concatenated forward and backward states
    # the backward direction reads the last word first: changing only the first word changes the
    # output, and so does changing only the last word
    base = enc(_batch([[1, 2, 3, 4]], [4]))
    assert not torch.allclose(base, enc(_batch([[9, 2, 3, 4]], [4])))
    assert not torch.allclose(base, enc(_batch([[1, 2, 3, 9]], [4])))


def test_gru_encoder_is_order_sensitive_and_embed_is_not():
    gru = ag.GRUEncoder(30, 8, 6, 5, seed=2).eval()
    emb = ag.EmbedEncoder(30, 8, seed=2).eval()
    a, b = _batch([[4, 7, 9]], [3]), _batch([[9, 7, 4]], [3])
    assert torch.allclose(emb(a), emb(b), atol=1e-6)
    assert (gru(a) - gru(b)).abs().max() > 1e-3


def test_encoders_reject_bad_masks_and_embeddings():
    enc = ag.GRUEncoder(10, 4, 3, 3)
    with pytest.raises(ValueError, match="right-padded"):
        enc(TextBatch(torch.ones(1, 3, dtype=torch.long), torch.tensor([[0.0, 1.0, 1.0]]), torch.arange(1)))
    with pytest.raises(ValueError, match="expected \\(10, 4\\)"):
        ag.EmbedEncoder(10, 4, embeddings=np.zeros((10, 5)))


def test_same_seed_same_weights():
    a, b = ag.GRUEncoder(10, 4, 3, 3, seed=5), ag.GRUEncoder(10, 4, 3, 3, seed=5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_gru_encoder_plugs_into_the_hybrid_recommender():
    from course_lib.torch_models.hybrid import HybridRecommender

    enc = ag.GRUEncoder(20, 6, 5, 4)
    model = HybridRecommender(7, 3, enc, item_dim=4, merge="sum")
    scores = model(_batch([[1, 2, 3], [4, 5, 0], [6, 0, 0]], [3, 2, 1]))
    assert scores.shape == (3, 7)
    scores.sum().backward()
    assert enc.gru1.weight_ih_l0.grad is not None


# -------------------------------------------------------------------------------------- losses


def test_confidence_weights_follow_the_formula():
    c = ag.confidence_weights([1, 4, 100])
    expected = [1 + 10 * math.log(1 + n / 1e-8) for n in (1, 4, 100)]
    np.testing.assert_allclose(c.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(ag.confidence_weights([3], alpha_conf=2.0, eps_conf=1.0).numpy(),
                               [1 + 2 * math.log(4)], rtol=1e-6)


def test_weighted_squared_loss_by_hand():
    pred, target, conf = torch.tensor([0.5, 0.2, 1.5]), torch.tensor([1.0, 0.0, 1.0]), torch.tensor([2.0, 3.0, 1.0])
    expected = (2 * 0.25 + 3 * 0.04 + 1 * 0.25) / 3
    assert ag.weighted_squared_loss(pred, target, conf).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        ag.weighted_squared_loss(pred, target[:2], conf)


def test_tag_loss_by_hand_and_its_gradient():
    logits = np.array([[0.3, -1.2, 2.0], [-0.5, 0.1, 0.7]])
    tags = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    w = 0.25

    def by_hand(z):
        p = 1 / (1 + np.exp(-z))
        return float(np.mean(-(tags * np.log(p) + w * (1 - tags) * np.log(1 - p)).sum(axis=1)))

    z = torch.tensor(logits, requires_grad=True)
    loss = ag.tag_loss(z, torch.tensor(tags), w)
    assert loss.item() == pytest.approx(by_hand(logits), rel=1e-10)
    loss.backward()
    assert rel_error(z.grad.numpy(), numerical_gradient(by_hand, logits)) < 1e-6


def test_multitask_loss_mixes_with_lambda():
    assert ag.multitask_loss(torch.tensor(2.0), torch.tensor(10.0), 0.75).item() == pytest.approx(0.75 * 2 + 0.25 * 10)
    assert ag.multitask_loss(torch.tensor(2.0), torch.tensor(10.0), 1.0).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="lambda_mtl"):
        ag.multitask_loss(torch.tensor(1.0), torch.tensor(1.0), 1.5)


# ------------------------------------------------------------------------------------ the model


def test_cold_papers_use_the_text_alone():
    enc = ag.EmbedEncoder(10, 4, seed=0).eval()
    model = ag.AskGRU(enc, n_users=3, n_papers=2).eval()
    with torch.no_grad():
        model.item_emb.fill_(1.0)
        model.item_bias.fill_(5.0)
        model.warm[0] = True  # paper 0 warm, paper 1 cold
    batch = _batch([[1, 2, 3], [1, 2, 3]], [3, 3])
    f = model.item_repr(batch)
    g = enc(batch)
    torch.testing.assert_close(f[0], g[0] + 1.0)  # eq. (4) with v_j
    torch.testing.assert_close(f[1], g[1])  # v_j = 0
    r = model(torch.tensor([2, 2]), batch)
    u = model.user_emb[2]
    assert r[0].item() == pytest.approx((u @ (g[0] + 1)).item() + 5.0, rel=1e-5)
    assert r[1].item() == pytest.approx((u @ g[1]).item(), rel=1e-5)


@pytest.fixture(scope="module")
def planted():
    """Topics planted in word choice; fold 0 of the cold-start split."""
    data = planted_citeulike(n_users=120, n_papers=150, n_topics=3, doc_len=10, likes_per_user=10,
                             order_matters=False, seed=0)
    vocab, enc = prepare_text(data.texts("abstract"), min_count=1)
    fold = cold_start_folds(data.likes, n_folds=5, seed=0)[0]
    return data, vocab, enc, fold


def _train(planted, encoder, **kw):
    data, _, enc, fold = planted
    model = ag.AskGRU(encoder, data.n_users, data.n_papers, n_tags=data.n_tags)
    hist = ag.fit(model, fold.train, enc, batch_users=64, max_updates=kw.pop("max_updates", 150), eval_every=50,
                  lr=1e-2, progress=False, device="cpu", **kw)
    return model, hist


def _cold_recall(model, planted, k=10):
    data, _, enc, fold = planted
    s = ag.score(model, enc, papers=fold.test_papers, device="cpu")
    return evaluate_ranking(s, fold.test[:, fold.test_papers], ks=(k,), metrics=("recall",))["Recall@10"]


def test_fit_learns_planted_topics_in_cold_start(planted):
    data, vocab, enc, fold = planted
    model, hist = _train(planted, ag.EmbedEncoder(len(vocab), 8, seed=0))
    recall = _cold_recall(model, planted)
    # chance: 10 of the 30 held-out papers, so Recall@10 ~ 0.33; a user's topics are 0.9 of its likes
    assert recall > 0.6
    assert hist.loss[-1] < hist.loss[0]
    assert model.warm.sum().item() == np.count_nonzero(np.asarray(fold.train.sum(axis=0)).ravel())
    assert not model.warm[fold.test_papers].any()


def test_gru_model_learns_and_early_stopping_restores_the_best(planted):
    data, vocab, enc, fold = planted
    val_papers = fold.test_papers
    model, hist = _train(planted, ag.GRUEncoder(len(vocab), 8, 8, 8, seed=0), max_updates=150,
                         valid_likes=fold.test, valid_papers=val_papers, valid_k=10, patience=10)
    assert _cold_recall(model, planted) > 0.55
    assert hist.best_recall == pytest.approx(max(hist.valid_recall))
    assert hist.best_recall == pytest.approx(_cold_recall(model, planted), abs=1e-9)
    assert hist.examples_per_second > 0 and hist.n_updates == 150


def test_multitask_training_predicts_planted_tags(planted):
    data, vocab, enc, fold = planted
    train_tag_papers, test_tag_papers = tag_split(data.paper_tags, fold)
    keep = np.zeros(data.n_papers, dtype=np.float32)
    keep[train_tag_papers] = 1
    tags_train = sp.csr_matrix(sp.diags(keep) @ data.paper_tags)
    model, hist = _train(planted, ag.EmbedEncoder(len(vocab), 8, seed=0), tags=tags_train, lambda_mtl=0.5,
                         tag_neg_weight=1.0)
    p = ag.tag_scores(model, enc, test_tag_papers, device="cpu")
    assert p.shape == (test_tag_papers.size, data.n_tags) and np.all((p > 0) & (p < 1))
    hit1 = np.mean(p.argmax(axis=1) == data.paper_tags[test_tag_papers].indices)
    assert hit1 > 0.8  # chance 1/3
    assert all(v > 0 for v in hist.loss_tag)


def test_training_is_deterministic_and_survives_save_load(planted, tmp_path):
    data, vocab, enc, fold = planted
    a, _ = _train(planted, ag.GRUEncoder(len(vocab), 6, 4, 4, seed=3), max_updates=20)
    b, _ = _train(planted, ag.GRUEncoder(len(vocab), 6, 4, 4, seed=3), max_updates=20)
    sa, sb = ag.score(a, enc, device="cpu"), ag.score(b, enc, device="cpu")
    np.testing.assert_array_equal(sa, sb)
    a.save(tmp_path / "m.pt")
    c = ag.AskGRU.load(tmp_path / "m.pt", device="cpu")
    np.testing.assert_allclose(ag.score(c, enc, device="cpu"), sa, rtol=1e-6)
    assert torch.equal(c.warm, a.warm)


def test_fit_rejects_inconsistent_inputs(planted):
    data, vocab, enc, fold = planted
    model = ag.AskGRU(ag.EmbedEncoder(len(vocab), 4), data.n_users, data.n_papers)
    with pytest.raises(ValueError, match="likes has shape"):
        ag.fit(model, fold.train[:10], enc, progress=False)
    with pytest.raises(ValueError, match="tags is None"):
        ag.fit(model, fold.train, enc, lambda_mtl=0.5, progress=False)
    with pytest.raises(ValueError, match="paper ids"):
        ag.score(model, enc, papers=[data.n_papers], device="cpu")


def test_frequent_tags_keeps_tags_on_enough_papers():
    tags = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1]], dtype=np.float32))
    kept, ids = ag.frequent_tags(tags, min_papers=2)
    assert ids.tolist() == [0] and kept.shape == (3, 1)
    with pytest.raises(ValueError, match="min_papers"):
        ag.frequent_tags(tags, min_papers=4)
