"""One GRU direction over a padded batch as a single Theano Op: the track's fused RNN op.

Original Theano had such an op for GPUs (cuDNN's RNN through ``theano.gpuarray.dnn``); PyTorch has
``nn.GRU``. Both run the whole recurrence as one operation of the graph instead of a ``scan`` loop
of small operations. :class:`GRULayerOp` does that on the CPU in numpy, and :class:`GRULayerGradOp`
is its gradient (backpropagation through time, also numpy). :func:`gru_layer_op` is what
:class:`course_lib.theano_models.askgru.GRUEncoder` calls with ``recurrence="op"`` (its default);
``recurrence="scan"`` keeps the ``scan`` over :func:`~course_lib.theano_models.askgru.gru_step`
that notebook 06 teaches. Both compute the same function (tests/theano_models/test_gru_op.py
compares them, forward and every gradient).

Why it is faster than ``scan`` on a CPU:

* **No work on padding.** A batch of papers is padded to its longest paper. The op sorts the rows
  by length (longest first), so at time step ``t`` the rows still running are the first ``n_t``
  rows of the sorted batch: a contiguous slice, the layout of PyTorch's ``PackedSequence``. Each
  step computes only those rows. ``scan`` computes every row at every step and masks.
* **One operation per step instead of a loop of graph nodes**, and no ``scan`` gradient to build:
  the compile of a GRU model skips the rewriting of three scan gradients (seconds) and the C
  modules of their inner functions.
* **The weight gradient after the loop.** The backward pass stores the gate gradients of every
  step (packed, real tokens only) and forms ``dW_hh`` with two products over all tokens at the end
  (``[r, z]`` rows and ``n`` rows), instead of accumulating one small product per step.
* **Contiguous rows.** Everything a step touches (its slice of the packed cache, of the inputs, of
  the state) is a contiguous block; numpy's loops are several times slower on column blocks of a
  wider array.

Semantics (those of ``_gru_layer`` with ``scan``, i.e. ``torch.nn.GRU`` on a packed sequence):
gates stacked ``[r, z, n]``; ``n = tanh(x_n + r * (W_hn h + b_hn))``; the state is carried unchanged
through padded positions (``mask == 0``) and starts at zero; ``go_backwards`` runs from the last
position to the first and returns the states in the original time order. Masks must hold only 0
and 1. Left-aligned masks (ones, then zeros: what :func:`~course_lib.theano_models.content.make_text_batch`
produces) take the sorted fast path; any other 0/1 mask is also computed exactly, with the active
rows of each step picked by index (slower).

The op has no C code: nothing is compiled by gcc for it. ``float32`` and ``float64`` are computed
in their own dtype; the sums are formed in a different order than in ``scan`` (``b_hr``, ``b_hz``
join the input part first; ``h' = n + z (h - n)``), so float32 results differ from the ``scan``
form in the last bits (float64: ~1e-16). Results are deterministic (same inputs, same bits). The gradient op has no
gradient itself (no second derivatives through the recurrence). The op's second output (a packed
cache of the gates for the backward pass) is internal: gradients do not flow through it.
"""
from __future__ import annotations

import numpy as np

from course_lib.theano_models.compat import Apply, DisconnectedType, Op, T

__all__ = ["GRULayerGradOp", "GRULayerOp", "gru_layer_op"]

_CACHE_BLOCKS = 5  # H numbers per real token each for r, z, n, W_hn h + b_hn and h_prev


class _Schedule:
    """Which rows of the batch each time step computes, and where they sit in the packed cache.

    ``perm``: the working order of the rows (longest first for a left-aligned mask, else the batch
    order); ``steps``: ``(t, rows, n_t, start)`` for every position in processing order, ``rows`` a
    slice (fast path) or an index array into the working order, ``n_t`` how many rows run (0 where
    the whole batch is padding), ``start`` the first packed row of the step; ``n_total``: the
    number of real tokens.
    """

    def __init__(self, mask: np.ndarray, go_backwards: bool):
        if not np.all((mask == 0) | (mask == 1)):
            raise ValueError("the GRU mask must hold only 0 (padding) and 1 (a real token); got the values "
                             f"{np.unique(mask)[:6].tolist()}")
        batch, seq_len = mask.shape
        on = mask == 1
        lengths = on.sum(axis=1)
        left_aligned = bool(np.array_equal(on, np.arange(seq_len)[None, :] < lengths[:, None]))
        times = range(seq_len - 1, -1, -1) if go_backwards else range(seq_len)
        self.steps, start = [], 0
        if left_aligned:
            self.perm = np.argsort(-lengths, kind="stable")
            active = (lengths[None, :] > np.arange(seq_len)[:, None]).sum(axis=1)  # (seq_len,) rows at t
            for t in times:
                n_t = int(active[t])
                self.steps.append((t, slice(0, n_t), n_t, start))
                start += n_t
        else:
            self.perm = np.arange(batch)
            for t in times:
                rows = np.flatnonzero(on[:, t])
                self.steps.append((t, rows, rows.size, start))
                start += rows.size
        self.inverse = np.argsort(self.perm)
        self.n_total = start


def _check_shapes(xp, mask, W_hh, b_hh) -> int:
    """``H`` if the four inputs fit together, else a ValueError naming every shape."""
    H = W_hh.shape[1] if W_hh.ndim == 2 else -1
    if (xp.ndim != 3 or mask.shape != xp.shape[:2] or xp.shape[2] != 3 * H or W_hh.shape != (3 * H, H)
            or b_hh.shape != (3 * H,)):
        raise ValueError(f"GRU shapes do not fit: xp {xp.shape} must be (B, L, 3H), mask {mask.shape} (B, L), "
                         f"W_hh {W_hh.shape} (3H, H), b_hh {b_hh.shape} (3H,)")
    return H


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in place, in ``x``'s dtype (exp may overflow to inf: the result is 0)."""
    np.negative(x, out=x)
    with np.errstate(over="ignore"):
        np.exp(x, out=x)
    x += 1
    np.reciprocal(x, out=x)
    return x


def _cache_blocks(cache: np.ndarray, n_total: int, H: int) -> tuple[np.ndarray, ...]:
    """The packed cache (a vector) as its four contiguous blocks ``rz (N, 2H)``, ``n``, ``W_hn h + b_hn``
    and ``h_prev`` ``(N, H)``: every step's rows are then contiguous too (numpy's loops run several
    times faster on contiguous rows than on column blocks of a wider array)."""
    sizes = np.cumsum([0, 2 * H, H, H, H]) * n_total
    widths = (2 * H, H, H, H)
    return tuple(cache[sizes[k] : sizes[k + 1]].reshape(n_total, widths[k]) for k in range(4))


def gru_forward(xp: np.ndarray, mask: np.ndarray, W_hh: np.ndarray, b_hh: np.ndarray,
                go_backwards: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """What :class:`GRULayerOp` computes, as a numpy function: ``hs`` ``(B, L, H)`` and the packed
    cache, a vector of ``5 H`` numbers per real token (``r, z``, ``n``, ``W_hn h + b_hn``, ``h_prev``)."""
    H = _check_shapes(xp, mask, W_hh, b_hh)
    sched = _Schedule(mask, go_backwards)
    batch, seq_len, _ = xp.shape
    dtype = xp.dtype
    x_work = xp.transpose(1, 0, 2)[:, sched.perm]  # (L, B, 3H) time-major, working order
    x_rz = x_work[:, :, : 2 * H] + b_hh[: 2 * H]  # (L, B, 2H): b_hr, b_hz join the input part once
    x_n = np.ascontiguousarray(x_work[:, :, 2 * H :])  # (L, B, H)
    W_rz, W_n = np.ascontiguousarray(W_hh[: 2 * H].T), np.ascontiguousarray(W_hh[2 * H :].T)  # (H, 2H), (H, H)
    b_n = b_hh[2 * H :]
    h = np.zeros((batch, H), dtype=dtype)  # the state of every row, working order
    hs_work = np.empty((seq_len, batch, H), dtype=dtype)
    cache = np.empty(_CACHE_BLOCKS * H * sched.n_total, dtype=dtype)
    RZ, N, HPN, HPREV = _cache_blocks(cache, sched.n_total, H)
    h_new = np.empty((batch, H), dtype=dtype)
    for t, rows, n_t, start in sched.steps:
        if n_t:
            step = slice(start, start + n_t)
            rz, n, hp_n, h_prev, new = RZ[step], N[step], HPN[step], HPREV[step], h_new[:n_t]
            h_prev[...] = h[rows]
            np.matmul(h_prev, W_rz, out=rz)
            rz += x_rz[t][rows]
            _sigmoid(rz)  # r, z
            r, z = rz[:, :H], rz[:, H:]
            np.matmul(h_prev, W_n, out=hp_n)
            hp_n += b_n
            np.multiply(r, hp_n, out=n)
            n += x_n[t][rows]
            np.tanh(n, out=n)
            np.subtract(h_prev, n, out=new)  # h' = (1 - z) n + z h = n + z (h - n)
            new *= z
            new += n
            h[rows] = new
        hs_work[t] = h  # rows not running carry their state
    return np.ascontiguousarray(hs_work[:, sched.inverse].transpose(1, 0, 2)), cache


def gru_backward(xp: np.ndarray, mask: np.ndarray, W_hh: np.ndarray, b_hh: np.ndarray, cache: np.ndarray,
                 g_hs: np.ndarray, go_backwards: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :class:`GRULayerGradOp` computes: ``(d xp, d W_hh, d b_hh)`` from the gradient ``g_hs``
    ``(B, L, H)`` of the states, by backpropagation through time over the real tokens only."""
    H = _check_shapes(xp, mask, W_hh, b_hh)
    sched = _Schedule(mask, go_backwards)
    if cache.shape != (_CACHE_BLOCKS * H * sched.n_total,) or g_hs.shape != (*xp.shape[:2], H):
        raise ValueError(f"GRU gradient: cache {cache.shape} must be ({_CACHE_BLOCKS * H * sched.n_total},) and the "
                         f"state gradient {g_hs.shape} {(*xp.shape[:2], H)}: pass the forward op's outputs")
    batch, seq_len, _ = xp.shape
    dtype = xp.dtype
    RZ, N, HPN, HPREV = _cache_blocks(cache, sched.n_total, H)
    W_rz, W_n = np.ascontiguousarray(W_hh[: 2 * H]), np.ascontiguousarray(W_hh[2 * H :])  # (2H, H), (H, H)
    g_work = np.ascontiguousarray(g_hs.transpose(1, 0, 2)[:, sched.perm])  # (L, B, H)
    dx_work = np.zeros((seq_len, batch, 3 * H), dtype=dtype)  # padded positions get no gradient
    D_RZ = np.empty((sched.n_total, 2 * H), dtype=dtype)  # packed gradients of W_hr h + b_hr, W_hz h + b_hz
    D_HN = np.empty((sched.n_total, H), dtype=dtype)  # packed gradients of W_hn h + b_hn
    dh = np.zeros((batch, H), dtype=dtype)  # gradient of the state after the current step
    omz_buf, tmp_buf, dn_buf, dh_buf, d_buf = (np.empty((batch, H), dtype=dtype) for _ in range(5))
    for t, rows, n_t, start in reversed(sched.steps):
        dh += g_work[t]
        if not n_t:
            continue
        step = slice(start, start + n_t)
        rz, n, hp_n, h_prev, d_rz, d_hn = RZ[step], N[step], HPN[step], HPREV[step], D_RZ[step], D_HN[step]
        r, z = rz[:, :H], rz[:, H:]
        omz, tm, dn, dh_prev, d = omz_buf[:n_t], tmp_buf[:n_t], dn_buf[:n_t], dh_buf[:n_t], d_buf[:n_t]
        g = dh[rows]
        np.subtract(1, z, out=omz)
        np.multiply(g, omz, out=dn)  # through h' = (1 - z) n + z h ...
        np.multiply(n, n, out=tm)
        np.subtract(1, tm, out=tm)
        dn *= tm  # ... and the tanh: the gradient of n's argument
        np.subtract(h_prev, n, out=d)
        d *= g
        d *= z
        d *= omz
        d_rz[:, H:] = d  # z's argument, through the sigmoid
        np.multiply(dn, hp_n, out=d)
        d *= r
        np.subtract(1, r, out=tm)
        d *= tm
        d_rz[:, :H] = d  # r's argument
        np.multiply(dn, r, out=d_hn)
        dx_t = dx_work[t]
        dx_t[rows, : 2 * H] = d_rz
        dx_t[rows, 2 * H :] = dn
        np.matmul(d_rz, W_rz, out=dh_prev)
        np.matmul(d_hn, W_n, out=d)
        dh_prev += d
        np.multiply(g, z, out=tm)
        dh_prev += tm
        dh[rows] = dh_prev
    # the weight gradient as products over every real token at once
    dW = np.concatenate([D_RZ.T @ HPREV, D_HN.T @ HPREV])  # (3H, H)
    db = np.concatenate([D_RZ.sum(axis=0), D_HN.sum(axis=0)])
    return np.ascontiguousarray(dx_work[:, sched.inverse].transpose(1, 0, 2)), dW, db


def _as_float_tensor(x, ndim: int, what: str, dtype: str | None = None):
    x = T.as_tensor_variable(x)
    if x.ndim != ndim:
        raise ValueError(f"the GRU op's {what} must have {ndim} dimensions, got {x.ndim}")
    if dtype is not None and x.dtype != dtype:
        x = T.cast(x, dtype)
    if x.dtype not in ("float32", "float64"):
        raise ValueError(f"the GRU op computes in float32 or float64; {what} is {x.dtype}")
    return x


def _inputs(xp, mask, W_hh, b_hh) -> list:
    xp = _as_float_tensor(xp, 3, "input projection xp (B, L, 3H)")
    dtype = xp.dtype
    return [xp, _as_float_tensor(mask, 2, "mask (B, L)", dtype), _as_float_tensor(W_hh, 2, "W_hh (3H, H)", dtype),
            _as_float_tensor(b_hh, 1, "b_hh (3H,)", dtype)]


def _infer_shape(args):
    # PyTensor calls infer_shape(fgraph, node, shapes), Theano 1.0 infer_shape(node, shapes)
    node, shapes = args[-2:]
    return node, shapes


class GRULayerOp(Op):
    """``hs, cache = GRULayerOp(go_backwards)(xp, mask, W_hh, b_hh)``: one GRU direction.

    ``xp`` ``(B, L, 3H)``: the input projection ``x W_ih^T + b_ih`` of every position (one matrix
    product outside the op); ``mask`` ``(B, L)`` of 0/1; ``W_hh`` ``(3H, H)``, ``b_hh`` ``(3H,)`` in
    torch's gate order ``[r, z, n]``. ``hs`` ``(B, L, H)``: the states in the original time order;
    ``cache``: the gates of every real token, for :class:`GRULayerGradOp` only. Gradients reach
    ``xp``, ``W_hh`` and ``b_hh``; the mask is not differentiable (disconnected).
    """

    __props__ = ("go_backwards",)

    def __init__(self, go_backwards: bool = False):
        self.go_backwards = bool(go_backwards)

    def make_node(self, xp, mask, W_hh, b_hh):
        inputs = _inputs(xp, mask, W_hh, b_hh)
        dtype = inputs[0].dtype
        return Apply(self, inputs, [T.tensor3(dtype=dtype), T.vector(dtype=dtype)])

    def perform(self, node, inputs, output_storage):
        hs, cache = gru_forward(*inputs, go_backwards=self.go_backwards)
        output_storage[0][0], output_storage[1][0] = hs, cache

    def infer_shape(self, *args):
        node, (xp_shape, mask_shape, w_shape, _) = _infer_shape(args)
        n_tokens = T.cast(T.sum(T.eq(node.inputs[1], 1)), "int64")
        return [(xp_shape[0], xp_shape[1], w_shape[1]), (n_tokens * _CACHE_BLOCKS * w_shape[1],)]

    def connection_pattern(self, node):
        # rows: inputs; columns: (hs, cache). The cache is internal: no gradient flows through it.
        return [[True, False], [False, False], [True, False], [True, False]]

    def pullback(self, inputs, outputs, cotangents):
        """The gradients of the inputs given the gradient ``cotangents[0]`` of ``hs`` (PyTensor 3
        calls this ``pullback``, Theano 1.0 ``L_op``: the same method under both names)."""
        xp, mask, W_hh, b_hh = inputs
        g_hs = cotangents[0]
        if isinstance(g_hs.type, DisconnectedType):
            return [T.zeros_like(xp), DisconnectedType()(), T.zeros_like(W_hh), T.zeros_like(b_hh)]
        d_xp, d_W, d_b = GRULayerGradOp(self.go_backwards)(xp, mask, W_hh, b_hh, outputs[1], g_hs)
        return [d_xp, DisconnectedType()(), d_W, d_b]

    L_op = pullback


class GRULayerGradOp(Op):
    """``d_xp, d_W_hh, d_b_hh = GRULayerGradOp(go_backwards)(xp, mask, W_hh, b_hh, cache, g_hs)``:
    backpropagation through time for :class:`GRULayerOp` (numpy, real tokens only)."""

    __props__ = ("go_backwards",)

    def __init__(self, go_backwards: bool = False):
        self.go_backwards = bool(go_backwards)

    def make_node(self, xp, mask, W_hh, b_hh, cache, g_hs):
        inputs = _inputs(xp, mask, W_hh, b_hh)
        dtype = inputs[0].dtype
        inputs += [_as_float_tensor(cache, 1, "cache", dtype), _as_float_tensor(g_hs, 3, "state gradient", dtype)]
        return Apply(self, inputs, [T.tensor3(dtype=dtype), T.matrix(dtype=dtype), T.vector(dtype=dtype)])

    def perform(self, node, inputs, output_storage):
        for store, value in zip(output_storage, gru_backward(*inputs, go_backwards=self.go_backwards)):
            store[0] = value

    def infer_shape(self, *args):
        _, shapes = _infer_shape(args)
        return [shapes[0], shapes[2], shapes[3]]


def gru_layer_op(xp, mask, W_hh, b_hh, go_backwards: bool = False):
    """The states ``hs`` ``(B, L, H)`` of one GRU direction, computed by :class:`GRULayerOp`
    (the same function as ``scan`` over :func:`~course_lib.theano_models.askgru.gru_step`)."""
    return GRULayerOp(go_backwards)(xp, mask, W_hh, b_hh)[0]
