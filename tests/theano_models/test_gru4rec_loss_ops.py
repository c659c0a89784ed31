"""The GRU4Rec training losses with a hand-written gradient (``_CrossEntropyOp``, ``_BPRMaxOp``).

Each against the symbolic loss it replaces in the training step (:func:`bpr_max_loss`,
:func:`cross_entropy_loss`) and that loss's ``theano.grad`` gradient, float64 to 1e-10 and float32 to
1e-5, also on rows where every sigmoid underflows; against central finite differences in float64;
and one epoch of training with them against the same epoch with the symbolic losses.
"""
import numpy as np
import pytest

from course_lib.theano_models import gru4rec as tg
from course_lib.theano_models.compat import T, function, theano

B, S = 6, 5


def _scores(dtype, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, B + S)) * scale
    x[0, 3] = 40.0  # a large negative score: the softmax must not overflow
    x[1, 1] = 35.0  # a target far above its negatives: every sigmoid is ~1
    return x.astype(dtype)


def _both(loss, dtype, x, log_q=None):
    """(loss, gradient) of the op and of the symbolic loss, for ``x``."""
    s, q = T.matrix("s", dtype=dtype), T.vector("q", dtype=dtype)
    if loss == "bpr-max":
        op_loss, ref_loss = tg._BPRMaxOp(0.7)(s)[0], tg.bpr_max_loss(s, 0.7)
    else:
        shifted = s - np.asarray(0.8, dtype=dtype) * q[None, :]
        op_loss, ref_loss = tg._CrossEntropyOp()(shifted)[0], tg.cross_entropy_loss(s, q, 0.8)
    # times 1.3: the incoming gradient scales the op's gradient
    f = function([s, q], [op_loss, theano.grad(op_loss * 1.3, s), ref_loss, theano.grad(ref_loss * 1.3, s)])
    q0 = np.zeros(x.shape[1], dtype=dtype) if log_q is None else log_q
    return [np.asarray(v) for v in f(x, q0)]


def _rel(a, b):
    return float(np.abs(np.asarray(a, dtype="float64") - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("loss", ["bpr-max", "cross-entropy"])
def test_the_op_matches_the_symbolic_loss_and_its_autograd_gradient(loss, dtype, tol):
    x = _scores(dtype)
    log_q = np.log(np.random.default_rng(1).dirichlet(np.ones(B + S))).astype(dtype)
    op_loss, op_grad, ref_loss, ref_grad = _both(loss, dtype, x, log_q)
    assert op_loss.dtype == op_grad.dtype == np.dtype(dtype)
    assert np.isfinite(ref_loss) and abs(float(op_loss) - float(ref_loss)) <= tol * abs(float(ref_loss))
    assert _rel(op_grad, ref_grad) <= tol
    # the target's own entry of the gradient (the only entry of the diagonal in BPR-max)
    assert np.abs(np.diag(op_grad) - np.diag(ref_grad)).max() <= tol * np.abs(ref_grad).max()


@pytest.mark.parametrize("dtype,gap", [("float64", 800.0), ("float32", 120.0)])
def test_bpr_max_rows_whose_sigmoids_all_underflow_stay_finite_and_exact(dtype, gap):
    x = _scores(dtype).astype("float64")
    x[2, 2] -= gap  # the target far below every negative: sigmoid(r_ii - r_ij) underflows, log-sum-exp path
    x[4, 4] -= gap / 2  # far below, but sum_j s_j sigmoid(r_ii - r_ij) is still well inside the dtype's range
    x = x.astype(dtype)
    op_loss, op_grad, ref_loss, ref_grad = _both("bpr-max", dtype, x)
    tol = 1e-10 if dtype == "float64" else 1e-5
    assert np.isfinite(op_loss) and np.isfinite(op_grad).all()
    assert abs(float(op_loss) - float(ref_loss)) <= tol * abs(float(ref_loss))
    assert _rel(op_grad, ref_grad) <= tol
    # that row's loss is about the gap: -log sum_j s_j sigmoid(-gap + ...)
    assert float(op_loss) * B > gap / 2


@pytest.mark.parametrize("loss", ["bpr-max", "cross-entropy"])
def test_the_op_gradient_against_finite_differences(loss):
    x = _scores("float64", seed=3, scale=1.5)
    s = T.matrix("s", dtype="float64")
    op = tg._BPRMaxOp(0.5) if loss == "bpr-max" else tg._CrossEntropyOp()
    value, grad = op(s)
    f_loss, f_grad = function([s], value), function([s], theano.grad(value, s))
    g = f_grad(x)
    h, numeric = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (float(f_loss(up)) - float(f_loss(down))) / (2 * h)
    assert np.abs(g - numeric).max() <= 1e-7 * np.abs(numeric).max()


def test_no_negatives_give_zero_loss_and_gradient_and_bad_input_is_named():
    s = T.matrix("s", dtype="float64")
    value, grad = tg._BPRMaxOp(1.0)(s)
    loss, g = function([s], [value, grad])(np.array([[3.0]]))
    assert float(loss) == 0.0 and np.all(g == 0.0)
    with pytest.raises(ValueError, match="float32 or float64 matrix"):
        tg._BPRMaxOp(1.0)(T.vector("v", dtype="float64"))
    with pytest.raises(ValueError, match="at least as many columns"):
        function([s], value)(np.zeros((3, 2)))


def test_differentiating_the_gradient_output_is_refused():
    s = T.matrix("s", dtype="float64")
    _, grad = tg._CrossEntropyOp()(s)
    with pytest.raises(Exception, match="not differentiable"):
        theano.grad(grad.sum(), s)


class _SymbolicLoss(tg.GRU4Rec):
    """The same loss written symbolically: the training step then differentiates it with theano.grad."""

    def loss_function(self, scores, log_q=None):
        return super().loss_function(scores, log_q)


@pytest.mark.parametrize("config", [dict(loss="bpr-max", bpreg=0.5, final_act="elu-0.5", momentum=0.3),
                                    dict(loss="cross-entropy", logq=1.0, embedding=8)])
def test_one_epoch_with_the_ops_equals_one_epoch_with_the_symbolic_losses(config):
    from course_lib.data import load_sessions

    train = load_sessions("tiny").train
    train = train[train["SessionId"].isin(train["SessionId"].unique()[:120])]
    kw = dict(layers=[16], batch_size=16, n_epochs=1, n_sample=12, learning_rate=0.05, seed=0, dtype="float64",
              **config)
    ours, ref = tg.GRU4Rec(**kw).fit(train, progress=False), _SymbolicLoss(**kw).fit(train, progress=False)
    assert ours.history[0]["loss"] == pytest.approx(ref.history[0]["loss"], rel=1e-10)
    for name, w in ref.W.state_dict().items():
        assert np.abs(ours.W[name].get_value() - w).max() <= 1e-9 * np.abs(w).max(), name
