"""The fused GRU op (``course_lib.theano_models.gru_op``) against ``scan`` and finite differences.

``GRULayerOp`` must compute exactly what ``scan`` over ``askgru.gru_step`` computes (states and the
gradients of xp, W_hh and b_hh; float64 to 1e-12), in both directions, on ragged batches with a
full-length row, a one-token row and an empty row, for left-aligned masks (the sorted fast path)
and for any other 0/1 mask (the indexed path); its gradient must match central differences.
"""
import numpy as np
import pytest

from course_lib.theano_models import askgru as ta
from course_lib.theano_models.compat import T, function, scan, theano
from course_lib.theano_models.gru_op import GRULayerOp, gru_backward, gru_forward, gru_layer_op

B, L, H = 6, 7, 4
LENGTHS = np.array([7, 1, 3, 0, 5, 7])  # a full row, a one-token row, an empty row


def _left_mask(dtype="float64"):
    return (np.arange(L)[None] < LENGTHS[:, None]).astype(dtype)


def _other_mask(dtype="float64"):
    """Not left-aligned: padding in front, a hole in the middle, an empty row."""
    m = np.zeros((B, L))
    m[0, 2:] = 1
    m[1, [0, 3, 6]] = 1
    m[2, :] = 1
    m[4, 5] = 1
    m[5, [1, 2]] = 1
    return m.astype(dtype)


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    xp = rng.normal(size=(B, L, 3 * H))
    W = rng.normal(size=(3 * H, H)) * 0.6
    b = rng.normal(size=3 * H) * 0.3
    g = rng.normal(size=(B, L, H))
    return [a.astype(dtype) for a in (xp, W, b, g)]


def _scan_layer(xp, m, W, b, go_backwards):
    h0 = T.zeros((xp.shape[0], W.shape[1]), dtype=xp.dtype)
    hs = scan(ta.gru_step, sequences=[xp.dimshuffle(1, 0, 2), m.T], outputs_info=[h0], non_sequences=[W, b],
              go_backwards=go_backwards)
    return (hs[::-1] if go_backwards else hs).dimshuffle(1, 0, 2)


_FNS: dict = {}


def _both(dtype, go_backwards):
    """A compiled function: states and gradients of sum(hs * g) for scan, then for the op."""
    key = (dtype, go_backwards)
    if key not in _FNS:
        xp, m, W, b, g = (T.tensor3(dtype=dtype), T.matrix(dtype=dtype), T.matrix(dtype=dtype),
                          T.vector(dtype=dtype), T.tensor3(dtype=dtype))
        outs = []
        for hs in (_scan_layer(xp, m, W, b, go_backwards), gru_layer_op(xp, m, W, b, go_backwards=go_backwards)):
            outs += [hs, *theano.grad((hs * g).sum(), [xp, W, b])]
        _FNS[key] = function([xp, m, W, b, g], outs)
    return _FNS[key]


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("mask_kind", ["left-aligned", "any 0/1"])
def test_op_computes_what_scan_computes_float64(go_backwards, mask_kind):
    xp, W, b, g = _data("float64")
    mask = _left_mask() if mask_kind == "left-aligned" else _other_mask()
    out = _both("float64", go_backwards)(xp, mask, W, b, g)
    for name, want, got in zip(["hs", "d xp", "d W_hh", "d b_hh"], out[:4], out[4:]):
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13, err_msg=name)
    hs, d_xp = out[4], out[5]
    assert np.abs(d_xp).sum() > 0 and np.abs(hs).sum() > 0
    # padding: no gradient reaches the input projection there, and an empty row stays zero
    np.testing.assert_array_equal(d_xp[mask == 0], 0.0)
    np.testing.assert_array_equal(hs[3], 0.0)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backward"])
def test_op_keeps_float32_and_agrees_with_scan(go_backwards):
    xp, W, b, g = _data("float32")
    out = _both("float32", go_backwards)(xp, _left_mask("float32"), W, b, g)
    for name, want, got in zip(["hs", "d xp", "d W_hh", "d b_hh"], out[:4], out[4:]):
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=name)


def test_carried_states_at_padded_positions():
    """Forward: the last state repeats after the end; backward: zero until the last real token."""
    xp, W, b, _ = _data("float64")
    mask = _left_mask()
    fwd, _ = gru_forward(xp, mask, W, b, go_backwards=False)
    bwd, _ = gru_forward(xp, mask, W, b, go_backwards=True)
    for row, n in enumerate(LENGTHS):
        if n:
            np.testing.assert_array_equal(fwd[row, n:], np.broadcast_to(fwd[row, n - 1], (L - n, H)))
        np.testing.assert_array_equal(bwd[row, n:], 0.0)
    # a one-token row: both directions see only that token
    np.testing.assert_allclose(fwd[1, 0], bwd[1, 0], rtol=1e-15)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backward"])
def test_op_gradient_matches_finite_differences(go_backwards):
    xp_v, W_v, b_v, g_v = _data("float64", seed=3)
    mask = _left_mask()
    xp, W, b = T.tensor3(dtype="float64"), T.matrix(dtype="float64"), T.vector(dtype="float64")
    cost = (gru_layer_op(xp, T.constant(mask), W, b, go_backwards=go_backwards) * g_v).sum()
    f = function([xp, W, b], [cost, *theano.grad(cost, [xp, W, b])])
    _, *grads = f(xp_v, W_v, b_v)
    rng = np.random.default_rng(4)
    eps = 1e-6
    for k, (value, grad) in enumerate(zip([xp_v, W_v, b_v], grads)):
        for _ in range(3):  # directional derivatives along random directions
            d = rng.normal(size=value.shape)
            args_p, args_m = [xp_v, W_v, b_v], [xp_v, W_v, b_v]
            args_p[k], args_m[k] = value + eps * d, value - eps * d
            numeric = (f(*args_p)[0] - f(*args_m)[0]) / (2 * eps)
            np.testing.assert_allclose((grad * d).sum(), numeric, rtol=1e-6, atol=1e-8)  # eps^2 and rounding / eps


def test_numpy_backward_matches_finite_differences_entrywise():
    """Every entry of d W_hh and d b_hh of the numpy backward pass, and a sample of d xp."""
    xp, W, b, g = _data("float64", seed=5)
    mask = _other_mask()
    _, cache = gru_forward(xp, mask, W, b, go_backwards=True)
    d_xp, d_W, d_b = gru_backward(xp, mask, W, b, cache, g, go_backwards=True)

    def cost(xp_, W_, b_):
        return float((gru_forward(xp_, mask, W_, b_, go_backwards=True)[0] * g).sum())

    eps = 1e-6
    for arr, grad, k in ((W, d_W, 1), (b, d_b, 2)):
        for idx in np.ndindex(arr.shape):
            args_p, args_m = [xp, W, b], [xp, W, b]
            args_p[k], args_m[k] = arr.copy(), arr.copy()
            args_p[k][idx] += eps
            args_m[k][idx] -= eps
            np.testing.assert_allclose(grad[idx], (cost(*args_p) - cost(*args_m)) / (2 * eps), rtol=1e-6, atol=1e-8)
    for idx in [(0, 2, 0), (0, 1, 5), (1, 3, 11), (2, 6, 4), (4, 5, 8), (3, 0, 1)]:
        args_p, args_m = [xp.copy(), W, b], [xp.copy(), W, b]
        args_p[0][idx] += eps
        args_m[0][idx] -= eps
        np.testing.assert_allclose(d_xp[idx], (cost(*args_p) - cost(*args_m)) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_op_is_deterministic():
    xp, W, b, g = _data("float32", seed=7)
    f = _both("float32", False)
    first, second = f(xp, _left_mask("float32"), W, b, g), f(xp, _left_mask("float32"), W, b, g)
    for a, c in zip(first[4:], second[4:]):
        np.testing.assert_array_equal(a, c)


def test_bad_masks_and_shapes_give_clear_errors():
    xp, W, b, _ = _data("float64")
    half = _left_mask() * 0.5
    with pytest.raises(ValueError, match="only 0 .padding. and 1"):
        gru_forward(xp, half, W, b)
    with pytest.raises(ValueError, match=r"GRU shapes do not fit: xp \(6, 7, 12\)"):
        gru_forward(xp, _left_mask()[:, :5], W, b)
    with pytest.raises(ValueError, match="must have 3 dimensions"):
        GRULayerOp()(T.matrix(), T.matrix(), T.matrix(), T.vector())
    with pytest.raises(ValueError, match="float32 or float64"):
        GRULayerOp()(T.tensor3(dtype="int64"), T.matrix(), T.matrix(), T.vector())


def _encoder_fn(recurrence):
    enc = ta.GRUEncoder(20, emb_dim=5, hidden1=4, hidden2=3, dropout=(0.0, 0.0, 0.0), seed=2, dtype="float64",
                        recurrence=recurrence)
    ids, mask = T.matrix(dtype="int64"), T.matrix(dtype="float64")
    out = enc(ids, mask, None)
    cost = (out * np.arange(1, 4)).sum()
    return function([ids, mask], [out, *theano.grad(cost, enc.params.trainable_vars())])


def test_gru_encoder_same_with_op_and_scan():
    rng = np.random.default_rng(0)
    mask = _left_mask()
    ids = rng.integers(1, 20, size=mask.shape) * mask.astype(np.int64)
    by_scan, by_op = _encoder_fn("scan")(ids, mask), _encoder_fn("op")(ids, mask)
    for want, got in zip(by_scan, by_op):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
    assert np.abs(by_op[0]).sum() > 0


def test_gru_encoder_rejects_an_unknown_recurrence():
    with pytest.raises(ValueError, match="recurrence must be one of 'op', 'scan'"):
        ta.GRUEncoder(20, emb_dim=5, hidden1=4, hidden2=3, recurrence="cudnn")


def test_gru_encoder_check_refuses_a_weighted_mask_for_the_op():
    enc = ta.GRUEncoder(20, emb_dim=5, hidden1=4, hidden2=3, recurrence="op")
    ids, mask = np.ones((2, 3), dtype=np.int64), np.array([[1.0, 1.0, 0.0], [1.0, 0.5, 0.0]])
    with pytest.raises(ValueError, match="only 0 .padding. and 1 .a word. for GRUEncoder.recurrence='op'"):
        enc.check(ids, mask, np.arange(2))
    enc.check(ids, (mask > 0).astype(float), np.arange(2))
    ta.GRUEncoder(20, emb_dim=5, hidden1=4, hidden2=3, recurrence="scan").check(ids, mask, np.arange(2))
