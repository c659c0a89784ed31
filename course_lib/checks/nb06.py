"""Checks for notebook 06 (the Theano track): a symbolic ELU and its gradient, Adagrad as an
update list, the weighted MSE as a graph, a compiled training step, a GRU step in torch's gate
convention and a masked ``scan`` encoder.

Each check builds a small graph around the learner's function, compiles it with the course
defaults (:mod:`course_lib.theano_models.compat`) and compares numbers with a formula or with
PyTorch.
"""
from __future__ import annotations

import numpy as np
import torch

from . import call_learner, numerical_gradient, rel_error, report, run_check


def _is_symbolic(value) -> bool:
    return hasattr(value, "owner") and hasattr(value, "type")


def _not_symbolic(name: str, value) -> bool:
    return report(False, "", f"{name} returned a {type(value).__name__}; it must return a symbolic expression "
                             "built from its inputs with T.* operations (no numpy, no .eval())")


def check_elu(elu_fn) -> bool:
    """``elu_fn(x)`` symbolic: ``x`` for x > 0, ``exp(x) - 1`` otherwise; finite gradient everywhere."""
    from course_lib.theano_models.compat import T, function, theano

    x = T.matrix("x", dtype="float64")
    y = call_learner("elu", elu_fn, x)
    if y is None:
        return False
    if not _is_symbolic(y):
        return _not_symbolic("elu", y)
    f = function([x], [y, theano.grad(y.sum(), x)])
    x0 = np.array([[-2.0, -0.3, 0.0, 0.5, 3.0, 1000.0]])
    value, grad = f(x0)
    want = np.where(x0 > 0, x0, np.expm1(np.minimum(x0, 0)))
    if value.shape != x0.shape:
        return report(False, "", f"the output has shape {value.shape}, expected {x0.shape} (elementwise)")
    if np.allclose(value, np.maximum(x0, 0)):
        return report(False, "", "that is ReLU: for x <= 0 ELU gives exp(x) - 1, not 0")
    if not np.allclose(value[:, :5], want[:, :5], rtol=1e-10):
        return report(False, "", f"expected {np.round(want[0, :5], 4).tolist()} for x = {x0[0, :5].tolist()}, "
                                 f"got {np.round(value[0, :5], 4).tolist()}")
    if not np.all(np.isfinite(grad)):
        return report(False, "", "the gradient is NaN or inf at x = 1000: T.switch evaluates BOTH branches, and "
                                 "exp(1000) overflows in the unused one; take the exponential of T.minimum(x, 0)")
    away = x0[:, [0, 1, 3, 4]]  # finite differences across the kink at 0 are not a fair test
    num = numerical_gradient(lambda v: float(f(v)[0].sum()), away)
    if rel_error(f(away)[1], num) > 1e-6:
        return report(False, "", f"the gradient differs from finite differences (relative error "
                                 f"{rel_error(f(away)[1], num):.2e})")
    return report(True, "ELU matches its formula, and theano.grad gives exp(x) below 0 and 1 above, "
                        "finite even at x = 1000", "")


def check_adagrad(adagrad_fn) -> bool:
    """``adagrad_fn(loss, params, learning_rate, epsilon) -> [(shared, new_value), ...]`` that
    reproduces ``torch.optim.Adagrad`` over three steps."""
    from course_lib.theano_models.compat import T, function, theano

    rng = np.random.default_rng(0)
    w0, a = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))
    w = theano.shared(w0.copy(), name="w")
    x = T.matrix("x", dtype="float64")
    loss = (T.tanh(T.dot(x, w)) ** 2).sum()
    updates = call_learner("adagrad_updates", adagrad_fn, loss, [w], 0.1, 1e-10)
    if updates is None:
        return False
    updates = list(updates.items()) if isinstance(updates, dict) else list(updates)
    if not all(isinstance(u, (tuple, list)) and len(u) == 2 for u in updates):
        return report(False, "", "return a list of (shared_variable, new_value) pairs, one per updated variable")
    targets = [u[0] for u in updates]
    if w not in targets:
        return report(False, "", "no update for the parameter itself: add (p, p - learning_rate * g / "
                                 "(sqrt(acc_new) + epsilon))")
    if len(updates) < 2:
        return report(False, "", "only the parameter is updated: Adagrad also keeps a running sum of squared "
                                 "gradients per parameter (a shared variable of zeros) that needs its own update")
    step = function([x], loss, updates=updates)
    wt = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.Adagrad([wt], lr=0.1)
    for i in range(3):
        lt = (torch.tanh(torch.tensor(a) @ wt) ** 2).sum()
        opt.zero_grad()
        lt.backward()
        opt.step()
        step(a)
        err = rel_error(w.get_value(), wt.detach().numpy())
        if err > 1e-8:
            hint = ("after the first step: divide by sqrt(acc_new) where acc_new = acc + g**2 INCLUDES this "
                    "step's gradient" if i == 0 else
                    f"after step {i + 1} (step 1 was right): is the accumulator itself updated, so the squared "
                    "gradients add up over steps?")
            return report(False, "", f"the weights differ from torch.optim.Adagrad {hint} (relative error {err:.1e})")
    return report(True, "three steps of your update list give exactly torch.optim.Adagrad's weights", "")


def check_weighted_mse(wmse_fn) -> bool:
    """``wmse_fn(scores, targets, alpha)`` symbolic, as in notebook 01."""
    from course_lib.theano_models.compat import T, function

    s, t = T.matrix("s", dtype="float64"), T.matrix("t", dtype="float64")
    value = call_learner("weighted_mse", wmse_fn, s, t, 5.0)
    if value is None:
        return False
    if not _is_symbolic(value):
        return _not_symbolic("weighted_mse", value)
    f = function([s, t], value)
    scores, targets = np.array([[0.5, 0.2, 0.0], [1.0, -1.0, 0.3]]), np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    got = float(f(scores, targets))
    err = (targets - scores) ** 2
    want = float((5.0 * (err * targets).sum(1) + (err * (1 - targets)).sum(1)).mean())
    if np.isclose(got, float(((1 + 4 * targets) * err).mean())):
        return report(False, "", "you averaged over every (paper, user) entry; sum over the users of a paper, "
                                 "then average over the papers")
    if np.isclose(got, float((err * (1 + 4 * (1 - targets))).sum(1).mean())):
        return report(False, "", "alpha weighs the LIKES (targets == 1), not the zeros")
    if not np.isclose(got, want, rtol=1e-10):
        return report(False, "", f"expected {want:.4f} on the hand example, got {got:.4f}")
    return report(True, f"weighted MSE = {want:.4f} on the hand example, as the formula says", "")


def check_training_step(compile_fn) -> bool:
    """``compile_fn(model, alpha, lr) -> step(ids, mask, paper_idx, targets) -> loss`` on a tiny
    hybrid model: five calls must lower the loss and move the parameters."""
    from course_lib.theano_models import hybrid

    rng = np.random.default_rng(0)
    model = hybrid.HybridRecommender(15, 8, None, item_dim=4, user_bias=True, seed=0, dtype="float64")
    model.set_known_papers(np.ones(8, dtype=bool))
    step = call_learner("compile_training_step", compile_fn, model, 10.0, 0.1)
    if step is None:
        return False
    targets = (rng.random((8, 15)) < 0.3).astype(np.float64)
    ids, mask = np.ones((8, 1), dtype=np.int64), np.ones((8, 1))
    before = model.params["item_emb.weight"].get_value().copy()
    losses = []
    if not run_check("step", lambda: losses.extend(float(step(ids, mask, np.arange(8), targets)) for _ in range(5))):
        return False
    if np.array_equal(before, model.params["item_emb.weight"].get_value()):
        return report(False, "", "the item embeddings did not change: pass updates=adagrad_updates(...) to "
                                 "theano.function, with model.params.trainable_vars() as the parameters")
    if not losses[-1] < losses[0]:
        return report(False, "", f"the loss did not fall over five steps ({losses[0]:.3f} -> {losses[-1]:.3f})")
    return report(True, f"five compiled steps lower the loss from {losses[0]:.3f} to {losses[-1]:.3f}", "")


def _torch_gru_reference(x, mask, cell):
    """Run a ``torch.nn.GRUCell`` over ``x`` (B, L, n_in), keeping the state where mask is 0."""
    h = torch.zeros(x.shape[0], cell.hidden_size, dtype=torch.float64)
    out = []
    for t in range(x.shape[1]):
        m = mask[:, t : t + 1]
        h = m * cell(x[:, t], h) + (1 - m) * h
        out.append(h)
    return torch.stack(out, 1)  # (B, L, H)


def check_gru_step(step_fn) -> bool:
    """``step_fn(xp_t, m_t, h_prev, W_hh, b_hh)``: torch's GRU step with a mask (see the notebook)."""
    from course_lib.theano_models.compat import T, function

    torch.manual_seed(0)
    B, n_in, H = 4, 3, 5
    cell = torch.nn.GRUCell(n_in, H).double()
    x, h0 = torch.randn(B, n_in, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    m = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    xp_v = (x @ cell.weight_ih.T + cell.bias_ih).detach().numpy()
    xp, mt, h = T.matrix("xp", dtype="float64"), T.vector("m", dtype="float64"), T.matrix("h", dtype="float64")
    W_hh, b_hh = T.matrix("W_hh", dtype="float64"), T.vector("b_hh", dtype="float64")
    out = call_learner("gru_step", step_fn, xp, mt, h, W_hh, b_hh)
    if out is None:
        return False
    if not _is_symbolic(out):
        return _not_symbolic("gru_step", out)
    got = function([xp, mt, h, W_hh, b_hh], out)(xp_v, m.numpy(), h0.numpy(), cell.weight_hh.detach().numpy(),
                                                  cell.bias_hh.detach().numpy())
    want = (m[:, None] * cell(x, h0) + (1 - m[:, None]) * h0).detach().numpy()
    if got.shape != want.shape:
        return report(False, "", f"the new state has shape {got.shape}, expected {want.shape} (batch, H)")
    if np.allclose(got[2], want[2]) and not np.allclose(got[[0, 1, 3]], want[[0, 1, 3]]):
        # try the classic Theano convention to give a precise hint
        return report(False, "", "the masked row is right but the others differ: the reset gate must multiply "
                                 "(W_hn h + b_hn), i.e. hp[:, 2H:], and h' = (1 - z) * n + z * h_prev; gates are "
                                 "stacked [r, z, n]")
    if not np.allclose(got[2], want[2]):
        return report(False, "", "row 2 has mask 0: its state must stay h_prev (m * h_new + (1 - m) * h_prev)")
    if rel_error(got, want) > 1e-8:
        return report(False, "", f"the state differs from torch.nn.GRUCell (relative error {rel_error(got, want):.1e})")
    return report(True, "your step equals torch.nn.GRUCell on every unmasked row and keeps the masked one", "")


def check_scan_encoder(encode_fn) -> bool:
    """``encode_fn(x, mask, W_ih, W_hh, b_ih, b_hh) -> (B, H)``: a ``scan`` GRU over (B, L, n_in)
    inputs, mean-pooled over the real positions; padding must not change the result."""
    from course_lib.theano_models.compat import T, function

    torch.manual_seed(1)
    B, L, n_in, H = 3, 6, 4, 5
    cell = torch.nn.GRUCell(n_in, H).double()
    x = torch.randn(B, L, n_in, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    mask = (torch.arange(L)[None] < lengths[:, None]).double()
    hs = _torch_gru_reference(x, mask, cell)
    want = ((hs * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)).detach().numpy()
    xs, ms = T.tensor3("x", dtype="float64"), T.matrix("mask", dtype="float64")
    W = [T.matrix("W_ih", dtype="float64"), T.matrix("W_hh", dtype="float64"), T.vector("b_ih", dtype="float64"),
         T.vector("b_hh", dtype="float64")]
    out = call_learner("gru_encode", encode_fn, xs, ms, *W)
    if out is None:
        return False
    if not _is_symbolic(out):
        return _not_symbolic("gru_encode", out)
    f = function([xs, ms, *W], out)
    weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    weights = [w.detach().numpy() for w in weights]
    got = f(x.numpy(), mask.numpy(), *weights)
    if got.shape != want.shape:
        return report(False, "", f"the encoding has shape {got.shape}, expected {want.shape} (batch, H): "
                                 "scan runs over time, so feed x.dimshuffle(1, 0, 2) and pool over time")
    plain_mean = (hs.mean(1)).detach().numpy()
    if np.allclose(got, plain_mean):
        return report(False, "", "you averaged over ALL positions; divide the masked sum by the number of real "
                                 "tokens")
    if rel_error(got, want) > 1e-8:
        return report(False, "", f"the encoding differs from a GRU run with the same weights (relative error "
                                 f"{rel_error(got, want):.1e}); is the mask passed to the step as a sequence?")
    padded = f(np.pad(x.numpy(), ((0, 0), (0, 3), (0, 0))), np.pad(mask.numpy(), ((0, 0), (0, 3))), *weights)
    if not np.allclose(padded, got, atol=1e-12):
        return report(False, "", "three extra padding positions changed the encoding: padded steps must keep the "
                                 "state and be left out of the mean")
    return report(True, "your scan encoder equals a torch GRU with the same weights, and padding changes nothing", "")


def check_beats(results: dict, model: str, baseline: str, metric: str = "cold R@50") -> bool:
    """``results[name][metric]``: the trained Theano model must beat the baseline."""
    if model not in results or baseline not in results:
        return report(False, "", f"results needs the rows {model!r} and {baseline!r}; it has {sorted(results)}")
    got, base = results[model][metric], results[baseline][metric]
    return report(got > base, f"{model} beats {baseline} on {metric}",
                  f"{model} ({got:.3f}) does not beat {baseline} ({base:.3f}) on {metric}: train longer, check the "
                  "learning curve, or lower the learning rate")
