"""The numpy operations that spare a cold compile its C modules (issue 15): inverted dropout
(``compat.InvertedDropout``) and the encoders' masked mean (``askgru._MaskedMean``) give the numbers
of the expressions they replace, bit for bit, and gradients that match finite differences."""
import numpy as np
import pytest
import torch

from course_lib.checks import numerical_gradient, rel_error
from course_lib.theano_models import compat
from course_lib.theano_models.askgru import _MaskedMean
from course_lib.theano_models.compat import InvertedDropout, T, theano

# the course's functions are compiled with PyTensor's full rewrites (fusion, constant folding of
# 1 / (1 - p)); this folder's conftest compiles with fast_compile, so ask for them explicitly
FAST_RUN = theano.compile.mode.get_mode("FAST_RUN")


def _draws(shape, p, dtype, seed=0):
    """Uniform draws, some exactly at ``p`` rounded to ``dtype`` (kept if the rounding went up)."""
    u = np.random.default_rng(seed).random(shape).astype(dtype)
    u.flat[::7] = np.asarray(p, dtype=dtype)
    return u


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.7])
def test_inverted_dropout_rounds_as_torch_and_within_an_ulp_of_the_expression_it_replaces(dtype, p):
    x, u = T.tensor3("x", dtype=dtype), T.tensor3("u", dtype=dtype)
    old = x * T.cast(u >= p, dtype) / np.asarray(1.0 - p, dtype=dtype)  # compat.dropout before issue 15
    f_old = theano.function([x, u], old, mode=FAST_RUN)
    f_new = theano.function([x, u], InvertedDropout(p)(x, u))
    x0 = np.random.default_rng(1).normal(size=(4, 5, 6)).astype(dtype)
    u0 = _draws(x0.shape, p, dtype)
    got = f_new(x0, u0)
    assert got.dtype == np.dtype(dtype)
    # compared in double precision, as PyTensor's fused C code does (numpy 1.x would round p to float32
    # in ``u0 >= np.float64(p)``: value-based casting)
    kept = u0.astype(np.float64) >= p
    # torch.nn.functional.dropout: x times a mask of 0 and 1 / (1 - p), both in the dtype
    torch_mask = torch.from_numpy(kept.astype(dtype)) / (1.0 - p)
    assert got.tobytes() == (torch.from_numpy(x0) * torch_mask).numpy().tobytes()
    # PyTensor's fused C code multiplied by 1 / (1 - p) written as a short decimal (a double):
    # the same zeros, the kept entries within one unit in the last place
    assert (got[~kept] == 0).all() and (got[kept] != 0).all()
    want = f_old(x0, u0)
    # original Theano rounds the constant p to floatX before comparing, so there the expression decides
    # the draws equal to p rounded to the dtype differently (measured: float64 p=0.1 drops them, float32
    # p=0.7 keeps them); every other entry must agree on both backends
    same = np.ones(u0.shape, bool) if compat.BACKEND == "pytensor" else u0 != np.asarray(p, dtype=dtype)
    assert ((got == 0) == (want == 0))[same].all()
    assert (np.abs(got - want) <= np.spacing(np.abs(want)))[same].all()


def test_compat_dropout_draws_its_mask_from_the_stream_as_before():
    x = T.matrix("x")
    y = compat.dropout(x, 0.3, compat.RandomStream(5))
    u = compat.RandomStream(5).uniform(x.shape, dtype=x.dtype)  # the same first draw of the same seed
    assert isinstance(y.owner.op, InvertedDropout)
    f = theano.function([x], [y, u])
    x0 = np.random.default_rng(2).normal(size=(30, 8)).astype(x.dtype)
    got, u0 = f(x0)
    scale = np.asarray(1 / 0.7, dtype=x.dtype)
    np.testing.assert_array_equal(got, np.where(u0 >= 0.3, x0 * scale, 0))


def test_inverted_dropout_gradient_matches_finite_differences_and_drops_the_same_entries():
    x, u, w = T.matrix("x", dtype="float64"), T.matrix("u", dtype="float64"), T.matrix("w", dtype="float64")
    y = InvertedDropout(0.4)(x, u)
    loss = (w * T.tanh(y)).sum()
    f = theano.function([x, u, w], [loss, theano.grad(loss, x)])
    rng = np.random.default_rng(3)
    x0, u0, w0 = rng.normal(size=(5, 4)), rng.random((5, 4)), rng.normal(size=(5, 4))
    grad = f(x0, u0, w0)[1]
    num = numerical_gradient(lambda v: float(f(v, u0, w0)[0]), x0)
    assert rel_error(grad, num) < 1e-6  # central differences on entries down to 4e-4
    assert (grad[u0 < 0.4] == 0).all() and (grad[u0 >= 0.4] != 0).all()


def test_inverted_dropout_names_its_bad_inputs():
    x = T.matrix("x")
    with pytest.raises(ValueError, match=r"p_drop must be in \[0, 1\), got 1.0"):
        InvertedDropout(1.0)
    with pytest.raises(TypeError, match="draws u of its dtype and rank"):
        InvertedDropout(0.5)(x, T.tensor3("u", dtype=x.dtype))
    u = T.matrix("u")
    f = theano.function([x, u], InvertedDropout(0.5)(x, u))
    with pytest.raises(ValueError, match=r"the draws have shape \(2, 2\), the input \(3, 2\)"):
        f(np.ones((3, 2), x.dtype), np.ones((2, 2), x.dtype))


def _masked_mean_expression(h, mask):
    """The encoders' masked mean before issue 15, as an expression."""
    return (h * mask[:, :, None]).sum(axis=1) / T.maximum(mask.sum(axis=1), 1)[:, None]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masked_mean_and_its_gradient_equal_the_expression_they_replace(dtype):
    h, mask, g = T.tensor3("h", dtype=dtype), T.matrix("mask", dtype=dtype), T.matrix("g", dtype=dtype)
    outs = {}
    for name, build in (("old", _masked_mean_expression), ("new", lambda a, b: _MaskedMean()(a, b))):
        out = build(h, mask)
        outs[name] = theano.function([h, mask, g], [out, theano.grad((out * g).sum(), h)], mode=FAST_RUN)
    rng = np.random.default_rng(4)
    h0, g0 = rng.normal(size=(6, 9, 5)).astype(dtype), rng.normal(size=(6, 5)).astype(dtype)
    lengths = np.array([9, 3, 1, 0, 5, 7])  # a paper without words: zeros, not 0/0
    mask0 = (np.arange(9)[None, :] < lengths[:, None]).astype(dtype)
    (mean_old, grad_old), (mean_new, grad_new) = outs["old"](h0, mask0, g0), outs["new"](h0, mask0, g0)
    assert mean_new.dtype == np.dtype(dtype) and mean_new.shape == (6, 5)
    assert mean_new.tobytes() == mean_old.tobytes()
    assert grad_new.tobytes() == grad_old.tobytes()
    assert (mean_new[3] == 0).all() and (grad_new[3] == 0).all()
    np.testing.assert_allclose(mean_new[1], h0[1, :3].mean(axis=0), rtol=1e-6)


def test_masked_mean_gradient_matches_finite_differences_with_a_weighted_mask():
    h, mask, w = T.tensor3("h", dtype="float64"), T.matrix("mask", dtype="float64"), T.matrix("w", dtype="float64")
    loss = (w * T.tanh(_MaskedMean()(h, mask))).sum()
    f = theano.function([h, mask, w], [loss, theano.grad(loss, h)])
    rng = np.random.default_rng(5)
    h0, w0 = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 2))
    mask0 = np.array([[1.0, 0.5, 0.25, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    grad = f(h0, mask0, w0)[1]
    num = numerical_gradient(lambda v: float(f(v, mask0, w0)[0]), h0)
    assert rel_error(grad, num) < 1e-7


def test_masked_mean_names_its_bad_inputs():
    h, mask = T.tensor3("h"), T.matrix("mask")
    with pytest.raises(TypeError, match=r"h \(batch, seq_len, H\) and mask \(batch, seq_len\)"):
        _MaskedMean()(T.matrix("h2"), mask)
    f = theano.function([h, mask], _MaskedMean()(h, mask))
    with pytest.raises(ValueError, match=r"h has shape \(2, 3, 4\) but mask \(2, 5\)"):
        f(np.ones((2, 3, 4), h.dtype), np.ones((2, 5), h.dtype))
