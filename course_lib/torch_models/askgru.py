"""Ask the GRU (Bansal, Belanger & McCallum, RecSys 2016): text encoders trained end to end for
recommendation, with tag prediction as a second task.

* :class:`EmbedEncoder`: ``g(X_j)`` = mean of the word embeddings (eq. 5, the paper's *Embed*).
* :class:`GRUEncoder`: a bidirectional GRU layer whose concatenated states feed a second GRU layer,
  mean-pooled over the real tokens (section 3.2, Figure 1, the paper's *GRU*).
* :class:`AskGRU`: ``f(X_j) = g(X_j) + v_j`` (eq. 4, ``v_j = 0`` for cold papers) and
  ``r_ij = b_i + b_j + u_i . f(X_j)`` (eq. 3); tag probabilities ``sigma(f(X_j) . t_l)`` (section 3.3).
* :func:`confidence_weights`, :func:`weighted_squared_loss` (eq. 2), :func:`tag_loss` and
  :func:`multitask_loss` (section 3.3), together :func:`askgru_loss`; :func:`make_train_step` (one
  Adam update) and :func:`fit` (section 4.1.2: mini-batches of ``B`` users with one positive and one
  negative paper each, dropout, early stopping on validation recall), which runs the course's
  training loop (:func:`course_lib.training.askgru_loop`) and takes your own ``loss_fn`` or
  ``step_fn``.

Both encoders follow the content-encoder interface of :mod:`course_lib.torch_models.content`
(``nn.Module``, ``out_dim``, ``forward(TextBatch) -> (batch, out_dim)``, ``aux_loss``), so the
hybrid recommender takes :class:`GRUEncoder` unchanged as its content level (d).
Every default below is the paper's value; where the paper gives none, the comment says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from course_lib.data import check_ids
from course_lib.torch_models.content import make_text_batch
from course_lib.torch_models.utils import TextBatch, minimise, resolve_device
from course_lib.training import (  # noqa: F401  (the paper's settings and frequent_tags: used as ag.EMB_DIM, ...)
    ALPHA_CONF, BATCH_USERS, DROPOUT, EMB_DIM, EPS_CONF, HIDDEN1, HIDDEN2, MAX_UPDATES, REG_USER, History, PairBatch,
    askgru_loop, check_askgru_args, check_askgru_memory, check_encoder_args, check_fit_args, check_plugins,
    frequent_tags,
)
from course_lib.validation import check_choice, check_fraction, check_int, check_memory



def gru_step(gx: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step in ``torch.nn.GRU``'s formulation, eq. (6)-(8) of the paper with ``z_t = 1 - o_t``::

        r = sigmoid(x_r + W_hr h + b_hr),  z = sigmoid(x_z + W_hz h + b_hz)
        n = tanh(x_n + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h

    ``gx`` ``(n, 3H)`` is the input projection ``x W_ih^T + b_ih`` (gates stacked ``[r, z, n]``),
    computed for all steps at once outside the loop; ``h`` ``(n, H)``; returns ``h'`` ``(n, H)``.
    The Theano track's ``gru_step`` is the same function of the same weights.
    """
    gh = nn.functional.linear(h, w_hh, b_hh)  # (n, 3H)
    x_r, x_z, x_n = gx.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)  # reset gate (f_t in eq. 6)
    z = torch.sigmoid(x_z + h_z)  # update gate (1 - o_t)
    cand = torch.tanh(x_n + r * h_n)  # candidate (eq. 7)
    return cand + z * (h - cand)  # (1 - z) cand + z h (eq. 8)


def _embedding(n_words: int, emb_dim: int, embeddings, gen: torch.Generator) -> nn.Embedding:
    """A trainable lookup table, initialised from pretrained vectors when given (section 4.1.2:
    CBOW embeddings, "trained further"). Row 0 is padding and stays zero."""
    table = nn.Embedding(n_words, emb_dim, padding_idx=0)
    if embeddings is not None:
        if hasattr(embeddings, "matrix"):  # course_lib.word_vectors.WordVectors
            embeddings = embeddings.matrix
        w = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if tuple(w.shape) != (n_words, emb_dim):
            raise ValueError(
                f"embeddings have shape {tuple(w.shape)}, expected ({n_words}, {emb_dim}): align them with "
                "the same Vocabulary (course_lib.word_vectors) and pass emb_dim=their dimension"
            )
        if not torch.isfinite(w).all():
            raise ValueError("embeddings contain NaN or infinite values")
        with torch.no_grad():
            table.weight.copy_(w)
            table.weight[0].zero_()
    else:
        # word2vec-like scale, so that a randomly initialised Embed model starts with small scores
        nn.init.normal_(table.weight, std=1.0 / math.sqrt(emb_dim), generator=gen)
        with torch.no_grad():
            table.weight[0].zero_()
    return table


def _check_mask(mask: torch.Tensor) -> torch.Tensor:
    """Lengths of right-padded sequences; a mask with a hole (0 then 1) would break packing."""
    if mask.shape[1] > 1 and (mask[:, 1:] > mask[:, :-1]).any():
        raise ValueError("mask must be right-padded (1s for the tokens, then 0s); got a 0 before a 1")
    return mask.sum(dim=1).long()  # (B,)


@dataclass
class _Packed:
    """Where the real tokens of a right-padded batch go when packed time-major.

    Rows are visited longest first, so at step ``t`` the rows still reading are the first
    ``sizes[t]`` of that order and their tokens are one contiguous block of the packed ``(T, ...)``
    tensor: a step never touches padding. ``row[k]``, ``pos[k]``: batch row and position of packed
    token ``k``; ``reverse[k]``: the packed index of the same row's token counted from its end,
    which turns the backward direction into a forward pass over the same blocks.
    """

    sizes: list[int]
    row: torch.Tensor  # (T,)
    pos: torch.Tensor  # (T,)
    reverse: torch.Tensor  # (T,)


def _pack(lengths: torch.Tensor) -> _Packed:
    order = torch.argsort(-lengths, stable=True)  # (B,) longest first
    sorted_len = lengths[order]
    width = int(sorted_len[0])
    steps = torch.arange(width, device=lengths.device)
    active = steps.unsqueeze(1) < sorted_len.unsqueeze(0)  # (width, B), time-major
    sizes = active.sum(dim=1)  # (width,) non-increasing
    t_idx, j_idx = active.nonzero(as_tuple=True)  # time-major: step t holds ranks 0 .. sizes[t] - 1
    offsets = torch.cumsum(sizes, 0) - sizes  # packed index of each step's first token
    reverse = offsets[sorted_len[j_idx] - 1 - t_idx] + j_idx
    return _Packed(sizes.tolist(), order[j_idx], t_idx, reverse)


def _gru_packed(x: torch.Tensor, gru: nn.GRU, suffix: str, sizes: list[int]) -> torch.Tensor:
    """One direction of ``gru`` over packed input ``x`` ``(T, D)``: the states ``(T, H)``.

    The equations of ``nn.GRU`` (:func:`gru_step`), using its weights, written as a loop over time so
    that one matrix product per step covers only the rows still reading; the input projections of all
    steps are one product. ``split`` (not slicing) hands each step its block, so the backward pass
    concatenates gradients once instead of zero-filling per step.
    """
    w_ih, w_hh = getattr(gru, f"weight_ih_l0{suffix}"), getattr(gru, f"weight_hh_l0{suffix}")
    b_ih, b_hh = getattr(gru, f"bias_ih_l0{suffix}"), getattr(gru, f"bias_hh_l0{suffix}")
    gates_x = nn.functional.linear(x, w_ih, b_ih).split(sizes)  # per step (n_t, 3H)
    h = x.new_zeros(sizes[0], w_hh.shape[1])  # (n_0, H)
    out = []
    for gx, n in zip(gates_x, sizes):
        if n < h.shape[0]:
            h = h[:n]  # the shortest rows have ended
        h = gru_step(gx, h, w_hh, b_hh)
        out.append(h)
    return torch.cat(out)  # (T, H)


class EmbedEncoder(nn.Module):
    """*Embed*: ``g(X_j) = 1/|X_j| sum_{w in X_j} e_w`` (eq. 5), the mean of the word embeddings.

    ``embeddings``: optional ``(n_words, emb_dim)`` pretrained vectors (trained further).
    A paper with no token gets the zero vector.
    """

    def __init__(self, n_words: int, emb_dim: int = EMB_DIM, dropout_emb: float = DROPOUT[0], embeddings=None,
                 seed: int = 0):
        super().__init__()
        check_encoder_args(n_words, emb_dim, (dropout_emb,))
        self.embedding = _embedding(n_words, emb_dim, embeddings, torch.Generator().manual_seed(int(seed)))
        self.drop = nn.Dropout(dropout_emb)
        self.out_dim = emb_dim
        self.config = {"n_words": n_words, "emb_dim": emb_dim, "dropout_emb": dropout_emb}

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.embedding(ids))  # (B, L, K_w)

    def encode_embedded(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the real tokens of already looked-up embeddings (saliency differentiates here)."""
        lengths = _check_mask(mask).clamp(min=1).to(emb.dtype)  # (B,)
        return (emb * mask.unsqueeze(-1)).sum(dim=1) / lengths.unsqueeze(-1)  # (B, K_w)

    def forward(self, batch: TextBatch) -> torch.Tensor:
        return self.encode_embedded(self.embed(batch.ids), batch.mask)

    def aux_loss(self, batch: TextBatch) -> torch.Tensor:
        return self.embedding.weight.new_zeros(())


class GRUEncoder(nn.Module):
    """*GRU* (section 3.2, Figure 1): word embeddings -> bidirectional GRU (``hidden1`` per
    direction) -> the concatenated states feed a GRU (``hidden2``) -> mean over the real tokens.

    The weights live in two ``nn.GRU`` modules (``gru1``, ``gru2``, eq. (6)-(8) of the paper with the
    update gate written ``z_t = 1 - o_t``); :func:`_gru_packed` runs their equations on packed tokens
    (:func:`_pack`), so the backward direction starts at each paper's last real word, padded positions
    never change the result and cost nothing. Dropout 0.1 / 0.5 / 0.3 acts on the embeddings, the
    first-layer output and the second-layer output of the real tokens (section 4.1.2), inside
    :meth:`encode_embedded`, so :meth:`embed` is the plain lookup. ``out_dim = hidden2``.
    """

    def __init__(
        self,
        n_words: int,
        emb_dim: int = EMB_DIM,
        hidden1: int = HIDDEN1,
        hidden2: int = HIDDEN2,
        dropout: tuple[float, float, float] = DROPOUT,
        embeddings=None,
        seed: int = 0,
    ):
        super().__init__()
        if len(dropout) != 3:
            raise ValueError(f"dropout must be 3 probabilities (embedding, layer 1, layer 2), got {dropout}")
        check_encoder_args(n_words, emb_dim, dropout, hidden1=hidden1, hidden2=hidden2)
        self.embedding = _embedding(n_words, emb_dim, embeddings, torch.Generator().manual_seed(int(seed)))
        with torch.random.fork_rng(devices=[]):  # nn.GRU draws its init from the global generator
            torch.manual_seed(int(seed))
            self.gru1 = nn.GRU(emb_dim, hidden1, batch_first=True, bidirectional=True)
            self.gru2 = nn.GRU(2 * hidden1, hidden2, batch_first=True)
        self.drops = nn.ModuleList(nn.Dropout(p) for p in dropout)
        self.out_dim = hidden2
        self.config = {"n_words": n_words, "emb_dim": emb_dim, "hidden1": hidden1, "hidden2": hidden2,
                       "dropout": tuple(dropout)}

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)  # (B, L, K_w)

    def encode_embedded(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode already looked-up embeddings ``(B, L, K_w)`` (saliency differentiates here)."""
        lengths = _check_mask(mask)  # (B,)
        n_rows = emb.shape[0]
        if n_rows == 0 or int(lengths.max()) == 0:  # nothing to read: every paper is empty
            return emb.new_zeros(n_rows, self.out_dim) + 0.0 * emb.sum()
        pk = _pack(lengths)
        x = self.drops[0](emb[pk.row, pk.pos])  # (T, K_w): the real tokens only, T = their number
        fwd = _gru_packed(x, self.gru1, "", pk.sizes)  # (T, hidden1)
        bwd = _gru_packed(x[pk.reverse], self.gru1, "_reverse", pk.sizes)[pk.reverse]  # (T, hidden1)
        h1 = self.drops[1](torch.cat([fwd, bwd], dim=1))  # (T, 2 * hidden1)
        h2 = self.drops[2](_gru_packed(h1, self.gru2, "", pk.sizes))  # (T, hidden2)
        pooled = h2.new_zeros(n_rows, h2.shape[1]).index_add(0, pk.row, h2)  # (B, hidden2): sum over tokens
        return pooled / lengths.clamp(min=1).to(h2.dtype).unsqueeze(-1)  # mean pooling; empty papers -> 0

    def forward(self, batch: TextBatch) -> torch.Tensor:
        return self.encode_embedded(self.embed(batch.ids), batch.mask)

    def aux_loss(self, batch: TextBatch) -> torch.Tensor:
        return self.embedding.weight.new_zeros(())


class AskGRU(nn.Module):
    """The recommender of eq. (3)-(4) with tag embeddings for multi-task learning (section 3.3).

    ``f(X_j) = g(X_j) + v_j``; ``v_j`` is used only for *warm* papers (those with training likes,
    set by :func:`fit`), so a cold paper is represented by its text alone. Scores
    ``r_ij = b_i + b_j + u_i . f(X_j)`` (eq. 3; ``b_j`` is 0 for cold papers, like ``v_j``).
    ``n_tags = 0`` builds a model without the tag task.
    """

    def __init__(self, encoder: nn.Module, n_users: int, n_papers: int, n_tags: int = 0, seed: int = 0):
        super().__init__()
        check_askgru_args(encoder, n_users, n_papers, n_tags)
        dim = encoder.out_dim
        gen = torch.Generator().manual_seed(int(seed))
        self.encoder = encoder
        # The paper gives no initialisation; small random users, zero item offsets so f starts as g.
        self.user_emb = nn.Parameter(torch.randn(n_users, dim, generator=gen) / math.sqrt(dim))
        self.item_emb = nn.Parameter(torch.zeros(n_papers, dim))
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_papers))
        self.tag_emb = nn.Parameter(torch.randn(n_tags, dim, generator=gen) / math.sqrt(dim))
        self.register_buffer("warm", torch.zeros(n_papers, dtype=torch.bool))
        self.n_users, self.n_papers, self.n_tags = n_users, n_papers, n_tags

    def item_repr(self, batch: TextBatch) -> torch.Tensor:
        """``f(X_j) = g(X_j) + v_j`` (eq. 4), ``v_j = 0`` for cold papers: ``(B, K)``."""
        if not isinstance(batch, TextBatch):
            raise ValueError("item_repr reads a TextBatch (make_text_batch(texts, papers)), got "
                             f"{type(batch).__name__}")
        warm = self.warm[batch.paper_idx].unsqueeze(-1).to(self.item_emb.dtype)  # (B, 1)
        return self.encoder(batch) + warm * self.item_emb[batch.paper_idx]

    def score_pairs(self, users: torch.Tensor, f: torch.Tensor, paper_idx: torch.Tensor) -> torch.Tensor:
        """``r_ij`` for aligned users and item representations ``f``: ``(B,)`` (eq. 3)."""
        if f.dim() != 2 or users.shape != (f.shape[0],) or paper_idx.shape != (f.shape[0],):
            raise ValueError(f"users {tuple(users.shape)} and paper_idx {tuple(paper_idx.shape)} must be (B,) with B "
                             f"the rows of f {tuple(f.shape)} (one user and one paper per item representation)")
        warm = self.warm[paper_idx].to(f.dtype)
        return (self.user_emb[users] * f).sum(-1) + self.user_bias[users] + warm * self.item_bias[paper_idx]

    def forward(self, users: torch.Tensor, batch: TextBatch) -> torch.Tensor:
        return self.score_pairs(users, self.item_repr(batch), batch.paper_idx)

    def tag_logits(self, f: torch.Tensor) -> torch.Tensor:
        """``f(X_j) . t_l`` for every tag: ``(B, n_tags)``; ``sigma`` of it is ``p_jl`` (section 3.3)."""
        return f @ self.tag_emb.T

    def save(self, path) -> None:
        """Weights, the encoder's settings and which papers are warm, in one file."""
        if not isinstance(getattr(self.encoder, "config", None), dict):
            raise ValueError("save() keeps the encoder's settings from its `config` dict, which this encoder does "
                             "not have; save the weights with torch.save(model.state_dict(), path) instead")
        torch.save({"encoder": type(self.encoder).__name__, "encoder_config": self.encoder.config,
                    "n_users": self.n_users, "n_papers": self.n_papers, "n_tags": self.n_tags,
                    "state": self.state_dict()}, Path(path))

    @classmethod
    def load(cls, path, device="auto") -> "AskGRU":
        """Rebuild a model saved by :meth:`save` (its encoder included)."""
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        encoder_cls = {"EmbedEncoder": EmbedEncoder, "GRUEncoder": GRUEncoder}
        check_choice(f"the encoder saved in {path}", ckpt["encoder"], encoder_cls)
        model = cls(encoder_cls[ckpt["encoder"]](**ckpt["encoder_config"]), ckpt["n_users"], ckpt["n_papers"],
                    ckpt["n_tags"])
        model.load_state_dict(ckpt["state"])
        return model.to(resolve_device(device))


# ---------------------------------------------------------------------------------------- losses


def confidence_weights(n_likes, alpha_conf: float = ALPHA_CONF, eps_conf: float = EPS_CONF) -> torch.Tensor:
    """``c_ij = 1 + alpha log(1 + |R_i| / eps)`` (section 4.1.2), from each user's number of likes."""
    n = torch.as_tensor(n_likes, dtype=torch.float32)
    if (n < 0).any():
        raise ValueError("numbers of likes must be >= 0")
    return 1.0 + alpha_conf * torch.log1p(n / eps_conf)


def weighted_squared_loss(pred: torch.Tensor, target: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """``1/|R| sum c_ij (r_hat_ij - r_ij)^2`` over the sampled pairs (eq. 2 without ``Omega``)."""
    if not (pred.shape == target.shape == conf.shape):
        raise ValueError(f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and conf {tuple(conf.shape)} "
                         "must have the same shape")
    return (conf * (pred - target) ** 2).mean()


def tag_loss(logits: torch.Tensor, tags: torch.Tensor, tag_neg_weight: float) -> torch.Tensor:
    """``C_T = -1/|T| sum_j sum_l [t_jl log p_jl + c'_jl (1 - t_jl) log(1 - p_jl)]`` (section 3.3).

    ``logits``, ``tags``: ``(n_papers_in_batch, n_tags)``; ``c'_jl = tag_neg_weight`` down-weights
    the unobserved tags. ``T`` is read as the set of papers whose tags enter the cost: the sum runs
    over all tags of a paper and is averaged over papers, which keeps ``C_T`` on the scale of ``C_R``.
    The paper writes the log-likelihood; the cost is its negative.
    """
    if logits.dim() != 2 or logits.shape != tags.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and tags {tuple(tags.shape)} must have the same shape "
                         "(papers, n_tags)")
    log_p = nn.functional.logsigmoid(logits)
    log_not_p = nn.functional.logsigmoid(-logits)
    per_paper = -(tags * log_p + tag_neg_weight * (1 - tags) * log_not_p).sum(dim=1)  # (n_papers,)
    return per_paper.mean()


def multitask_loss(loss_rec: torch.Tensor, loss_tag: torch.Tensor, lambda_mtl: float) -> torch.Tensor:
    """``C = lambda C_R + (1 - lambda) C_T`` (section 3.3); ``lambda_mtl = 1`` is the single-task model."""
    check_fraction("lambda_mtl", lambda_mtl, upper_inclusive=True)
    return lambda_mtl * loss_rec + (1.0 - lambda_mtl) * loss_tag


def askgru_loss(model: AskGRU, batch: PairBatch, f: torch.Tensor, *, lambda_mtl: float = 1.0,
                tag_neg_weight: float = 0.01, reg_user: float = REG_USER) -> dict[str, torch.Tensor]:
    """The library's ``loss_fn``: ``{"loss": C, "loss_rec": C_R, "loss_tag": C_T}`` (section 3.3, 4.1.2).

    ``batch`` is a :class:`~course_lib.training.PairBatch` of tensors, ``f`` ``(2B, K)`` the item
    representations of its papers (eq. 4, dropout on). ``C_R`` = eq. (2) on the pairs weighted by
    ``batch.conf`` plus ``reg_user * mean ||u_i||^2``; ``C_T`` the tag cost (0 without tags);
    ``C = lambda C_R + (1 - lambda) C_T``.
    """
    pred = model.score_pairs(batch.users, f, batch.paper_idx)  # (2B,)
    loss_rec = weighted_squared_loss(pred, batch.target, batch.conf)
    loss_rec = loss_rec + reg_user * model.user_emb[batch.users].pow(2).sum(-1).mean()
    if lambda_mtl < 1.0:
        loss_t = tag_loss(model.tag_logits(f), batch.tags, tag_neg_weight)
    else:
        loss_t = torch.zeros((), device=f.device)
    return {"loss": multitask_loss(loss_rec, loss_t, lambda_mtl), "loss_rec": loss_rec, "loss_tag": loss_t}


# -------------------------------------------------------------------------------------- training


def _batch_item_repr(model: AskGRU, texts, papers: np.ndarray, dev, dedup: bool):
    """``f(X_j)`` for the batch's papers ``(len(papers), K)`` and their indices on ``dev``.

    With ``dedup`` each distinct paper is encoded once and its vector reused for every pair that
    draws it (a popular paper can be several users' positive); one dropout mask then serves all its
    pairs. Without dropout the loss and gradients are those of encoding every pair's paper.
    """
    if not dedup:
        batch = make_text_batch(texts, papers, device=dev)
        return model.item_repr(batch), batch.paper_idx
    distinct, where = np.unique(papers, return_inverse=True)
    f = model.item_repr(make_text_batch(texts, distinct, device=dev))  # (n_distinct, K)
    return f[torch.as_tensor(where, device=dev)], torch.as_tensor(papers, device=dev)


def make_train_step(model: AskGRU, texts, *, lambda_mtl: float = 1.0, tag_neg_weight: float = 0.01, lr: float = 1e-3,
                    reg_user: float = REG_USER, loss_fn=None, dedup: bool = True, device="auto"):
    """The library's training step: ``step(batch) -> {"loss": ..., "loss_rec": ..., "loss_tag": ...}``.

    ``batch`` is a :class:`~course_lib.training.PairBatch` of numpy arrays (what :func:`fit`'s loop
    draws). One call: dropout on, ``f(X_j)`` of its papers (each distinct paper encoded once with
    ``dedup``, see :func:`_batch_item_repr`), ``loss_fn(model, batch, f)`` on the batch moved to
    tensors (default :func:`askgru_loss`), one Adam step with ``lr`` on its ``"loss"``. Returns
    every named loss as a float.
    """
    dev = resolve_device(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = partial(askgru_loss, lambda_mtl=lambda_mtl, tag_neg_weight=tag_neg_weight,
                      reg_user=reg_user) if loss_fn is None else loss_fn

    def tensor(x, dtype=torch.float32):
        return None if x is None else torch.as_tensor(x, dtype=dtype, device=dev)

    def step(batch: PairBatch) -> dict[str, float]:
        model.train()
        f, paper_idx = _batch_item_repr(model, texts, batch.paper_idx, dev, dedup)  # (2B, K), (2B,)
        pairs = PairBatch(tensor(batch.users, torch.long), paper_idx, tensor(batch.target), tensor(batch.n_likes),
                          tensor(batch.conf), tensor(batch.tags))
        return minimise(loss_fn(model, pairs, f), opt)

    return step


def fit(
    model: AskGRU,
    likes: sp.csr_matrix,
    texts,
    *,
    tags: sp.csr_matrix | None = None,
    lambda_mtl: float = 1.0,
    tag_neg_weight: float = 0.01,
    train_papers=None,
    valid_likes: sp.csr_matrix | None = None,
    valid_papers=None,
    valid_exclude: sp.csr_matrix | None = None,
    valid_k: int = 50,
    batch_users: int = BATCH_USERS,
    max_updates: int = MAX_UPDATES,
    lr: float = 1e-3,
    reg_user: float = REG_USER,
    alpha_conf: float = ALPHA_CONF,
    eps_conf: float = EPS_CONF,
    eval_every: int = 500,
    patience: int = 5,
    dedup: bool = True,
    seed: int = 0,
    device="auto",
    progress: bool = True,
    loss_fn=None,
    step_fn=None,
) -> History:
    """Train ``model`` on the training ``likes`` (section 4.1.2) and keep the best weights.

    * ``texts``: an :class:`course_lib.text.EncodedCorpus` (``ids``, ``mask``, ``lengths``) with a
      row per paper of ``likes``.
    * ``tags``: ``(n_papers, n_tags)`` csr of *training* tags; with ``lambda_mtl < 1`` the tags of
      the batch's papers add ``C_T`` (section 3.3). The paper gives no value for ``lambda`` or for
      ``c'``; ``tag_neg_weight = 0.01`` mirrors CTR's weight ``b`` for unobserved entries.
    * ``train_papers``: papers that may be drawn as negatives (default: those with a training
      like); in cold start this keeps the test papers out of training entirely.
    * Each update draws ``batch_users`` users with one positive and one negative each, weights both
      by ``c_ij`` (no separate weight for negatives, as in the paper), adds
      ``reg_user * mean ||u_i||^2`` and takes an Adam step (learning rate: the paper gives none, we
      use Adam's usual 1e-3).
    * Every ``eval_every`` updates Recall@``valid_k`` on ``valid_likes`` (candidates
      ``valid_papers``, training items ``valid_exclude`` removed) decides early stopping: training
      stops after ``patience`` evaluations without improvement (our choice; the paper only says
      "early-stopping based on recall on a validation set") and the best weights are restored.
      Only validation users with a held-out like are scored, in no-grad chunks.
    * ``dedup``: encode each distinct paper of a batch once (see :func:`_batch_item_repr`).

    The loop is the course's :func:`course_lib.training.askgru_loop`, the step :func:`make_train_step`.
    Your own code plugs in in three ways: the encoder of ``model`` (any ``nn.Module`` with
    ``out_dim`` and ``forward(TextBatch) -> (B, out_dim)``, e.g. yours); ``loss_fn(model, batch, f)
    -> tensor | dict`` inside the library's step (``batch`` a :class:`~course_lib.training.PairBatch`
    of tensors: ``users``, ``paper_idx``, ``target``, ``n_likes``, ``conf``, ``tags``; ``f`` their
    item representations ``(2B, K)``; return ``C`` or a dict with ``"loss"`` and e.g. ``"loss_rec"``,
    ``"loss_tag"``; the library's is :func:`askgru_loss`); or ``step_fn(batch) -> number | dict``,
    your whole step on the :class:`~course_lib.training.PairBatch` of numpy arrays (``lr``,
    ``reg_user``, ``lambda_mtl``, ``tag_neg_weight``, ``dedup`` are then not used by the step).
    Returns a :class:`~course_lib.training.History`.
    """
    likes, tags = check_fit_args(
        (model.n_users, model.n_papers, model.n_tags), likes, np.asarray(texts.ids).shape[0], tags=tags,
        lambda_mtl=lambda_mtl, tag_neg_weight=tag_neg_weight, train_papers=train_papers, valid_likes=valid_likes,
        valid_papers=valid_papers, valid_exclude=valid_exclude, valid_k=valid_k, batch_users=batch_users,
        max_updates=max_updates, lr=lr, reg_user=reg_user, alpha_conf=alpha_conf, eps_conf=eps_conf,
        eval_every=eval_every, patience=patience)
    check_plugins(loss_fn, step_fn)
    check_askgru_memory(getattr(model.encoder, "config", {}), batch_users, np.asarray(texts.ids).shape[1])
    if train_papers is not None:
        train_papers = check_ids(train_papers, model.n_papers, "paper")
    dev = resolve_device(device)
    torch.manual_seed(int(seed))  # dropout masks come from the global stream
    model.to(dev)
    with torch.no_grad():
        model.warm.copy_(torch.as_tensor(np.asarray(likes.sum(axis=0)).ravel() > 0, device=dev))
    step = step_fn or make_train_step(model, texts, lambda_mtl=lambda_mtl, tag_neg_weight=tag_neg_weight, lr=lr,
                                      reg_user=reg_user, dedup=dedup, loss_fn=loss_fn, device=dev)
    hist = askgru_loop(step, model, likes, tags=tags, train_papers=train_papers, valid_likes=valid_likes,
                       valid_papers=valid_papers, valid_exclude=valid_exclude, valid_k=valid_k,
                       batch_users=batch_users, max_updates=max_updates, eval_every=eval_every, patience=patience,
                       alpha_conf=alpha_conf, eps_conf=eps_conf, seed=seed,
                       score_fn=lambda cand: score_fn(model, texts, papers=cand, device=dev),
                       cause=f"lower lr (now {lr}) or check the inputs for NaN", progress=progress,
                       desc=type(model.encoder).__name__)
    model.eval()
    return hist


# ------------------------------------------------------------------------------------- inference


def _check_trained(model: AskGRU) -> None:
    if not bool(model.warm.any()):
        raise ValueError("this model is untrained (no paper is marked as having training likes): train it with "
                         "fit(model, likes, texts, ...) first")


@torch.no_grad()
def item_vectors(model: AskGRU, texts, papers=None, batch_size: int = 1024, device="auto") -> torch.Tensor:
    """``f(X_j)`` for ``papers`` (default all) in eval mode: ``(n, K)`` on the model's device.

    Papers are encoded in chunks of similar length (so a chunk of titles is not as wide as the
    longest abstract) and returned in the order of ``papers``."""
    _check_trained(model)
    check_int("batch_size", batch_size)
    dev = resolve_device(device)
    papers = np.arange(model.n_papers) if papers is None else check_ids(papers, model.n_papers, "paper")
    if papers.size == 0:
        return torch.zeros(0, model.encoder.out_dim, device=dev)
    was_training = model.training
    model.eval().to(dev)
    by_length = np.argsort(np.asarray(texts.lengths)[papers], kind="stable")
    out = torch.cat([model.item_repr(make_text_batch(texts, papers[by_length[s : s + batch_size]], device=dev))
                     for s in range(0, papers.size, batch_size)])  # (n, K) in by_length order
    model.train(was_training)
    return out[torch.as_tensor(np.argsort(by_length), device=dev)]


def score_fn(model: AskGRU, texts, papers=None, batch_size: int = 256, device="auto"):
    """A function ``users -> r_ij`` block ``(len(users), len(papers))`` (numpy float32), with the
    papers' ``f(X_j)`` computed once: what :func:`course_lib.evaluation.evaluate_ranking` calls in
    chunks, so a full ``users x papers`` matrix never has to sit in memory."""
    dev = resolve_device(device)
    papers = np.arange(model.n_papers) if papers is None else check_ids(papers, model.n_papers, "paper")
    f = item_vectors(model, texts, papers, batch_size, dev)  # (P, K)
    p = torch.as_tensor(papers, device=dev)
    with torch.no_grad():
        item_bias = model.item_bias[p] * model.warm[p].to(f.dtype)  # (P,)
        user_emb, user_bias = model.user_emb.detach(), model.user_bias.detach()

    def block(users) -> np.ndarray:
        u = torch.as_tensor(check_ids(users, model.n_users, "user"), device=dev)
        out = user_emb[u] @ f.T + user_bias[u].unsqueeze(1) + item_bias.unsqueeze(0)  # (U, P)
        return out.cpu().numpy().astype(np.float32)

    return block


def score(model: AskGRU, texts, users=None, papers=None, batch_size: int = 256, device="auto") -> np.ndarray:
    """``r_ij`` (eq. 3) for every user in ``users`` (default all) and paper in ``papers`` (default
    all): a dense ``(n_users, n_papers)`` float32 array."""
    users = np.arange(model.n_users) if users is None else check_ids(users, model.n_users, "user")
    n_papers = model.n_papers if papers is None else np.asarray(papers).size
    check_memory(4 * users.size * n_papers, f"the dense ({users.size}, {n_papers}) score matrix",
                 "score fewer users or papers at a time, or use score_fn for blocks of users")
    return score_fn(model, texts, papers, batch_size, device)(users)


@torch.no_grad()
def tag_scores(model: AskGRU, texts, papers=None, batch_size: int = 256, device="auto") -> np.ndarray:
    """``p_jl = sigma(f(X_j) . t_l)`` for ``papers``: ``(n_papers, n_tags)`` (section 3.3)."""
    if model.n_tags == 0:
        raise ValueError("this model has no tag task: build AskGRU(..., n_tags=...) and train with lambda_mtl < 1")
    f = item_vectors(model, texts, papers, batch_size, device)
    return torch.sigmoid(model.tag_logits(f)).cpu().numpy()
