"""The Theano-track hybrid recommender against the PyTorch track: same weights, same numbers.

Scores, the three losses and the gradients of every trainable parameter are compared in float64
(relative error < 1e-8) and float32 (< 1e-4); then both tracks train from the same initial
weights on the tiny CiteULike tier with the same paper order and must reach the same losses and
validation Recall@50.
"""
import numpy as np
import pytest
import torch

from course_lib import training
from course_lib.checks import rel_error
from course_lib.theano_models import content as tcon
from course_lib.theano_models import e2e_paragraph as te
from course_lib.theano_models import hybrid as th
from course_lib.theano_models.compat import T, function, theano
from course_lib.torch_models import content as tc
from course_lib.torch_models import hybrid as ph
from course_lib.torch_models.utils import TextBatch

N_USERS, N_PAPERS, VOCAB, DIM = 20, 12, 30, 6


def _data(rng):
    wv, idf = rng.normal(size=(VOCAB, DIM)), rng.uniform(0.5, 2.0, VOCAB)
    lengths = rng.integers(1, 10, N_PAPERS)
    mask = (np.arange(9)[None] < lengths[:, None]).astype(np.float64)  # (P, 9), right-padded
    ids = rng.integers(1, VOCAB, size=(N_PAPERS, 9)) * mask.astype(np.int64)
    targets = (rng.random((N_PAPERS, N_USERS)) < 0.25).astype(np.float64)
    targets[:, 0] = 1.0  # every paper has a like, so BPR / listwise have positives
    return wv, idf, ids, mask, targets


def _pair(merge, dtype, rng):
    """A torch model and a Theano model holding the same weights."""
    wv, idf, ids, mask, targets = _data(rng)
    torch_model = ph.HybridRecommender(N_USERS, N_PAPERS, tc.TfidfWordAverage(wv, idf, fine_tune=True), item_dim=5,
                                       merge=merge, hidden=(7,), seed=1)
    torch_model = torch_model.to(getattr(torch, dtype)).eval()
    torch_model.set_known_papers(rng.random(N_PAPERS) < 0.7)  # some papers cold: zero item embedding
    theano_model = th.HybridRecommender(N_USERS, N_PAPERS, tcon.TfidfWordAverage(wv, idf, fine_tune=True, dtype=dtype),
                                        item_dim=5, merge=merge, hidden=(7,), dtype=dtype)
    theano_model.load_state_dict(torch_model.state_dict())
    return torch_model, theano_model, (ids, mask, targets.astype(dtype))


@pytest.fixture(scope="module", params=[("concat", "float64"), ("sum", "float64"), ("concat", "float32")],
                ids=["concat-f64", "sum-f64", "concat-f32"])
def setup(request):
    merge, dtype = request.param
    rng = np.random.default_rng(0)
    torch_model, theano_model, (ids, mask, targets) = _pair(merge, dtype, rng)
    rows, pos = th.positive_pairs(targets)
    neg = th.sample_negative_users(targets, rows, 4, rng)
    neg_mask = np.zeros_like(targets)
    np.put_along_axis(neg_mask, th.sample_negative_users(targets, np.arange(N_PAPERS), 5, rng), 1.0, axis=1)
    # one compiled function: scores, the three losses and their gradients
    m, tgt, nm = theano_model, T.matrix("t", dtype=dtype), T.matrix("nm", dtype=dtype)
    r, p, n = T.vector("r", dtype="int64"), T.vector("p", dtype="int64"), T.matrix("n", dtype="int64")
    s = m.scores()
    losses = [th.weighted_mse_loss(s, tgt, 10.0, nm), th.bpr_loss(s, r, p, n), th.listwise_loss(s, r, p, n)]
    params = m.params.trainable_vars()
    grads = [g for loss in losses for g in theano.grad(loss, params)]
    fn = function(m.inputs() + [tgt, nm, r, p, n], [s] + losses + grads)
    out = fn(ids, mask.astype(dtype), np.arange(N_PAPERS), targets, neg_mask, rows, pos, neg)
    theano_res = {"scores": out[0], "losses": out[1:4], "grads": out[4:]}

    batch = TextBatch(torch.tensor(ids), torch.tensor(mask, dtype=getattr(torch, dtype)), torch.arange(N_PAPERS))
    tt = lambda a: torch.as_tensor(a)  # noqa: E731
    names = m.params.trainable
    tparams = dict(torch_model.named_parameters())
    torch_losses, torch_grads = [], []
    for kind in ("wmse", "bpr", "listwise"):
        scores = torch_model(batch)
        if kind == "wmse":
            loss = ph.weighted_mse_loss(scores, tt(targets), 10.0, neg_mask=tt(neg_mask))
        else:
            fn_t = ph.bpr_loss if kind == "bpr" else ph.listwise_loss
            loss = fn_t(scores, tt(rows), tt(pos), tt(neg))
        torch_grads += list(torch.autograd.grad(loss, [tparams[nm_] for nm_ in names]))
        torch_losses.append(loss.item())
    torch_res = {"scores": torch_model(batch).detach().numpy(), "losses": torch_losses,
                 "grads": [g.numpy() for g in torch_grads]}
    return dtype, names, theano_res, torch_res


def _tol(dtype):
    return 1e-8 if dtype == "float64" else 1e-4


def test_scores_match(setup):
    dtype, _, ours, ref = setup
    assert ours["scores"].shape == (N_PAPERS, N_USERS)
    assert rel_error(ours["scores"], ref["scores"]) < _tol(dtype)


def test_losses_match(setup):
    dtype, _, ours, ref = setup
    for name, a, b in zip(("wmse", "bpr", "listwise"), ours["losses"], ref["losses"]):
        assert abs(float(a) - b) / abs(b) < _tol(dtype), name


def test_gradients_of_every_parameter_match(setup):
    dtype, names, ours, ref = setup
    assert "encoder.embedding.weight" in names  # fine-tuned word vectors get gradients too
    for i, (a, b) in enumerate(zip(ours["grads"], ref["grads"])):
        # rel_error per entry is dominated by entries that are exactly zero in one track and
        # 1e-20 in the other; compare relative to the gradient's scale instead
        scale = max(np.abs(b).max(), 1e-12)
        assert np.abs(a - b).max() / scale < _tol(dtype), (names[i % len(names)], i // len(names))


def test_weighted_mse_against_formula():
    s = T.matrix("s", dtype="float64")
    t = T.matrix("t", dtype="float64")
    f = function([s, t], th.weighted_mse_loss(s, t, 5.0))
    scores, targets = np.array([[0.5, 0.2], [1.0, -1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    # paper 0: 5 * 0.25 + 0.04; paper 1: 1.0 + 5 * 4.0; mean over papers
    assert float(f(scores, targets)) == pytest.approx((1.29 + 21.0) / 2, rel=1e-12)


@pytest.fixture(scope="module")
def tiny_run():
    from course_lib.data import load_citeulike
    from course_lib.splits import flip_split, validation_split
    from course_lib.text import idf_vector, prepare_text

    data = load_citeulike("tiny")
    vocab, corpus = prepare_text(data.texts("title+abstract"), min_count=3, max_len=60)
    rng = np.random.default_rng(0)
    wv = rng.normal(0, 0.3, size=(len(vocab), 16))
    idf = idf_vector(corpus, vocab)
    fold = validation_split(flip_split(data.likes, "cold", seed=0), frac=0.2, seed=0)
    kw = dict(item_dim=8, merge="concat", hidden=(16,), seed=0)
    torch.manual_seed(0)
    torch_model = ph.HybridRecommender(data.n_users, data.n_papers, tc.TfidfWordAverage(wv, idf, fine_tune=True), **kw)
    theano_enc = tcon.TfidfWordAverage(wv, idf, fine_tune=True, dtype="float32")
    theano_model = th.HybridRecommender(data.n_users, data.n_papers, theano_enc, dtype="float32", **kw)
    theano_model.load_state_dict(torch_model.state_dict())
    train = dict(loss="wmse", alpha=10.0, lr=0.05, batch_size=64, epochs=3, patience=5, seed=0, progress=False)
    h_torch = ph.train_hybrid(torch_model, corpus, fold.train, fold.test, device="cpu", **train)
    h_theano = th.train_hybrid(theano_model, corpus, fold.train, fold.test, **train)
    return h_torch, h_theano


def test_train_hybrid_checks_its_arguments_as_the_pytorch_track_does():
    rng = np.random.default_rng(5)
    wv, idf, ids, mask, targets = _data(rng)
    model = th.HybridRecommender(N_USERS, N_PAPERS, tcon.TfidfWordAverage(wv, idf, dtype="float64"), item_dim=4,
                                 dtype="float64")
    texts = th.PaperTexts(ids, mask)
    likes = targets.T.copy()  # (n_users, n_papers)
    bad = [
        (dict(monitor="NDCG"), "monitor must look like 'Recall@50'"),
        (dict(loss="mse"), "loss must be one of"),
        (dict(optimizer="sgd"), "optimizer must be one of 'adagrad', 'adam'"),
        (dict(patience=0), "patience must be >= 1"),
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
        (dict(epochs=0), "epochs must be an integer >= 1, got 0"),
        (dict(lr=0.0), "lr must be a finite number > 0, got 0.0"),
        (dict(loss="bpr", n_sample=10**6), rf"n_sample must be an integer in \[1, {N_USERS}\], got 1000000"),
        (dict(step_fn=lambda *a: 0, loss_fn=lambda *a: 0), "not both"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            th.train_hybrid(model, texts, likes, likes, progress=False, **change)
    with pytest.raises(ValueError, match="train_likes has shape"):
        th.train_hybrid(model, texts, likes[:, :5], progress=False)
    with pytest.raises(ValueError, match=f"texts has 5 papers but the model was built for {N_PAPERS}"):
        th.train_hybrid(model, th.PaperTexts(ids[:5], mask[:5]), likes, progress=False)
    with pytest.raises(ValueError, match="train_likes is empty"):
        th.train_hybrid(model, texts, np.zeros_like(likes), progress=False)


def test_short_training_run_reaches_the_same_losses_and_recall(tiny_run):
    h_torch, h_theano = tiny_run
    # same initial weights, same paper order, no dropout: the trajectories agree to float32 rounding
    np.testing.assert_allclose(h_theano["loss"], h_torch["loss"], rtol=1e-3)
    assert h_theano["loss"][-1] < h_theano["loss"][0]  # it learns
    # Recall@50 may move by a tie flipping a user across the cut-off: allow 0.01
    np.testing.assert_allclose(h_theano["valid_Recall@50"], h_torch["valid_Recall@50"], atol=0.01)


def test_level_c_paragraph_vector_loss_and_gradients_match_pytorch():
    from course_lib.torch_models import e2e_paragraph as pe

    rng = np.random.default_rng(3)
    counts = rng.integers(1, 20, VOCAB)
    kw = dict(lambda_p2v=0.7, negative=3, n_words=4, seed=0)
    torch_enc = pe.EndToEndParagraphVectors(N_PAPERS, counts, dim=DIM, **kw).double()
    with torch.no_grad():  # non-zero output word vectors, so every term of L_p2v has a gradient
        torch_enc.word_out.weight.normal_(0, 0.5)
    enc = te.EndToEndParagraphVectors(N_PAPERS, counts, dim=DIM, dtype="float64", **kw)
    enc.params.load_state_dict(torch_enc.state_dict())
    _, _, ids, mask, _ = _data(rng)
    words, noise = enc.sample_words(ids, mask, rng)
    assert words.shape == (N_PAPERS, 4) and noise.shape == (4, 3)
    assert np.all(words > 0)  # sampled from the real tokens, never padding
    # the shared numpy sampler and the torch encoder's noise table
    np.testing.assert_array_equal(torch_enc.noise_cdf.numpy(), enc._cdf)
    again = training.sample_words(ids, mask, 4, 3, training.noise_cdf(counts), np.random.default_rng(11))
    for a, b in zip(enc.sample_words(ids, mask, np.random.default_rng(11)), again):
        np.testing.assert_array_equal(a, b)

    idx = T.vector("idx", dtype="int64")
    loss = enc.aux_loss(idx)
    params = [enc.params["doc.weight"], enc.params["word_out.weight"]]
    out = function([idx] + enc.aux_inputs(), [loss] + theano.grad(loss, params))(np.arange(N_PAPERS), words, noise)

    d, w = torch_enc.doc.weight, torch_enc.word_out.weight
    pos = torch.einsum("bd,btd->bt", d, w[torch.as_tensor(words)])
    neg = (d @ w[torch.as_tensor(noise).flatten()].T).view(N_PAPERS, 4, 3)
    ref = 0.7 * pe.negative_sampling_loss(pos, neg).mean()
    ref_grads = torch.autograd.grad(ref, [d, w])
    assert abs(float(out[0]) - ref.item()) < 1e-8 * abs(ref.item())
    for ours, theirs in zip(out[1:], ref_grads):
        assert np.abs(ours - theirs.numpy()).max() < 1e-8 * np.abs(theirs.numpy()).max()


def test_level_c_trains_with_its_auxiliary_loss_and_infers_cold_papers():
    rng = np.random.default_rng(4)
    _, _, ids, mask, targets = _data(rng)
    enc = te.EndToEndParagraphVectors(N_PAPERS, np.arange(VOCAB) + 1.0, dim=DIM, lambda_p2v=1.0, n_words=5,
                                      infer_steps=30, infer_lr=0.5, dtype="float64")
    model = th.HybridRecommender(N_USERS, N_PAPERS, enc, item_dim=4, dtype="float64")
    likes = targets.T.copy()  # (n_users, n_papers)
    likes[:, -3:] = 0  # the last three papers are cold: no training likes
    texts = type("Corpus", (), {"ids": ids, "mask": mask})()
    hist = th.train_hybrid(model, texts, likes, None, lr=0.1, batch_size=4, epochs=3, progress=False)
    assert all(a > 0 for a in hist["aux_loss"])  # the PV-DBOW term was part of every step
    before = enc.params["doc.weight"].get_value()[-3:].copy()
    cold_words, cold_noise = enc.sample_words(ids[-3:], mask[-3:], np.random.default_rng(9))
    p2v = function(enc.aux_inputs(), enc.p2v_loss(enc.params["doc.weight"][-3:], enc.words, enc.noise).mean())
    model.score_papers(np.arange(N_PAPERS), texts)  # cold papers: vectors inferred from their words
    after = enc.params["doc.weight"].get_value()[-3:]
    assert not np.allclose(before, after)
    enc.params["doc.weight"].set_value(np.vstack([enc.params["doc.weight"].get_value()[:-3], before]))
    loss_before = float(p2v(cold_words, cold_noise))
    enc.params["doc.weight"].set_value(np.vstack([enc.params["doc.weight"].get_value()[:-3], after]))
    assert float(p2v(cold_words, cold_noise)) < loss_before  # inference fits the words of the paper
