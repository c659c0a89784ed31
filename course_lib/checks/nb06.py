"""Checks for notebook 06 (the Theano track): a symbolic ELU and its gradient, Adagrad as an
update list, the weighted MSE as a graph, a compiled training step (and the hybrid it trains,
beside the library's run), a GRU step in torch's gate convention and a masked ``scan`` encoder.

Each check builds a small graph around the learner's function, compiles it with the course
defaults (:mod:`course_lib.theano_models.compat`) and compares numbers with a formula written in
numpy here. No torch: notebook 06 also runs in the Theano 1.0.5 environment, which has none; the
meta-tests show that these formulas are what ``torch.optim.Adagrad`` and ``torch.nn.GRUCell``
compute.
"""
from __future__ import annotations

import numpy as np

from . import (Fail, Mistake, as_array, as_scalar, as_symbolic, call, check, check_beats, close, compile_symbolic,
               describe, diagnose, numerical_gradient, passed, rel_error, weighted_mse_mistakes,
               weighted_mse_reference)

__all__ = ["check_adagrad", "check_beats", "check_elu", "check_gru_step", "check_same_training", "check_scan_encoder",
           "check_training_step", "check_weighted_mse"]


@check("elu", expects="a symbolic expression: x for x > 0, exp(x) - 1 otherwise, elementwise")
def check_elu(elu_fn):
    """``elu_fn(x)`` symbolic: ``x`` for x > 0, ``exp(x) - 1`` otherwise; finite gradient everywhere."""
    from course_lib.theano_models.compat import T, theano  # noqa: PLC0415

    x = T.matrix("x", dtype="float64")
    y = as_symbolic("elu", call("elu", elu_fn, x))
    if y.ndim != 2:
        raise Fail(f"elu returned a {y.ndim}-d expression for a matrix: ELU acts elementwise, so the output has the "
                   "shape of x (no sum or mean)")
    f = compile_symbolic("elu", [x], [y, theano.grad(y.sum(), x)])
    x0 = np.array([[-2.0, -0.3, 0.0, 0.5, 3.0, 1000.0]])
    value, grad = f(x0)
    value = as_array("elu", value, shape=x0.shape, what="elementwise values, the shape of x")
    head = x0[:, :5]
    want = np.where(head > 0, head, np.expm1(np.minimum(head, 0)))
    if not close(value[:, :5], want, rtol=1e-10):
        raise diagnose(value[:, :5], [
            Mistake("that is ReLU: for x <= 0 ELU gives exp(x) - 1, not 0", np.maximum(head, 0)),
            Mistake("below 0 ELU is exp(x) - 1: the - 1 is missing (it makes ELU continuous at 0)",
                    np.where(head > 0, head, np.exp(np.minimum(head, 0)))),
            Mistake("the branches are swapped: x above 0, exp(x) - 1 below", np.where(head > 0, np.expm1(head), head)),
            Mistake("the condition is reversed: keep x where x > 0", np.where(head < 0, head, np.expm1(head))),
        ], f"expected {np.round(want[0], 4).tolist()} for x = {head[0].tolist()}, got {np.round(value[0, :5], 4).tolist()}",
            rtol=1e-10)
    if not np.all(np.isfinite(grad)):
        raise Fail("the gradient is NaN or inf at x = 1000: T.switch evaluates BOTH branches, and exp(1000) "
                   "overflows in the unused one; exponentiate only values that cannot be large")
    away = x0[:, [0, 1, 3, 4]]  # finite differences across the kink at 0 are not a fair test
    num = numerical_gradient(lambda v: float(f(v)[0].sum()), away)
    if rel_error(f(away)[1], num) > 1e-6:
        raise Fail(f"the gradient differs from finite differences (relative error {rel_error(f(away)[1], num):.2e})")
    return passed("ELU matches its formula, and theano.grad gives exp(x) below 0 and 1 above, finite even at x = 1000")


def _tanh_loss_grad(a, w):
    """loss = sum(tanh(a w)^2) and its gradient with respect to w."""
    t = np.tanh(a @ w)
    return float((t ** 2).sum()), a.T @ (2 * t * (1 - t ** 2))


def _adagrad_path(a, w0, lr, eps, steps=3, *, eps_in_sqrt=False, old_acc=False, keep_acc=False, acc_of_g=False,
                  sign=-1.0, no_eps=False):
    """Weights after each of ``steps`` Adagrad steps (torch.optim.Adagrad's formula), or with one mistake."""
    w, acc, path = w0.copy(), np.zeros_like(w0), []
    for _ in range(steps):
        g = _tanh_loss_grad(a, w)[1]
        new = acc + (g if acc_of_g else g ** 2)
        used = acc if old_acc else new
        denominator = np.sqrt(used + eps) if eps_in_sqrt else np.sqrt(used) + (0.0 if no_eps else eps)
        w = w + sign * lr * g / denominator
        if not keep_acc:
            acc = new
        path.append(w.copy())
    return np.stack(path)


def _adagrad_mistakes(a, w0, lr, eps):
    path = lambda **kw: lambda: _adagrad_path(a, w0, lr, eps, **kw)  # noqa: E731
    return [
        Mistake("the parameter's step must use the accumulator that already INCLUDES this step's squared gradient "
                "(both updates are computed from the values before the call)", path(old_acc=True)),
        Mistake("step 1 is right but later steps are not: the accumulator must itself be updated, so that the "
                "squared gradients add up over the steps", path(keep_acc=True)),
        Mistake("the accumulator sums the SQUARED gradients", path(acc_of_g=True)),
        Mistake("epsilon goes outside the square root: it is added to the root of the accumulator, not under it",
                path(eps_in_sqrt=True)),
        Mistake("epsilon is missing from the denominator (it keeps the step finite where the accumulator is 0)",
                path(no_eps=True)),
        Mistake("the update climbs the loss: subtract the step, p - learning_rate * ...", path(sign=1.0)),
    ]


def _update_pairs(name: str, updates) -> list:
    if isinstance(updates, dict):
        updates = list(updates.items())
    if not isinstance(updates, (list, tuple)) or not all(isinstance(u, (tuple, list)) and len(u) == 2 for u in updates):
        raise Fail(f"{name} must return a list of (shared_variable, new_value) pairs, one per updated variable; got "
                   f"{describe(updates)}")
    if not all(hasattr(u[0], "get_value") for u in updates):
        raise Fail("the first item of each pair must be the shared variable to update (a parameter or an "
                   "accumulator made with theano.shared), the second its new symbolic value")
    return list(updates)


@check("adagrad_updates", expects="a list of (shared_variable, new_value) pairs: the accumulator and the parameter "
                                  "updates of Adagrad for every parameter")
def check_adagrad(adagrad_fn):
    """``adagrad_fn(loss, params, learning_rate, epsilon) -> [(shared, new_value), ...]`` that
    reproduces ``torch.optim.Adagrad`` over three steps, with a small and with a large epsilon."""
    from course_lib.theano_models.compat import T, theano  # noqa: PLC0415

    rng = np.random.default_rng(0)
    w0, a = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))
    # epsilon 0.1 is large enough that where it goes shows in the weights; a second learning rate
    # shows a constant written in place of the argument
    for lr, eps in ((0.1, 1e-10), (0.05, 0.1)):
        w = theano.shared(w0.copy(), name="w")
        x = T.matrix("x", dtype="float64")
        loss = (T.tanh(T.dot(x, w)) ** 2).sum()
        updates = _update_pairs("adagrad_updates", call("adagrad_updates", adagrad_fn, loss, [w], lr, eps))
        if w not in [u[0] for u in updates]:
            raise Fail("no update for the parameter itself: add the pair (p, its new value)")
        if len(updates) < 2:
            raise Fail("only the parameter is updated: Adagrad also keeps a running sum of squared gradients per "
                       "parameter (a shared variable of zeros) that needs its own update")
        step = compile_symbolic("adagrad_updates", [x], loss, updates=updates)
        got = []
        for _ in range(3):
            call("the compiled step", step, a)
            got.append(w.get_value().copy())
        got, want = np.stack(got), _adagrad_path(a, w0, lr, eps)
        # 1e-6: a constant written as a Python float becomes float32 in the graph (floatX), 1e-8 off
        if not close(got, want, rtol=1e-6, atol=1e-9):
            k = int(np.flatnonzero([not close(g, v, rtol=1e-6, atol=1e-9) for g, v in zip(got, want)])[0])
            fallback = (f"the weights differ from torch.optim.Adagrad after step {k + 1} with learning_rate={lr}, "
                        f"epsilon={eps} (relative error {rel_error(got[k], want[k]):.1e})")
            mistakes = _adagrad_mistakes(a, w0, lr, eps)
            if eps != 1e-10:  # the second run: arguments written as constants come first
                mistakes[:0] = [
                    Mistake("with learning_rate=0.05, epsilon=0.1 the weights are those of 0.1 and 1e-10: use the "
                            "arguments, not constants", _adagrad_path(a, w0, 0.1, 1e-10)),
                    Mistake("epsilon=0.1 is not used: add the epsilon argument to the root of the accumulator",
                            _adagrad_path(a, w0, lr, 1e-10)),
                    Mistake("learning_rate=0.05 is not used: take the learning_rate argument",
                            _adagrad_path(a, w0, 0.1, eps)),
                ]
            raise diagnose(got, mistakes, fallback, rtol=1e-6, atol=1e-9)
    return passed("three steps of your update list give exactly torch.optim.Adagrad's weights")


@check("weighted_mse", expects="a symbolic scalar: the mean over the papers of the weighted squared errors summed "
                               "over the users")
def check_weighted_mse(wmse_fn):
    """``wmse_fn(scores, targets, alpha)`` symbolic, as in notebook 01."""
    from course_lib.theano_models.compat import T  # noqa: PLC0415

    s, t = T.matrix("s", dtype="float64"), T.matrix("t", dtype="float64")
    value = as_symbolic("weighted_mse", call("weighted_mse", wmse_fn, s, t, 5.0))
    f = compile_symbolic("weighted_mse", [s, t], value)
    scores, targets = np.array([[0.5, 0.2, 0.0], [1.0, -1.0, 0.3]]), np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    got = as_scalar("weighted_mse", f(scores, targets), what="one number (a symbolic scalar)",
                    shape_hints={(2,): "you returned one loss per paper: average them over the papers",
                                 (3,): "sum over the users of a paper (axis=1), then average over the papers",
                                 (2, 3): "sum the weighted errors over the users of a paper, average over the papers"})
    want = weighted_mse_reference(scores, targets, 5.0)
    if not np.isclose(got, want, rtol=1e-10):
        raise diagnose(got, weighted_mse_mistakes(scores, targets, 5.0),
f"expected {want:.4f} on the hand example, got {got:.4f}", rtol=1e-10)
    other = as_scalar("weighted_mse", compile_symbolic("weighted_mse", [s, t], as_symbolic(
        "weighted_mse", call("weighted_mse", wmse_fn, s, t, 2.0)))(scores, targets))
    if not np.isclose(other, weighted_mse_reference(scores, targets, 2.0), rtol=1e-10):
        raise Fail("with alpha=2 the loss is wrong although alpha=5 was right: use the alpha argument, not a constant")
    return passed(f"weighted MSE = {want:.4f} on the hand example, as the formula says")


def _reference(model):
    """Compiled ``(ids, mask, paper_idx, targets, alpha) -> [loss, *grads]`` of the weighted MSE of
    the model's scores with dropout off, at the current parameter values."""
    from course_lib.theano_models.compat import T, function, theano  # noqa: PLC0415

    targets = T.matrix("targets", dtype=model.dtype)
    alpha = T.scalar("alpha", dtype=model.dtype)
    s = model.scores(train=False)
    loss = ((1 + (alpha - 1) * targets) * (targets - s) ** 2).sum(axis=1).mean()
    params = model.params.trainable_vars()
    return function(model.inputs() + [targets, alpha], [loss] + theano.grad(loss, params))


def _values(params) -> list[np.ndarray]:
    return [p.get_value().copy() for p in params]


def _stepper(step, inputs):
    if not callable(step):
        raise Fail(f"compile_training_step must return the compiled function, got {describe(step)}")

    def run():
        return as_scalar("step", call("step", step, *inputs), what="the loss (one number)")
    return run


@check("compile_training_step", expects="a compiled function step(ids, mask, paper_idx, targets) -> loss that does "
                                        "one Adagrad update with dropout on")
def check_training_step(compile_fn):
    """``compile_fn(model, alpha, lr) -> step(ids, mask, paper_idx, targets) -> loss`` on a tiny
    hybrid model: one Adagrad update of every trainable parameter per call (checked against the
    formula over two calls), five calls lower the loss, alpha is the argument, and dropout is on,
    with fresh masks at every call."""
    from course_lib.theano_models import hybrid  # noqa: PLC0415

    rng = np.random.default_rng(0)
    model = hybrid.HybridRecommender(15, 8, None, item_dim=4, user_bias=True, seed=0, dtype="float64")
    model.set_known_papers(np.ones(8, dtype=bool))
    targets = (rng.random((8, 15)) < 0.3).astype(np.float64)
    inputs = (np.ones((8, 1), dtype=np.int64), np.ones((8, 1)), np.arange(8), targets)
    params = model.params.trainable_vars()
    names = [p.name for p in params]
    ref = _reference(model)
    run = _stepper(call("compile_training_step", compile_fn, model, 10.0, 0.1), inputs)
    p0, (loss0, *g1), (no_alpha, *_) = _values(params), ref(*inputs, 10.0), ref(*inputs, 1.0)
    first = run()
    p1, (_, *g2) = _values(params), ref(*inputs, 10.0)
    if not np.isclose(first, loss0, rtol=1e-6):
        raise diagnose(first, [
            Mistake("the returned loss does not weigh the likes by alpha: use your weighted_mse with the alpha "
                    "argument", no_alpha),
            Mistake("the returned loss averages over every (paper, user) entry: use your weighted_mse",
                    loss0 / targets.shape[1]),
        ], f"the step returned {first:.4f}, but the weighted MSE before the update is {loss0:.4f}: return your "
           "weighted_mse of the model's scores", rtol=1e-6)
    moved = [n for n, a, b in zip(names, p0, p1) if not np.array_equal(a, b)]
    if not moved:
        raise Fail("the parameters did not change: the compiled function must carry the Adagrad update list")
    still = [n for n, a, b, g in zip(names, p0, p1, g1) if np.array_equal(a, b) and np.any(np.abs(g) > 1e-9)]
    if still:
        raise Fail(f"some parameters were not updated ({', '.join(still)}): update every trainable parameter of the "
                   "model")
    sgd = [a - 0.1 * g for a, g in zip(p0, g1)]
    ada1 = [a - 0.1 * g / (np.sqrt(g ** 2) + 1e-10) for a, g in zip(p0, g1)]
    if not _all_close(p1, ada1):
        raise diagnose(p1, [
            Mistake("the update is plain gradient descent; the exercise asks for Adagrad (your update list of "
                    "Exercise 2)", when=lambda v: _all_close(v, sgd)),
            Mistake("the update climbs the loss: the parameters moved along the gradient",
                    when=lambda v: _all_close(v, [2 * a - b for a, b in zip(p0, ada1)])),
            Mistake("the step size is not the lr argument (0.1)", when=lambda v: _proportional(v, p0, ada1)),
        ], "the first update differs from Adagrad's p - lr * g / (sqrt(g^2) + eps) for the gradient of your loss")
    second = run()
    p2 = _values(params)
    ada2 = [a - 0.1 * g / (np.sqrt(h ** 2 + g ** 2) + 1e-10) for a, h, g in zip(p1, g1, g2)]
    if not _all_close(p2, ada2):
        raise Fail("the first update was Adagrad's but the second is not: the accumulators must persist between "
                   "calls (shared variables, updated by the function), so that the squared gradients add up")
    losses = [first, second] + [run() for _ in range(3)]
    if not losses[-1] < losses[0]:
        raise Fail(f"the loss did not fall over five steps ({losses[0]:.3f} -> {losses[-1]:.3f})")
    _check_alpha_and_dropout(compile_fn, model, ref, inputs)
    return passed(f"five compiled steps lower the loss from {losses[0]:.3f} to {losses[-1]:.3f}")


def _all_close(a: list, b: list) -> bool:
    # parameters of size ~0.1; a learning rate written as a Python float is float32 in the graph
    return len(a) == len(b) and all(close(x, y, rtol=1e-6, atol=1e-7) for x, y in zip(a, b))


def _proportional(got: list, start: list, want: list) -> bool:
    """The update points like Adagrad's but with another step size."""
    moved = np.concatenate([(g - s).ravel() for g, s in zip(got, start)])
    expected = np.concatenate([(w - s).ravel() for w, s in zip(want, start)])
    ratio = moved[np.abs(expected) > 1e-6] / expected[np.abs(expected) > 1e-6]
    return ratio.size > 0 and np.allclose(ratio, ratio[0], rtol=1e-4) and not np.isclose(ratio[0], 1.0)


def _first_dropout_loss(model, inputs) -> float:
    """The weighted MSE (alpha 10) with the dropout masks that the library's step draws at its first
    call: a random stream seeded with ``model.seed``, the model's scores in training mode."""
    from course_lib.theano_models.compat import RandomStream, T, function  # noqa: PLC0415

    targets = T.matrix("targets", dtype=model.dtype)
    s = model.scores(train=True, stream=RandomStream(model.seed))
    loss = ((1 + 9 * targets) * (targets - s) ** 2).sum(axis=1).mean()
    return float(function(model.inputs() + [targets], loss)(*inputs))


def _check_alpha_and_dropout(compile_fn, model, ref, inputs) -> None:
    """alpha must be the argument; on a model with dropout (lr = 0, so nothing moves) the loss must
    not be the dropout-free one, on PyTensor two calls must draw different masks, and the first
    call must draw the masks of a stream seeded with the model's seed (as the library's step)."""
    from course_lib.theano_models import compat, hybrid  # noqa: PLC0415

    want = float(ref(*inputs, 3.0)[0])
    got = _stepper(call("compile_training_step", compile_fn, model, 3.0, 0.1), inputs)()
    if not np.isclose(got, want, rtol=1e-6):
        raise Fail(f"with alpha=3 the step returned {got:.4f} instead of {want:.4f} (alpha=10 was right): use the "
                   "alpha argument, not a constant")
    # seed 5, not 0: a stream seeded with a constant (the notebook's SEED = 0) draws other masks here
    dropped = hybrid.HybridRecommender(15, 8, None, item_dim=4, seed=5, dtype="float64", dropout_user=0.5,
                                       dropout_item=0.5)
    dropped.set_known_papers(np.ones(8, dtype=bool))
    params = dropped.params.trainable_vars()
    before = _values(params)
    for p, v in zip(model.params.trainable_vars(), before):  # the same weights: the same dropout-free loss
        p.set_value(v)
    no_dropout = float(ref(*inputs, 10.0)[0])
    run = _stepper(call("compile_training_step", compile_fn, dropped, 10.0, 0.0), inputs)
    first, second = run(), run()
    if not _all_close(_values(params), before):
        raise Fail("with lr=0 the parameters still moved: use the lr argument, not a constant")
    if np.isclose(first, no_dropout, rtol=1e-9):
        raise Fail("on a model with dropout your step's loss is the loss without dropout: the exercise trains with "
                   "dropout on (the model's scores in training mode, with a random stream)")
    if compat.BACKEND == "pytensor" and np.isclose(first, second, rtol=1e-12):
        raise Fail("two calls drew the same dropout masks: the random stream's state updates must go into the "
                   "function's updates too, so that every call draws fresh masks")
    if not np.isclose(first, _first_dropout_loss(dropped, inputs), rtol=1e-9):
        raise Fail("your step draws other dropout masks than the library's step: seed the random stream with the "
                   "model's own seed (model.seed), so that your run and the library's can be compared number for "
                   "number")


def _history(name: str, history) -> tuple[np.ndarray, np.ndarray, int]:
    """The losses, validation Recall@50 per epoch and best epoch of a ``train_hybrid`` history."""
    if not isinstance(history, dict):
        raise Fail(f"{name} must be the dict that th.train_hybrid returns, got {describe(history)}")
    missing = [k for k in ("loss", "valid_Recall@50", "best_epoch") if k not in history]
    if missing:
        raise Fail(f"{name} has no {missing}: pass the history th.train_hybrid returned for a run with validation "
                   "likes (valid_likes=proto.valid)")
    loss = as_array(f"{name}['loss']", history["loss"], what="one loss per epoch", returned=False).ravel()
    recall = as_array(f"{name}['valid_Recall@50']", history["valid_Recall@50"], what="one recall per epoch",
                      returned=False).ravel()
    best = as_array(f"{name}['best_epoch']", history["best_epoch"], what="the best epoch", returned=False).ravel()
    if loss.size == 0 or recall.size != loss.size or best.size != 1:
        raise Fail(f"{name} is not a finished run: it needs one loss and one validation recall per epoch and one "
                   "best epoch")
    return loss, recall, int(best[0])


@check("the two training runs", expects="two histories returned by th.train_hybrid: your step's run, then the "
                                         "library's, on the same model settings, data and seed")
def check_same_training(yours, library, rtol: float = 1e-3):
    """Your compiled step trained the hybrid as the library's step does: per epoch the same loss (to
    ``rtol``, float32 rounds differently on other machines) and validation Recall@50 (to 1e-3), and
    the same best epoch. Each history is the dict returned by ``th.train_hybrid``."""
    loss_y, rec_y, best_y = _history("your history", yours)
    loss_l, rec_l, best_l = _history("the library's history", library)
    if not np.all(np.isfinite(loss_y)):
        raise Fail("your run's loss became NaN or infinite: lower the learning rate, or check the step on its own "
                   "(Exercise 4's check)")
    n = min(loss_y.size, loss_l.size)
    same = (loss_y.size == loss_l.size and best_y == best_l and np.allclose(loss_y, loss_l, rtol=rtol, atol=0)
            and np.allclose(rec_y, rec_l, rtol=0, atol=1e-3))
    if same:
        # no epoch count in the line: nbval compares it, and early stopping may end elsewhere on another machine
        return passed("your step trained the hybrid as the library's did: the same loss and validation Recall@50 at "
                      "every epoch, and the same best epoch")
    first = loss_y[0] / loss_l[0] if loss_l[0] else np.inf
    raise diagnose((loss_y, rec_y), [
        Mistake("your run's loss falls but its validation recall never moves: the step updates the weights of "
                "ANOTHER model; compile it from the very model you pass to train_hybrid",
                when=lambda h: h[1].size > 1 and np.ptp(h[1]) < 1e-12 and h[0][-1] < h[0][0]),
        Mistake(f"already the first epoch's loss differs by a factor {first:.2f}: the two runs do not minimise the "
                "same loss; give your step the alpha of the library's run and build both models with the same "
                "settings", when=lambda h: not 0.8 < first < 1.25),
        Mistake("the losses are close but not the same: the two runs draw different dropout masks or take "
                "different steps; seed your random stream with model.seed, and give both runs the same lr and "
                "seed", when=lambda h: not np.allclose(h[0][:n], loss_l[:n], rtol=rtol, atol=0)),
    ], f"the losses agree but the validation Recall@50 or the best epoch differ (yours {np.round(rec_y, 3).tolist()}, "
       f"best epoch {best_y}; the library's {np.round(rec_l, 3).tolist()}, best epoch {best_l}): score both models "
       "the same way")


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _gru_step_np(xp, m, h, W_hh, b_hh, *, convention="torch", z_flip=False, order="rzn", mask="keep"):
    """One GRU step in numpy: torch's convention by default, or with one common mistake."""
    H = h.shape[1]
    hp = h @ W_hh.T + b_hh  # (B, 3H)
    parts = {g: slice(k * H, (k + 1) * H) for k, g in enumerate(order)}
    r = _sigmoid(xp[:, parts["r"]] + hp[:, parts["r"]])
    z = _sigmoid(xp[:, parts["z"]] + hp[:, parts["z"]])
    if convention == "torch":
        n = np.tanh(xp[:, parts["n"]] + r * hp[:, parts["n"]])
    else:  # the classic Theano GRU: the reset gate acts on h before the matrix
        n = np.tanh(xp[:, parts["n"]] + (r * h) @ W_hh[parts["n"]].T + b_hh[parts["n"]])
    new = z * n + (1 - z) * h if z_flip else (1 - z) * n + z * h
    mm = {"keep": m, "ignore": np.ones_like(m), "inverted": 1 - m}[mask][:, None]
    return mm * new + (1 - mm) * h


def _gru_weights(rng, n_in, H):
    """Weights drawn as torch.nn.GRUCell draws them, U(-1/sqrt(H), 1/sqrt(H)): W_ih, W_hh, b_ih, b_hh."""
    k = 1 / np.sqrt(H)
    return (rng.uniform(-k, k, (3 * H, n_in)), rng.uniform(-k, k, (3 * H, H)), rng.uniform(-k, k, 3 * H),
            rng.uniform(-k, k, 3 * H))


@check("gru_step", expects="a symbolic (batch, H) expression: the new state of torch's GRU step, masked rows kept")
def check_gru_step(step_fn):
    """``step_fn(xp_t, m_t, h_prev, W_hh, b_hh)``: torch's GRU step with a mask (see the notebook)."""
    from course_lib.theano_models.compat import T  # noqa: PLC0415

    rng = np.random.default_rng(0)
    B, n_in, H = 4, 3, 5
    W_ih, W_hh, b_ih, b_hh = _gru_weights(rng, n_in, H)
    x, h0 = rng.normal(size=(B, n_in)), rng.normal(size=(B, H))
    m = np.array([1.0, 1.0, 0.0, 1.0])
    xp_v = x @ W_ih.T + b_ih
    xp, mt, h = T.matrix("xp", dtype="float64"), T.vector("m", dtype="float64"), T.matrix("h", dtype="float64")
    Wt, bt = T.matrix("W_hh", dtype="float64"), T.vector("b_hh", dtype="float64")
    out = as_symbolic("gru_step", call("gru_step", step_fn, xp, mt, h, Wt, bt))
    args = (xp_v, m, h0, W_hh, b_hh)
    got = as_array("gru_step", compile_symbolic("gru_step", [xp, mt, h, Wt, bt], out)(*args), shape=(B, H),
                   what="the new state (batch, H)")
    want = _gru_step_np(*args)
    if close(got, want, rtol=1e-8, atol=1e-12):
        return passed("your step equals torch.nn.GRUCell on every unmasked row and keeps the masked one")
    raise diagnose(got, [
        Mistake("the masked row is right but the others differ: the reset gate must multiply (W_hn h + b_hn), the "
                "recurrent part of the candidate, not h before the matrix", _gru_step_np(*args, convention="classic")),
        Mistake("the update gate is used the other way round: in torch's convention z weighs the OLD state h_prev "
                "and 1 - z the candidate n", _gru_step_np(*args, z_flip=True)),
        Mistake("the gates are stacked [r, z, n] (reset, update, candidate), in that order",
                _gru_step_np(*args, order="zrn")),
        Mistake("row 2 has mask 0: a row without a token keeps its previous state; only rows with mask 1 take the "
                "new one", _gru_step_np(*args, mask="ignore")),
        Mistake("the mask is 1 on real tokens: those rows take the new state, rows with 0 keep h_prev",
                _gru_step_np(*args, mask="inverted")),
        Mistake("row 2 has mask 0: a row without a token keeps its previous state; only rows with mask 1 take the "
                "new one", when=lambda v: not np.allclose(v[2], h0[2])),
    ], f"the state differs from torch.nn.GRUCell (relative error {rel_error(got, want):.1e})", rtol=1e-8, atol=1e-12)


def _encode_np(x, mask, W_ih, W_hh, b_ih, b_hh, *, pool="real"):
    """The masked GRU encoder in numpy (defaults: right), or pooled in a common wrong way."""
    L = x.shape[1]
    h = np.zeros((x.shape[0], W_hh.shape[1]))
    states = []
    for t in range(L):
        h = _gru_step_np(x[:, t] @ W_ih.T + b_ih, mask[:, t], h, W_hh, b_hh)
        states.append(h)
    hs = np.stack(states, 1)  # (B, L, H)
    if pool == "last":
        return h
    total = (hs * mask[:, :, None]).sum(1)
    return {"real": total / mask.sum(1, keepdims=True), "width": total / L, "all": hs.mean(1), "sum": total}[pool]


@check("gru_encode", expects="a symbolic (batch, H) expression: the mean of the GRU states over the real tokens")
def check_scan_encoder(encode_fn):
    """``encode_fn(x, mask, W_ih, W_hh, b_ih, b_hh) -> (B, H)``: a ``scan`` GRU over (B, L, n_in)
    inputs, mean-pooled over the real positions; padding must not change the result."""
    from course_lib.theano_models.compat import T  # noqa: PLC0415

    rng = np.random.default_rng(1)
    B, L, n_in, H = 3, 6, 4, 5
    weights = _gru_weights(rng, n_in, H)
    x = rng.normal(size=(B, L, n_in))
    mask = (np.arange(L)[None] < np.array([6, 2, 4])[:, None]).astype(np.float64)
    want = _encode_np(x, mask, *weights)
    xs, ms = T.tensor3("x", dtype="float64"), T.matrix("mask", dtype="float64")
    W = [T.matrix("W_ih", dtype="float64"), T.matrix("W_hh", dtype="float64"), T.vector("b_ih", dtype="float64"),
         T.vector("b_hh", dtype="float64")]
    out = as_symbolic("gru_encode", call("gru_encode", encode_fn, xs, ms, *W))
    f = compile_symbolic("gru_encode", [xs, ms, *W], out)
    got = as_array("gru_encode", call("the compiled encoder", f, x, mask, *weights), what="the encoding (batch, H)")
    if got.shape != want.shape:
        raise Fail(f"the encoding has shape {got.shape}, expected {want.shape} (batch, H): scan runs over the first "
                   "axis, so feed the inputs time-major and pool over time")
    if not close(got, want, rtol=1e-8, atol=1e-12):
        raise diagnose(got, [
            Mistake("you averaged over ALL positions; divide the masked sum by the number of real tokens",
                    _encode_np(x, mask, *weights, pool="all")),
            Mistake("divide the masked sum by the number of real tokens of each paper, not by the width",
                    _encode_np(x, mask, *weights, pool="width")),
            Mistake("the encoding is the MEAN of the states over the real tokens, not the last state",
                    _encode_np(x, mask, *weights, pool="last")),
            Mistake("you summed the states; take their mean over the real tokens",
                    _encode_np(x, mask, *weights, pool="sum")),
        ], f"the encoding differs from a GRU run with the same weights (relative error {rel_error(got, want):.1e}): "
           "check that scan feeds your gru_step the inputs of one time step and carries the state", rtol=1e-8,
        atol=1e-12)
    padded = as_array("gru_encode", call("the compiled encoder", f, np.pad(x, ((0, 0), (0, 3), (0, 0))),
                                         np.pad(mask, ((0, 0), (0, 3))), *weights))
    if not close(padded, got, atol=1e-12):
        raise Fail("three extra padding positions changed the encoding: padded steps must keep the state and be left "
                   "out of the mean")
    return passed("your scan encoder equals a torch GRU with the same weights, and padding changes nothing")
