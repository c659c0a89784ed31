"""GRU4Rec (Hidasi et al., ICLR 2016) in the Theano programming model.

The same model, option names and weights as :mod:`course_lib.torch_models.gru4rec`, written the
way the authors' original code is: a symbolic graph for one session-parallel mini-batch step whose
``updates`` list holds the whole optimiser, including the row-wise (sparse) updates of the item
matrices. Options: ``loss`` (cross-entropy with optional ``logq``, bpr-max with ``bpreg``,
top1-max, bpr, top1), ``n_sample`` extra negatives drawn with probability
``popularity ** sample_alpha``, ``embedding`` (0 = one-hot input), ``constrained_embedding``,
``layers``, ``dropout_p_embed``, ``dropout_p_hidden``, ``dropout_state`` (the next step starts
from the dropped-out hidden state, "dropped", as in the authors' code, or from the undropped one,
"kept"), ``final_act``, ``optimizer`` (Adagrad with
``momentum`` as in the authors' code, or Adam), ``learning_rate``, ``batch_size``, ``n_epochs``.

The GRU step is GRU4Rec's (paper eqs. 2-5, the classic Theano GRU): the reset gate multiplies
``h`` *before* the recurrent matrix, ``tanh(W x + U (r * h))``, and the update gate interpolates
``h' = (1 - z) h + z h_cand``. The PyTorch track of GRU4Rec writes the same step by hand (it
does not use ``torch.nn.GRU``), so the two tracks agree to rounding.

Data preparation, session-parallel batches, negative samples and argument checks come from
:mod:`course_lib.sessions` (numpy only, no torch), so both tracks see exactly the same steps and
negatives; the fitted model follows the session scorer protocol (``item_ids``, ``reset``,
``reset_slots``, ``score_next``).

The training step differentiates the library's cross-entropy and BPR-max through two operations
with a hand-written gradient (``_CrossEntropyOp``, ``_BPRMaxOp``: loss and gradient in numpy, whose
exp and log are vectorised), as the PyTorch track writes those two gradients by hand; the symbolic
losses below are the definition, what the tests compare the operations with, and what a subclass
that overrides ``loss_function`` (and every other loss) is trained with, through ``theano.grad``.

The same parts, names and order as the PyTorch module: the losses; :class:`GRU4Rec` (the
hyperparameters as explicit attributes, the weights ``W`` as shared variables, the symbolic GRU
step, the scorer protocol, ``save``/``load``); :class:`RowOptimizer`, which writes the optimiser
as an update list; :func:`train_step`, one step through a compiled function; and
:func:`train_gru4rec`, the training loop, which runs any step function with the signature of
:func:`train_step`.
"""
from __future__ import annotations

import json
import time
from typing import Callable

import numpy as np
import pandas as pd

from course_lib.sessions import (
    DEFAULTS, LOSSES, Batch, GRU4RecSettings, SampleStore, check_slot_items, diverged_cause, epoch_record,
    parse_final_act, prepare_sessions, session_parallel_batches, start_training,
)
from course_lib.theano_models.compat import (
    Apply, DisconnectedType, Op, Params, RandomStream, T, dropout, elu, floatX, function, grad_not_implemented,
    log_sigmoid, log_softmax, sigmoid, theano,
)
from course_lib.validation import check_finite

__all__ = ["LOSSES", "Batch", "cross_entropy_loss", "bpr_loss", "top1_loss", "bpr_max_loss", "top1_max_loss",
           "final_activation", "GRU4Rec", "RowOptimizer", "train_step", "train_gru4rec",
           "session_parallel_batches"]

_BIG = 1e30  # stands in for infinity when a column is masked out of a softmax


# ---------------------------------------------------------------------------------------------
# Losses. ``scores`` is (B, B + S): column j < B holds the target of slot j (the target of row i
# is on the diagonal), then the S extra samples. Every loss is averaged over the B rows.
# ---------------------------------------------------------------------------------------------
def _split(scores):
    """Target scores (B, 1) and a (B, B + S) 0/1 matrix that is 1 on the negatives."""
    b = scores.shape[0]
    target = scores[T.arange(b), T.arange(b)][:, None]
    neg = 1 - T.eye(b, scores.shape[1], dtype=scores.dtype)
    return target, neg


def cross_entropy_loss(scores, log_q=None, logq: float = 0.0):
    """``L_i = -log softmax(r)_i`` over targets + samples; with ``logq`` every column's score becomes
    ``r_j - logq * log q_j`` (sampled-softmax correction, ``log_q`` (B + S,))."""
    if logq and log_q is not None:
        scores = scores - np.asarray(logq, dtype=scores.dtype) * log_q[None, :]
    b = scores.shape[0]
    return -log_softmax(scores)[T.arange(b), T.arange(b)].mean()


def bpr_loss(scores):
    """``L_i = -1/N_S sum_{j != i} log sigmoid(r_i - r_j)``."""
    target, neg = _split(scores)
    return ((-log_sigmoid(target - scores) * neg).sum(axis=1) / neg.sum(axis=1)).mean()


def top1_loss(scores):
    """``L_i = 1/N_S sum_{j != i} [sigmoid(r_j - r_i) + sigmoid(r_j ** 2)]``."""
    target, neg = _split(scores)
    per_pair = sigmoid(scores - target) + sigmoid(scores**2)
    return ((per_pair * neg).sum(axis=1) / neg.sum(axis=1)).mean()


def _neg_log_softmax(scores, neg):
    """Log-softmax over the negatives of each row; the target gets (practically) ``-inf``."""
    masked = T.switch(neg > 0, scores, -_BIG)
    m = masked.max(axis=1, keepdims=True)
    return masked - m - T.log(T.exp(masked - m).sum(axis=1, keepdims=True))


def bpr_max_loss(scores, bpreg: float = 1.0):
    """BPR-max (Hidasi & Karatzoglou 2017): ``L_i = -log sum_j s_j sigmoid(r_i - r_j) + bpreg sum_j s_j r_j^2``
    with ``s_j`` the softmax over the negatives; the first term is a log-sum-exp of
    ``log s_j + log sigmoid(r_i - r_j)`` so it stays finite when every sigmoid underflows."""
    target, neg = _split(scores)
    log_s = _neg_log_softmax(scores, neg)
    z = log_s + log_sigmoid(target - scores) * neg  # (B, B + S)
    zm = z.max(axis=1, keepdims=True)
    ranking = -(zm[:, 0] + T.log(T.exp(z - zm).sum(axis=1)))
    reg = (T.exp(log_s) * scores**2).sum(axis=1)
    return (ranking + np.asarray(bpreg, dtype=scores.dtype) * reg).mean()


def top1_max_loss(scores):
    """TOP1-max: ``L_i = sum_j s_j [sigmoid(r_j - r_i) + sigmoid(r_j^2)]``, ``s_j`` as in BPR-max."""
    target, neg = _split(scores)
    s = T.exp(_neg_log_softmax(scores, neg))
    return (s * (sigmoid(scores - target) + sigmoid(scores**2))).sum(axis=1).mean()


# The two losses the authors' code trains with, as operations with a hand-written gradient (the Theano
# form of the PyTorch track's ``_cross_entropy_grad`` / ``_bpr_max_grad``). The symbolic losses above
# evaluate their exponentials and logarithms in PyTensor's C loops one element at a time, about ten
# per score for BPR-max and its autograd gradient; these compute the loss and its gradient together in
# numpy, whose exp and log are vectorised, with two exponentials per score. The training step uses them
# for the library's own ``loss_function`` (:func:`_training_loss`); the tests check them against the
# symbolic losses, their autograd gradients and finite differences.
def _cross_entropy_np(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy of the (B, C) scores ``x`` (targets on the diagonal) and its gradient
    ``(softmax(x)_ij - [i == j]) / B``, in the dtype of ``x``."""
    b = x.shape[0]
    rows = np.arange(b)
    m = x.max(axis=1, keepdims=True)  # (B, 1)
    p = np.exp(x - m)  # (B, C) unnormalised softmax
    z = p.sum(axis=1, keepdims=True)
    loss = np.mean(np.log(z[:, 0]) + m[:, 0] - x[rows, rows])
    p *= (1 / (z * b)).astype(x.dtype)
    p[rows, rows] -= x.dtype.type(1 / b)
    return np.asarray(loss, dtype=x.dtype), p


def _bpr_max_np(x: np.ndarray, bpreg: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean BPR-max loss of the (B, C) scores ``x`` (:func:`bpr_max_loss`) and its gradient, in the dtype
    of ``x``. With ``s`` the softmax over the negatives, ``sigma_ij = sigmoid(r_ii - r_ij)``,
    ``A_i = sum_j s_ij sigma_ij``, ``w_ij = s_ij sigma_ij / A_i`` and ``E_i = sum_j s_ij r_ij^2``:
    ``L_i = -log A_i + bpreg E_i``, ``dL_i/dr_ij = s_ij (1 + bpreg (r_ij^2 + 2 r_ij - E_i)) - w_ij sigma_ij``
    for a negative ``j`` and ``dL_i/dr_ii = -sum_j w_ij (1 - sigma_ij)``. A row whose ``A_i`` is too
    small for its floating-point type (every sigmoid underflows) gets ``log A_i`` and ``w`` as a
    log-sum-exp instead, so the loss stays finite there as in :func:`bpr_max_loss`."""
    b, c = x.shape
    if c < 2:  # no negatives: nothing to rank against
        return np.zeros((), dtype=x.dtype), np.zeros_like(x)
    # in-place numpy passes over (B, C) buffers: at these sizes a fresh array costs as much as the arithmetic
    dt, rows, info = x.dtype.type, np.arange(b), np.finfo(x.dtype)
    target = x[rows, rows][:, None]  # (B, 1)
    s = x.copy()
    s[rows, rows] = -np.inf  # the target is not a negative
    m = s.max(axis=1, keepdims=True)
    np.exp(np.subtract(s, m, out=s), out=s)  # (B, C) unnormalised softmax, 0 on the target
    z = s.sum(axis=1, keepdims=True)  # >= 1: the largest negative contributes exp(0)
    s *= 1 / z
    # sigma = 1 / (1 + e) with e = exp(r_ij - r_ii), capped so that e and 1 + e stay finite (sigma then
    # differs from the exact value by less than 1e-37); 1 - sigma = e * sigma, without cancellation
    e = np.subtract(x, target)
    np.exp(np.minimum(e, dt(np.log(info.max) - 1), out=e), out=e)
    sig = np.add(e, 1)
    np.reciprocal(sig, out=sig)
    one_minus = np.multiply(e, sig, out=e)
    w = s * sig
    a = w.sum(axis=1)  # (B,)
    g = x * x  # r^2, then the gradient
    e_reg = np.einsum("ij,ij->i", s, g)  # (B,)
    cb = dt(1 / b)  # the gradient is of the mean over rows
    small = a < info.tiny / info.eps
    log_a = np.log(np.where(small, 1, a))
    w *= (cb / np.where(small, 1, a))[:, None]  # cb * w
    if small.any():  # log w = log s + log sigma - log A, as a log-sum-exp
        xs, ts = x[small], target[small]
        log_s = xs - m[small] - np.log(z[small])
        log_s[np.arange(len(xs)), rows[small]] = -np.inf
        dd = xs - ts
        lz = log_s - (np.maximum(dd, 0) + np.log1p(np.exp(-np.abs(dd))))  # log s + log sigmoid(r_ii - r_ij)
        lzm = lz.max(axis=1, keepdims=True)
        log_a[small] = lzm[:, 0] + np.log(np.exp(lz - lzm).sum(axis=1))
        w[small] = cb * np.exp(lz - log_a[small][:, None])
    loss = np.mean(dt(bpreg) * e_reg - log_a)
    diag = np.einsum("ij,ij->i", w, one_minus)  # cb sum_j w_ij (1 - sigma_ij)
    g += x
    g += x
    g -= e_reg[:, None]
    g *= dt(bpreg) * cb
    g += cb
    g *= s
    w *= sig
    g -= w
    g[rows, rows] = -diag
    return np.asarray(loss, dtype=x.dtype), g


class _OutputLoss(Op):
    """``loss, grad = op(scores)``: a training loss of the (B, C) scores and its gradient, computed in
    numpy by :meth:`loss_and_grad`; ``theano.grad`` of ``loss`` is ``grad`` times the incoming gradient
    (the second output is there for that; differentiating it is not implemented)."""

    __props__: tuple = ()

    def make_node(self, scores):
        scores = T.as_tensor_variable(scores)
        if scores.ndim != 2 or scores.dtype not in ("float32", "float64"):
            raise ValueError(f"{type(self).__name__[1:]} needs a float32 or float64 matrix of scores (B, B + S), "
                             f"got {scores.ndim} dimensions of {scores.dtype}")
        return Apply(self, [scores], [T.scalar(dtype=scores.dtype), scores.type()])

    def loss_and_grad(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def perform(self, node, inputs, output_storage, params=None):
        (x,) = inputs
        if x.shape[1] < x.shape[0]:
            raise ValueError(f"scores of shape {x.shape}: need at least as many columns (targets + samples) as rows")
        with np.errstate(over="ignore", under="ignore"):  # exp overflows only where a sigmoid is 0
            loss, grad = self.loss_and_grad(x)
        output_storage[0][0], output_storage[1][0] = loss, grad

    def infer_shape(self, *args):  # (fgraph, node, shapes) in PyTensor, (node, shapes) in Theano
        return [(), args[-1][0]]

    def pullback(self, inputs, outputs, cotangents):
        g_loss, g_grad = cotangents
        if isinstance(g_loss.type, DisconnectedType) or not isinstance(g_grad.type, DisconnectedType):
            return [grad_not_implemented(self, 0, inputs[0], "the gradient output of a loss is not differentiable")]
        return [g_loss * outputs[1]]

    L_op = pullback  # the name Theano 1.0 calls (PyTensor 3 calls pullback)


class _CrossEntropyOp(_OutputLoss):
    """Cross-entropy over each row, targets on the diagonal (:func:`cross_entropy_loss` without logq)."""

    def loss_and_grad(self, x):
        return _cross_entropy_np(x)


class _BPRMaxOp(_OutputLoss):
    """BPR-max with regularisation ``bpreg`` (:func:`bpr_max_loss`)."""

    __props__ = ("bpreg",)

    def __init__(self, bpreg: float):
        self.bpreg = float(bpreg)

    def loss_and_grad(self, x):
        return _bpr_max_np(x, self.bpreg)


def final_activation(name: str) -> Callable:
    """``linear``, ``tanh``, ``relu``, ``elu-<alpha>`` or ``leaky-<slope>`` on the scores (names
    parsed by :func:`course_lib.sessions.parse_final_act`)."""
    kind, p = parse_final_act(name)
    if kind == "linear":
        return lambda x: x
    return {"tanh": T.tanh, "relu": lambda x: T.maximum(x, 0), "elu": lambda x: elu(x, p),
            "leaky": lambda x: T.switch(x > 0, x, p * x)}[kind]


def _uniform(rng, shape, fan_in, fan_out):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (the initialisation of the paper's code)."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class GRU4Rec(GRU4RecSettings):
    """Session-based recommender with GRU layers, every training option switchable by name.

    Same constructor, attributes and defaults as the PyTorch ``GRU4Rec`` (see there, and
    ``course_lib.sessions.DEFAULTS``), without ``device`` and the two switches that only the
    PyTorch track has (``reset_after``, ``logq_counts``), plus ``dtype`` (default floatX). Weights
    are shared variables named as the PyTorch track's ``W`` (``E``, ``Wx0``, ``Wrz0``, ``Wh0``,
    ``b0``, ..., ``Wy`` with the output bias as its last column), so :meth:`load_weights` takes
    ``torch_model.W``.
    """

    def __init__(self, layers=DEFAULTS["layers"], loss=DEFAULTS["loss"], final_act=DEFAULTS["final_act"],
                 n_sample=DEFAULTS["n_sample"], sample_alpha=DEFAULTS["sample_alpha"], logq=DEFAULTS["logq"],
                 bpreg=DEFAULTS["bpreg"], embedding=DEFAULTS["embedding"],
                 constrained_embedding=DEFAULTS["constrained_embedding"], dropout_p_embed=DEFAULTS["dropout_p_embed"],
                 dropout_p_hidden=DEFAULTS["dropout_p_hidden"], optimizer=DEFAULTS["optimizer"],
                 learning_rate=DEFAULTS["learning_rate"], momentum=DEFAULTS["momentum"],
                 batch_size=DEFAULTS["batch_size"], n_epochs=DEFAULTS["n_epochs"],
                 sample_store_size=DEFAULTS["sample_store_size"], seed=DEFAULTS["seed"],
                 dropout_state=DEFAULTS["dropout_state"], dtype: str | None = None):
        self._set_settings(locals())  # layers ... dropout_state, checked (course_lib.sessions)
        self.logq_counts = False  # log-probabilities, as the PyTorch track's default
        self.dtype: str = dtype or floatX()
        # filled by init_weights / training
        self.W: Params | None = None
        self.item_ids: np.ndarray | None = None
        self.popularity: np.ndarray | None = None
        self.history: list[dict] = []
        self.data_report: dict = {}
        self.compile_seconds: dict[str, float] = {}
        self._act = final_activation(self.final_act)
        self._score_fn = None  # compiled by the first score_next
        self._H: list[np.ndarray] | None = None  # the scorer's hidden states

    @property
    def params(self) -> dict:
        """The constructor arguments (without ``dtype``), as saved with the model."""
        return {**{name: getattr(self, name) for name in DEFAULTS}, "layers": list(self.layers)}

    @staticmethod
    def prepare(df: pd.DataFrame, what: str = "train") -> tuple[pd.DataFrame, dict]:
        """Validate a session frame and put it in training order (:func:`course_lib.sessions.prepare_sessions`)."""
        return prepare_sessions(df, what)

    # --- weights -----------------------------------------------------------------------------------
    def init_weights(self, n_items: int) -> None:
        """The PyTorch track's shapes and initialisation (numbers from ``numpy``, not torch)."""
        rng = np.random.default_rng(self.seed)
        W = self.W = Params(self.dtype)
        L = self.layers
        if self.constrained_embedding:
            d_in = L[-1]
        elif self.embedding:
            d_in = self.embedding
            W.add("E", _uniform(rng, (n_items, d_in), n_items, d_in))
        else:
            d_in = n_items
        for k, h in enumerate(L):
            W.add(f"Wx{k}", np.concatenate([_uniform(rng, (d_in, h), d_in, h) for _ in range(3)], 1))  # (d_in, 3h)
            W.add(f"Wrz{k}", np.concatenate([_uniform(rng, (h, h), h, h) for _ in range(2)], 1))  # (h, 2h)
            W.add(f"Wh{k}", _uniform(rng, (h, h), h, h))  # (h, h)
            W.add(f"b{k}", np.zeros(3 * h))
            d_in = h
        # output weights with the output bias as their last column: (n_items, h_last + 1)
        W.add("Wy", np.concatenate([_uniform(rng, (n_items, L[-1]), n_items, L[-1]), np.zeros((n_items, 1))], 1))
        self._score_fn = None

    def load_weights(self, weights, strict: bool = True) -> None:
        """Copy a ``{name: array or torch tensor}`` dict (e.g. the PyTorch track's ``W``) in."""
        self.W.load_state_dict(dict(weights.items()), strict=strict)

    @property
    def row_weights(self) -> tuple[str, ...]:
        """The item-indexed weights, which a step updates only on the rows it used."""
        return ("Wy",) if self.constrained_embedding else ("Wy", "E") if self.embedding else ("Wy", "Wx0")

    @property
    def input_table(self) -> str:
        """The weight whose rows are the input of an item: ``Wx0``, ``E`` or ``Wy`` (constrained)."""
        if self.constrained_embedding:
            return "Wy"
        return "E" if self.embedding else "Wx0"

    def rows_used(self, x, cols) -> dict:
        """The rows of each item-indexed weight that a step with inputs ``x`` and output columns
        ``cols`` uses (repeats allowed)."""
        if self.constrained_embedding:
            return {"Wy": np.concatenate([cols, x])}
        return {"Wy": cols, self.input_table: x}

    # --- the forward step (symbolic) ------------------------------------------------------------------
    def gru_cell(self, k: int, gi, h):
        """One GRU step of layer ``k`` (paper eqs. 2-5); ``gi`` (B, 3h) is ``W x + b`` of the three gates."""
        n = self.layers[k]
        rz = sigmoid(gi[:, : 2 * n] + T.dot(h, self.W[f"Wrz{k}"]))  # (B, 2h)
        r, z = rz[:, :n], rz[:, n:]
        cand = T.tanh(gi[:, 2 * n :] + T.dot(r * h, self.W[f"Wh{k}"]))  # eq. 4, (B, h)
        return (1 - z) * h + z * cand  # eq. 2

    def input_rows(self, x):
        """The input rows of items ``x`` (B,) int64: rows of ``Wx0``, ``E``, or ``Wy`` without the bias."""
        table = self.W[self.input_table]
        return table[x, :-1] if self.constrained_embedding else table[x]

    def input_gates(self, x_rows, train: bool, stream=None):
        """Gate pre-activations of the first layer (B, 3h0) from the input rows (dropout when ``train``)."""
        if self.embedding or self.constrained_embedding:
            x_rows = dropout(x_rows, self.dropout_p_embed, stream, train)
            return T.dot(x_rows, self.W["Wx0"]) + self.W["b0"]
        if train and self.dropout_p_embed > 0:  # one-hot input: dropping the unit drops the whole row
            u = stream.uniform((x_rows.shape[0], 1), dtype=x_rows.dtype)  # one draw per row
            keep = T.cast(u >= self.dropout_p_embed, x_rows.dtype)
            x_rows = x_rows * keep / np.asarray(1 - self.dropout_p_embed, dtype=x_rows.dtype)
        return x_rows + self.W["b0"]

    def hidden_layers(self, gi0, hidden: list, train: bool, stream=None):
        """Every GRU layer for one step: the last layer's output and the new states (as the PyTorch track)."""
        new_h, gi, out = [], gi0, None
        for k in range(len(self.layers)):
            if k > 0:
                gi = T.dot(out, self.W[f"Wx{k}"]) + self.W[f"b{k}"]
            h = self.gru_cell(k, gi, hidden[k])
            out = dropout(h, self.dropout_p_hidden, stream, train)
            new_h.append(out if self.dropout_state == "dropped" else h)
        return out, new_h

    def forward(self, x, hidden: list, train: bool = False, stream=None):
        """One step for items ``x`` (B,) from ``hidden``: the output (B, h_last) and the new states."""
        return self.hidden_layers(self.input_gates(self.input_rows(x), train, stream), hidden, train, stream)

    def score_items(self, out, cols=None):
        """Scores (B, C) of the items ``cols`` (all items when None) for the outputs ``out`` (B, h_last)."""
        Wy = self.W["Wy"] if cols is None else self.W["Wy"][cols]
        return self._act(T.dot(out, Wy[:, :-1].T) + Wy[:, -1])

    def loss_function(self, scores, log_q=None):
        """The configured loss of (B, B + S) scores, averaged over rows."""
        if self.loss == "cross-entropy":
            return cross_entropy_loss(scores, log_q, self.logq)
        if self.loss == "bpr-max":
            return bpr_max_loss(scores, self.bpreg)
        return {"top1-max": top1_max_loss, "bpr": bpr_loss, "top1": top1_loss}[self.loss](scores)

    def _hidden_inputs(self, tag: str) -> list:
        return [T.matrix(f"{tag}{k}", dtype=self.dtype) for k in range(len(self.layers))]  # (B, h_k)

    # --- training --------------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None, progress: bool = True,
            eval_cutoff: int = 20, step_fn: Callable | None = None, make_optimizer: Callable | None = None,
            init_weights=None) -> "GRU4Rec":
        """Train on ``train`` (SessionId, ItemId, Time) with :func:`train_gru4rec`, exactly as the
        PyTorch track does (same data preparation, batches and negative samples for the same seed).
        ``init_weights``: optional ``{name: array}`` to start from (the parity tests pass the PyTorch
        model's initial ``W``)."""
        return train_gru4rec(self, train, valid, progress=progress, eval_cutoff=eval_cutoff, step_fn=step_fn,
                             make_optimizer=make_optimizer, init_weights=init_weights)

    # --- session scorer protocol --------------------------------------------------------------------
    def _check_fitted(self):
        if self.item_ids is None:
            raise ValueError("this GRU4Rec is not trained yet: call fit(train) or GRU4Rec.load(path) first")

    def reset(self, n_slots: int) -> None:
        """Fresh zero hidden states for ``n_slots`` parallel sessions."""
        self._check_fitted()
        self._H = [np.zeros((int(n_slots), h), dtype=self.dtype) for h in self.layers]

    def reset_slots(self, mask) -> None:
        """Zero the hidden state of the slots where ``mask`` is True."""
        m = np.asarray(mask, dtype=bool)[:, None]
        self._H = [np.where(m, 0.0, h).astype(self.dtype) for h in self._H]

    def keep_slots(self, mask) -> None:
        """Keep only the slots where ``mask`` is True, in order (finished slots leave the batch)."""
        m = np.asarray(mask, dtype=bool)
        self._H = [h[m] for h in self._H]

    def score_next(self, item_idx) -> np.ndarray:
        """Scores ``(n_slots, n_items)`` of every training item as the next click of each slot."""
        idx = check_slot_items(item_idx, self._H, self.item_ids)
        if self._score_fn is None:
            t0 = time.perf_counter()
            x = T.vector("x", dtype="int64")
            H = self._hidden_inputs("h")
            out, h_new = self.forward(x, H, train=False)
            self._score_fn = function([x, *H], [self.score_items(out), *h_new], name="gru4rec_score")
            self.compile_seconds["score_next"] = time.perf_counter() - t0
        scores, *self._H = self._score_fn(idx, *self._H)
        return scores

    # --- persistence -----------------------------------------------------------------------------
    def save(self, path) -> None:
        """Hyperparameters, items, weights, history and data report in one ``.npz`` file."""
        self._check_fitted()
        ids = self.item_ids.astype(str) if self.item_ids.dtype == object else self.item_ids
        np.savez(path, params=json.dumps(self.params), item_ids=ids, popularity=self.popularity,
                 history=json.dumps(self.history), data_report=json.dumps(self.data_report),
                 **{f"W.{k}": v for k, v in self.W.state_dict().items()})

    @classmethod
    def load(cls, path, dtype: str | None = None) -> "GRU4Rec":
        """A model saved by :meth:`save`."""
        try:
            data = np.load(path, allow_pickle=False)
            params = json.loads(str(data["params"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path} is not a GRU4Rec saved by course_lib ({type(exc).__name__}: {exc}); "
                             "save one with model.save(path)") from None
        model = cls(**params, dtype=dtype)
        model.item_ids, model.popularity = data["item_ids"], data["popularity"]
        model.history, model.data_report = json.loads(str(data["history"])), json.loads(str(data["data_report"]))
        model.init_weights(len(model.item_ids))
        model.load_weights({k[2:]: data[k] for k in data.files if k.startswith("W.")})
        return model


# ---------------------------------------------------------------------------------------------
# Optimiser: an update list
# ---------------------------------------------------------------------------------------------
class RowOptimizer:
    """Adagrad with momentum (``G += g^2; v = momentum v + lr g / sqrt(G + eps); w -= v``) or Adam,
    written as an update list (the PyTorch track's ``RowOptimizer``); the item-indexed weights are
    updated on the rows a step gathered only. Its state lives in shared variables, created for the
    weights of ``params``; :func:`train_step` compiles its step function once per optimiser."""

    def __init__(self, params: Params, method: str = "adagrad", lr: float = 0.05, momentum: float = 0.0,
                 eps: float = 1e-6, betas=(0.9, 0.999)):
        self.params = params
        self.method, self.lr, self.momentum, self.eps, self.betas = method, lr, momentum, eps, betas
        self.state = {n: (theano.shared(np.zeros_like(v.get_value()), name=f"s1_{n}"),
                          theano.shared(np.zeros_like(v.get_value()), name=f"s2_{n}"))
                      for n, v in params.shared.items()}
        self.t = theano.shared(np.asarray(0.0, dtype=params.dtype), name="adam_t")
        self.step_function = None  # compiled by train_step

    @classmethod
    def for_model(cls, model: GRU4Rec) -> "RowOptimizer":
        """The optimiser that ``model``'s settings ask for (``optimizer``, ``learning_rate``, ``momentum``)."""
        return cls(model.W, model.optimizer, model.learning_rate, model.momentum)

    def updates(self, leaves: dict, rows: dict, dense: list, grads: list) -> list:
        """The update list for the gathered ``leaves`` (their rows in ``rows``) and the ``dense``
        weights, from ``grads`` (leaves first, then dense, in that order)."""
        dt = self.params.dtype
        c = lambda v: np.asarray(v, dtype=dt)  # noqa: E731
        lr, mom, eps = c(self.lr), c(self.momentum), c(self.eps)
        (b1, b2), t_new = self.betas, self.t + c(1.0)
        updates = [(self.t, t_new)]
        targets = [(n, rows[n]) for n in leaves] + [(n, None) for n in dense]
        for (name, idx), g in zip(targets, grads):
            s1, s2 = self.state[name]
            param = self.params[name]
            if idx is None:
                take, put = (lambda buf: buf), (lambda buf, v: (buf, v))
            else:  # read and write back only the rows of this step
                take, put = (lambda buf: buf[idx]), (lambda buf, v: (buf, T.set_subtensor(buf[idx], v)))
            if self.method == "adagrad":
                acc = take(s1) + g**2
                step = lr * g / T.sqrt(acc + eps)
                if self.momentum > 0:
                    step = mom * take(s2) + step
                    updates.append(put(s2, step))
                updates.append(put(s1, acc))
            else:
                m = c(b1) * take(s1) + c(1 - b1) * g
                v = c(b2) * take(s2) + c(1 - b2) * g**2
                updates += [put(s1, m), put(s2, v)]
                step = lr * (m / (c(1) - c(b1) ** t_new)) / (T.sqrt(v / (c(1) - c(b2) ** t_new)) + c(1e-8))
            updates.append(put(param, take(param) - step))
        return updates


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def _compile_train_step(model: GRU4Rec, optimizer: RowOptimizer):
    """``step(uniq_o, inv_o, uniq_i, inv_i, n_cols, log_q, *H) -> [loss, *H_new]``.

    ``uniq_*`` are the distinct rows of an item matrix that the step touches (``o``: the output
    matrix ``Wy``, ``i``: the input table) and ``inv_*`` map each use back to them
    (``np.unique(..., return_inverse=True)``). The gradient is taken with respect to the gathered
    rows only and the update list writes those rows back, so a step costs O(batch) instead of
    O(n_items): the sparse update of the authors' code.
    """
    dt, W = model.dtype, model.W
    ivec = lambda name: T.vector(name, dtype="int64")  # noqa: E731
    uniq_o, inv_o, uniq_i, inv_i = ivec("uniq_o"), ivec("inv_o"), ivec("uniq_i"), ivec("inv_i")
    n_cols = T.scalar("n_cols", dtype="int64")  # C = B + S
    log_q = T.vector("log_q", dtype=dt)  # (C,)
    H = model._hidden_inputs("h")
    stream = RandomStream(model.seed + 1)
    table = model.input_table
    leaves = {"Wy": W["Wy"][uniq_o]}  # (U, h_last + 1): output weights, bias in the last column
    rows = {"Wy": uniq_o}
    if table != "Wy":
        leaves[table], rows[table] = W[table][uniq_i], uniq_i
        x_rows = leaves[table][inv_i]  # (B, 3h0) one-hot rows of Wx0, or (B, emb)
    else:  # constrained embedding: the inputs are rows of Wy (without the bias column)
        x_rows = leaves["Wy"][inv_o[n_cols:], :-1]  # (B, h_last)
    out, h_new = model.hidden_layers(model.input_gates(x_rows, True, stream), H, True, stream)  # (B, h_last)
    out = T.concatenate([out, T.ones((out.shape[0], 1), dtype=dt)], axis=1)  # the 1 multiplies the bias
    scores = model._act(T.dot(out, leaves["Wy"][inv_o[:n_cols]].T))  # (B, C)
    loss = _training_loss(model, scores, log_q)
    dense = [n for n in W.shared if n not in model.row_weights]
    # a shrunken tail batch weighs in proportion to its size, as in the authors' code
    weight = T.cast(out.shape[0], dt) / np.asarray(model.batch_size, dtype=dt)
    grads = theano.grad(loss * weight, list(leaves.values()) + [W[n] for n in dense])
    updates = optimizer.updates(leaves, rows, dense, grads)
    return function([uniq_o, inv_o, uniq_i, inv_i, n_cols, log_q, *H], [loss, *h_new],
                    updates=updates + stream.pop_updates(), name="gru4rec_step")


def _training_loss(model: GRU4Rec, scores, log_q):
    """The loss the step differentiates: for the library's own cross-entropy and BPR-max (a model whose
    ``loss_function`` is :meth:`GRU4Rec.loss_function`) the operations with a hand-written gradient,
    :class:`_CrossEntropyOp` (after the logq shift, which stays symbolic) and :class:`_BPRMaxOp`; else
    ``model.loss_function`` (a subclass's own loss, the other losses), differentiated by ``theano.grad``."""
    if type(model).loss_function is GRU4Rec.loss_function:
        if model.loss == "cross-entropy":
            if model.logq and log_q is not None:
                scores = scores - np.asarray(model.logq, dtype=scores.dtype) * log_q[None, :]
            return _CrossEntropyOp()(scores)[0]
        if model.loss == "bpr-max":
            return _BPRMaxOp(model.bpreg)(scores)[0]
    return model.loss_function(scores, log_q)


def _compiled(model: GRU4Rec, optimizer: RowOptimizer):
    """The optimiser's compiled step function, compiled now if it is not yet (timed in ``compile_seconds``)."""
    if optimizer.step_function is None:
        t0 = time.perf_counter()
        optimizer.step_function = _compile_train_step(model, optimizer)
        model.compile_seconds["train_step"] = time.perf_counter() - t0
    return optimizer.step_function


def train_step(model: GRU4Rec, batch: Batch, hidden: list[np.ndarray], optimizer: RowOptimizer) -> tuple[float, list[np.ndarray]]:
    """One training step (the PyTorch track's :func:`~course_lib.torch_models.gru4rec.train_step`):
    zero the states where ``batch.reset`` is set, then run the compiled step (forward, loss,
    gradient of the gathered rows, the update list). ``batch`` holds numpy arrays; returns the loss
    and the new states (numpy). The step function is compiled at the first call (``compile_seconds``)."""
    _compiled(model, optimizer)
    if batch.reset is not None:
        hidden = [np.where(batch.reset, 0.0, h).astype(model.dtype) for h in hidden]
    x, y = batch.x, batch.y
    cols = y if batch.sample is None else np.concatenate([y, batch.sample])  # (C,) = (B + S,)
    constrained = model.input_table == "Wy"
    uniq_o, inv_o = np.unique(np.concatenate([cols, x]) if constrained else cols, return_inverse=True)
    uniq_i, inv_i = (uniq_o[:0], inv_o[:0]) if constrained else np.unique(x, return_inverse=True)
    log_q = np.zeros(len(cols)) if batch.log_q is None else batch.log_q
    loss, *new_hidden = optimizer.step_function(uniq_o, inv_o, uniq_i, inv_i, len(cols), log_q, *hidden)
    return float(loss), new_hidden


def train_gru4rec(model: GRU4Rec, train: pd.DataFrame, valid: pd.DataFrame | None = None, *, progress: bool = True,
                  eval_cutoff: int = 20, step_fn: Callable | None = None, make_optimizer: Callable | None = None,
                  init_weights=None) -> GRU4Rec:
    """Train ``model`` on ``train`` for ``model.n_epochs`` epochs: the PyTorch track's loop (see
    :func:`course_lib.torch_models.gru4rec.train_gru4rec`) with numpy arrays. Each step calls
    ``loss, new_hidden = step_fn(model, batch, hidden, optimizer)`` (default :func:`train_step`;
    ``optimizer = make_optimizer(model)``, default :meth:`RowOptimizer.for_model`). A NaN or
    infinite loss stops with :class:`course_lib.validation.TrainingDiverged`. Returns ``model``."""
    from tqdm.auto import tqdm

    data, step_fn = start_training(model, train, step_fn, train_step)
    if init_weights is not None:
        model.load_weights(init_weights)
    steps = list(session_parallel_batches(data.offsets, model.batch_size))
    # the PyTorch track's store (numpy here): the same negatives for the same seed
    sampler = SampleStore(data.p_sample, data.n_sample, model.sample_store_size, model.seed + 2,
                          max_chunks=len(steps) * model.n_epochs)
    optimizer = (make_optimizer or RowOptimizer.for_model)(model)
    if step_fn is train_step:
        _compiled(model, optimizer)  # before the clock of the first epoch starts
    n_slots = min(model.batch_size, len(data.offsets) - 1)
    model.history = []
    for epoch in range(model.n_epochs):
        t0, total, n_ev = time.perf_counter(), 0.0, 0
        H = [np.zeros((n_slots, h), dtype=model.dtype) for h in model.layers]
        bar = tqdm(total=data.n_pairs, desc=f"epoch {epoch + 1}/{model.n_epochs}", disable=not progress,
                   leave=False, unit="ev")
        for step_i, step in enumerate(steps):
            x, y = data.item_idx[step.inp], data.item_idx[step.out]
            sample = sampler.next()
            log_q = None
            if model.logq:
                log_q = data.log_q_target[y] if sample is None else np.concatenate(
                    [data.log_q_target[y], data.log_q_sample[sample]])
            reset = step.reset[:, None] if step.reset.any() else None
            batch = Batch(x, y, sample, reset, log_q, len(x) / model.batch_size)
            loss, h_new = step_fn(model, batch, [h[step.slots] for h in H], optimizer)
            loss = check_finite(float(loss), where=f"epoch {epoch + 1}, step {step_i + 1}", cause=diverged_cause(model))
            for h, hn in zip(H, h_new):
                h[step.slots] = hn  # one-step BPTT: the state is carried as a plain array
            total += loss * len(x)
            n_ev += len(x)
            if step_i % 50 == 0:
                bar.update(n_ev - bar.n)
        bar.update(n_ev - bar.n)
        bar.close()
        model.history.append(epoch_record(model, epoch, total, n_ev, time.perf_counter() - t0, valid, eval_cutoff))
    return model
