"""The Theano-track GRU4Rec against the PyTorch track.

Every loss and its gradient agree in float64 (relative error < 1e-8) and float32 (< 1e-4); then
both tracks train one epoch on the tiny session tier from the same initial weights, with the
same session-parallel batches and the same sampled negatives, and must end with the same weights
(to float32 rounding), the same loss and the same Recall@20 / MRR@20 on the test sessions.
"""
import numpy as np
import pytest
import torch

from course_lib.theano_models import gru4rec as tg
from course_lib.theano_models.compat import T, function, theano
from course_lib.torch_models import gru4rec as pg

B, S = 5, 4
LOSS_NAMES = ("cross-entropy", "cross-entropy+logq", "bpr-max", "top1-max", "bpr", "top1")


def _theano_losses(scores, log_q):
    return [tg.cross_entropy_loss(scores), tg.cross_entropy_loss(scores, log_q, 0.7), tg.bpr_max_loss(scores, 0.5),
            tg.top1_max_loss(scores), tg.bpr_loss(scores), tg.top1_loss(scores)]


def _torch_losses(scores, log_q):
    return [pg.cross_entropy_loss(scores), pg.cross_entropy_loss(scores, log_q, 0.7), pg.bpr_max_loss(scores, 0.5),
            pg.top1_max_loss(scores), pg.bpr_loss(scores), pg.top1_loss(scores)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_losses_and_their_gradients_match(dtype):
    rng = np.random.default_rng(0)
    s0 = (rng.normal(size=(B, B + S)) * 2).astype(dtype)
    s0[0, 3] = 40.0  # a large score: every loss must stay finite (log-sum-exp forms)
    lq = np.log(rng.dirichlet(np.ones(B + S))).astype(dtype)
    s, q = T.matrix("s", dtype=dtype), T.vector("q", dtype=dtype)
    losses = _theano_losses(s, q)
    out = function([s, q], losses + [theano.grad(loss, s) for loss in losses])(s0, lq)
    st = torch.tensor(s0, requires_grad=True)
    tol = 1e-8 if dtype == "float64" else 1e-4
    for name, ours, ours_grad, ref in zip(LOSS_NAMES, out[:6], out[6:], _torch_losses(st, torch.tensor(lq))):
        (ref_grad,) = torch.autograd.grad(ref, st)
        assert np.isfinite(float(ours)), name
        assert abs(float(ours) - ref.item()) <= tol * abs(ref.item()), name
        assert np.abs(ours_grad - ref_grad.numpy()).max() <= tol * np.abs(ref_grad.numpy()).max(), name


def test_cross_entropy_against_formula():
    s = T.matrix("s", dtype="float64")
    scores = np.array([[2.0, 0.0, 1.0], [0.5, 0.5, -1.0]])
    value = float(function([s], tg.cross_entropy_loss(s))(scores))
    expected = -np.mean([2.0 - np.log(np.exp(scores[0]).sum()), 0.5 - np.log(np.exp(scores[1]).sum())])
    assert value == pytest.approx(expected, rel=1e-12)


CONFIGS = {
    "xe-onehot-logq": dict(loss="cross-entropy", embedding=0, n_sample=16, logq=1.0),
    "bprmax-emb-momentum": dict(loss="bpr-max", embedding=8, n_sample=16, bpreg=0.5, momentum=0.3),
}


@pytest.fixture(scope="module")
def sessions():
    from course_lib.data import load_sessions

    return load_sessions("tiny")


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def trained_pair(request, sessions):
    from course_lib.evaluation import evaluate_sessions

    kw = dict(layers=[16], batch_size=32, n_epochs=1, learning_rate=0.05, seed=0, **CONFIGS[request.param])
    n_items = pg.GRU4Rec.prepare(sessions.train)[0]["ItemId"].nunique()
    init = pg.GRU4Rec(device="cpu", **kw)
    init.init_weights(n_items)  # the weights fit() starts from for this seed
    torch_model = pg.GRU4Rec(device="cpu", **kw).fit(sessions.train, progress=False)
    theano_model = tg.GRU4Rec(dtype="float32", **kw).fit(sessions.train, progress=False, init_weights=init.W)
    res = [evaluate_sessions(m, sessions.test, cutoffs=(20,)) for m in (torch_model, theano_model)]
    return torch_model, theano_model, res


def test_one_epoch_gives_the_same_weights_and_loss(trained_pair):
    torch_model, theano_model, _ = trained_pair
    assert sorted(torch_model.W) == sorted(theano_model.W.shared)
    for name, ref in torch_model.W.items():
        ref = ref.detach().numpy()
        ours = theano_model.W[name].get_value()
        # ~330 float32 Adagrad steps: rounding differences stay far below the weights' scale
        assert np.abs(ours - ref).max() <= 1e-3 * max(np.abs(ref).max(), 1e-3), name
    assert theano_model.history[0]["loss"] == pytest.approx(torch_model.history[0]["loss"], rel=1e-4)
    assert theano_model.history[0]["events"] == torch_model.history[0]["events"]


def test_same_recall_and_mrr_on_the_test_sessions(trained_pair):
    _, _, (ref, ours) = trained_pair
    assert ours["n_events"] == ref["n_events"] > 1000
    # a score tie broken differently can move one event across the cut-off: 0.002 ~ 2 events
    assert abs(ours["Recall@20"] - ref["Recall@20"]) <= 0.002
    assert abs(ours["MRR@20"] - ref["MRR@20"]) <= 0.002
    assert ours["Recall@20"] > 0.1  # it learned something: popularity alone gets far less here


def test_hidden_state_resets_only_the_given_slots(trained_pair):
    _, model, _ = trained_pair
    model.reset(3)
    model.score_next(np.array([0, 1, 2]))
    before = [h.copy() for h in model._H]
    model.reset_slots(np.array([False, True, False]))
    assert np.all(model._H[0][1] == 0)
    np.testing.assert_array_equal(model._H[0][[0, 2]], before[0][[0, 2]])
    with pytest.raises(ValueError, match="column indices"):
        model.score_next(np.array([0, 1, len(model.item_ids)]))


@pytest.mark.parametrize("state", ["dropped", "kept"])
def test_hidden_dropout_and_the_carried_state(state):
    """As the PyTorch track: the next step starts from the dropped-out state only with "dropped"."""
    from course_lib.theano_models.compat import RandomStream

    m = tg.GRU4Rec(layers=[50], dropout_p_hidden=0.5, dropout_state=state, embedding=8, dtype="float64")
    m.init_weights(20)
    gi0, h0 = T.matrix("gi0", dtype="float64"), T.matrix("h0", dtype="float64")
    stream = RandomStream(0)
    out, (h_new,) = m.hidden_layers(gi0, [h0], True, stream)
    _, (h_clean,) = m.hidden_layers(gi0, [h0], False, stream)
    f = function([gi0, h0], [out, h_new, h_clean], updates=stream.pop_updates())
    rng = np.random.default_rng(0)
    out_v, h_v, clean = f(rng.normal(size=(4, 150)), rng.normal(size=(4, 50)) * 0.1)
    dropped = out_v == 0
    assert 0.3 < dropped.mean() < 0.7  # about half the units dropped
    np.testing.assert_allclose(out_v[~dropped], 2 * clean[~dropped])  # the rest scaled by 1 / (1 - p)
    np.testing.assert_array_equal(h_v, out_v if state == "dropped" else clean)
    with pytest.raises(ValueError, match="dropout_state must be one of 'kept', 'dropped'"):
        tg.GRU4Rec(dropout_state="sometimes")


def test_save_and_load_give_the_same_scores(trained_pair, tmp_path):
    _, model, _ = trained_pair
    model.save(tmp_path / "m.npz")
    again = tg.GRU4Rec.load(tmp_path / "m.npz", dtype="float32")
    assert again.params == model.params and np.array_equal(again.item_ids, model.item_ids)
    for m in (model, again):
        m.reset(2)
    np.testing.assert_array_equal(model.score_next(np.array([1, 2])), again.score_next(np.array([1, 2])))
    with pytest.raises(ValueError, match="is not a GRU4Rec saved by course_lib"):
        (tmp_path / "x.npz").write_bytes(b"not a model")
        tg.GRU4Rec.load(tmp_path / "x.npz")
