"""Ask the GRU (Bansal et al., RecSys 2016) in the Theano programming model.

The same model, names and order as :mod:`course_lib.torch_models.askgru`, written with symbolic
variables, shared parameters and ``scan``: word embeddings -> bidirectional GRU -> GRU -> masked mean
pooling (section 3.2), ``f(X_j) = g(X_j) + v_j`` (eq. 4), scores ``r_ij = b_i + b_j + u_i . f(X_j)``
(eq. 3), the multi-task loss of section 3.3 (:func:`askgru_loss`), one compiled Adam step
(:func:`make_train_step`) and :func:`fit`, which runs the course's training loop
(:func:`course_lib.training.askgru_loop`) and takes your own ``loss_fn`` (a graph) or ``step_fn``
(your compiled step).

The GRU step follows ``torch.nn.GRU`` exactly (see :func:`gru_step`), so the same weights give the
same numbers in both tracks.
"""
from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np

from course_lib.data import check_ids
from course_lib.theano_models.compat import (
    Apply, DisconnectedType, Op, Params, RandomStream, T, adam, dropout, function, grad_not_implemented, log_sigmoid,
    scan, sigmoid,
)
from course_lib.theano_models.gru_op import gru_layer_op
from course_lib.theano_models.hybrid import PaperTexts
from course_lib.training import (  # noqa: F401  (the paper's settings and frequent_tags, as in the PyTorch track)
    ALPHA_CONF, BATCH_USERS, DROPOUT, EMB_DIM, EPS_CONF, HIDDEN1, HIDDEN2, MAX_UPDATES, REG_USER, History, PairBatch,
    as_losses, askgru_loop, check_askgru_args, check_askgru_memory, check_encoder_args, check_fit_args, check_plugins,
    check_text_batch, frequent_tags,
)
from course_lib.validation import check_choice, check_fraction, check_int, check_memory

_RECURRENCES = ("op", "scan")


def gru_step(xp_t, m_t, h_prev, W_hh, b_hh):
    """One GRU step in torch's formulation (the ``torch.nn.GRU`` documentation)::

        r   = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z   = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n   = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h'  = (1 - z) * n + z * h

    The reset gate multiplies ``W_hn h + b_hn``. The classic Theano GRU (Cho et al., 2014) and
    Ask-the-GRU eq. (7) instead multiply ``h`` before the matrix, ``W_hn (r * h)``, which is a
    different function of the same weights; we follow torch so both tracks agree to rounding.
    Ask-the-GRU's update gate ``o_t`` of eq. (8) is ``1 - z`` here.

    ``xp_t`` is the input projection ``x W_ih^T + b_ih`` computed for all steps at once outside
    the scan (one big matrix product instead of one per step): ``(batch, 3H)``. ``m_t`` is the
    mask ``(batch,)``: at padded positions the state is carried through unchanged, so for the
    backward direction the state stays zero until the first real token, exactly as with a packed
    sequence in PyTorch.
    """
    H = h_prev.shape[1]
    hp = T.dot(h_prev, W_hh.T) + b_hh  # (batch, 3H)
    r = sigmoid(xp_t[:, :H] + hp[:, :H])
    z = sigmoid(xp_t[:, H : 2 * H] + hp[:, H : 2 * H])
    n = T.tanh(xp_t[:, 2 * H :] + r * hp[:, 2 * H :])
    h_new = (1 - z) * n + z * h_prev
    m = m_t[:, None]
    return m * h_new + (1 - m) * h_prev


def _init_gru(params: Params, prefix: str, suffix: str, n_in: int, n_hidden: int, rng: np.random.Generator):
    """Add the four tensors of one GRU direction under torch's names, e.g. ``gru1.weight_ih_l0``.

    Gates are stacked ``[r, z, n]`` along the first axis, as in ``torch.nn.GRU``; initialised
    uniform in ``+-1/sqrt(n_hidden)`` like torch.
    """
    bound = 1.0 / np.sqrt(n_hidden)
    shapes = {"weight_ih": (3 * n_hidden, n_in), "weight_hh": (3 * n_hidden, n_hidden),
              "bias_ih": (3 * n_hidden,), "bias_hh": (3 * n_hidden,)}
    for name, shape in shapes.items():
        params.add(f"{prefix}.{name}_l0{suffix}", rng.uniform(-bound, bound, size=shape))


def _gru_layer(x, mask, params: Params, prefix: str, suffix: str = "", go_backwards: bool = False,
               recurrence: str = "scan"):
    """Run one GRU direction over a padded batch with ``scan`` (or the fused op).

    ``x``: ``(batch, seq_len, n_in)``; ``mask``: ``(batch, seq_len)``. Returns the hidden states
    ``(batch, seq_len, H)`` in the original time order (zero-initial state, like torch).
    ``recurrence="op"`` runs the same recurrence as one
    :class:`~course_lib.theano_models.gru_op.GRULayerOp` instead of the ``scan`` (same function,
    faster on a CPU; masks of 0/1 only).
    """
    W_ih, W_hh = params[f"{prefix}.weight_ih_l0{suffix}"], params[f"{prefix}.weight_hh_l0{suffix}"]
    b_ih, b_hh = params[f"{prefix}.bias_ih_l0{suffix}"], params[f"{prefix}.bias_hh_l0{suffix}"]
    H = W_hh.get_value(borrow=True).shape[1]
    if recurrence == "op":
        # the projection as one (batch * seq_len, n_in) matrix product: the gradient of b_ih is then
        # a column sum of a matrix, an operation the rest of the graph compiles anyway (one C module
        # less to build from an empty cache than a sum over two axes of a 3-d tensor)
        xp = (T.dot(x.reshape((-1, x.shape[2])), W_ih.T) + b_ih).reshape((x.shape[0], x.shape[1], 3 * H))
        return gru_layer_op(xp, mask, W_hh, b_hh, go_backwards=go_backwards)  # (batch, seq_len, H)
    xp = T.dot(x, W_ih.T) + b_ih  # (batch, seq_len, 3H)
    h0 = T.zeros((x.shape[0], H), dtype=x.dtype)  # (batch, H)
    hs = scan(gru_step, sequences=[xp.dimshuffle(1, 0, 2), mask.T], outputs_info=[h0],
              non_sequences=[W_hh, b_hh], go_backwards=go_backwards, name=f"{prefix}{suffix}")
    if go_backwards:  # scan emits states in processing order: last position first
        hs = hs[::-1]
    return hs.dimshuffle(1, 0, 2)  # (batch, seq_len, H)


def _masked_mean(h, mask):
    """Mean of ``h`` ``(batch, seq_len, H)`` over the real positions of ``mask``: ``(batch, H)``,
    as one :class:`_MaskedMean` node (numpy, no C module to compile)."""
    return _MaskedMean()(h, mask)


def _lengths(mask: np.ndarray) -> np.ndarray:
    """``max(mask.sum(1), 1)`` in ``mask``'s dtype, a column ``(batch, 1)``: an empty paper gives zeros,
    not 0/0 (the PyTorch encoders clamp the length to 1 as well)."""
    dtype = mask.dtype.type
    return np.maximum(mask.sum(axis=1, dtype=np.float64).astype(mask.dtype), dtype(1))[:, None]


class _MaskedMean(Op):
    """``_MaskedMean()(h, mask)``: ``(h * mask[:, :, None]).sum(axis=1) / max(mask.sum(axis=1), 1)[:, None]``
    for ``h`` ``(batch, seq_len, H)`` and ``mask`` ``(batch, seq_len)`` of one float dtype, in numpy.

    The expression itself, compiled from an empty cache, costs C modules of its own (a sum over the
    middle axis of a 3-d tensor, and the division, fused with its neighbours, forward and gradient);
    this operation computes the same numbers with numpy: products in the dtype, sums accumulated in
    float64 position after position and rounded to the dtype (as PyTensor's ``Sum`` does), then one
    division. Its gradient (:class:`_MaskedMeanGrad`) is ``(g / length)[:, None, :] * mask[:, :, None]``,
    again as the expression's gradient rounds it; ``mask`` gets none (it is data, not a parameter).
    """

    __props__ = ()

    def make_node(self, h, mask):
        h, mask = T.as_tensor_variable(h), T.as_tensor_variable(mask)
        if h.type.ndim != 3 or mask.type.ndim != 2 or h.type.dtype not in ("float32", "float64") \
                or mask.type.dtype != h.type.dtype:
            raise TypeError(f"_MaskedMean needs h (batch, seq_len, H) and mask (batch, seq_len) of one float dtype, "
                            f"got h {h.type} and mask {mask.type}")
        return Apply(self, [h, mask], [T.matrix(dtype=h.type.dtype)])

    def perform(self, node, inputs, output_storage):
        h, mask = inputs
        if h.shape[:2] != mask.shape:
            raise ValueError(f"_MaskedMean: h has shape {h.shape} but mask {mask.shape}; expected (batch, seq_len, H) "
                             "and (batch, seq_len)")
        total = np.sum(h * mask[:, :, None], axis=1, dtype=np.float64).astype(h.dtype)
        output_storage[0][0] = total / _lengths(mask)

    def infer_shape(self, *args):  # (fgraph, node, shapes) on PyTensor, (node, shapes) on Theano 1.0
        h_shape = args[-1][0]
        return [(h_shape[0], h_shape[2])]

    def connection_pattern(self, node):
        return [[True], [False]]

    def pullback(self, inputs, outputs, cotangents):
        """The gradient of ``h`` (PyTensor 3 calls this ``pullback``, Theano 1.0 ``L_op``)."""
        h, mask = inputs
        return [_MaskedMeanGrad()(cotangents[0], mask), DisconnectedType()()]

    L_op = pullback


class _MaskedMeanGrad(Op):
    """``_MaskedMeanGrad()(g, mask)``: ``(g / max(mask.sum(1), 1)[:, None])[:, None, :] * mask[:, :, None]``,
    the gradient of :class:`_MaskedMean`'s input for the output gradient ``g`` ``(batch, H)``."""

    __props__ = ()

    def make_node(self, g, mask):
        g, mask = T.as_tensor_variable(g), T.as_tensor_variable(mask)
        if g.type.ndim != 2 or mask.type.ndim != 2 or mask.type.dtype != g.type.dtype:
            raise TypeError(f"_MaskedMeanGrad needs g (batch, H) and mask (batch, seq_len) of one dtype, got "
                            f"g {g.type} and mask {mask.type}")
        return Apply(self, [g, mask], [T.tensor3(dtype=g.type.dtype)])

    def perform(self, node, inputs, output_storage):
        g, mask = inputs
        output_storage[0][0] = (g / _lengths(mask))[:, None, :] * mask[:, :, None]

    def infer_shape(self, *args):
        g_shape, mask_shape = args[-1]
        return [(mask_shape[0], mask_shape[1], g_shape[1])]

    def pullback(self, inputs, outputs, cotangents):
        return [grad_not_implemented(self, 0, inputs[0]), grad_not_implemented(self, 1, inputs[1])]

    L_op = pullback


def _embedding_table(n_words: int, emb_dim: int, embeddings, rng: np.random.Generator) -> np.ndarray:
    """Pretrained vectors (trained further) or word2vec-scale noise; row 0 is padding, zero."""
    if embeddings is None:
        table = rng.normal(0.0, 1.0 / np.sqrt(emb_dim), size=(n_words, emb_dim))
    else:
        table = np.array(getattr(embeddings, "matrix", embeddings), dtype=np.float64)
        if table.shape != (n_words, emb_dim):
            raise ValueError(f"embeddings have shape {table.shape}, expected ({n_words}, {emb_dim}): align them with "
                             "the same Vocabulary and pass emb_dim=their dimension")
        if not np.isfinite(table).all():
            raise ValueError("embeddings contain NaN or infinite values")
    table[0] = 0.0
    return table


def _check_word_ids(ids, n_words: int) -> None:
    if np.asarray(ids).max(initial=0) >= n_words:
        raise ValueError(f"word ids must be in [0, {n_words}) (the encoder's vocabulary), "
                         f"got {int(np.asarray(ids).max())}")


class EmbedEncoder:
    """*Embed*: ``g(X_j) = 1/|X_j| sum_{w in X_j} e_w`` (eq. 5), with dropout on the embeddings."""

    def __init__(self, n_words: int, emb_dim: int = EMB_DIM, dropout_emb: float = DROPOUT[0], embeddings=None,
                 seed: int = 0, dtype: str | None = None):
        check_encoder_args(n_words, emb_dim, (dropout_emb,))
        self.params = Params(dtype)
        self.params.add("embedding.weight", _embedding_table(n_words, emb_dim, embeddings, np.random.default_rng(seed)))
        self.out_dim, self.dropout_emb = emb_dim, dropout_emb
        self.config = {"n_words": n_words, "emb_dim": emb_dim, "dropout_emb": dropout_emb}

    def check(self, ids, mask, paper_idx) -> None:
        _check_word_ids(ids, self.config["n_words"])

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        emb = dropout(self.params["embedding.weight"][ids], self.dropout_emb, stream, train)  # (B, L, K_w)
        return _masked_mean(emb, mask)  # (B, K_w)


class GRUEncoder:
    """*GRU* (section 3.2, Figure 1): embeddings -> bidirectional GRU (``hidden1`` per direction)
    -> GRU (``hidden2``) on the concatenated states -> mean over the real tokens.

    Written with :func:`_gru_layer`; parameters named as in the PyTorch ``GRUEncoder``
    (``gru1.weight_ih_l0``, ``gru1.weight_ih_l0_reverse``, ``gru2.weight_hh_l0``, ...). Dropout
    0.1 / 0.5 / 0.3 on the embeddings and the outputs of the two layers (section 4.1.2).

    ``recurrence`` chooses how each of the three GRU directions runs over the time steps:

    * ``"op"`` (default): one :class:`~course_lib.theano_models.gru_op.GRULayerOp` per direction, the
      Theano analogue of PyTorch's fused ``nn.GRU``: numpy forward and backward passes that skip
      the padding, no ``scan`` gradient to build, no C module to compile for the recurrence.
    * ``"scan"``: ``scan`` over :func:`gru_step`, the formulation notebook 06 teaches; graph-level
      gradients, every row computed at every step.

    Both compute the same function of the same weights (to rounding; tests/theano_models/test_gru_op.py);
    the op needs masks of 0 and 1, which :class:`PaperTexts` batches are.
    """

    def __init__(self, n_words: int, emb_dim: int = EMB_DIM, hidden1: int = HIDDEN1, hidden2: int = HIDDEN2,
                 dropout: tuple[float, float, float] = DROPOUT, embeddings=None, seed: int = 0,
                 dtype: str | None = None, recurrence: str = "op"):
        if len(dropout) != 3:
            raise ValueError(f"dropout must be 3 probabilities (embedding, layer 1, layer 2), got {dropout}")
        check_choice("recurrence", recurrence, _RECURRENCES)
        check_encoder_args(n_words, emb_dim, dropout, hidden1=hidden1, hidden2=hidden2)
        rng = np.random.default_rng(seed)
        self.params = Params(dtype)
        self.params.add("embedding.weight", _embedding_table(n_words, emb_dim, embeddings, rng))
        _init_gru(self.params, "gru1", "", emb_dim, hidden1, rng)
        _init_gru(self.params, "gru1", "_reverse", emb_dim, hidden1, rng)
        _init_gru(self.params, "gru2", "", 2 * hidden1, hidden2, rng)
        self.out_dim, self.dropout, self.recurrence = hidden2, tuple(dropout), recurrence
        self.config = {"n_words": n_words, "emb_dim": emb_dim, "hidden1": hidden1, "hidden2": hidden2,
                       "dropout": list(dropout), "recurrence": recurrence}

    def check(self, ids, mask, paper_idx) -> None:
        _check_word_ids(ids, self.config["n_words"])
        if self.recurrence == "op" and not np.isin(np.asarray(mask), (0, 1)).all():
            raise ValueError("the mask must hold only 0 (padding) and 1 (a word) for GRUEncoder(recurrence='op'); "
                             "build batches with PaperTexts.batch, or use recurrence='scan' for weighted masks")

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        p, d, rec = self.params, self.dropout, self.recurrence
        emb = dropout(p["embedding.weight"][ids], d[0], stream, train)  # (B, L, K_w)
        h1 = T.concatenate([_gru_layer(emb, mask, p, "gru1", recurrence=rec),
                            _gru_layer(emb, mask, p, "gru1", "_reverse", go_backwards=True, recurrence=rec)],
                           axis=2)  # (B, L, 2 H1)
        h1 = dropout(h1, d[1], stream, train)
        h2 = dropout(_gru_layer(h1, mask, p, "gru2", recurrence=rec), d[2], stream, train)  # (B, L, H2)
        return _masked_mean(h2, mask)  # (B, H2)


# --------------------------------------------------------------------------------------- model


class AskGRU:
    """``f(X_j) = g(X_j) + v_j`` (eq. 4, ``v_j = 0`` for cold papers) and
    ``r_ij = b_i + b_j + u_i . f(X_j)`` (eq. 3, ``b_j = 0`` for cold papers); tag logits
    ``f(X_j) . t_l`` (section 3.3). Parameters named as in the PyTorch ``AskGRU``."""

    def __init__(self, encoder, n_users: int, n_papers: int, n_tags: int = 0, seed: int = 0):
        check_askgru_args(encoder, n_users, n_papers, n_tags)
        dim, rng = encoder.out_dim, np.random.default_rng(seed)
        self.encoder, self.n_users, self.n_papers, self.n_tags = encoder, n_users, n_papers, n_tags
        self.dtype = encoder.params.dtype
        p = self.params = Params(self.dtype)
        p.include("encoder", encoder.params)
        p.add("user_emb", rng.normal(size=(n_users, dim)) / np.sqrt(dim))
        p.add("item_emb", np.zeros((n_papers, dim)))
        p.add("user_bias", np.zeros(n_users))
        p.add("item_bias", np.zeros(n_papers))
        p.add("tag_emb", rng.normal(size=(n_tags, dim)) / np.sqrt(dim))
        p.add("warm", np.zeros(n_papers), trainable=False)
        self.ids = T.matrix("ids", dtype="int64")  # (B, L)
        self.mask = T.matrix("mask", dtype=self.dtype)  # (B, L)
        self.paper_idx = T.vector("paper_idx", dtype="int64")  # (B,)
        self._fns: dict = {}

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.params.state_dict()

    def load_state_dict(self, state) -> None:
        self.params.load_state_dict(state)

    def item_repr(self, train: bool = False, stream: RandomStream | None = None):
        """Symbolic ``f(X_j)`` of the batch's papers, ``(B, K)``."""
        p, idx = self.params, self.paper_idx
        return self.encoder(self.ids, self.mask, idx, train, stream) + p["warm"][idx][:, None] * p["item_emb"][idx]

    def score_pairs(self, users, f):
        """``r_ij`` for aligned users ``(B,)`` and representations ``f`` ``(B, K)``: ``(B,)``."""
        if getattr(users, "ndim", None) != 1 or getattr(f, "ndim", None) != 2:
            raise ValueError("score_pairs takes symbolic users (B,) and item representations f (B, K)")
        p, idx = self.params, self.paper_idx
        return (p["user_emb"][users] * f).sum(axis=1) + p["user_bias"][users] + p["warm"][idx] * p["item_bias"][idx]

    def tag_logits(self, f):
        return T.dot(f, self.params["tag_emb"].T)  # (B, n_tags)

    def text_inputs(self) -> list:
        return [self.ids, self.mask, self.paper_idx]

    def check_batch(self, ids, mask, paper_idx) -> None:
        """The numeric text inputs of a compiled call, checked in the course's words before running."""
        check_text_batch(ids, mask, paper_idx, self.n_papers, self.encoder)

    def save(self, path) -> None:
        """Weights, the encoder's settings and which papers are warm, in one ``.npz`` file."""
        if not isinstance(getattr(self.encoder, "config", None), dict):
            raise ValueError("save() keeps the encoder's settings from its `config` dict, which this encoder does "
                             "not have; save the weights with np.savez(path, **model.state_dict()) instead")
        meta = {"encoder": type(self.encoder).__name__, "encoder_config": self.encoder.config, "n_users": self.n_users,
                "n_papers": self.n_papers, "n_tags": self.n_tags, "dtype": self.dtype}
        np.savez(path, __config__=np.array(json.dumps(meta)), **self.state_dict())

    @classmethod
    def load(cls, path) -> "AskGRU":
        """Rebuild a model saved by :meth:`save` (its encoder included)."""
        with np.load(Path(path)) as data:
            meta = json.loads(str(data["__config__"]))
            state = {k: data[k] for k in data.files if k != "__config__"}
        encoder_cls = {"EmbedEncoder": EmbedEncoder, "GRUEncoder": GRUEncoder}
        check_choice(f"the encoder saved in {path}", meta["encoder"], encoder_cls)
        config = dict(meta["encoder_config"])
        if "dropout" in config:
            config["dropout"] = tuple(config["dropout"])
        model = cls(encoder_cls[meta["encoder"]](**config, dtype=meta["dtype"]), meta["n_users"], meta["n_papers"],
                    meta["n_tags"])
        model.load_state_dict(state)
        return model


# ---------------------------------------------------------------------------------------- losses


def confidence_weights(n_likes, alpha_conf: float = ALPHA_CONF, eps_conf: float = EPS_CONF) -> np.ndarray:
    """``c_ij = 1 + alpha log(1 + |R_i| / eps)`` (section 4.1.2), from each user's number of likes."""
    n = np.asarray(n_likes, dtype=np.float64)
    if (n < 0).any():
        raise ValueError("numbers of likes must be >= 0")
    return 1.0 + alpha_conf * np.log1p(n / eps_conf)


def weighted_squared_loss(pred, target, conf):
    """``1/|R| sum c_ij (r_hat_ij - r_ij)^2`` over the sampled pairs (eq. 2 without ``Omega``)."""
    if not (getattr(pred, "ndim", None) == getattr(target, "ndim", None) == getattr(conf, "ndim", None) == 1):
        raise ValueError("pred, target and conf must be symbolic vectors (one entry per pair)")
    return (conf * (pred - target) ** 2).mean()


def tag_loss(logits, tags, tag_neg_weight: float):
    """``C_T = -1/|T| sum_j sum_l [t_jl log p_jl + c' (1 - t_jl) log(1 - p_jl)]`` (section 3.3),
    averaged over the batch's papers; ``log(1 - sigma(x)) = log sigma(-x)`` keeps it finite."""
    if getattr(logits, "ndim", None) != 2 or getattr(tags, "ndim", None) != 2:
        raise ValueError("logits and tags must be symbolic matrices (papers, n_tags)")
    c = np.asarray(tag_neg_weight, dtype=logits.dtype)
    return -(tags * log_sigmoid(logits) + c * (1 - tags) * log_sigmoid(-logits)).sum(axis=1).mean()


def multitask_loss(loss_rec, loss_tag, lambda_mtl: float):
    """``C = lambda C_R + (1 - lambda) C_T`` (section 3.3)."""
    check_fraction("lambda_mtl", lambda_mtl, upper_inclusive=True)
    return lambda_mtl * loss_rec + (1.0 - lambda_mtl) * loss_tag


def askgru_loss(model: AskGRU, batch: PairBatch, f, *, lambda_mtl: float = 1.0, tag_neg_weight: float = 0.01,
                reg_user: float = REG_USER) -> dict:
    """The library's ``loss_fn``, as graphs: ``{"loss": C, "loss_rec": C_R, "loss_tag": C_T}``.

    ``batch`` is a :class:`~course_lib.training.PairBatch` of symbolic variables, ``f`` ``(2B, K)``
    the item representations of its papers (eq. 4, dropout on). ``C_R`` = eq. (2) weighted by
    ``batch.conf`` plus ``reg_user * mean ||u_i||^2``; ``C_T`` the tag cost (0 without tags).
    """
    dt = model.dtype
    loss_rec = weighted_squared_loss(model.score_pairs(batch.users, f), batch.target, batch.conf)
    loss_rec = loss_rec + np.asarray(reg_user, dt) * (model.params["user_emb"][batch.users] ** 2).sum(axis=1).mean()
    loss_t = tag_loss(model.tag_logits(f), batch.tags, tag_neg_weight) if lambda_mtl < 1.0 else T.zeros((), dtype=dt)
    return {"loss": multitask_loss(loss_rec, loss_t, lambda_mtl), "loss_rec": loss_rec, "loss_tag": loss_t}


# -------------------------------------------------------------------------------------- training


def make_train_step(model: AskGRU, *, lambda_mtl: float = 1.0, tag_neg_weight: float = 0.01, lr: float = 1e-3,
                    reg_user: float = REG_USER, loss_fn=None, seed: int = 0):
    """Compile the library's step: ``step(ids, mask, paper_idx, users, target, conf, tags) -> {"loss", "loss_rec",
    "loss_tag"}``: one Adam update of ``loss_fn(model, batch, f)`` (default :func:`askgru_loss`) on the
    symbolic :class:`~course_lib.training.PairBatch` of those inputs (``n_likes`` None: ``conf`` carries
    it), with dropout from a random
    stream seeded by ``seed``. The text inputs are the papers' word ids and mask ``(2B, L)`` and
    indices ``(2B,)``; ``users``, ``target``, ``conf`` ``(2B,)``; ``tags`` ``(2B, n_tags)``."""
    loss_fn = partial(askgru_loss, lambda_mtl=lambda_mtl, tag_neg_weight=tag_neg_weight,
                      reg_user=reg_user) if loss_fn is None else loss_fn
    dt = model.dtype
    users = T.vector("users", dtype="int64")  # (2B,)
    target, conf = T.vector("target", dtype=dt), T.vector("conf", dtype=dt)  # (2B,)
    tags = T.matrix("tags", dtype=dt)  # (2B, n_tags)
    stream = RandomStream(seed)
    f = model.item_repr(train=True, stream=stream)  # (2B, K)
    # n_likes is not an input of the compiled step: conf carries what the loss needs of it
    terms = loss_fn(model, PairBatch(users, model.paper_idx, target, None, conf, tags), f)
    terms = terms if isinstance(terms, dict) else {"loss": terms}
    if "loss" not in terms:
        raise ValueError(f"loss_fn returned a dict without 'loss' (the graph to minimise); it has {sorted(terms)}")
    updates, _ = adam(terms["loss"], model.params.trainable_vars(), lr)
    fn = function(model.text_inputs() + [users, target, conf, tags], list(terms.values()),
                  updates=updates + stream.pop_updates(), name="askgru_step")
    names = list(terms)

    def step(ids, mask, paper_idx, users, target, conf, tags) -> dict[str, float]:
        return dict(zip(names, (float(v) for v in fn(ids, mask, paper_idx, users, target, conf, tags))))

    return step


def fit(model: AskGRU, likes, texts, *, tags=None, lambda_mtl: float = 1.0, tag_neg_weight: float = 0.01,
        train_papers=None, valid_likes=None, valid_papers=None, valid_exclude=None, valid_k: int = 50,
        batch_users: int = BATCH_USERS, max_updates: int = MAX_UPDATES, lr: float = 1e-3, reg_user: float = REG_USER,
        alpha_conf: float = ALPHA_CONF, eps_conf: float = EPS_CONF, eval_every: int = 500, patience: int = 5,
        seed: int = 0, progress: bool = True, loss_fn=None, step_fn=None) -> History:
    """Train as the PyTorch ``fit`` does (section 4.1.2: ``B`` users with one positive and one
    negative paper each, Adam, early stopping on validation Recall@``valid_k``; the same loop,
    :func:`course_lib.training.askgru_loop`, so the same batches for the same seed), with one
    compiled step (:func:`make_train_step`). Your own code plugs in as ``loss_fn(model, batch, f)``
    (a graph, or a dict of graphs with ``"loss"``, on the symbolic
    :class:`~course_lib.training.PairBatch` and item representations ``f``; the library's is
    :func:`askgru_loss`) or ``step_fn(ids, mask, paper_idx, users, target, conf, tags) -> number |
    dict`` (your compiled step; ``tags`` is ``(2B, n_tags)``, zeros without the tag task). Returns a
    :class:`~course_lib.training.History` whose ``compile_seconds`` is the compile time of the step.
    """
    texts = PaperTexts.from_corpus(texts)
    likes, tags = check_fit_args(
        (model.n_users, model.n_papers, model.n_tags), likes, len(texts), tags=tags, lambda_mtl=lambda_mtl,
        tag_neg_weight=tag_neg_weight, train_papers=train_papers, valid_likes=valid_likes, valid_papers=valid_papers,
        valid_exclude=valid_exclude, valid_k=valid_k, batch_users=batch_users, max_updates=max_updates, lr=lr,
        reg_user=reg_user, alpha_conf=alpha_conf, eps_conf=eps_conf, eval_every=eval_every, patience=patience)
    check_plugins(loss_fn, step_fn)
    check_askgru_memory(getattr(model.encoder, "config", {}), batch_users, texts.ids.shape[1])
    if train_papers is not None:
        train_papers = check_ids(train_papers, model.n_papers, "paper")
    model.params["warm"].set_value((np.asarray(likes.sum(axis=0)).ravel() > 0).astype(model.dtype))
    t0 = time.perf_counter()
    step = step_fn or make_train_step(model, lambda_mtl=lambda_mtl, tag_neg_weight=tag_neg_weight, lr=lr,
                                      reg_user=reg_user, loss_fn=loss_fn, seed=seed)
    compile_seconds = time.perf_counter() - t0 if step_fn is None else 0.0
    no_tags = np.zeros((1, model.n_tags), dtype=model.dtype)

    def step_on(batch: PairBatch):
        text = texts.batch(batch.paper_idx)
        model.check_batch(*text)
        tags_in = np.repeat(no_tags, len(batch.users), axis=0) if batch.tags is None else batch.tags
        return as_losses(step(*text, batch.users, batch.target.astype(model.dtype), batch.conf.astype(model.dtype),
                              tags_in.astype(model.dtype)))

    hist = askgru_loop(step_on, model, likes, tags=tags, train_papers=train_papers, valid_likes=valid_likes,
                       valid_papers=valid_papers, valid_exclude=valid_exclude, valid_k=valid_k,
                       batch_users=batch_users, max_updates=max_updates, eval_every=eval_every, patience=patience,
                       alpha_conf=alpha_conf, eps_conf=eps_conf, seed=seed,
                       score_fn=lambda cand: score_fn(model, texts, papers=cand),
                       cause=f"lower lr (now {lr}) or check the inputs for NaN", progress=progress,
                       desc=f"{type(model.encoder).__name__} (Theano)")
    hist.compile_seconds = compile_seconds
    return hist


# ------------------------------------------------------------------------------------- inference


def _check_trained(model: AskGRU) -> None:
    if not model.params["warm"].get_value().any():
        raise ValueError("this model is untrained (no paper is marked as having training likes): train it with "
                         "fit(model, likes, texts, ...) first")


def item_vectors(model: AskGRU, texts, papers=None, batch_size: int = 256) -> np.ndarray:
    """``f(X_j)`` for ``papers`` (default all), dropout off: ``(n, K)``."""
    _check_trained(model)
    check_int("batch_size", batch_size)
    texts = PaperTexts.from_corpus(texts)
    papers = np.arange(model.n_papers) if papers is None else check_ids(papers, model.n_papers, "paper")
    if "f" not in model._fns:
        model._fns["f"] = function(model.text_inputs(), model.item_repr(), name="item_vectors")
    out = []
    for s in range(0, papers.size, batch_size):
        batch = texts.batch(papers[s:s + batch_size])
        model.check_batch(*batch)
        out.append(model._fns["f"](*batch))
    return np.concatenate(out) if out else np.zeros((0, model.encoder.out_dim), dtype=model.dtype)


def score_fn(model: AskGRU, texts, papers=None, batch_size: int = 256):
    """A function ``users -> r_ij`` block ``(len(users), len(papers))`` (numpy float32), with the
    papers' ``f(X_j)`` computed once: what :func:`course_lib.evaluation.evaluate_ranking` calls in
    chunks, so a full ``users x papers`` matrix never has to sit in memory."""
    papers = np.arange(model.n_papers) if papers is None else check_ids(papers, model.n_papers, "paper")
    f = item_vectors(model, texts, papers, batch_size)  # (P, K)
    s = model.params.state_dict()
    item_bias = s["item_bias"][papers] * s["warm"][papers]  # (P,)

    def block(users) -> np.ndarray:
        u = check_ids(users, model.n_users, "user")
        return (s["user_emb"][u] @ f.T + s["user_bias"][u][:, None] + item_bias[None]).astype(np.float32)  # (U, P)

    return block


def score(model: AskGRU, texts, users=None, papers=None, batch_size: int = 256) -> np.ndarray:
    """``r_ij`` for ``users`` x ``papers`` (default all): dense ``(n_users, n_papers)`` float32."""
    users = np.arange(model.n_users) if users is None else check_ids(users, model.n_users, "user")
    n_papers = model.n_papers if papers is None else np.asarray(papers).size
    check_memory(4 * users.size * n_papers, f"the dense ({users.size}, {n_papers}) score matrix",
                 "score fewer users or papers at a time, or use score_fn for blocks of users")
    return score_fn(model, texts, papers, batch_size)(users)


def tag_scores(model: AskGRU, texts, papers=None, batch_size: int = 256) -> np.ndarray:
    """``p_jl = sigma(f(X_j) . t_l)``: ``(n_papers, n_tags)`` (section 3.3)."""
    if model.n_tags == 0:
        raise ValueError("this model has no tag task: build AskGRU(..., n_tags=...) and train with lambda_mtl < 1")
    f = item_vectors(model, texts, papers, batch_size)
    return 1.0 / (1.0 + np.exp(-(f @ model.params["tag_emb"].get_value().T)))
