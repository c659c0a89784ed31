"""GRU4Rec in PyTorch: session-based recommendation with a GRU (Hidasi et al., ICLR 2016).

The model reads one click at a time and scores every item as the next click. Everything the paper
and its later versions (Hidasi & Karatzoglou 2017, "Recurrent Neural Networks with Top-k Gains";
the 2017 RecSys summer school slides) use to train it is here and can be switched by name:

* session-parallel mini-batches (paper, Section 3.1.1;
  :func:`course_lib.sessions.session_parallel_batches`), one-step back-propagation through time,
  the hidden state of a slot reset to zero when its session ends;
* negatives = the other targets of the mini-batch (Section 3.1.2) plus ``n_sample`` extra items drawn
  in proportion to ``popularity ** sample_alpha`` from a precomputed store (top-k gains paper);
* losses: ``cross-entropy`` (softmax, optional ``logq`` correction), ``bpr-max`` (with ``bpreg``),
  ``top1-max``, ``bpr``, ``top1`` (Section 3.1.3 and the top-k gains paper);
* input: one-hot (``embedding=0``), a separate item embedding (``embedding>0`` or
  ``"layersize"``), or the constrained embedding that reuses the output weights
  (``constrained_embedding=True``);
* ``layers`` of GRUs, dropout on the input and on the hidden layers (the dropped-out hidden state is
  carried to the next step, as in the authors' code), a final activation;
* Adagrad with momentum applied only to the rows of the item matrices used in the mini-batch, as in
  the authors' code, or Adam; weights uniform in +-sqrt(6 / (fan_in + fan_out)) (Section 4.2).

BPR and TOP1 follow the original paper and the 2017 slides: ``-1/N_S sum log sigmoid(r_i - r_j)``
and ``1/N_S sum [sigmoid(r_j - r_i) + sigmoid(r_j ** 2)]`` (the Chinese translation in
``shared/papers`` drops BPR's minus sign and garbles TOP1's regulariser). As in the formulas, a
row's own target is not one of its negatives; the authors' code keeps it in the BPR/TOP1 average,
which only adds a constant and rescales the gradient by ``N_S / (N_S + 1)``.

The parts, in reading order: the losses; :class:`GRU4Rec`, an ``nn.Module`` holding the
hyperparameters, the weights (``W``, a ``ParameterDict``), the GRU step and the session scorer
protocol of ``docs/ARCHITECTURE.md`` (``item_ids``, ``reset``, ``reset_slots``, ``score_next``);
:class:`RowOptimizer`; :func:`train_step`, one training step; and :func:`train_gru4rec`, the
training loop, which runs any step function with the signature of :func:`train_step` (see there
how to plug in your own).
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_lib.sessions import (
    DEFAULTS, LOSSES, Batch, GRU4RecSettings, SampleStore, check_slot_items, diverged_cause, epoch_record,
    parse_final_act, prepare_sessions, session_parallel_batches, start_training,
)
from course_lib.torch_models.utils import resolve_device, torch_generator
from course_lib.validation import check_finite

__all__ = ["LOSSES", "Batch", "cross_entropy_loss", "bpr_loss", "top1_loss", "bpr_max_loss", "top1_max_loss",
           "final_activation", "GRU4Rec", "RowOptimizer", "train_step", "train_gru4rec",
           "session_parallel_batches"]


# ---------------------------------------------------------------------------------------------
# Losses. ``scores`` is (B, B + n_sample): row i scores the items of the mini-batch's targets
# (column j < B is the target of slot j, so the target of row i sits on the diagonal) followed by
# the extra samples. Every loss is averaged over the B rows. A row without any negative (a tail
# batch of one slot and no extra samples) gives no ranking signal: the pairwise losses are 0 there.
# ---------------------------------------------------------------------------------------------
def _check_scores(scores, log_q=None) -> None:
    """Scores must be (B, C) with C >= B (the targets first); log_q (C,)."""
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"scores must be a torch tensor (B, B + n_sample), got {type(scores).__name__}")
    if scores.ndim != 2 or scores.shape[1] < scores.shape[0]:
        shape = tuple(scores.shape)
        raise ValueError("scores must be a (B, B + n_sample) tensor: row i scores the B targets of the "
                         f"mini-batch (its own on the diagonal) and then the extra samples; got {shape}")
    if log_q is not None and tuple(log_q.shape) != (scores.shape[1],):
        raise ValueError(f"log_q must have one entry per score column, shape ({scores.shape[1]},); "
                         f"got {tuple(log_q.shape)}")


def _split(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target scores (B, 1) and a (B, B + S) mask that is True on the negatives."""
    b = scores.shape[0]
    target = scores[:, :b].diagonal().unsqueeze(1)
    neg_mask = torch.ones_like(scores, dtype=torch.bool)
    neg_mask[:, :b].fill_diagonal_(False)
    return target, neg_mask


def cross_entropy_loss(scores: torch.Tensor, log_q: torch.Tensor | None = None, logq: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the softmax of the scores (slides, "GRU4Rec (2/3)").

    ``L_i = -log( exp(r_i) / sum_{j in targets+samples} exp(r_j) )``, optionally with the logQ
    correction of sampled softmax: every column's score becomes ``r_j - logq * log q_j`` where
    ``log_q`` (B + S,) is the log-probability that item j is drawn as a column.
    """
    _check_scores(scores, log_q)
    if logq and log_q is not None:
        scores = scores - logq * log_q.unsqueeze(0)
    return -torch.log_softmax(scores, dim=1).diagonal().mean()


def bpr_loss(scores: torch.Tensor) -> torch.Tensor:
    """BPR averaged over the negatives (paper, Section 3.1.3).

    ``L_i = -1/N_S sum_{j != i} log sigmoid(r_i - r_j)``.
    """
    _check_scores(scores)
    if scores.shape[1] < 2:
        return scores.sum() * 0.0
    target, neg = _split(scores)
    per_pair = -F.logsigmoid(target - scores)
    return (per_pair * neg).sum(1).div(neg.sum(1)).mean()


def top1_loss(scores: torch.Tensor) -> torch.Tensor:
    """TOP1 (paper, Section 3.1.3): a relative-rank estimate plus a score regulariser.

    ``L_i = 1/N_S sum_{j != i} [ sigmoid(r_j - r_i) + sigmoid(r_j ** 2) ]``.
    """
    _check_scores(scores)
    if scores.shape[1] < 2:
        return scores.sum() * 0.0
    target, neg = _split(scores)
    per_pair = torch.sigmoid(scores - target) + torch.sigmoid(scores**2)
    return (per_pair * neg).sum(1).div(neg.sum(1)).mean()


def bpr_max_loss(scores: torch.Tensor, bpreg: float = 1.0) -> torch.Tensor:
    """BPR-max (Hidasi & Karatzoglou 2017, eq. for BPR-max; slides "Improving GRU4Rec").

    ``L_i = -log( sum_j s_j sigmoid(r_i - r_j) ) + bpreg * sum_j s_j r_j ** 2`` with
    ``s_j = softmax over the negatives j != i``. The log of the weighted sum is computed as a
    log-sum-exp so it stays finite when every sigmoid underflows.
    """
    _check_scores(scores)
    if scores.shape[1] < 2:
        return scores.sum() * 0.0
    target, neg = _split(scores)
    masked = scores.masked_fill(~neg, float("-inf"))
    log_s = masked - torch.logsumexp(masked, dim=1, keepdim=True)  # log softmax over negatives
    ranking = -torch.logsumexp(log_s + F.logsigmoid(target - scores).masked_fill(~neg, 0.0), dim=1)
    reg = (log_s.exp() * scores**2).sum(1)
    return (ranking + bpreg * reg).mean()


def top1_max_loss(scores: torch.Tensor) -> torch.Tensor:
    """TOP1-max (Hidasi & Karatzoglou 2017): TOP1 with softmax weights on the negatives.

    ``L_i = sum_j s_j [ sigmoid(r_j - r_i) + sigmoid(r_j ** 2) ]``, ``s_j`` as in BPR-max.
    """
    _check_scores(scores)
    if scores.shape[1] < 2:
        return scores.sum() * 0.0
    target, neg = _split(scores)
    s = torch.softmax(scores.masked_fill(~neg, float("-inf")), dim=1)  # 0 on the target
    return (s * (torch.sigmoid(scores - target) + torch.sigmoid(scores**2))).sum(1).mean()


# The gradients of the two losses the authors' code trains with, written out so that a training step
# makes a few passes over the (B, B + S) score matrix instead of autograd's many (a step spends most of
# its time there). Each returns the mean loss and the gradient of ``weight * loss`` by the scores; the
# tests check both against the loss functions above and autograd.
@torch.no_grad()
def _cross_entropy_grad(scores: torch.Tensor, log_q: torch.Tensor | None, logq: float,
                        weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy: ``dL/dr_ij = (softmax(r)_ij - [i == j]) / B``."""
    b = scores.shape[0]
    if logq and log_q is not None:
        scores = scores - logq * log_q.unsqueeze(0)
    m = scores.amax(1, keepdim=True)  # (B, 1)
    p = torch.sub(scores, m).exp_()  # (B, C) unnormalised softmax
    z = p.sum(1, keepdim=True)
    loss = (z.log() + m).squeeze(1).sub_(scores.diagonal()).mean()
    p.mul_(z.reciprocal_().mul_(weight / b))
    p.diagonal().sub_(weight / b)
    return loss, p


@torch.no_grad()
def _bpr_max_grad(scores: torch.Tensor, bpreg: float, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """BPR-max. With ``s`` the softmax over the negatives, ``sigma_ij = sigmoid(r_ii - r_ij)``,
    ``A_i = sum_j s_ij sigma_ij``, ``w_ij = s_ij sigma_ij / A_i`` and ``E_i = sum_j s_ij r_ij^2``:
    ``dL_i/dr_ij = s_ij (1 + bpreg (r_ij^2 + 2 r_ij - E_i)) - w_ij sigma_ij`` for a negative j and
    ``dL_i/dr_ii = -sum_j w_ij (1 - sigma_ij)``. Where every negative's weight or every sigmoid
    underflows (``A_i`` or the softmax's sum is 0), the loss is not finite here; the caller then
    falls back to :func:`bpr_max_loss`, which computes it as a log-sum-exp."""
    c = weight / scores.shape[0]  # the gradient is of weight * mean over rows
    s = torch.sub(scores, scores.amax(1, keepdim=True)).exp_()  # (B, C) unnormalised softmax
    s.diagonal().zero_()  # the target is not a negative
    s.mul_(s.sum(1, keepdim=True).reciprocal_())
    sig = torch.sub(scores.diagonal().unsqueeze(1), scores).sigmoid_()  # (B, C)
    w = s * sig
    a = w.sum(1, keepdim=True)  # (B, 1)
    w.mul_(sig.mul_(a.reciprocal().mul_(c)))  # c w_ij sigma_ij
    r2 = scores * scores
    e = torch.linalg.vecdot(s, r2).unsqueeze(1)  # (B, 1)
    loss = (bpreg * e - a.log()).mean()
    g = r2.add_(scores, alpha=2.0).sub_(e).mul_(bpreg * c).add_(c).mul_(s).sub_(w)  # (B, C)
    g.diagonal().copy_(w.sum(1).sub_(c))  # c (sum_j w_ij sigma_ij - 1) = -c sum_j w_ij (1 - sigma_ij)
    return loss, g


def final_activation(name: str) -> Callable:
    """``linear``, ``tanh``, ``relu``, ``elu-<alpha>`` or ``leaky-<slope>`` applied to the scores
    (names parsed by :func:`course_lib.sessions.parse_final_act`)."""
    kind, p = parse_final_act(name)
    if kind == "linear":
        return lambda x: x
    return {"tanh": torch.tanh, "relu": torch.relu, "elu": lambda x: F.elu(x, p),
            "leaky": lambda x: F.leaky_relu(x, p)}[kind]


def _final_activation_grad(name: str) -> Callable:
    """``(grad, x, act(x)) -> grad * act'(x)`` for :func:`final_activation`: the backward kernels that
    autograd itself calls, without building a graph for them."""
    kind, p = parse_final_act(name)
    aten = torch.ops.aten
    return {"linear": lambda g, x, y: g, "tanh": lambda g, x, y: aten.tanh_backward(g, y),
            "relu": lambda g, x, y: aten.threshold_backward(g, y, 0),
            "elu": lambda g, x, y: aten.elu_backward(g, p, 1, 1, True, y),
            "leaky": lambda g, x, y: aten.leaky_relu_backward(g, x, p, False)}[kind]


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def _uniform(shape, gen, fan_in, fan_out):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (the initialisation of the paper's code)."""
    a = float(np.sqrt(6.0 / (fan_in + fan_out)))
    return torch.empty(shape).uniform_(-a, a, generator=gen)


class GRU4Rec(nn.Module, GRU4RecSettings):
    """Session-based recommender with GRU layers; every training feature switchable by name.

    Parameters follow the authors' code: ``layers`` (hidden sizes), ``loss`` (one of
    :data:`LOSSES`), ``final_act``, ``n_sample``, ``sample_alpha``, ``logq``, ``bpreg``,
    ``embedding`` (0 = one-hot input, ``"layersize"`` = ``layers[0]``), ``constrained_embedding``,
    ``dropout_p_embed``, ``dropout_p_hidden``, ``optimizer`` ("adagrad" with ``momentum`` or
    "adam"), ``learning_rate``, ``batch_size``, ``n_epochs``, ``sample_store_size``, ``seed``,
    ``device``. Every argument is checked here, before any work (``ValueError`` naming it).

    **Defaults** (``course_lib.sessions.DEFAULTS``) are the official PyTorch code's except
    ``sample_alpha`` 0.75 (official 0.5), ``constrained_embedding`` False (official True) and
    ``batch_size`` 32 (official 64). ``n_sample=2048`` is the official default and assumes a
    catalogue of tens of thousands of items: training clamps it to the number of training items
    (with a warning), so on the tiny tier (1,868 items) every item is a negative at every step;
    with 2,933 items (small tier) 2,048 samples are 70% of the catalogue. The configurations of
    ``course bench gru4rec`` name their own settings.

    Three switches name where the authors' implementations differ from each other or from us
    (``course bench gru4rec-official`` measures them): ``reset_after`` (False: the candidate state
    is ``tanh(W x + U (r * h))`` as in the paper's eq. 4, the authors' Theano code and their PyTorch
    code since August 2023; True: ``tanh(W x + r * (U h))`` as their first PyTorch commit of July
    2023, whose one-hot GRU does so, and ``torch.nn.GRUCell``); ``dropout_state`` ("dropped", the
    default: the next step starts from the dropped-out hidden state, as in both of the authors'
    codes; "kept": from the undropped one); ``logq_counts`` (False: log q is a log-probability;
    True: the log of the raw counts ``n_j`` for targets and ``n_j ** sample_alpha`` for samples, as
    the authors' PyTorch code; the two differ by a shift of the sampled columns).

    ``fit(train)`` takes a frame of ``SessionId``, ``ItemId``, ``Time`` and runs
    :func:`train_gru4rec`; afterwards the model scores items through the session scorer protocol.
    ``history`` holds one dict per epoch and ``data_report`` what was dropped or re-sorted on the
    way in. Weights: ``W["Wx0"]`` (d_in, 3h) input weights of the gates (r, z, candidate) of layer
    0 (``d_in`` = n_items for one-hot input), ``W["Wrz0"]`` (h, 2h), ``W["Wh0"]`` (h, h), ``W["b0"]``
    (3h,), the same for deeper layers, ``W["E"]`` (n_items, embedding) when there is a separate
    embedding, and ``W["Wy"]`` (n_items, h_last + 1): output weights with the output bias as the
    last column.
    """

    def __init__(self, layers=DEFAULTS["layers"], loss=DEFAULTS["loss"], final_act=DEFAULTS["final_act"],
                 n_sample=DEFAULTS["n_sample"], sample_alpha=DEFAULTS["sample_alpha"], logq=DEFAULTS["logq"],
                 bpreg=DEFAULTS["bpreg"], embedding=DEFAULTS["embedding"],
                 constrained_embedding=DEFAULTS["constrained_embedding"], dropout_p_embed=DEFAULTS["dropout_p_embed"],
                 dropout_p_hidden=DEFAULTS["dropout_p_hidden"], optimizer=DEFAULTS["optimizer"],
                 learning_rate=DEFAULTS["learning_rate"], momentum=DEFAULTS["momentum"],
                 batch_size=DEFAULTS["batch_size"], n_epochs=DEFAULTS["n_epochs"],
                 sample_store_size=DEFAULTS["sample_store_size"], seed=DEFAULTS["seed"], reset_after=False,
                 dropout_state=DEFAULTS["dropout_state"], logq_counts=False, device="auto"):
        super().__init__()
        self._set_settings(locals())  # layers ... dropout_state, checked (course_lib.sessions)
        self.reset_after = bool(reset_after)
        self.logq_counts = bool(logq_counts)
        self.device = resolve_device(device)
        # filled by init_weights / training
        self.W = nn.ParameterDict()
        self.item_ids: np.ndarray | None = None
        self.popularity: np.ndarray | None = None
        self.history: list[dict] = []
        self.data_report: dict = {}
        self._act = final_activation(self.final_act)
        self._act_grad = _final_activation_grad(self.final_act)
        self._generator: torch.Generator | None = None  # dropout draws
        self._H: list[torch.Tensor] | None = None  # the scorer's hidden states

    @property
    def params(self) -> dict:
        """The constructor arguments (without ``device``), as saved with the model."""
        return {**{name: getattr(self, name) for name in DEFAULTS}, "layers": list(self.layers), "reset_after": self.reset_after, "logq_counts": self.logq_counts}

    @staticmethod
    def prepare(df: pd.DataFrame, what: str = "train") -> tuple[pd.DataFrame, dict]:
        """Validate a session frame and put it in training order (:func:`course_lib.sessions.prepare_sessions`)."""
        return prepare_sessions(df, what)

    # --- weights -----------------------------------------------------------------------------------
    def init_weights(self, n_items: int) -> None:
        """Draw the weights for ``n_items`` items from ``seed`` (each gate block on its own, as in
        the authors' code) and start the dropout generator from ``seed + 1``."""
        gen = torch_generator(self.seed, "cpu")
        L, W = self.layers, {}
        if self.constrained_embedding:
            d_in = L[-1]
        elif self.embedding:
            d_in = self.embedding
            W["E"] = _uniform((n_items, d_in), gen, n_items, d_in)
        else:
            d_in = n_items
        for k, h in enumerate(L):
            W[f"Wx{k}"] = torch.cat([_uniform((d_in, h), gen, d_in, h) for _ in range(3)], 1)  # (d_in, 3h)
            W[f"Wrz{k}"] = torch.cat([_uniform((h, h), gen, h, h) for _ in range(2)], 1)  # (h, 2h)
            W[f"Wh{k}"] = _uniform((h, h), gen, h, h)  # (h, h)
            W[f"b{k}"] = torch.zeros(3 * h)
            d_in = h
        # output weights with the output bias as their last column (one gather, one matmul)
        W["Wy"] = torch.cat([_uniform((n_items, L[-1]), gen, n_items, L[-1]), torch.zeros(n_items, 1)], 1)
        self.W = nn.ParameterDict()  # new shapes: new parameters
        self.load_weights(W, strict=False)
        self._generator = torch_generator(self.seed + 1, self.device)

    def load_weights(self, weights: dict, strict: bool = True) -> None:
        """Copy a ``{name: tensor or array}`` dict into ``W`` (on the model's device); with ``strict``
        the names and shapes must match the weights already there."""
        if strict:
            missing, unexpected = sorted(set(self.W) - set(weights)), sorted(set(weights) - set(self.W))
            if missing or unexpected:
                raise ValueError(f"the weights do not fit this GRU4Rec: missing {missing}, unexpected {unexpected}")
        for name, value in weights.items():
            value = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
            value = value.to(self.device, torch.float32)
            if name in self.W and tuple(self.W[name].shape) == tuple(value.shape):
                with torch.no_grad():
                    self.W[name].copy_(value)  # in place: an optimiser built on W keeps working
            elif strict:
                raise ValueError(f"weight {name} has shape {tuple(value.shape)}, this model needs "
                                 f"{tuple(self.W[name].shape)}")
            else:
                self.W[name] = nn.Parameter(value.clone())

    @property
    def row_weights(self) -> tuple[str, ...]:
        """The item-indexed weights, which a step updates only on the rows it used."""
        return ("Wy",) if self.constrained_embedding else ("Wy", "E") if self.embedding else ("Wy", "Wx0")

    @property
    def input_table(self) -> str:
        """The weight whose rows are the input of an item: ``Wx0`` (one-hot: the row is ``W x``
        of the first layer), ``E`` (embedding) or ``Wy`` (constrained embedding)."""
        if self.constrained_embedding:
            return "Wy"
        return "E" if self.embedding else "Wx0"

    def rows_used(self, x, cols) -> dict:
        """The rows of each item-indexed weight that a step with inputs ``x`` and output columns
        ``cols`` uses (repeats allowed): what ``RowOptimizer.step`` updates."""
        if self.constrained_embedding:
            return {"Wy": torch.cat([cols, x])}
        return {"Wy": cols, self.input_table: x}

    # --- the forward step ------------------------------------------------------------------------
    def _dropout(self, x: torch.Tensor, p: float, rows_only: bool = False) -> torch.Tensor:
        if p <= 0:
            return x
        shape = (x.shape[0], 1) if rows_only else x.shape
        keep = torch.empty(shape, device=x.device).bernoulli_(1 - p, generator=self._generator)
        return x * keep / (1 - p)

    def gru_cell(self, k: int, gi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One GRU step of layer ``k`` (paper eqs. 2-5): ``gi`` (B, 3h) is ``W x + b`` of the gates
        (r, z, candidate), ``h`` (B, h) the previous state; returns the new state (B, h)."""
        n = h.shape[1]
        # addmm(c, a, b) = c + a @ b and lerp(h, cand, z) = h + z (cand - h) do in one kernel what the
        # equations write as two or three
        rz = torch.addmm(gi[:, : 2 * n], h, self.W[f"Wrz{k}"]).sigmoid_()  # (B, 2h), eqs. 3 and 5
        r, z = rz[:, :n], rz[:, n:]
        if self.reset_after:  # the authors' first PyTorch commit, torch.nn.GRUCell: r * (U h)
            cand = torch.addcmul(gi[:, 2 * n :], r, h @ self.W[f"Wh{k}"]).tanh_()
        else:  # eq. 4, the authors' Theano code and current PyTorch code: U (r * h)
            cand = torch.addmm(gi[:, 2 * n :], r * h, self.W[f"Wh{k}"]).tanh_()  # (B, h)
        return torch.lerp(h, cand, z)  # eq. 2: (1 - z) h + z cand

    def input_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The input rows of items ``x`` (B,): (B, 3h0) rows of ``Wx0`` (one-hot), (B, embedding)
        rows of ``E``, or (B, h_last) rows of ``Wy`` without the bias (constrained embedding)."""
        rows = self.W[self.input_table].index_select(0, x)
        return rows[:, :-1] if self.constrained_embedding else rows

    def input_gates(self, x_rows: torch.Tensor, train: bool) -> torch.Tensor:
        """Gate pre-activations of the first layer (B, 3h0) from the input rows (with input dropout
        when ``train``). One-hot input: a row already is ``W x``, and dropping the one input unit
        removes the whole row."""
        if self.embedding or self.constrained_embedding:
            x_rows = self._dropout(x_rows, self.dropout_p_embed) if train else x_rows
            return torch.addmm(self.W["b0"], x_rows, self.W["Wx0"])
        x_rows = self._dropout(x_rows, self.dropout_p_embed, rows_only=True) if train else x_rows
        return x_rows + self.W["b0"]

    def hidden_layers(self, gi0: torch.Tensor, hidden: list[torch.Tensor], train: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Every GRU layer for one step from the first layer's gate inputs ``gi0``: the last layer's
        output (B, h_last) and the new states (the dropped-out ones with ``dropout_state="dropped"``)."""
        new_h, gi, out = [], gi0, None
        for k in range(len(self.layers)):
            if k > 0:
                gi = torch.addmm(self.W[f"b{k}"], out, self.W[f"Wx{k}"])  # (B, 3h_k)
            h = self.gru_cell(k, gi, hidden[k])
            out = self._dropout(h, self.dropout_p_hidden) if train else h
            new_h.append(out if self.dropout_state == "dropped" else h)
        return out, new_h

    def forward(self, x: torch.Tensor, hidden: list[torch.Tensor],
                reset: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One step of every slot: items ``x`` (B,) (score columns), states ``hidden`` (one (B, h_k)
        per layer), ``reset`` (B, 1) bool or None: the slots whose state is zeroed first (a new
        session starts there). Returns the output (B, h_last) and the new states; dropout when
        ``self.training``. The scorer protocol (``score_next``) steps through this method too, so a
        subclass's own ``forward`` is what evaluation runs."""
        if reset is not None:
            hidden = [h.masked_fill(reset, 0.0) for h in hidden]
        return self.hidden_layers(self.input_gates(self.input_rows(x), self.training), hidden, self.training)

    def score_items(self, out: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B, C) of the items ``cols`` (C,) (all items when None) for the outputs ``out``
        (B, h_last), through the final activation."""
        rows = self.W["Wy"] if cols is None else self.W["Wy"].index_select(0, cols)
        return self._score_rows(out, rows)

    def _score_rows(self, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``act([out, 1] @ rows.T)``: rows (C, h_last + 1) of ``Wy``, the 1 multiplies the bias."""
        return self._act(torch.cat([out, out.new_ones(out.shape[0], 1)], 1) @ rows.T)

    def loss_function(self, scores: torch.Tensor, log_q: torch.Tensor | None = None) -> torch.Tensor:
        """The configured loss of (B, B + S) scores (``log_q`` (B + S,) for ``logq``), averaged over rows."""
        if self.loss == "cross-entropy":
            return cross_entropy_loss(scores, log_q, self.logq)
        if self.loss == "bpr-max":
            return bpr_max_loss(scores, self.bpreg)
        return {"top1-max": top1_max_loss, "bpr": bpr_loss, "top1": top1_loss}[self.loss](scores)

    # --- training --------------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None, progress: bool = True,
            eval_cutoff: int = 20, step_fn: Callable | None = None,
            make_optimizer: Callable | None = None) -> "GRU4Rec":
        """Train on ``train`` (SessionId, ItemId, Time) with :func:`train_gru4rec` (see there for
        ``step_fn`` and ``make_optimizer``); evaluate on ``valid`` after each epoch when given."""
        return train_gru4rec(self, train, valid, progress=progress, eval_cutoff=eval_cutoff, step_fn=step_fn,
                             make_optimizer=make_optimizer)

    # --- session scorer protocol --------------------------------------------------------------------
    def _check_fitted(self):
        if self.item_ids is None:
            raise ValueError("this GRU4Rec is not trained yet: call fit(train) or GRU4Rec.load(path) first")

    def reset(self, n_slots: int) -> None:
        """Fresh zero hidden states for ``n_slots`` parallel sessions."""
        self._check_fitted()
        self._H = [torch.zeros(int(n_slots), h, device=self.device) for h in self.layers]

    def reset_slots(self, mask) -> None:
        """Zero the hidden state of the slots where ``mask`` is True (a new session starts there)."""
        m = torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device).unsqueeze(1)
        self._H = [h.masked_fill(m, 0.0) for h in self._H]

    def keep_slots(self, mask) -> None:
        """Keep only the slots where ``mask`` is True, in order (finished slots leave the batch)."""
        m = torch.as_tensor(np.flatnonzero(np.asarray(mask, dtype=bool)), device=self.device)
        self._H = [h.index_select(0, m) for h in self._H]

    @torch.no_grad()
    def score_next(self, item_idx) -> np.ndarray:
        """Scores (n_slots, n_items) of every training item as the next click of each slot (numpy)."""
        return self._scores_next(item_idx).cpu().numpy()

    @torch.no_grad()
    def rank_next(self, item_idx, targets, ties: str = "average") -> np.ndarray:
        """The 1-based rank (n_slots,) of ``targets`` (a column per slot) among the scores that
        :meth:`score_next` would return, with ``ties`` as in ``course_lib.metrics.rank_of_targets``;
        computed where the scores are (CPU or GPU), so no score matrix is copied."""
        from course_lib.torch_models.ranking import rank_of_targets

        return rank_of_targets(self._scores_next(item_idx), targets, ties)

    def _scores_next(self, item_idx) -> torch.Tensor:
        idx = check_slot_items(item_idx, self._H, self.item_ids)
        x = torch.as_tensor(idx, device=self.device)
        training = self.training
        self.train(False)  # scoring never drops out, even between epochs of training
        try:
            out, self._H = self(x, self._H)
        finally:
            self.train(training)
        return self.score_items(out)

    # --- persistence -----------------------------------------------------------------------------
    def save(self, path) -> None:
        """Hyperparameters, items, weights, history and data report in one file (``torch.save``)."""
        self._check_fitted()
        torch.save({"params": self.params, "item_ids": self.item_ids, "popularity": self.popularity,
                    "weights": {k: v.detach().cpu() for k, v in self.W.items()}, "history": self.history,
                    "data_report": self.data_report}, path)

    @classmethod
    def load(cls, path, device="auto") -> "GRU4Rec":
        """A model saved by :meth:`save` (files of earlier course versions load too)."""
        try:
            blob = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as exc:  # torch.load raises many kinds (pickle, zip, OS) on a file that is not one
            raise ValueError(f"{path} is not a saved GRU4Rec ({type(exc).__name__}: {exc}); save one with "
                             "model.save(path)") from None
        if not isinstance(blob, dict) or not {"params", "item_ids", "weights"} <= set(blob):
            raise ValueError(f"{path} is not a GRU4Rec saved by course_lib (no params/item_ids/weights in it)")
        model = cls(**blob["params"], device=device)
        model.item_ids, model.popularity = blob["item_ids"], blob.get("popularity")
        model.history, model.data_report = blob.get("history", []), blob.get("data_report", {})
        model.load_weights(blob["weights"], strict=False)
        return model


# ---------------------------------------------------------------------------------------------
# Optimiser: Adagrad with momentum as in the authors' code, or Adam; both update only the rows of
# the item matrices that the mini-batch touched.
# ---------------------------------------------------------------------------------------------
class RowOptimizer:
    """Updates the weights of a :class:`GRU4Rec`, item-indexed ones only on the rows a step used.

    adagrad: ``G += g**2; v = momentum * v + lr * g / sqrt(G + eps); w -= v`` (no momentum: v is the
    step); the accumulator starts at ``eps`` instead of 0, so it holds ``G + eps`` (one pass less per
    update). adam: Kingma & Ba with a global step count, rows updated lazily like SparseAdam.

    Two ways to use it: :func:`train_step` calls :meth:`tick` and then :meth:`update` per weight
    with the gradient of the rows it gathered (or :meth:`update_dense` for all whole weights at
    once); a hand-written step calls ``loss.backward()`` and then :meth:`step` with the rows it used
    (``model.rows_used(x, cols)``), which does the same from the ``.grad`` of ``model.W``.
    """

    def __init__(self, params: dict[str, torch.Tensor], method: str = "adagrad", lr: float = 0.05,
                 momentum: float = 0.0, eps: float = 1e-6, betas=(0.9, 0.999)):
        self.params = params
        self.method, self.lr, self.momentum, self.eps, self.betas = method, lr, momentum, eps, betas
        first = eps if method == "adagrad" else 0.0
        self.state = {name: [torch.full_like(p.detach(), first), torch.zeros_like(p.detach())]
                      for name, p in params.items()}
        self.t = 0

    @classmethod
    def for_model(cls, model: GRU4Rec) -> "RowOptimizer":
        """The optimiser that ``model``'s settings ask for (``optimizer``, ``learning_rate``, ``momentum``)."""
        return cls(model.W, model.optimizer, model.learning_rate, model.momentum)

    def tick(self) -> None:
        """Count one step (Adam's bias correction)."""
        self.t += 1

    @torch.no_grad()
    def update(self, name: str, param: torch.Tensor, grad: torch.Tensor, idx: torch.Tensor | None = None,
               *, grad_is_scratch: bool = False):
        """Update ``param``, or only its rows ``idx`` (unique), from ``grad`` (in place, few copies).
        With ``grad_is_scratch`` the caller no longer needs ``grad``: adagrad without momentum then
        computes its step in ``grad``'s memory instead of a new tensor."""
        s1, s2 = self.state[name]
        get = (lambda buf: buf) if idx is None else (lambda buf: buf.index_select(0, idx))
        put = (lambda buf, val: None) if idx is None else (lambda buf, val: buf.index_copy_(0, idx, val))
        if self.method == "adagrad":
            acc = get(s1).addcmul_(grad, grad)  # G + eps
            put(s1, acc)
            denom = acc.sqrt() if idx is None else acc.sqrt_()  # the gathered rows are a copy
            if self.momentum > 0:
                step, scale = get(s2).mul_(self.momentum).addcdiv_(grad, denom, value=self.lr), 1.0
                put(s2, step)
            else:
                step, scale = (grad.div_(denom) if grad_is_scratch else torch.div(grad, denom)), self.lr
        else:
            b1, b2 = self.betas
            m = get(s1).mul_(b1).add_(grad, alpha=1 - b1)
            v = get(s2).mul_(b2).addcmul_(grad, grad, value=1 - b2)
            put(s1, m)
            put(s2, v)
            step, scale = (m / (1 - b1**self.t)).div_((v / (1 - b2**self.t)).sqrt_().add_(1e-8)), self.lr
        if idx is None:
            param.add_(step, alpha=-scale)
        else:
            param.index_add_(0, idx, step, alpha=-scale)

    @torch.no_grad()
    def update_dense(self, names: list[str], grads: list[torch.Tensor]) -> None:
        """:meth:`update` of several whole weights; adagrad updates them all in each kernel call
        (``torch._foreach_*``, as ``torch.optim`` does), which saves most of the calls of small weights."""
        if self.method != "adagrad":
            for name, grad in zip(names, grads):
                self.update(name, self.params[name], grad)
            return
        params = [self.params[n] for n in names]
        accs = [self.state[n][0] for n in names]
        torch._foreach_addcmul_(accs, grads, grads)
        denoms = torch._foreach_sqrt(accs)
        if self.momentum > 0:
            moms = [self.state[n][1] for n in names]
            torch._foreach_mul_(moms, self.momentum)
            torch._foreach_addcdiv_(moms, grads, denoms, value=self.lr)
            torch._foreach_sub_(params, moms)
        else:
            torch._foreach_addcdiv_(params, grads, denoms, value=-self.lr)

    @torch.no_grad()
    def step(self, rows: dict[str, torch.Tensor] | None = None) -> None:
        """One update from the ``.grad`` of every weight: the weights named in ``rows`` only on those
        rows (item columns, repeats allowed), the others whole; then the gradients are cleared."""
        self.tick()
        rows = rows or {}
        dense = []
        for name, param in self.params.items():
            if param.grad is None:
                continue
            if name in rows:
                idx = torch.unique(torch.as_tensor(rows[name], device=param.device))
                self.update(name, param, param.grad.index_select(0, idx), idx)
            else:
                dense.append(name)
        self.update_dense(dense, [self.params[n].grad for n in dense])
        for param in self.params.values():
            param.grad = None


def _unique_rows(idx: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of ``idx`` (all in [0, n)) and the position of each entry among them.

    Same result as ``torch.unique(idx, return_inverse=True)``; when the catalogue is less than twice
    as long as ``idx`` (2,548 columns of 2,933 items), marking a length-n table is faster than
    sorting (measured 0.16 against 0.25 ms), otherwise sorting is (500 of 2,933: 0.08 against 0.14).
    """
    if n > 2 * len(idx):
        return torch.unique(idx, return_inverse=True)
    mark = torch.zeros(n, dtype=torch.long, device=idx.device)
    mark[idx] = 1
    uniq = mark.nonzero().squeeze(1)
    return uniq, (mark.cumsum(0) - 1)[idx]


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def train_step(model: GRU4Rec, batch: Batch, hidden: list[torch.Tensor], optimizer: RowOptimizer) -> tuple[float, list[torch.Tensor]]:
    """One training step of session-parallel mini-batches: the library's reference step.

    Zeroes the states of the slots where ``batch.reset`` is set, runs the GRU for ``batch.x``,
    scores the targets ``batch.y`` and the samples ``batch.sample``, takes the loss, its gradient
    (times ``batch.weight``) and one optimiser update. Returns the loss (a float) and the new states
    (one (B, h_k) tensor per layer; the trainer detaches them: one-step BPTT).

    The numbers are those of the plain version shown in :func:`train_gru4rec` (full tables,
    ``loss.backward()``, ``optimizer.step(rows)``) up to float rounding; it is faster because no
    autograd graph is built for the library's own model:

    * the output layer is differentiated by hand: ``d scores`` (B, C) from the loss (written out
      for cross-entropy and BPR-max, autograd on the scores alone for the others), then
      ``d rows = d_scores.T @ [out, 1]`` and ``d out = d_scores @ rows``. Cross-entropy without
      extra samples scores each distinct target item once (a mini-batch of 500 has about 350) and
      weights its softmax term by how often it is a target (:func:`_cross_entropy_grad_grouped`;
      with a linear output :func:`_cross_entropy_output_linear`, which never forms the gradient
      matrix): the same loss and gradients with about a third less work;
    * the GRU layers are differentiated by hand too (:func:`_gru_forward` and
      :func:`_gru_backward`, checked against autograd in the tests) unless a subclass or the
      instance replaces ``gru_cell``, ``input_gates``, ``hidden_layers`` or ``_dropout``, or
      ``reset_after`` is set: then autograd runs through ``hidden_layers``, from a leaf holding the
      input rows of the step;
    * only the rows of the item matrices that the step used are updated (the authors' sparse
      updates), repeated rows summed. The gradient of the hidden state the step started from is
      never needed (one-step BPTT), so neither path computes it.
    """
    W, B = model.W, len(batch.x)
    if batch.reset is not None:
        hidden = [h.masked_fill(batch.reset, 0.0) for h in hidden]
    x, y, sample = batch.x, batch.y, batch.sample
    cols = y if sample is None else torch.cat([y, sample])  # (C,) = (B + S,) output items
    C, n_items = len(cols), W["Wy"].shape[0]
    Wy, table = W["Wy"].detach(), model.input_table
    # `uniq` are the distinct rows a weight's update touches, `inv` the position of each use among them
    if table == "Wy":  # constrained embedding: the inputs are rows of Wy too
        uniq_o, inv_o = _unique_rows(torch.cat([cols, x]), n_items)
        x_rows = Wy.index_select(0, x)[:, :-1]  # (B, h_last)
    else:
        uniq_o, inv_o = _unique_rows(cols, n_items)
        x_rows = W[table].detach().index_select(0, x)  # (B, 3h0) rows of Wx0, or (B, emb)
    dense = [n for n in W if n not in model.row_weights]
    by_hand = _hand_gru(model)
    if by_hand:
        with torch.no_grad():
            out, new_hidden, saved = _gru_forward(model, x_rows, hidden)  # (B, h_last)
    else:
        x_rows = x_rows.requires_grad_()
        out, new_hidden = model.hidden_layers(model.input_gates(x_rows, True), hidden, True)
    out1 = torch.cat([out.detach(), out.new_ones(B, 1)], 1)  # (B, h_last + 1): the 1 multiplies the bias
    grouped = sample is None and table != "Wy" and _grouped_loss(model)
    if grouped and model.final_act == "linear":  # the whole output layer in one function, no (B, C) gradient
        loss, g_wy, d_out = _cross_entropy_output_linear(out1, Wy.index_select(0, uniq_o), inv_o, batch.log_q,
                                                         model.logq, batch.weight)
    elif grouped:  # each distinct target scored once: `rows` are the rows of uniq_o, in that order
        rows = Wy.index_select(0, uniq_o)  # (U, h_last + 1)
        loss, d_scores = _grouped_loss_and_grad(model, out1 @ rows.T, inv_o, batch.log_q, batch.weight)
        g_wy = d_scores.T @ out1  # (U, h_last + 1): already one row per distinct item
        d_out = d_scores @ rows[:, :-1]  # (B, h_last)
    else:
        rows = Wy.index_select(0, cols)  # (C, h_last + 1)
        loss, d_scores = _loss_and_grad(model, out1 @ rows.T, batch.log_q, batch.weight)  # (B, C)
        g_wy = out1.new_zeros(len(uniq_o), out1.shape[1]).index_add_(0, inv_o[:C], d_scores.T @ out1)
        d_out = d_scores @ rows[:, :-1]  # (B, h_last)
    if by_hand:
        with torch.no_grad():
            g_rows, named = _gru_backward(model, saved, d_out)
        grads = [g_rows] + [named[n] for n in dense]
    else:
        grads = torch.autograd.grad(out, [x_rows] + [W[n] for n in dense], d_out)
    optimizer.tick()
    if table == "Wy":
        g_wy[:, :-1].index_add_(0, inv_o[C:], grads[0])
    else:
        uniq_i, inv_i = _unique_rows(x, n_items)
        g_x = grads[0].new_zeros(len(uniq_i), grads[0].shape[1]).index_add_(0, inv_i, grads[0])
        optimizer.update(table, W[table], g_x, uniq_i, grad_is_scratch=True)
    optimizer.update("Wy", W["Wy"], g_wy, uniq_o, grad_is_scratch=True)
    optimizer.update_dense(dense, list(grads[1:]))
    return loss, new_hidden


# The GRU layers of a training step without autograd. ``_gru_forward`` computes what
# ``input_gates(x_rows, True)`` and ``hidden_layers(gi0, hidden, True)`` compute (the same kernels, the
# same dropout draws in the same order) and keeps what the backward pass needs; ``_gru_backward``
# takes the gradient of the last layer's output and returns the gradient of the input rows and of
# every dense weight. With gi = [gi_r, gi_z, gi_c], r, z = sigmoid(gi_rz + h Wrz), c = tanh(gi_c +
# (r * h) Wh) and h' = h + z (c - h):  dc = dh' z (1 - c^2), dz = dh' (c - h) z (1 - z),
# dr = (dc Wh^T) h r (1 - r); dWh = (r * h)^T dc, dWrz = h^T [dr, dz], db = sum of [dr, dz, dc] over
# rows, and [dr, dz, dc] is the gradient of gi (for a deeper layer dWx = input^T dgi, d input = dgi Wx^T).
_GRU_METHODS = ("gru_cell", "input_gates", "hidden_layers", "_dropout")


def _hand_gru(model: GRU4Rec) -> bool:
    """True when ``model`` runs the library's own GRU layers (nothing replaced, ``reset_after`` off)."""
    cls = type(model)
    return (not model.reset_after and all(getattr(cls, n) is getattr(GRU4Rec, n) for n in _GRU_METHODS)
            and not any(n in vars(model) for n in _GRU_METHODS))


def _dropout_mask(model: GRU4Rec, x: torch.Tensor, p: float, rows_only: bool = False) -> torch.Tensor | None:
    """The keep mask that :meth:`GRU4Rec._dropout` draws for ``x`` (the same draw), or None for p = 0."""
    if p <= 0:
        return None
    shape = (x.shape[0], 1) if rows_only else x.shape
    return torch.empty(shape, device=x.device).bernoulli_(1 - p, generator=model._generator)


def _gru_forward(model: GRU4Rec, x_rows: torch.Tensor, hidden: list[torch.Tensor]):
    """``hidden_layers(input_gates(x_rows, True), hidden, True)`` plus what :func:`_gru_backward` needs:
    ``(out, new_hidden, saved)``."""
    W, L = model.W, model.layers
    p_e, p_h = model.dropout_p_embed, model.dropout_p_hidden
    dense_input = bool(model.embedding or model.constrained_embedding)
    keep_in = _dropout_mask(model, x_rows, p_e, rows_only=not dense_input)
    inp = x_rows if keep_in is None else x_rows * keep_in / (1 - p_e)
    if dense_input:
        gi = torch.addmm(W["b0"].detach(), inp, W["Wx0"].detach())
    else:
        gi = inp + W["b0"].detach()
    layers, new_h, out = [], [], None
    for k, n in enumerate(L):
        if k > 0:
            inp = out
            gi = torch.addmm(W[f"b{k}"].detach(), inp, W[f"Wx{k}"].detach())
        h = hidden[k]
        rz = torch.addmm(gi[:, : 2 * n], h, W[f"Wrz{k}"].detach()).sigmoid_()
        rh = rz[:, :n] * h
        cand = torch.addmm(gi[:, 2 * n :], rh, W[f"Wh{k}"].detach()).tanh_()
        hn = torch.lerp(h, cand, rz[:, n:])
        keep = _dropout_mask(model, hn, p_h)
        out = hn if keep is None else hn * keep / (1 - p_h)
        new_h.append(out if model.dropout_state == "dropped" else hn)
        layers.append((inp, h, rz, rh, cand, keep))
    return out, new_h, (keep_in, layers)


def _gru_backward(model: GRU4Rec, saved, d_out: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The gradient of the input rows (B, d) of the step and ``{name: gradient}`` of every dense weight
    of the GRU layers, from ``d_out`` (B, h_last), the gradient of the last layer's output."""
    W, aten = model.W, torch.ops.aten
    keep_in, layers = saved
    grads, d = {}, d_out
    for k in reversed(range(len(layers))):
        inp, h, rz, rh, cand, keep = layers[k]
        n = h.shape[1]
        if keep is not None:
            d = d * keep / (1 - model.dropout_p_hidden)
        # every piece written straight into its columns of dgi = [d gi_r, d gi_z, d gi_c] (B, 3h)
        dgi = d.new_empty(d.shape[0], 3 * n)
        drz, dc = dgi[:, : 2 * n], dgi[:, 2 * n :]
        aten.tanh_backward.grad_input(d * rz[:, n:], cand, grad_input=dc)
        torch.mul(dc @ W[f"Wh{k}"].detach().T, h, out=drz[:, :n])  # d r, before the sigmoid
        torch.mul(d, cand - h, out=drz[:, n:])  # d z, before the sigmoid
        aten.sigmoid_backward.grad_input(drz, rz, grad_input=drz)
        grads[f"Wh{k}"] = rh.T @ dc
        grads[f"Wrz{k}"] = h.T @ drz
        grads[f"b{k}"] = dgi.sum(0)
        if k > 0:
            grads[f"Wx{k}"] = inp.T @ dgi
            d = dgi @ W[f"Wx{k}"].detach().T
        elif model.embedding or model.constrained_embedding:
            grads["Wx0"] = inp.T @ dgi
            d = dgi @ W["Wx0"].detach().T
        else:
            d = dgi
    if keep_in is not None:
        d = d * keep_in / (1 - model.dropout_p_embed)
    return d, grads


def _grouped_loss(model: GRU4Rec) -> bool:
    """True when the step may score each distinct target once (the library's cross-entropy)."""
    return model.loss == "cross-entropy" and type(model).loss_function is GRU4Rec.loss_function


@torch.no_grad()
def _cross_entropy_grad_grouped(scores: torch.Tensor, inv: torch.Tensor, log_q: torch.Tensor | None,
                                logq: float, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of a (B, B) score matrix whose columns repeat, from its U distinct columns.

    ``scores`` (B, U): row i's score of distinct item u; column j of the full matrix is
    ``scores[:, inv[j]]`` (``inv`` (B,), row i's target is column i, so ``inv[i]``); ``log_q`` (B,)
    is per full column. With ``n_u`` the number of columns of item u, ``L_i = -r_i,inv[i] + log
    sum_u n_u exp(r_iu)``, and the gradient of ``weight * mean L`` by the distinct scores is the sum
    of the full matrix's gradient over each item's columns: ``(n_u softmax_iu - [u == inv[i]]) *
    weight / B``. Returns the mean loss and that (B, U) gradient."""
    b, u = scores.shape
    if logq and log_q is not None:
        scores = scores - logq * log_q.new_empty(u).index_copy_(0, inv, log_q).unsqueeze(0)
    counts = torch.bincount(inv, minlength=u).to(scores.dtype)  # n_u
    target = scores.gather(1, inv.unsqueeze(1))  # (B, 1)
    m = scores.amax(1, keepdim=True)
    p = torch.sub(scores, m).exp_().mul_(counts)  # (B, U) unnormalised softmax mass of each item
    z = p.sum(1, keepdim=True)
    loss = (z.log() + m).sub_(target).mean()
    p.mul_(z.reciprocal_().mul_(weight / b))
    p.scatter_add_(1, inv.unsqueeze(1), p.new_full((b, 1), -weight / b))
    return loss, p


@torch.no_grad()
def _cross_entropy_output_linear(out1: torch.Tensor, rows: torch.Tensor, inv: torch.Tensor,
                                 log_q: torch.Tensor | None, logq: float,
                                 weight: float) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The output layer of a cross-entropy step without extra samples and with a linear final
    activation, from the distinct target rows: ``(loss, g_rows, d_out)``.

    ``out1`` (B, h + 1) the outputs with a column of ones, ``rows`` (U, h + 1) the rows of ``Wy`` of
    the distinct targets, ``inv`` (B,) each row's target among them, ``log_q`` (B,) per column. With
    ``e_iu = exp(r_iu - m_i)``, ``n_u`` the count of item u among the targets, ``z_i = sum_u n_u
    e_iu`` and ``k_i = weight / (B z_i)``, the gradient of :func:`_cross_entropy_grad_grouped` is
    ``d_iu = k_i n_u e_iu - weight / B [u == inv_i]``, so ``d.T @ out1 = n * (e.T @ (k * out1))``
    minus ``weight / B`` times ``out1`` added onto the targets' rows, and ``d @ rows_h = k * (e @ (n
    * rows_h))`` minus ``weight / B`` times each row's target row: the (B, U) matrix is only built
    and exponentiated, never scaled. Where the loss is not finite (scores of inf or NaN), the
    general path takes over."""
    b, u = out1.shape[0], rows.shape[0]
    s = out1 @ rows.T  # (B, U)
    if logq and log_q is not None:
        s.sub_(log_q.new_empty(u).index_copy_(0, inv, log_q).mul_(logq))
    counts = torch.bincount(inv, minlength=u).to(s.dtype)  # n_u
    target = s.gather(1, inv.unsqueeze(1)).squeeze(1)  # (B,)
    m = s.amax(1, keepdim=True)
    e = s.sub_(m).exp_()  # in place: the scores are not needed again
    z = e @ counts  # (B,)
    loss = float((z.log() + m.squeeze(1) - target).mean())
    if not math.isfinite(loss):
        return _cross_entropy_output_general(out1, rows, inv, log_q, logq, weight)
    c = weight / b
    k = z.reciprocal_().mul_(c).unsqueeze(1)  # (B, 1)
    g_rows = (e.T @ (out1 * k)).mul_(counts.unsqueeze(1)).index_add_(0, inv, out1, alpha=-c)
    rows_h = rows[:, :-1]
    d_out = (e @ (rows_h * counts.unsqueeze(1))).mul_(k).sub_(rows_h.index_select(0, inv), alpha=c)
    return loss, g_rows, d_out


def _cross_entropy_output_general(out1, rows, inv, log_q, logq, weight):
    """:func:`_cross_entropy_output_linear` by way of the full (B, B) score matrix and
    :func:`cross_entropy_loss` under autograd (only where the scores are not finite)."""
    model = GRU4Rec(loss="cross-entropy", final_act="linear", logq=logq, device=out1.device)
    loss, grad = _grouped_loss_and_grad(model, out1 @ rows.T, inv, log_q, weight)
    return loss, grad.T @ out1, grad @ rows[:, :-1]


def _grouped_loss_and_grad(model: GRU4Rec, scores: torch.Tensor, inv: torch.Tensor, log_q: torch.Tensor | None,
                           weight: float) -> tuple[float, torch.Tensor]:
    """:func:`_loss_and_grad` for the distinct-column scores of :func:`_cross_entropy_grad_grouped`;
    where that is not finite, the full (B, B) matrix goes through :func:`_loss_and_grad`, and its
    gradient is summed back onto the distinct columns."""
    act = model._act(scores)
    loss, grad = _cross_entropy_grad_grouped(act, inv, log_q, model.logq, weight)
    if torch.isfinite(loss):
        return loss.item(), model._act_grad(grad, scores, act)
    loss, full = _loss_and_grad(model, scores[:, inv], log_q, weight)
    return loss, scores.new_zeros(scores.shape).index_add_(1, inv, full)


_HAND_GRADS = {"cross-entropy": lambda m, r, log_q, w: _cross_entropy_grad(r, log_q, m.logq, w),
               "bpr-max": lambda m, r, log_q, w: _bpr_max_grad(r, m.bpreg, w)}


def _loss_and_grad(model: GRU4Rec, scores: torch.Tensor, log_q: torch.Tensor | None,
                   weight: float) -> tuple[float, torch.Tensor]:
    """The loss of the scores ``scores`` (B, C) before the final activation, and the gradient of
    ``weight * loss`` by them: by hand for the library's cross-entropy and BPR-max, by autograd for
    the other losses and a subclass's own ``loss_function``."""
    hand = _HAND_GRADS.get(model.loss) if type(model).loss_function is GRU4Rec.loss_function else None
    if hand is not None:
        act = model._act(scores)
        loss, grad = hand(model, act, log_q, weight)
        if torch.isfinite(loss):
            return loss.item(), model._act_grad(grad, scores, act)
    with torch.enable_grad():  # also where a hand-written gradient is not finite
        leaf = scores.detach().requires_grad_()
        loss = model.loss_function(model._act(leaf), log_q)
        return loss.item(), torch.autograd.grad(loss * weight, leaf)[0]


def _step_tensors(offsets: np.ndarray, batch_size: int, items_t: torch.Tensor) -> list[tuple]:
    """The steps of :func:`session_parallel_batches` as tensors ``(slots, x, y, reset)``: ``x``/``y``
    (n_active,) input and target item columns; ``slots`` None while all slots are active, else the
    active slot indices; ``reset`` None when no session starts, else an (n_active, 1) bool mask."""
    dev, steps = items_t.device, []
    n_slots = min(batch_size, len(offsets) - 1)
    for step in session_parallel_batches(offsets, batch_size):
        slots = None if len(step.slots) == n_slots else torch.as_tensor(step.slots, device=dev)
        reset = torch.as_tensor(step.reset, device=dev).unsqueeze(1) if step.reset.any() else None
        steps.append((slots, items_t[torch.as_tensor(step.inp, device=dev)],
                      items_t[torch.as_tensor(step.out, device=dev)], reset))
    return steps


class _SampleStore(SampleStore):
    """:class:`course_lib.sessions.SampleStore` with each store moved to ``device`` as a tensor;
    the same draws, so both tracks see the same negatives."""

    def __init__(self, p: np.ndarray, n_sample: int, store_size: int, seed: int, device, max_chunks: int):
        self.device = device  # before the first draw
        super().__init__(p, n_sample, store_size, seed, max_chunks)

    def _convert(self, draw: np.ndarray):
        return torch.as_tensor(draw, device=self.device)


def train_gru4rec(model: GRU4Rec, train: pd.DataFrame, valid: pd.DataFrame | None = None, *, progress: bool = True,
                  eval_cutoff: int = 20, step_fn: Callable | None = None,
                  make_optimizer: Callable | None = None) -> GRU4Rec:
    """Train ``model`` on ``train`` (SessionId, ItemId, Time) for ``model.n_epochs`` epochs.

    The loop prepares the data (items = the distinct ``ItemId``; length-1 sessions dropped and
    counted), draws the weights (``model.init_weights``), builds the session-parallel steps and the
    negatives, and keeps the hidden state of every slot between steps. Each step it calls::

        loss, new_hidden = step_fn(model, batch, hidden, optimizer)

    * ``batch``: a :class:`course_lib.sessions.Batch` of tensors on ``model.device``: ``x``, ``y``
      (B,) columns of the current and the next item, ``sample`` (S,) extra negatives or None,
      ``reset`` (B, 1) bool or None (zero those slots' states first), ``log_q`` (B + S,) or None,
      ``weight`` = B / batch_size (multiply the loss by it before the gradient);
    * ``hidden``: one (B, h_k) tensor per layer, the states of the active slots as the last step
      left them (not yet reset);
    * ``optimizer``: ``make_optimizer(model)``, called once the weights exist; by default
      ``RowOptimizer.for_model(model)``; a learner may pass e.g.
      ``lambda m: torch.optim.Adagrad(m.parameters(), lr=0.1)`` and step it the usual way;
    * it returns the loss of the step (a float or a scalar tensor) and the new states, which the
      loop detaches and keeps for the next step of each slot.

    ``step_fn`` defaults to :func:`train_step`. A learner's own step (or a ``GRU4Rec`` subclass that
    overrides ``gru_cell``, ``forward``, ``score_items`` or ``loss_function``) plugs in here; for
    example, the plain version of the library's step, which gives the same numbers::

        def my_step(model, batch, hidden, optimizer):
            if batch.reset is not None:
                hidden = [h.masked_fill(batch.reset, 0.0) for h in hidden]
            cols = batch.y if batch.sample is None else torch.cat([batch.y, batch.sample])
            out, new_hidden = model(batch.x, hidden)            # (B, h_last), dropout on
            loss = model.loss_function(model.score_items(out, cols), batch.log_q)
            (loss * batch.weight).backward()
            optimizer.step(model.rows_used(batch.x, cols))  # RowOptimizer: only the rows used
            return loss, new_hidden

    A NaN or infinite loss stops training with :class:`course_lib.validation.TrainingDiverged`
    naming the epoch and step. ``history`` gets the mean loss, events and events/s of each epoch
    (and Recall/MRR@``eval_cutoff`` on ``valid``). Returns ``model``.
    """
    data, step_fn = start_training(model, train, step_fn, train_step)
    model.train()
    dev = model.device
    log_q_target = torch.as_tensor(data.log_q_target, dtype=torch.float32, device=dev)
    log_q_sample = torch.as_tensor(data.log_q_sample, dtype=torch.float32, device=dev)
    # the steps are the same every epoch: build their index tensors once, so an epoch does no
    # numpy -> torch conversion and no per-step gathers of the item array
    steps = _step_tensors(data.offsets, model.batch_size, torch.as_tensor(data.item_idx, dtype=torch.long, device=dev))
    sampler = _SampleStore(data.p_sample, data.n_sample, model.sample_store_size, model.seed + 2, dev,
                           max_chunks=len(steps) * model.n_epochs)
    optimizer = (make_optimizer or RowOptimizer.for_model)(model)
    n_slots = min(model.batch_size, len(data.offsets) - 1)
    model.history = []
    for epoch in range(model.n_epochs):
        t0, total, n_ev = time.perf_counter(), 0.0, 0
        H = [torch.zeros(n_slots, h, device=dev) for h in model.layers]
        bar = tqdm(total=data.n_pairs, desc=f"epoch {epoch + 1}/{model.n_epochs}", disable=not progress,
                   leave=False, unit="ev")
        for step_i, (slots, x, y, reset) in enumerate(steps):
            sample = sampler.next()
            log_q = None
            if model.logq:
                log_q = log_q_target[y] if sample is None else torch.cat([log_q_target[y], log_q_sample[sample]])
            batch = Batch(x, y, sample, reset, log_q, len(x) / model.batch_size)
            # slots is None while every slot is busy (most steps): the states are used whole
            h_in = H if slots is None else [h.index_select(0, slots) for h in H]
            loss, h_new = step_fn(model, batch, h_in, optimizer)
            loss = check_finite(float(loss), where=f"epoch {epoch + 1}, step {step_i + 1}", cause=diverged_cause(model))
            if slots is None:
                H = [h.detach() for h in h_new]  # one-step BPTT: the state is carried without its graph
            else:
                for h, hn in zip(H, h_new):
                    h.index_copy_(0, slots, hn.detach())
            total += loss * len(x)
            n_ev += len(x)
            if step_i % 50 == 0:
                bar.update(n_ev - bar.n)
        bar.update(n_ev - bar.n)
        bar.close()
        model.history.append(epoch_record(model, epoch, total, n_ev, time.perf_counter() - t0, valid, eval_cutoff))
    model.eval()
    return model

