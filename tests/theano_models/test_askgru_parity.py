"""The Theano-track Ask-the-GRU (``scan`` GRU encoder) against the PyTorch track.

Same weights in both tracks -> same item vectors, scores, multi-task loss and gradients (float64:
relative error < 1e-8, float32: < 1e-4); padding never changes an encoding; and a short training
run from the same initial weights on the tiny tier gives the same losses and validation recall.
"""
import numpy as np
import pytest
import torch

from course_lib.theano_models import askgru as ta
from course_lib.theano_models.compat import T, function, theano
from course_lib.torch_models import askgru as pa
from course_lib.torch_models.utils import TextBatch

N_WORDS, EMB, H1, H2, N_USERS, N_PAPERS, N_TAGS = 25, 5, 6, 4, 9, 7, 3


def _texts(rng, width=8):
    lengths = np.array([8, 5, 1, 3, 8, 2, 6])[:N_PAPERS]
    mask = (np.arange(width)[None] < lengths[:, None]).astype(np.float64)  # right-padded
    ids = rng.integers(1, N_WORDS, size=(N_PAPERS, width)) * mask.astype(np.int64)
    return ids, mask


def _models(dtype, seed=0):
    torch_enc = pa.GRUEncoder(N_WORDS, emb_dim=EMB, hidden1=H1, hidden2=H2, dropout=(0.0, 0.0, 0.0), seed=seed)
    torch_model = pa.AskGRU(torch_enc, N_USERS, N_PAPERS, n_tags=N_TAGS, seed=seed).to(getattr(torch, dtype)).eval()
    with torch.no_grad():  # non-zero item offsets and biases so every term of eq. (3)-(4) is tested
        torch_model.item_emb.normal_(0, 0.3)
        torch_model.item_bias.normal_(0, 0.3)
        torch_model.user_bias.normal_(0, 0.3)
        torch_model.warm.copy_(torch.tensor([True, True, False, True, False, True, True]))
    enc = ta.GRUEncoder(N_WORDS, emb_dim=EMB, hidden1=H1, hidden2=H2, dropout=(0.0, 0.0, 0.0), dtype=dtype)
    theano_model = ta.AskGRU(enc, N_USERS, N_PAPERS, n_tags=N_TAGS)
    theano_model.load_state_dict(torch_model.state_dict())
    return torch_model, theano_model


@pytest.fixture(scope="module", params=["float64", "float32"])
def setup(request):
    dtype = request.param
    rng = np.random.default_rng(1)
    torch_model, m = _models(dtype)
    ids, mask = _texts(rng)
    users = rng.integers(0, N_USERS, N_PAPERS)
    target = (rng.random(N_PAPERS) < 0.5).astype(dtype)
    conf = pa.confidence_weights(rng.integers(0, 5, N_PAPERS)).numpy().astype(dtype)
    tags = (rng.random((N_PAPERS, N_TAGS)) < 0.4).astype(dtype)

    u, tgt, cf, tg = (T.vector("u", dtype="int64"), T.vector("t", dtype=dtype), T.vector("c", dtype=dtype),
                      T.matrix("tags", dtype=dtype))
    f = m.item_repr()
    loss = ta.multitask_loss(ta.weighted_squared_loss(m.score_pairs(u, f), tgt, cf),
                             ta.tag_loss(m.tag_logits(f), tg, 0.01), 0.5)
    names = m.params.trainable
    fn = function(m.text_inputs() + [u, tgt, cf, tg], [f, m.score_pairs(u, f), loss]
                  + theano.grad(loss, m.params.trainable_vars()))
    out = fn(ids, mask.astype(dtype), np.arange(N_PAPERS), users, target, conf, tags)
    # the same encoding with 4 extra padding columns
    wide = fn(np.pad(ids, ((0, 0), (0, 4))), np.pad(mask, ((0, 0), (0, 4))).astype(dtype), np.arange(N_PAPERS),
              users, target, conf, tags)[0]

    batch = TextBatch(torch.tensor(ids), torch.tensor(mask, dtype=getattr(torch, dtype)), torch.arange(N_PAPERS))
    ft = torch_model.item_repr(batch)
    pred = torch_model.score_pairs(torch.tensor(users), ft, batch.paper_idx)
    lt = pa.multitask_loss(pa.weighted_squared_loss(pred, torch.tensor(target), torch.tensor(conf)),
                           pa.tag_loss(torch_model.tag_logits(ft), torch.tensor(tags), 0.01), 0.5)
    tparams = dict(torch_model.named_parameters())
    grads = torch.autograd.grad(lt, [tparams[n] for n in names])
    ref = [ft.detach().numpy(), pred.detach().numpy(), lt.item()] + [g.numpy() for g in grads]
    return dtype, names, out, ref, wide


def _close(a, b, dtype):
    scale = max(np.abs(b).max(), 1e-12)
    return np.abs(np.asarray(a) - np.asarray(b)).max() / scale < (1e-8 if dtype == "float64" else 1e-4)


def test_item_vectors_and_scores_match(setup):
    dtype, _, out, ref, _ = setup
    assert out[0].shape == (N_PAPERS, H2)
    assert _close(out[0], ref[0], dtype)
    assert _close(out[1], ref[1], dtype)


def test_multitask_loss_and_gradients_match(setup):
    dtype, names, out, ref, _ = setup
    assert _close(out[2], ref[2], dtype)
    assert "encoder.gru1.weight_hh_l0_reverse" in names and "tag_emb" in names
    for name, a, b in zip(names, out[3:], ref[3:]):
        assert _close(a, b, dtype), name


def test_padding_never_changes_the_encoding(setup):
    dtype, _, out, _, wide = setup
    np.testing.assert_allclose(wide, out[0], rtol=0, atol=1e-12 if dtype == "float64" else 1e-6)


def test_confidence_weights_against_formula():
    np.testing.assert_allclose(ta.confidence_weights([0, 3], alpha_conf=10, eps_conf=1e-8),
                               [1.0, 1.0 + 10 * np.log(1 + 3e8)], rtol=1e-12)


@pytest.fixture(scope="module")
def tiny_run():
    from course_lib.data import load_citeulike
    from course_lib.splits import flip_split
    from course_lib.text import prepare_text

    data = load_citeulike("tiny")
    vocab, corpus = prepare_text(data.texts("title"), min_count=3, max_len=20)
    fold = flip_split(data.likes, "warm", seed=0)
    kw = dict(emb_dim=8, hidden1=8, hidden2=8, dropout=(0.0, 0.0, 0.0), seed=0)
    torch_model = pa.AskGRU(pa.GRUEncoder(len(vocab), **kw), data.n_users, data.n_papers, seed=0)
    theano_model = ta.AskGRU(ta.GRUEncoder(len(vocab), dtype="float32", **kw), data.n_users, data.n_papers)
    theano_model.load_state_dict(torch_model.state_dict())
    train = dict(valid_likes=fold.test, valid_exclude=fold.train, batch_users=64, max_updates=40, eval_every=20,
                 lr=0.01, seed=0, progress=False)
    h_torch = pa.fit(torch_model, fold.train, corpus, device="cpu", **train).as_dict()
    h_theano = ta.fit(theano_model, fold.train, corpus, **train).as_dict()
    return h_torch, h_theano


def test_short_training_run_reaches_the_same_losses_and_recall(tiny_run):
    h_torch, h_theano = tiny_run
    assert h_theano["update"] == h_torch["update"] == [20, 40]
    # same weights, same user / paper draws, no dropout, Adam in both: float32 rounding only
    np.testing.assert_allclose(h_theano["loss"], h_torch["loss"], rtol=1e-3)
    np.testing.assert_allclose(h_theano["valid_recall"], h_torch["valid_recall"], atol=0.01)
