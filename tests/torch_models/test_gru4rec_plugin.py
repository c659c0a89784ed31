"""The training loop runs a learner's own step: a hand-written plain step (full tables,
``loss.backward()``, ``optimizer.step(rows)``) gives the library's numbers for the same seed, and a
learner's own GRU cell (a subclass) or torch optimiser trains to a useful Recall."""
import inspect

import numpy as np

import pytest
import torch

from course_lib.data import load_sessions
from course_lib.evaluation import evaluate_sessions
from course_lib.session_baselines import Pop
from course_lib.torch_models import gru4rec as g


def plain_step(model, batch, hidden, optimizer):
    """The step a learner writes: reset, forward, sampled scores, loss, backward, update."""
    if batch.reset is not None:
        hidden = [h.masked_fill(batch.reset, 0.0) for h in hidden]
    cols = batch.y if batch.sample is None else torch.cat([batch.y, batch.sample])
    out, new_hidden = model(batch.x, hidden)
    loss = model.loss_function(model.score_items(out, cols), batch.log_q)
    (loss * batch.weight).backward()
    optimizer.step(model.rows_used(batch.x, cols))
    return loss, new_hidden


@pytest.fixture(scope="module")
def tiny():
    return load_sessions("tiny")


@pytest.mark.parametrize("kw", [
    dict(loss="bpr-max", final_act="elu-0.5", n_sample=32, momentum=0.3),
    dict(loss="cross-entropy", constrained_embedding=True, n_sample=32, logq=1.0, dropout_p_hidden=0.2, momentum=0.2),
    dict(loss="top1", embedding=8, dropout_p_embed=0.1, n_sample=0, optimizer="adam", learning_rate=0.01),
    # most rows of Wy used every step: the library updates them with a mask instead of gathers
    dict(loss="bpr-max", final_act="elu-0.5", n_sample=1024, sample_alpha=0.0, momentum=0.3),
    dict(loss="cross-entropy", constrained_embedding=True, n_sample=1024, optimizer="adam", learning_rate=0.01),
])
def test_a_hand_written_step_gives_the_library_numbers(tiny, kw):
    kw = dict(layers=[16], batch_size=32, n_epochs=1, seed=0, device="cpu", **kw)
    # the library differentiates the output layer by hand, the plain step by autograd: the same
    # numbers up to float rounding, which is tight after a few steps ...
    ref, mine = (_first_steps(g.GRU4Rec(**kw), tiny.train, step, 3) for step in (g.train_step, plain_step))
    for name in ref:
        assert torch.allclose(mine[name], ref[name], rtol=1e-6, atol=1e-7), name
    # ... and grows over an epoch of training: adagrad's first step on a row, g / sqrt(g^2 + eps), magnifies
    # a difference in a small g up to 1 / sqrt(eps) times (measured: 4e-4 in Wy, 3e-5 in the loss). The
    # hand-written score gradient is as close to a float64 autograd as float32 autograd is
    # (test_gru4rec.py checks it against autograd on its own).
    ref = g.GRU4Rec(**kw).fit(tiny.train, progress=False)
    mine = g.GRU4Rec(**kw).fit(tiny.train, progress=False, step_fn=plain_step)
    assert mine.history[0]["loss"] == pytest.approx(ref.history[0]["loss"], rel=1e-4)
    for name in ref.W:
        assert torch.allclose(mine.W[name], ref.W[name], rtol=1e-3, atol=1e-3), name


class _Stop(Exception):
    pass


def _first_steps(model, train, step_fn, n):
    """The weights after ``n`` training steps of ``step_fn``."""
    done = []

    def step(model, batch, hidden, optimizer):
        if len(done) == n:
            raise _Stop
        done.append(1)
        return step_fn(model, batch, hidden, optimizer)

    with pytest.raises(_Stop):
        model.fit(train, progress=False, step_fn=step)
    return {name: w.detach().clone() for name, w in model.W.items()}


class MyGRU4Rec(g.GRU4Rec):
    """A learner's own GRU cell: the same equations written out gate by gate."""

    def gru_cell(self, k, gi, h):
        n = h.shape[1]
        Wr, Wz = self.W[f"Wrz{k}"][:, :n], self.W[f"Wrz{k}"][:, n:]
        r = torch.sigmoid(gi[:, :n] + h @ Wr)
        z = torch.sigmoid(gi[:, n:2 * n] + h @ Wz)
        cand = torch.tanh(gi[:, 2 * n:] + (r * h) @ self.W[f"Wh{k}"])
        return (1 - z) * h + z * cand


def test_a_learner_cell_and_torch_optimizer_train_beside_the_reference(tiny):
    kw = dict(layers=[32], loss="cross-entropy", n_sample=64, batch_size=32, n_epochs=2, seed=0, device="cpu",
              learning_rate=0.1)
    ref = g.GRU4Rec(**kw).fit(tiny.train, progress=False)
    mine = MyGRU4Rec(**kw).fit(tiny.train, progress=False, step_fn=plain_step,
                               make_optimizer=lambda m: _TorchAdagrad(m.parameters(), lr=0.1))
    pop = evaluate_sessions(Pop().fit(tiny.train), tiny.test, cutoffs=(20,))["Recall@20"]
    r_ref = evaluate_sessions(ref, tiny.test, cutoffs=(20,))["Recall@20"]
    r_mine = evaluate_sessions(mine, tiny.test, cutoffs=(20,))["Recall@20"]
    assert r_ref > pop + 0.2 and r_mine > pop + 0.2, (pop, r_ref, r_mine)
    assert abs(r_mine - r_ref) < 0.1


class _TorchAdagrad(torch.optim.Adagrad):
    """torch's Adagrad with the RowOptimizer calling convention of plain_step."""

    def step(self, rows=None):
        super().step()
        self.zero_grad()


def test_forward_zeroes_the_reset_slots_and_scoring_runs_a_subclass_forward(tiny):
    model = g.GRU4Rec(layers=[8], n_sample=0, n_epochs=1, batch_size=16, seed=0, device="cpu").fit(tiny.train,
                                                                                                  progress=False)
    x, h = torch.tensor([0, 1, 2]), [torch.randn(3, 8, generator=torch.Generator().manual_seed(0))]
    reset = torch.tensor([[True], [False], [True]])
    out, _ = model(x, h, reset)
    fresh, _ = model(x, [h[0].masked_fill(reset, 0.0)])
    assert torch.equal(out, fresh) and not torch.equal(out, model(x, h)[0])

    class Forgetful(g.GRU4Rec):
        """Every click starts from a zero state: scoring must see it."""

        def forward(self, x, hidden, reset=None):
            return super().forward(x, [torch.zeros_like(t) for t in hidden])

    forgetful = Forgetful(layers=[8], n_sample=0, device="cpu")
    forgetful.item_ids = model.item_ids
    forgetful.load_weights(model.W, strict=False)
    forgetful.train()  # scoring switches dropout off by itself, and restores the mode
    a, b = (evaluate_sessions(m, tiny.test, cutoffs=(20,))["Recall@20"] for m in (model, forgetful))
    assert a != b and forgetful.training
    model.reset(1)
    forgetful.reset(1)
    first = np.array([3])  # the first click of a session reads a zero state in both
    np.testing.assert_allclose(model.score_next(first), forgetful.score_next(first), rtol=1e-6)


def test_a_step_function_that_is_not_callable_is_refused(tiny):
    with pytest.raises(ValueError, match=r"step_fn must be a function \(model, batch, hidden, optimizer\)"):
        g.GRU4Rec(layers=[4], n_epochs=1).fit(tiny.train, progress=False, step_fn="mine")


def _kind(annotation) -> str:
    """A return annotation with the track's array type named alike (a symbolic Theano result and a
    torch tensor are both "array")."""
    text = "array" if annotation is inspect.Signature.empty else str(annotation)
    for a in ("torch.Tensor", "np.ndarray"):
        text = text.replace(a, "array")
    return text


def test_public_names_match_the_theano_track():
    from course_lib.theano_models import gru4rec as tg

    assert g.__all__ == tg.__all__
    for mod in (g, tg):  # everything public that the module defines is listed, in the same order
        defined = [n for n, o in vars(mod).items() if not n.startswith("_") and getattr(o, "__module__", None) == mod.__name__]
        assert defined == [n for n in mod.__all__ if n in defined]
    for name in g.__all__:
        a, b = getattr(g, name), getattr(tg, name)
        assert type(a) is type(b), name
        if inspect.isfunction(a):
            assert _kind(inspect.signature(a).return_annotation) == _kind(inspect.signature(b).return_annotation), name
    public = lambda cls: [n for n in vars(cls) if not n.startswith("_")]  # noqa: E731
    # the same methods in the same order; only the PyTorch model ranks on its device
    assert [n for n in public(g.GRU4Rec) if n != "rank_next"] == public(tg.GRU4Rec)
