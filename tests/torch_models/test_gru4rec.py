"""GRU4Rec: mini-batches, losses against their formulas, optimiser, protocol, learning, bad input."""
import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.evaluation import evaluate_sessions
from course_lib.session_baselines import Pop
from course_lib.synthetic import planted_sessions
from course_lib.torch_models import gru4rec as g
from course_lib.torch_models.gru4rec import GRU4Rec, session_parallel_batches


@pytest.fixture(scope="module")
def planted():
    return planted_sessions(n_items=40, n_sessions=500, mean_len=6, seed=3)


def _frame(sessions, start=0.0):
    """Frame from a list of item lists, one session each, times increasing."""
    rows, t = [], start
    for sid, items in enumerate(sessions):
        for it in items:
            rows.append((sid, it, t))
            t += 1.0
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


# ------------------------------------------------------------------ session-parallel mini-batches
def test_batches_on_three_hand_made_sessions():
    # sessions A = events 0..2, B = 3..4, C = 5..7; two slots
    steps = list(session_parallel_batches(np.array([0, 3, 5, 8]), batch_size=2))
    got = [(s.slots.tolist(), s.inp.tolist(), s.out.tolist(), s.reset.tolist()) for s in steps]
    assert got == [
        ([0, 1], [0, 3], [1, 4], [True, True]),  # A and B start
        ([0, 1], [1, 5], [2, 6], [False, True]),  # B ended: C takes slot 1, only slot 1 is reset
        ([1], [6], [7], [False]),  # A ended and no session is left: slot 0 leaves, C finishes
    ]


def test_batches_cover_every_pair_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 9, size=57)
    offsets = np.r_[0, np.cumsum(lengths)]
    pairs = [(i, o) for s in session_parallel_batches(offsets, 8) for i, o in zip(s.inp, s.out)]
    expected = [(p, p + 1) for a, b in zip(offsets[:-1], offsets[1:]) for p in range(a, b - 1)]
    assert sorted(pairs) == expected  # nothing dropped, nothing twice, never across sessions


def test_batches_reject_length_one_sessions():
    with pytest.raises(ValueError, match="at least 2 events"):
        list(session_parallel_batches(np.array([0, 2, 3, 5]), 2))


# ------------------------------------------------------------------ losses against their formulas
def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference(name, r, bpreg=0.5):
    """Loop-by-loop numpy versions of the formulas in the docstrings."""
    B, C = r.shape
    out = []
    for i in range(B):
        neg = [j for j in range(C) if j != i]
        ri, rj = r[i, i], r[i, neg]
        s = np.exp(rj - rj.max()) / np.exp(rj - rj.max()).sum()
        if name == "bpr":
            out.append(-np.mean(np.log(_sig(ri - rj))))
        elif name == "top1":
            out.append(np.mean(_sig(rj - ri) + _sig(rj**2)))
        elif name == "bpr-max":
            out.append(-np.log(np.sum(s * _sig(ri - rj))) + bpreg * np.sum(s * rj**2))
        elif name == "top1-max":
            out.append(np.sum(s * (_sig(rj - ri) + _sig(rj**2))))
        else:
            out.append(-(r[i, i] - np.log(np.exp(r[i]).sum())))
    return np.mean(out)


LOSS_FNS = {
    "bpr": g.bpr_loss,
    "top1": g.top1_loss,
    "bpr-max": lambda s: g.bpr_max_loss(s, bpreg=0.5),
    "top1-max": g.top1_max_loss,
    "cross-entropy": g.cross_entropy_loss,
}


@pytest.mark.parametrize("name", list(LOSS_FNS))
def test_loss_matches_formula_and_gradient(name):
    rng = np.random.default_rng(1)
    r = rng.normal(size=(4, 7))  # 4 targets + 3 extra samples
    t = torch.tensor(r, dtype=torch.float64, requires_grad=True)
    assert LOSS_FNS[name](t).item() == pytest.approx(_reference(name, r), rel=1e-10)
    assert torch.autograd.gradcheck(LOSS_FNS[name], (t,), eps=1e-6, atol=1e-7)


def test_bpr_max_stays_finite_when_every_sigmoid_underflows():
    r = torch.tensor([[-200.0, 0.0], [0.0, -200.0]], dtype=torch.float64)
    # by hand: row 0 has one negative (weight 1) with sigmoid(-200): loss = 200 + log(1 + e^-200)
    assert g.bpr_max_loss(r, bpreg=0.0).item() == pytest.approx(200.0, rel=1e-9)


def test_logq_correction_shifts_every_column():
    rng = np.random.default_rng(2)
    r = rng.normal(size=(3, 5))
    log_q = np.log(rng.dirichlet(np.ones(5)))
    got = g.cross_entropy_loss(torch.tensor(r), torch.tensor(log_q), logq=0.7).item()
    assert got == pytest.approx(_reference("cross-entropy", r - 0.7 * log_q), rel=1e-10)
    assert g.cross_entropy_loss(torch.tensor(r), torch.tensor(log_q), logq=0.0).item() == pytest.approx(
        _reference("cross-entropy", r), rel=1e-10)


HAND_GRAD_CASES = [dict(loss="cross-entropy"), dict(loss="cross-entropy", logq=0.7),
                   dict(loss="bpr-max", bpreg=0.0), dict(loss="bpr-max", bpreg=1.5)]
ACTS = ["linear", "tanh", "relu", "elu-0.5", "leaky-0.1"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: every sigmoid/softmax weight of a row underflows
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", HAND_GRAD_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_hand_written_loss_gradient_matches_autograd_of_the_loss(case, act, scale, dtype):
    # the training step's gradient of weight * loss by the scores (before the final activation),
    # against autograd of the reference loss functions above
    model = GRU4Rec(final_act=act, device="cpu", **case)
    gen = torch.Generator().manual_seed(5)
    scores = (torch.randn(6, 11, generator=gen, dtype=torch.float64) * scale).to(dtype)  # 6 targets + 5 samples
    log_q = torch.log(torch.rand(11, generator=gen, dtype=torch.float64) + 0.01).to(dtype)
    loss, grad = g._loss_and_grad(model, scores, log_q, 0.6)
    leaf = scores.clone().requires_grad_()
    ref = model.loss_function(g.final_activation(act)(leaf), log_q)
    (ref_grad,) = torch.autograd.grad(ref * 0.6, leaf)
    assert np.isfinite(loss) and torch.isfinite(grad).all()
    assert loss == pytest.approx(ref.item(), rel=1e-5 if dtype == torch.float32 else 1e-10)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(grad, ref_grad, rtol=tol * 10, atol=tol), (grad - ref_grad).abs().max()


def test_bpr_max_hand_gradient_hands_over_where_its_sums_underflow():
    # rows whose every negative sigmoid underflows: the product form is not finite, the step then
    # uses the log-sum-exp form of bpr_max_loss (the previous test checks the gradient it gives)
    r = torch.tensor([[-1000.0, 0.0], [0.0, -1000.0]], dtype=torch.float64)  # sigmoid(-1000) is 0.0
    loss, _ = g._bpr_max_grad(r, 0.0, 1.0)
    assert not torch.isfinite(loss)
    hand_loss, grad = g._loss_and_grad(GRU4Rec(loss="bpr-max", bpreg=0.0, device="cpu"), r, None, 1.0)
    assert hand_loss == pytest.approx(1000.0, rel=1e-12)
    assert torch.allclose(grad, torch.tensor([[-0.5, 0.5], [0.5, -0.5]], dtype=torch.float64))


def test_pairwise_losses_are_zero_without_negatives():
    one = torch.tensor([[1.5]])
    for fn in (g.bpr_loss, g.top1_loss, g.bpr_max_loss, g.top1_max_loss):
        assert fn(one).item() == 0.0


def test_final_activation_names():
    x = torch.tensor([-2.0, 0.5])
    assert torch.allclose(g.final_activation("elu-0.5")(x), torch.tensor([0.5 * (float(np.exp(-2.0)) - 1), 0.5]))
    assert torch.allclose(g.final_activation("leaky-0.1")(x), torch.tensor([-0.2, 0.5]))
    with pytest.raises(ValueError, match="final_act"):
        g.final_activation("softplus")
    with pytest.raises(ValueError, match="after 'elu-' must be a number"):  # checked before any training
        g.GRU4Rec(final_act="elu-x")


# ------------------------------------------------------------------ optimiser
def test_adagrad_momentum_step_by_hand_and_only_touched_rows():
    w = torch.ones(4, 2)
    opt = g.RowOptimizer({"w": w}, "adagrad", lr=0.1, momentum=0.5)
    grad = torch.tensor([[2.0, -1.0]])
    idx = torch.tensor([2])
    opt.update("w", w, grad, idx)
    step1 = 0.1 * grad / torch.sqrt(grad**2 + 1e-6)  # G = g^2, v = step
    assert torch.allclose(w[2], 1 - step1[0])
    opt.update("w", w, grad, idx)
    step2 = 0.5 * step1 + 0.1 * grad / torch.sqrt(2 * grad**2 + 1e-6)  # v = m v + lr g / sqrt(G)
    assert torch.allclose(w[2], 1 - step1[0] - step2[0])
    assert torch.equal(w[[0, 1, 3]], torch.ones(3, 2))  # rows not in the batch never move


def test_initialisation_range():
    m = GRU4Rec(layers=[20], embedding=30, n_epochs=1)
    m.init_weights(500)
    a = np.sqrt(6 / (500 + 30))
    E = m.W["E"]
    assert E.abs().max() <= a and E.abs().max() > 0.95 * a
    wx = m.W["Wx0"][:, :20]  # one gate block (30, 20)
    assert wx.abs().max() <= np.sqrt(6 / 50) and wx.abs().max() > 0.9 * np.sqrt(6 / 50)
    assert torch.equal(m.W["Wy"][:, -1], torch.zeros(500))  # output bias starts at 0


# ------------------------------------------------------------------ training and the protocol
def _fit(train, **kw):
    params = dict(layers=[24], n_epochs=2, batch_size=16, n_sample=0, learning_rate=0.1, seed=0)
    params.update(kw)
    return GRU4Rec(**params).fit(train, progress=False)


@pytest.mark.parametrize("kw", [
    dict(loss="cross-entropy"),
    dict(loss="bpr-max", n_sample=16, sample_alpha=0.5, bpreg=0.5),
    dict(loss="top1-max", constrained_embedding=True, momentum=0.3),
    dict(loss="bpr", embedding=12, dropout_p_embed=0.1, dropout_p_hidden=0.1, final_act="tanh"),
    dict(loss="top1", layers=[24, 16], optimizer="adam", learning_rate=0.01),
    dict(loss="cross-entropy", n_sample=16, logq=1.0, final_act="elu-1"),
])
def test_learns_planted_transitions_far_better_than_pop(planted, kw):
    pop = evaluate_sessions(Pop().fit(planted.train), planted.test, cutoffs=(5,))["Recall@5"]
    res = evaluate_sessions(_fit(planted.train, **kw), planted.test, cutoffs=(5,))
    assert res["Recall@5"] > pop + 0.25, (res["Recall@5"], pop)


def test_every_training_pair_is_used_including_the_tail(planted):
    m = GRU4Rec(layers=[24], n_epochs=1, batch_size=50, n_sample=0).fit(planted.train, valid=planted.valid,
                                                                        progress=False)
    n_pairs = len(planted.train) - planted.train["SessionId"].nunique()
    assert m.history[0]["events"] == n_pairs
    assert 0.0 < m.history[0]["Recall@20"] <= 1.0  # the validation score of the epoch is recorded


def test_same_seed_same_model(planted):
    kw = dict(loss="bpr-max", n_sample=8, dropout_p_hidden=0.3, n_epochs=1)
    a, b = _fit(planted.train, **kw), _fit(planted.train, **kw)
    assert a.history[0]["loss"] == b.history[0]["loss"]
    assert all(torch.equal(a.W[k], b.W[k]) for k in a.W)
    c = _fit(planted.train, **kw, seed=1)
    assert c.history[0]["loss"] != a.history[0]["loss"]


def test_reset_slots_zeroes_only_that_slot(planted):
    m = _fit(planted.train, n_epochs=1)
    m.reset(2)
    m.score_next(np.array([3, 5]))
    carried = m.score_next(np.array([7, 7]))
    m.reset(2)
    m.score_next(np.array([3, 5]))
    m.reset_slots(np.array([True, False]))
    mixed = m.score_next(np.array([7, 7]))
    m.reset(1)
    fresh = m.score_next(np.array([7]))
    # float32 scores: a batch of 1 and of 2 round differently in the matrix products (about 1e-7)
    assert np.allclose(mixed[0], fresh[0], atol=1e-6)  # slot 0 forgot item 3
    assert np.allclose(mixed[1], carried[1], atol=1e-6)  # slot 1 still remembers item 5
    assert np.abs(carried[0] - fresh[0]).max() > 1e-2  # the history matters at all


def test_save_load_gives_the_same_scores(planted, tmp_path):
    m = _fit(planted.train, n_epochs=1, constrained_embedding=True)
    m.save(tmp_path / "m.pt")
    m2 = GRU4Rec.load(tmp_path / "m.pt", device="cpu")
    for model in (m, m2):
        model.reset(2)
    assert np.array_equal(m.score_next(np.array([1, 2])), m2.score_next(np.array([1, 2])))
    assert np.array_equal(m.item_ids, m2.item_ids)


# ------------------------------------------------------------------ bad input
def test_length_one_sessions_and_unsorted_times_are_counted():
    df = _frame([[10, 11, 12], [13], [11, 12]] * 5)
    df.loc[0, "Time"], df.loc[1, "Time"] = df.loc[1, "Time"], df.loc[0, "Time"]  # session 0 out of order
    with pytest.warns(UserWarning, match="dropped 5 length-1 sessions and re-sorted 1"):
        m = GRU4Rec(layers=[4], n_epochs=1, batch_size=2).fit(df, progress=False)
    assert m.data_report["sessions_len1_dropped"] == 5
    assert m.data_report["sessions_resorted"] == 1
    assert m.history[0]["events"] == 2 + 4 * 2 + 5 * 1
    assert 13 not in m.item_ids  # only ever seen in a dropped session


def test_bad_frames_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="empty"):
        GRU4Rec().fit(pd.DataFrame(columns=["SessionId", "ItemId", "Time"]))
    with pytest.raises(ValueError, match="missing"):
        GRU4Rec().fit(pd.DataFrame({"SessionId": [1], "ItemId": [2]}))
    with pytest.raises(ValueError, match="single event"):
        GRU4Rec().fit(_frame([[1], [2]]))
    with pytest.raises(ValueError, match="loss must be"):
        GRU4Rec(loss="hinge")
    with pytest.raises(ValueError, match="not trained"):
        GRU4Rec().reset(3)


def test_unknown_test_items_are_dropped_and_counted(planted):
    m = _fit(planted.train, n_epochs=1)
    test = planted.test.copy()
    test.loc[test.index[0], "ItemId"] = -5  # never seen in training
    res = evaluate_sessions(m, test, cutoffs=(5,))
    assert res["n_unknown_dropped"] == 1
    with pytest.raises(ValueError, match="column indices"):
        m.reset(1)
        m.score_next(np.array([len(m.item_ids)]))


def test_diverging_loss_names_the_step_and_the_cause():
    from course_lib.validation import TrainingDiverged

    df = _frame([[1, 2, 3, 4, 5, 6]] * 40)  # weights of ~1e30 after one Adagrad step: inf - inf in BPR-max
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, step 6: lower learning_rate \(now 1e\+30\)"):
        GRU4Rec(layers=[8], loss="bpr-max", learning_rate=1e30, n_sample=0, batch_size=4).fit(df, progress=False)


# ------------------------------------------------------------------ where the authors' two codes differ
def test_gru_step_by_hand_with_the_reset_gate_before_or_after_the_matmul():
    torch.manual_seed(0)
    h, gi = torch.randn(3, 4), torch.randn(3, 12)  # gi: W x + b of the gates r, z, candidate
    for reset_after in (False, True):
        m = GRU4Rec(layers=[4], n_epochs=1, reset_after=reset_after)
        m.init_weights(10)
        Wrz, Wh = m.W["Wrz0"], m.W["Wh0"]
        r = torch.sigmoid(gi[:, :4] + h @ Wrz[:, :4])
        z = torch.sigmoid(gi[:, 4:8] + h @ Wrz[:, 4:])
        cand = torch.tanh(gi[:, 8:] + (r * (h @ Wh) if reset_after else (r * h) @ Wh))
        assert torch.allclose(m.gru_cell(0, gi, h), (1 - z) * h + z * cand, atol=1e-6)
    zero = torch.zeros(3, 4)  # from a zero state both variants give the same step
    a, b = GRU4Rec(layers=[4], n_epochs=1), GRU4Rec(layers=[4], n_epochs=1, reset_after=True)
    a.init_weights(10)
    b.init_weights(10)
    assert torch.allclose(a.gru_cell(0, gi, zero), b.gru_cell(0, gi, zero))
    assert not torch.allclose(a.gru_cell(0, gi, h), b.gru_cell(0, gi, h), atol=1e-3)


@pytest.mark.parametrize("state", ["dropped", "kept"])
def test_hidden_dropout_and_the_carried_state(state):
    m = GRU4Rec(layers=[50], n_epochs=1, dropout_p_hidden=0.5, dropout_state=state, embedding=8)
    m.init_weights(10)
    gi = torch.randn(4, 150, generator=torch.Generator().manual_seed(1))
    out, new_h = m.hidden_layers(gi, [torch.zeros(4, 50)], train=True)
    h = m.gru_cell(0, gi, torch.zeros(4, 50))  # the undropped step
    dropped = out == 0
    assert 0.3 < dropped.float().mean() < 0.7  # about half of the units dropped
    assert torch.allclose(out[~dropped], 2 * h[~dropped])  # survivors scaled by 1 / (1 - p)
    assert torch.equal(new_h[0], out if state == "dropped" else h)
    out_eval, h_eval = m.hidden_layers(gi, [torch.zeros(4, 50)], train=False)
    assert torch.equal(out_eval, h) and torch.equal(h_eval[0], h)  # no dropout when scoring
    with pytest.raises(ValueError, match="dropout_state must be one of 'kept', 'dropped'"):
        GRU4Rec(dropout_state="sometimes")


def test_logq_counts_only_shifts_the_sampled_columns(planted):
    # log q as counts vs probabilities: targets move by log N, samples by log sum(n ** alpha).
    # With sample_alpha = 1 both shifts are log N, so the softmax and the whole training are unchanged.
    kw = dict(loss="cross-entropy", n_sample=16, logq=1.0, n_epochs=1)
    same = [_fit(planted.train, **kw, sample_alpha=1.0, logq_counts=c).history[0]["loss"] for c in (False, True)]
    assert same[0] == pytest.approx(same[1], rel=1e-5)
    diff = [_fit(planted.train, **kw, sample_alpha=0.5, logq_counts=c).history[0]["loss"] for c in (False, True)]
    assert abs(diff[0] - diff[1]) > 1e-3


# ------------------------------------------------------------------ bad input in the course's words (issue 12)
def test_integer_train_ids_and_string_test_ids_are_named(planted):
    m = _fit(planted.train, n_epochs=1)
    test = planted.test.assign(ItemId=planted.test["ItemId"].astype(str))
    with pytest.raises(ValueError, match="the training ids are numbers but the test ids are strings"):
        evaluate_sessions(m, test)


def test_evaluating_an_untrained_gru4rec_says_so(planted):
    with pytest.raises(ValueError, match="GRU4Rec is not trained yet"):
        evaluate_sessions(GRU4Rec(), planted.test)


@pytest.mark.parametrize("fn", [g.cross_entropy_loss, g.bpr_loss, g.top1_loss, g.bpr_max_loss, g.top1_max_loss])
def test_losses_refuse_wrong_shapes_in_words(fn):
    with pytest.raises(ValueError, match=r"scores must be a \(B, B \+ n_sample\) tensor.*got \(5,\)"):
        fn(torch.zeros(5))
    with pytest.raises(ValueError, match=r"got \(4, 3\)"):  # fewer columns than targets
        fn(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="must be a torch tensor .* got ndarray"):
        fn(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"log_q must have one entry per score column, shape \(5,\); got \(4,\)"):
        g.cross_entropy_loss(torch.zeros(3, 5), torch.zeros(4), 1.0)


def test_score_matrix_memory_guard_in_evaluation(planted, monkeypatch):
    from course_lib import validation
    from course_lib.validation import AllocationTooLarge

    m = _fit(planted.train, n_epochs=1)
    monkeypatch.setattr(validation, "available_memory", lambda: 1000)
    with pytest.raises(AllocationTooLarge, match=r"the \(\d+, 40\) score matrix of a step .* lower batch_size"):
        evaluate_sessions(m, planted.test)


def test_save_load_of_a_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="is not a saved GRU4Rec"):
        GRU4Rec.load(bad)
    torch.save({"a": 1}, tmp_path / "y.pt")
    with pytest.raises(ValueError, match="not a GRU4Rec saved by course_lib"):
        GRU4Rec.load(tmp_path / "y.pt")


def test_layersize_embedding_trains(planted):
    m = _fit(planted.train, n_epochs=1, embedding="layersize")
    assert m.embedding == 24 and tuple(m.W["E"].shape) == (len(m.item_ids), 24)


def test_a_file_saved_before_the_module_refactoring_loads(planted, tmp_path):
    """Files of earlier course versions: plain tensors in "weights", params in the old key order."""
    m = _fit(planted.train, n_epochs=1)
    old_params = {k: m.params[k] for k in ("layers", "loss", "final_act", "n_sample", "sample_alpha", "logq", "bpreg",
                                           "embedding", "constrained_embedding", "dropout_p_embed", "dropout_p_hidden",
                                           "optimizer", "learning_rate", "momentum", "batch_size", "n_epochs",
                                           "sample_store_size", "seed", "reset_after", "dropout_state", "logq_counts")}
    torch.save({"params": old_params, "item_ids": m.item_ids, "popularity": m.popularity,
                "weights": {k: v.detach().clone() for k, v in m.W.items()}, "history": m.history,
                "data_report": m.data_report}, tmp_path / "old.pt")
    old = GRU4Rec.load(tmp_path / "old.pt", device="cpu")
    for model in (m, old):
        model.reset(2)
    assert np.array_equal(m.score_next(np.array([3, 4])), old.score_next(np.array([3, 4])))


# ------------------------------------------------------------------ the training step's hand-written parts
GRU_CASES = [dict(), dict(layers=[6, 5]), dict(embedding=4, dropout_p_embed=0.3, dropout_p_hidden=0.4),
             dict(dropout_p_embed=0.5, dropout_p_hidden=0.3, dropout_state="kept"),
             dict(constrained_embedding=True, layers=[5, 5], dropout_p_hidden=0.2)]


@pytest.mark.parametrize("kw", GRU_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "onehot")
def test_hand_written_gru_backward_matches_autograd(kw):
    # the GRU layers of the training step without autograd (_gru_forward/_gru_backward) against
    # autograd through input_gates + hidden_layers, in float64; the same dropout draws
    kw = {"layers": [5], **kw}
    m = GRU4Rec(device="cpu", **kw)
    m.init_weights(12)
    m.W = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().double()) for k, v in m.W.items()})
    gen = torch.Generator().manual_seed(3)
    x = torch.tensor([1, 4, 4, 7])
    rows = m.input_rows(x).detach().clone()
    hidden = [torch.rand(4, h, generator=gen, dtype=torch.float64) - 0.5 for h in m.layers]
    d_out = torch.randn(4, m.layers[-1], generator=gen, dtype=torch.float64)
    m._generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        out, new_h, saved = g._gru_forward(m, rows, hidden)
        d_rows, grads = g._gru_backward(m, saved, d_out)
    m._generator = torch.Generator().manual_seed(9)
    leaf = rows.clone().requires_grad_()
    ref_out, ref_h = m.hidden_layers(m.input_gates(leaf, True), hidden, True)
    dense = [n for n in m.W if n not in m.row_weights]
    assert sorted(grads) == sorted(dense)
    ref = torch.autograd.grad(ref_out, [leaf] + [m.W[n] for n in dense], d_out)
    assert torch.allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(new_h, ref_h))
    assert torch.allclose(d_rows, ref[0], rtol=1e-10, atol=1e-12)
    for name, want in zip(dense, ref[1:]):
        assert torch.allclose(grads[name], want, rtol=1e-10, atol=1e-12), name
    # and by finite differences of <d_out, out> for one weight, a check independent of autograd
    w, eps = m.W["Wh0"].detach(), 1e-6
    w[1, 2] += eps
    m._generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        up = (g._gru_forward(m, rows, hidden)[0] * d_out).sum()
    w[1, 2] -= 2 * eps
    m._generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        down = (g._gru_forward(m, rows, hidden)[0] * d_out).sum()
    w[1, 2] += eps
    assert float((up - down) / (2 * eps)) == pytest.approx(float(grads["Wh0"][1, 2]), rel=1e-6, abs=1e-9)


def test_hand_written_gru_is_skipped_for_a_replaced_cell_or_reset_after():
    assert g._hand_gru(GRU4Rec(device="cpu"))
    assert not g._hand_gru(GRU4Rec(device="cpu", reset_after=True))

    class Mine(GRU4Rec):
        def gru_cell(self, k, gi, h):
            return GRU4Rec.gru_cell(self, k, gi, h)

    assert not g._hand_gru(Mine(device="cpu"))
    m = GRU4Rec(device="cpu")
    m.hidden_layers = lambda gi0, hidden, train: GRU4Rec.hidden_layers(m, gi0, hidden, train)
    assert not g._hand_gru(m)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("logq", [0.0, 0.7])
@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_grouped_cross_entropy_equals_the_full_matrix(act, logq, scale):
    # targets that repeat: the distinct-column loss and gradient equal the full (B, B) matrix's, its
    # gradient summed over each item's columns
    model = GRU4Rec(final_act=act, loss="cross-entropy", logq=logq, device="cpu")
    gen = torch.Generator().manual_seed(4)
    y = torch.tensor([3, 1, 3, 0, 1, 3, 2])
    uniq, inv = torch.unique(y, return_inverse=True)
    distinct = torch.randn(7, len(uniq), generator=gen, dtype=torch.float64) * scale
    log_q = torch.log(torch.rand(4, generator=gen, dtype=torch.float64) + 0.01)[y]  # one value per item
    loss, grad = g._grouped_loss_and_grad(model, distinct, inv, log_q, 0.6)
    full_loss, full_grad = g._loss_and_grad(model, distinct[:, inv], log_q, 0.6)
    assert loss == pytest.approx(full_loss, rel=1e-10)
    want = torch.zeros_like(distinct).index_add_(1, inv, full_grad)
    assert torch.allclose(grad, want, rtol=1e-9, atol=1e-12)


class _AutogradGRU(GRU4Rec):
    """The library's cell and loss, but not the library's methods: train_step runs autograd through
    the GRU and through the loss of the full (B, B + S) score matrix."""

    def gru_cell(self, k, gi, h):
        return GRU4Rec.gru_cell(self, k, gi, h)

    def loss_function(self, scores, log_q=None):
        return GRU4Rec.loss_function(self, scores, log_q)


@pytest.mark.parametrize("kw", [dict(loss="cross-entropy", n_sample=0, batch_size=64),
                                dict(loss="cross-entropy", n_sample=0, logq=1.0, dropout_p_embed=0.2),
                                dict(loss="bpr-max", n_sample=16, dropout_p_hidden=0.3, layers=[8, 6], momentum=0.3),
                                dict(loss="cross-entropy", embedding=5, n_sample=8, optimizer="adam",
                                     learning_rate=0.01)])
def test_train_step_by_hand_gives_the_autograd_step_numbers(planted, kw):
    # an epoch of the hand-written step (GRU backward, loss gradient, grouped cross-entropy) against
    # the step that runs autograd through the same GRU and loss: the same weights up to float32 rounding
    kw = {"layers": [8], "batch_size": 16, "n_epochs": 1, "learning_rate": 0.1, "seed": 0, "device": "cpu", **kw}
    hand, ref = GRU4Rec(**kw), _AutogradGRU(**kw)
    assert g._hand_gru(hand) and not g._hand_gru(ref) and not g._grouped_loss(ref)
    for m in (hand, ref):
        m.fit(planted.train, progress=False)
    assert hand.history[0]["loss"] == pytest.approx(ref.history[0]["loss"], rel=1e-5)
    for name in hand.W:
        assert torch.allclose(hand.W[name], ref.W[name], rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("logq", [0.0, 0.7])
@pytest.mark.parametrize("scale", [1.0, 300.0, float("inf")])
def test_linear_cross_entropy_output_layer_equals_autograd(logq, scale):
    # the whole output layer of a cross-entropy step without samples (linear final activation):
    # loss, gradient of the distinct target rows of Wy and of the outputs, against autograd through
    # the full (B, B) score matrix; an infinite score goes through the general path (loss inf, NaN grads)
    gen = torch.Generator().manual_seed(6)
    y = torch.tensor([3, 1, 3, 0, 1, 3, 2])
    uniq, inv = torch.unique(y, return_inverse=True)
    out = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    out1 = torch.cat([out, torch.ones(7, 1, dtype=torch.float64)], 1)
    rows = torch.randn(len(uniq), 6, generator=gen, dtype=torch.float64) * (1.0 if np.isinf(scale) else scale)
    if np.isinf(scale):
        rows[1, 0] = scale
    log_q = torch.log(torch.rand(4, generator=gen, dtype=torch.float64) + 0.01)[y]
    loss, g_rows, d_out = g._cross_entropy_output_linear(out1, rows, inv, log_q, logq, 0.6)
    o, r = out1.clone().requires_grad_(), rows.clone().requires_grad_()
    ref = g.cross_entropy_loss(o @ r[inv].T, log_q, logq)
    ref_o, ref_r = torch.autograd.grad(ref * 0.6, [o, r])
    if np.isinf(scale):
        assert not np.isfinite(loss) and not np.isfinite(ref.item())
        return
    assert loss == pytest.approx(ref.item(), rel=1e-10)
    assert torch.allclose(g_rows, ref_r, rtol=1e-9, atol=1e-12)
    assert torch.allclose(d_out, ref_o[:, :-1], rtol=1e-9, atol=1e-12)
