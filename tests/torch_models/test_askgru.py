"""Ask the GRU: encoders, losses against their formulas, cold-start item vectors, training."""
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from course_lib.checks import numerical_gradient, rel_error
from course_lib.evaluation import evaluate_ranking
from course_lib.splits import cold_start_folds, tag_split
from course_lib.synthetic import planted_citeulike
from course_lib.text import prepare_text
from course_lib.torch_models import askgru as ag
from course_lib.torch_models.utils import TextBatch
from course_lib.training import PairBatch
from course_lib.validation import TrainingDiverged

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
    with pytest.raises(ValueError, match=r"this model is untrained .*fit\(model, likes, texts"):
        ag.score(model, enc, device="cpu")
    for bad, message in [(dict(max_updates=0), "max_updates must be an integer >= 1, got 0"),
                         (dict(lr=-1e-3), "lr must be a finite number > 0, got -0.001"),
                         (dict(eval_every=0), "eval_every must be an integer >= 1"),
                         (dict(batch_users=0), "batch_users must be an integer >= 1"),
                         (dict(loss_fn=lambda *a: 0, step_fn=lambda *a: 0), "not both")]:
        with pytest.raises(ValueError, match=message):
            ag.fit(model, fold.train, enc, progress=False, **bad)
    for make, message in [(lambda: ag.EmbedEncoder(1, 4), "n_words must be an integer >= 2, got 1"),
                          (lambda: ag.GRUEncoder(10, 4, 0, 4), "hidden1 must be an integer >= 1, got 0"),
                          (lambda: ag.GRUEncoder(10, 4, 3, 4, dropout=(0.1, 1.0, 0.1)),
                           r"every dropout rate must be a number in \[0, 1\), got 1.0"),
                          (lambda: ag.AskGRU(ag.EmbedEncoder(10, 4), 0, 5), "n_users must be an integer >= 1, got 0"),
                          (lambda: ag.AskGRU(ag.EmbedEncoder(10, 4), 3, 5, n_tags=-1),
                           "n_tags must be an integer >= 0, got -1")]:
        with pytest.raises(ValueError, match=message):
            make()
    f = torch.zeros(4, 4)
    with pytest.raises(ValueError, match=r"users \(3,\) and paper_idx \(4,\) must be \(B,\)"):
        model.score_pairs(torch.zeros(3, dtype=torch.long), f, torch.zeros(4, dtype=torch.long))


def test_a_diverging_fit_names_the_update_and_the_cause(planted):
    data, vocab, enc, fold = planted
    model = ag.AskGRU(ag.EmbedEncoder(len(vocab), 4, seed=0), data.n_users, data.n_papers)
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at evaluation period 1, step 1 \(loss\): "
                                               r"lower lr \(now 0.001\)"):
        ag.fit(model, fold.train, enc, batch_users=16, max_updates=3, progress=False, device="cpu",
               loss_fn=lambda m, b, f: (f.sum() * float("nan")))


def test_frequent_tags_keeps_tags_on_enough_papers():
    tags = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1]], dtype=np.float32))
    kept, ids = ag.frequent_tags(tags, min_papers=2)
    assert ids.tolist() == [0] and kept.shape == (3, 1)
    with pytest.raises(ValueError, match="min_papers"):
        ag.frequent_tags(tags, min_papers=4)


# ----------------------------------------------------------------------------- speed-ups keep the numbers


def _torch_packed_reference(enc: ag.GRUEncoder, batch: TextBatch) -> torch.Tensor:
    """The same encoder through ``nn.GRU`` on ``pack_padded_sequence``: what the packed loop replaces."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    lengths = batch.mask.sum(1).long()
    width = batch.ids.shape[1]

    def run(gru, x):
        packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=width)[0]

    h2 = run(enc.gru2, run(enc.gru1, enc.embedding(batch.ids)))  # (B, L, hidden2)
    return (h2 * batch.mask.unsqueeze(-1)).sum(1) / lengths.clamp(min=1).unsqueeze(-1)


def test_packed_gru_loop_matches_torch_gru_values_and_gradients():
    rng = np.random.default_rng(4)
    lengths = np.array([7, 0, 3, 7, 1, 5, 2, 0, 6])  # ties, empty papers, one-token papers
    ids = rng.integers(1, 30, size=(lengths.size, 9))
    batch = _batch(ids, lengths)
    enc = ag.GRUEncoder(30, 5, 4, 3, seed=2).double().eval()
    batch.mask = batch.mask.double()
    ours, ref = enc(batch), _torch_packed_reference(enc, batch)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert torch.all(ours[[1, 7]] == 0)  # an empty paper encodes to zeros
    w = torch.as_tensor(rng.normal(size=ours.shape))
    g_ours = torch.autograd.grad((ours * w).sum(), list(enc.parameters()))
    g_ref = torch.autograd.grad((ref * w).sum(), list(enc.parameters()))
    for (name, _), a, b in zip(enc.named_parameters(), g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_pack_layout_by_hand():
    pk = ag._pack(torch.tensor([2, 3, 0, 1]))
    # longest first: rows 1 (3 tokens), 0 (2), 3 (1); row 2 is empty and never read
    assert pk.sizes == [3, 2, 1]
    assert pk.row.tolist() == [1, 0, 3, 1, 0, 1]
    assert pk.pos.tolist() == [0, 0, 0, 1, 1, 2]
    # row 1 read backwards: its tokens 2, 1, 0 sit at packed 5, 3, 0; row 0's tokens 1, 0 at 4, 1
    assert pk.reverse.tolist() == [5, 4, 2, 3, 1, 0]


@pytest.mark.parametrize("cls", [ag.EmbedEncoder, ag.GRUEncoder])
def test_dedup_gives_the_same_loss_and_gradients(cls):
    """Encoding each distinct paper once per batch (``dedup``) is exact when there is no dropout."""
    rng = np.random.default_rng(5)
    docs = [list(rng.integers(1, 25, size=n)) for n in (4, 2, 6, 3, 5)]
    width = max(map(len, docs))
    ids = np.array([d + [0] * (width - len(d)) for d in docs])
    from course_lib.text import EncodedCorpus

    lengths = np.array([len(d) for d in docs])
    texts = EncodedCorpus(ids, (np.arange(width)[None] < lengths[:, None]).astype(np.float32), lengths)
    papers = np.array([2, 0, 2, 4, 1, 2, 0, 3])  # paper 2 three times, paper 0 twice
    users = torch.as_tensor(rng.integers(0, 6, size=papers.size))
    target = torch.as_tensor(rng.integers(0, 2, size=papers.size).astype(np.float32))
    kw = {"dropout": (0.0, 0.0, 0.0)} if cls is ag.GRUEncoder else {"dropout_emb": 0.0}
    enc = cls(25, 6, 5, 4, seed=1, **kw) if cls is ag.GRUEncoder else cls(25, 6, seed=1, **kw)
    model = ag.AskGRU(enc, 6, len(docs), n_tags=3, seed=1).train()
    with torch.no_grad():
        model.warm[[0, 2]] = True
        model.item_emb.normal_(0, 0.3)
    tags = torch.as_tensor(rng.integers(0, 2, size=(papers.size, 3)).astype(np.float32))
    losses, grads = [], []
    for dedup in (False, True):
        f, idx = ag._batch_item_repr(model, texts, papers, torch.device("cpu"), dedup)
        assert idx.tolist() == papers.tolist()
        loss = ag.multitask_loss(ag.weighted_squared_loss(model.score_pairs(users, f, idx), target,
                                                          torch.full((papers.size,), 2.0)),
                                 ag.tag_loss(model.tag_logits(f), tags, 0.1), 0.5)
        losses.append(loss.item())
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), *grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def test_item_vectors_sorted_by_length_come_back_in_the_callers_order(planted):
    data, vocab, enc, fold = planted
    model = ag.AskGRU(ag.GRUEncoder(len(vocab), 6, 4, 4, seed=0), data.n_users, data.n_papers)
    papers = np.array([5, 149, 0, 77, 5, 31])
    with pytest.raises(ValueError, match=r"this model is untrained .*fit\(model, likes, texts"):
        ag.item_vectors(model, enc, papers, device="cpu")
    with torch.no_grad():
        model.warm[::2] = True  # as fit marks the papers with training likes
        model.item_emb.normal_()
    together = ag.item_vectors(model, enc, papers, batch_size=4, device="cpu")
    alone = torch.cat([ag.item_vectors(model, enc, [p], device="cpu") for p in papers])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    assert ag.item_vectors(model, enc, np.array([], dtype=np.int64), device="cpu").shape == (0, 4)


# ------------------------------------------------------------------------------ course bench askgru


def test_bench_presets_keep_the_paper_as_default_and_let_options_override():
    from course_lib.benchmarks import askgru as bench

    paper = bench.parse_args([])
    assert paper.preset == "paper" and bench.result_name(paper) == "askgru_paper"
    assert (paper.emb_dim, paper.hidden1, paper.hidden2, paper.batch_users) == (
        ag.EMB_DIM, ag.HIDDEN1, ag.HIDDEN2, ag.BATCH_USERS) == (200, 400, 200, 512)
    assert paper.max_updates_gru == ag.MAX_UPDATES == 20_000
    reduced = bench.parse_args(["--preset", "reduced", "--hidden1", "50"])
    assert (reduced.emb_dim, reduced.hidden1, reduced.batch_users, reduced.lr) == (100, 50, 256, 3e-3)
    assert reduced.ctr_k == 200 and bench.result_name(reduced) == "askgru"
    quick = bench.parse_args(["--quick", "--text", "title+abstract"])
    assert quick.preset == "quick" and bench.result_name(quick) == "askgru_title_abstract_quick"
    assert {50, 100, 150, 200, 250, 300} <= set(bench.CURVE_M)


def test_bench_draws_figure_3(tmp_path):
    from course_lib.benchmarks import askgru as bench

    curve = {f"Recall@{m}": m / 400 for m in bench.CURVE_M}
    curves = {"GRU": {"warm": curve, "cold": curve}, "WMF": {"warm": curve, "cold": {k: None for k in curve}}}
    path = tmp_path / "fig.png"
    bench.plot_recall_at_m(curves, path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_bench_joins_folds_of_runs_with_the_same_settings_only(tmp_path):
    import json

    from course_lib.benchmarks import askgru as bench

    args = bench.parse_args(["--preset", "reduced", "--fold", "1", "--models", "GRU"])
    settings = {k: (",".join(v) if isinstance(v, list) else v) for k, v in vars(args).items()}
    settings.update(folds="0,1", models="Embed")  # other models may join the table
    earlier = {"settings": settings, "per_fold": [{"Embed": {"cold": {"recall": {"Recall@50": 0.25}}}},
                                                  {"Embed": {"cold": {"recall": {"Recall@50": 0.5}}}}],
               "speed": [{"threads": 1}]}
    path = tmp_path / "askgru.json"
    path.write_text(json.dumps(earlier))
    got = bench._earlier_folds(args, path)
    assert got["folds"] == [0, 1] and got["per_fold"][1]["Embed"]["cold"]["recall"]["Recall@50"] == 0.5
    assert got["speed"] == [{"threads": 1}] and got["run"] == {"folds": "0,1"}
    args.lr = 0.1
    with pytest.raises(ValueError, match="lr: 0.003 there, 0.1 here"):
        bench._earlier_folds(args, path)
    with pytest.raises(ValueError, match="run the other folds first"):
        bench._earlier_folds(args, tmp_path / "missing.json")
    assert bench.result_name(bench.parse_args(["--preset", "reduced", "--name", "askgru_x"])) == "askgru_x"


# ------------------------------------------------------------------------------ your own code


class PackedGRUEncoder(nn.Module):
    """Notebook 04's Exercise 1 as a learner writes it: embeddings -> biGRU -> GRU with packed
    sequences -> mean over the real words (the library's GRUEncoder runs the same equations by hand)."""

    def __init__(self, n_words, emb_dim, hidden1, hidden2):
        super().__init__()
        self.embedding = nn.Embedding(n_words, emb_dim, padding_idx=0)
        self.gru1 = nn.GRU(emb_dim, hidden1, batch_first=True, bidirectional=True)
        self.gru2 = nn.GRU(2 * hidden1, hidden2, batch_first=True)
        self.out_dim = hidden2

    def forward(self, batch):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        width, lengths = batch.ids.shape[1], batch.mask.sum(dim=1).long()
        packed = pack_padded_sequence(self.embedding(batch.ids), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        h1, _ = pad_packed_sequence(self.gru1(packed)[0], batch_first=True, total_length=width)
        packed = pack_padded_sequence(h1, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h2, _ = pad_packed_sequence(self.gru2(packed)[0], batch_first=True, total_length=width)
        return (h2 * batch.mask.unsqueeze(-1)).sum(dim=1) / lengths.unsqueeze(-1)


def _losses_by_hand(model, batch, f, lambda_mtl=0.5):
    """Notebook 04's Exercises 2 and 3 as a learner writes them, with the L2 term on the users."""
    conf = 1.0 + 10.0 * torch.log1p(batch.n_likes / 1e-8)
    pred = model.score_pairs(batch.users, f, batch.paper_idx)
    c_r = (conf * (pred - batch.target) ** 2).mean() + 0.01 * model.user_emb[batch.users].pow(2).sum(-1).mean()
    logits = model.tag_logits(f)
    c_t = -(batch.tags * nn.functional.logsigmoid(logits)
            + 0.01 * (1 - batch.tags) * nn.functional.logsigmoid(-logits)).sum(dim=1).mean()
    return {"loss": lambda_mtl * c_r + (1 - lambda_mtl) * c_t, "loss_rec": c_r, "loss_tag": c_t}


def test_your_encoder_and_your_losses_train_as_the_library_does(planted):
    data, vocab, enc, fold = planted
    runs = []
    for own in (False, True):
        lib_enc = ag.GRUEncoder(len(vocab), 6, 5, 4, dropout=(0.0, 0.0, 0.0), seed=1)
        encoder = lib_enc
        if own:
            encoder = PackedGRUEncoder(len(vocab), 6, 5, 4)
            encoder.load_state_dict(lib_enc.state_dict(), strict=False)  # the same starting weights
        model = ag.AskGRU(encoder, data.n_users, data.n_papers, n_tags=data.n_tags, seed=1)
        hist = ag.fit(model, fold.train, enc, tags=data.paper_tags, lambda_mtl=0.5, batch_users=32, max_updates=30,
                      eval_every=10, lr=1e-2, seed=2, device="cpu", progress=False,
                      loss_fn=_losses_by_hand if own else None)
        runs.append((hist, ag.score(model, enc, users=[0, 1, 2], device="cpu")))
    (lib, s_lib), (own, s_own) = runs
    # packed nn.GRU and the library's loop are the same equations, rounded differently (float32)
    for key in ("loss", "loss_rec", "loss_tag"):
        np.testing.assert_allclose(getattr(own, key), getattr(lib, key), rtol=1e-4, err_msg=key)
    assert own.update == lib.update == [10, 20, 30]
    np.testing.assert_allclose(s_own, s_lib, rtol=1e-3, atol=1e-4)


def test_a_step_fn_of_your_own_gets_the_pairs_of_the_loop(planted):
    data, vocab, enc, fold = planted
    seen = []

    def count_pairs(batch: PairBatch):
        seen.append(batch)
        return float(len(batch.users))

    model = ag.AskGRU(ag.EmbedEncoder(len(vocab), 4, seed=0), data.n_users, data.n_papers)
    hist = ag.fit(model, fold.train, enc, batch_users=16, max_updates=4, eval_every=2, step_fn=count_pairs,
                  device="cpu", progress=False)
    assert hist.loss == [32.0, 32.0] and len(seen) == 4 and hist.loss_rec == []
    assert all(isinstance(b.users, np.ndarray) and b.target.tolist() == [1.0] * 16 + [0.0] * 16 for b in seen)
