"""Ask the GRU (Bansal, Belanger & McCallum, RecSys 2016): text encoders trained end to end for
recommendation, with tag prediction as a second task.

* :class:`EmbedEncoder`: ``g(X_j)`` = mean of the word embeddings (eq. 5, the paper's *Embed*).
* :class:`GRUEncoder`: a bidirectional GRU layer whose concatenated states feed a second GRU layer,
  mean-pooled over the real tokens (section 3.2, Figure 1, the paper's *GRU*).
* :class:`AskGRU`: ``f(X_j) = g(X_j) + v_j`` (eq. 4, ``v_j = 0`` for cold papers) and
  ``r_ij = b_i + b_j + u_i . f(X_j)`` (eq. 3); tag probabilities ``sigma(f(X_j) . t_l)`` (section 3.3).
* :func:`confidence_weights`, :func:`weighted_squared_loss` (eq. 2), :func:`tag_loss` and
  :func:`multitask_loss` (section 3.3), and :func:`fit` (section 4.1.2: mini-batches of ``B`` users
  with one positive and one negative paper each, Adam, dropout, early stopping on validation recall).

Both encoders follow the content-encoder interface of :mod:`course_lib.torch_models.content`
(``nn.Module``, ``out_dim``, ``forward(TextBatch) -> (batch, out_dim)``, ``aux_loss``), so the
hybrid recommender takes :class:`GRUEncoder` unchanged as its content level (d).
Every default below is the paper's value; where the paper gives none, the comment says so.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from course_lib.data import check_ids
from course_lib.training import sample_user_pairs
from course_lib.torch_models.content import make_text_batch
from course_lib.torch_models.utils import TextBatch, resolve_device, seed_everything

# Section 4.1.2 of the paper.
EMB_DIM = 200  # K_w = K = 200, "to be consistent with CTR"
HIDDEN1 = 400  # K_h1, first (bidirectional) layer; per direction, as K_h in eq. (6)-(8)
HIDDEN2 = 200  # K_h2, second layer = output dimension K
DROPOUT = (0.1, 0.5, 0.3)  # embedding layer, first-layer output, second-layer output
ALPHA_CONF = 10.0  # alpha in c_ij = 1 + alpha log(1 + |R_i| / eps)
EPS_CONF = 1e-8  # eps in the same formula
BATCH_USERS = 512  # B
REG_USER = 0.01  # "we also regularize the user embeddings with weight 0.01"
MAX_UPDATES = 20_000  # "a maximum of 20k mini-batch updates"


def _embedding(n_words: int, emb_dim: int, embeddings, gen: torch.Generator) -> nn.Embedding:
    """A trainable lookup table, initialised from pretrained vectors when given (section 4.1.2:
    CBOW embeddings, "trained further"). Row 0 is padding and stays zero."""
    if n_words < 2:
        raise ValueError(f"n_words must be >= 2 (padding + at least one word), got {n_words}")
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

    The equations of ``nn.GRU`` (eq. (6)-(8) of the paper, with ``z_t = 1 - o_t``), using its weights,
    written as a loop over time so that one matrix product per step covers only the rows still
    reading; the input projections of all steps are one product. ``split`` (not slicing) hands each
    step its block, so the backward pass concatenates gradients once instead of zero-filling per step.
    """
    w_ih, w_hh = getattr(gru, f"weight_ih_l0{suffix}"), getattr(gru, f"weight_hh_l0{suffix}")
    b_ih, b_hh = getattr(gru, f"bias_ih_l0{suffix}"), getattr(gru, f"bias_hh_l0{suffix}")
    gates_x = nn.functional.linear(x, w_ih, b_ih).split(sizes)  # per step (n_t, 3H)
    h = x.new_zeros(sizes[0], w_hh.shape[1])  # (n_0, H)
    out = []
    for gx, n in zip(gates_x, sizes):
        if n < h.shape[0]:
            h = h[:n]  # the shortest rows have ended
        gh = nn.functional.linear(h, w_hh, b_hh)  # (n, 3H)
        x_r, x_z, x_n = gx.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)  # reset gate (f_t in eq. 6)
        z = torch.sigmoid(x_z + h_z)  # update gate (1 - o_t)
        cand = torch.tanh(x_n + r * h_n)  # candidate (eq. 7)
        h = cand + z * (h - cand)  # (1 - z) cand + z h (eq. 8)
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
        if n_users < 1 or n_papers < 1 or n_tags < 0:
            raise ValueError(f"need n_users >= 1, n_papers >= 1, n_tags >= 0; got {n_users}, {n_papers}, {n_tags}")
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
        warm = self.warm[batch.paper_idx].unsqueeze(-1).to(self.item_emb.dtype)  # (B, 1)
        return self.encoder(batch) + warm * self.item_emb[batch.paper_idx]

    def score_pairs(self, users: torch.Tensor, f: torch.Tensor, paper_idx: torch.Tensor) -> torch.Tensor:
        """``r_ij`` for aligned users and item representations ``f``: ``(B,)`` (eq. 3)."""
        warm = self.warm[paper_idx].to(f.dtype)
        return (self.user_emb[users] * f).sum(-1) + self.user_bias[users] + warm * self.item_bias[paper_idx]

    def forward(self, users: torch.Tensor, batch: TextBatch) -> torch.Tensor:
        return self.score_pairs(users, self.item_repr(batch), batch.paper_idx)

    def tag_logits(self, f: torch.Tensor) -> torch.Tensor:
        """``f(X_j) . t_l`` for every tag: ``(B, n_tags)``; ``sigma`` of it is ``p_jl`` (section 3.3)."""
        return f @ self.tag_emb.T

    def save(self, path) -> None:
        """Weights, the encoder's settings and which papers are warm, in one file."""
        torch.save({"encoder": type(self.encoder).__name__, "encoder_config": self.encoder.config,
                    "n_users": self.n_users, "n_papers": self.n_papers, "n_tags": self.n_tags,
                    "state": self.state_dict()}, Path(path))

    @classmethod
    def load(cls, path, device="auto") -> "AskGRU":
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        encoders = {"EmbedEncoder": EmbedEncoder, "GRUEncoder": GRUEncoder}
        if ckpt["encoder"] not in encoders:
            raise ValueError(f"{path} holds a {ckpt['encoder']} encoder; load() rebuilds only {sorted(encoders)}")
        model = cls(encoders[ckpt["encoder"]](**ckpt["encoder_config"]), ckpt["n_users"], ckpt["n_papers"],
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
    if logits.shape != tags.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and tags {tuple(tags.shape)} must have the same shape")
    log_p = nn.functional.logsigmoid(logits)
    log_not_p = nn.functional.logsigmoid(-logits)
    per_paper = -(tags * log_p + tag_neg_weight * (1 - tags) * log_not_p).sum(dim=1)  # (n_papers,)
    return per_paper.mean()


def multitask_loss(loss_rec: torch.Tensor, loss_tag: torch.Tensor, lambda_mtl: float) -> torch.Tensor:
    """``C = lambda C_R + (1 - lambda) C_T`` (section 3.3); ``lambda_mtl = 1`` is the single-task model."""
    if not 0.0 <= lambda_mtl <= 1.0:
        raise ValueError(f"lambda_mtl must be in [0, 1], got {lambda_mtl}")
    return lambda_mtl * loss_rec + (1.0 - lambda_mtl) * loss_tag


def frequent_tags(paper_tags: sp.csr_matrix, min_papers: int = 10) -> tuple[sp.csr_matrix, np.ndarray]:
    """Keep the tags used on at least ``min_papers`` papers (section 4.1: "removed tags that occur
    on less than 10 articles"). Returns the ``(n_papers, n_kept)`` binary csr and the kept tag ids."""
    tags = sp.csr_matrix(paper_tags, dtype=np.float32)
    tags.data[:] = 1.0
    keep = np.flatnonzero(np.asarray((tags > 0).sum(axis=0)).ravel() >= min_papers)
    if keep.size == 0:
        raise ValueError(f"no tag is used on >= {min_papers} papers; lower min_papers for this tier")
    return sp.csr_matrix(tags[:, keep]), keep


# -------------------------------------------------------------------------------------- training


@dataclass
class History:
    """What :func:`fit` saw: losses averaged over each evaluation period, validation recall."""

    update: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    loss_rec: list[float] = field(default_factory=list)
    loss_tag: list[float] = field(default_factory=list)
    valid_recall: list[float] = field(default_factory=list)
    best_update: int = 0
    best_recall: float = float("nan")
    seconds: float = 0.0
    n_updates: int = 0
    examples_per_second: float = 0.0  # (user, paper) pairs per second of training

    def as_dict(self) -> dict:
        return dict(self.__dict__)


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
    """
    from tqdm.auto import tqdm

    from course_lib.evaluation import evaluate_ranking

    dev = resolve_device(device)
    likes = sp.csr_matrix(likes, dtype=np.float32)
    if likes.shape != (model.n_users, model.n_papers):
        raise ValueError(f"likes has shape {likes.shape}, the model expects ({model.n_users}, {model.n_papers})")
    if texts.ids.shape[0] != model.n_papers:
        raise ValueError(f"texts has {texts.ids.shape[0]} papers, the model expects {model.n_papers}")
    if likes.nnz == 0:
        raise ValueError("likes is empty: there is nothing to train on")
    if tags is not None and lambda_mtl < 1.0:
        tags = sp.csr_matrix(tags, dtype=np.float32)
        if tags.shape != (model.n_papers, model.n_tags) or model.n_tags == 0:
            raise ValueError(f"tags has shape {tags.shape}; build AskGRU(..., n_tags={tags.shape[1]}) "
                             f"for {model.n_papers} papers")
    elif lambda_mtl < 1.0:
        raise ValueError(f"lambda_mtl={lambda_mtl} asks for the tag task but tags is None; pass tags= or lambda_mtl=1")
    multitask_loss(torch.zeros(()), torch.zeros(()), lambda_mtl)  # validates lambda_mtl

    rng = seed_everything(seed)
    likes.sort_indices()
    n_likes = np.diff(likes.indptr)
    users_pool = np.flatnonzero(n_likes)
    liked = np.asarray(likes.sum(axis=0)).ravel() > 0
    train_papers = np.flatnonzero(liked) if train_papers is None else check_ids(train_papers, model.n_papers, "paper")
    conf_all = confidence_weights(n_likes, alpha_conf, eps_conf).to(dev)  # (n_users,)
    model.to(dev)
    with torch.no_grad():
        model.warm.copy_(torch.as_tensor(liked, device=dev))
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    hist = History()
    best_state, best, bad_evals = None, -math.inf, 0
    sums = np.zeros(3)
    n_pairs, train_seconds, start = 0, 0.0, time.perf_counter()
    bar = tqdm(range(1, max_updates + 1), disable=not progress, desc=type(model.encoder).__name__, leave=False)
    for step in bar:
        t0 = time.perf_counter()
        model.train()
        users, pos, neg = sample_user_pairs(likes, users_pool, train_papers, batch_users, rng)
        papers = np.concatenate([pos, neg])  # (2B,)
        u = torch.as_tensor(np.concatenate([users, users]), device=dev)
        target = torch.cat([torch.ones(users.size), torch.zeros(users.size)]).to(dev)
        f, paper_idx = _batch_item_repr(model, texts, papers, dev, dedup)  # (2B, K), (2B,)
        pred = model.score_pairs(u, f, paper_idx)
        loss_rec = weighted_squared_loss(pred, target, conf_all[u])
        loss_rec = loss_rec + reg_user * model.user_emb[u].pow(2).sum(-1).mean()
        if lambda_mtl < 1.0:
            t = torch.as_tensor(tags[papers].toarray(), device=dev)  # (2B, n_tags)
            loss_t = tag_loss(model.tag_logits(f), t, tag_neg_weight)
        else:
            loss_t = torch.zeros((), device=dev)
        loss = multitask_loss(loss_rec, loss_t, lambda_mtl)
        if not torch.isfinite(loss):
            raise ValueError(f"loss became {loss.item()} at update {step}; lower lr (now {lr}) or check the inputs")
        opt.zero_grad()
        loss.backward()
        opt.step()
        train_seconds += time.perf_counter() - t0
        n_pairs += papers.size
        sums += (loss.item(), loss_rec.item(), loss_t.item())

        if step % eval_every == 0 or step == max_updates:
            n_period = step - (hist.update[-1] if hist.update else 0)
            hist.update.append(step)
            for name, value in zip(("loss", "loss_rec", "loss_tag"), sums / n_period):
                getattr(hist, name).append(float(value))
            sums[:] = 0
            if valid_likes is not None:
                cand = np.arange(model.n_papers) if valid_papers is None else np.asarray(valid_papers)
                scores = score_fn(model, texts, papers=cand, device=dev)
                excl = None if valid_exclude is None else sp.csr_matrix(valid_exclude)[:, cand]
                res = evaluate_ranking(scores, sp.csr_matrix(valid_likes)[:, cand], exclude=excl, ks=(valid_k,),
                                       metrics=("recall",))
                rec = float(res[f"Recall@{valid_k}"])
                hist.valid_recall.append(rec)
                bar.set_postfix(loss=f"{hist.loss[-1]:.3g}", recall=f"{rec:.3f}")
                if rec > best:
                    best, bad_evals, hist.best_update = rec, 0, step
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad_evals += 1
                    if bad_evals >= patience:
                        break
            else:
                bar.set_postfix(loss=f"{hist.loss[-1]:.3g}")
    if best_state is not None:
        model.load_state_dict(best_state)
        hist.best_recall = best
    else:
        hist.best_update = step
    model.eval()
    hist.n_updates = step
    hist.seconds = time.perf_counter() - start
    hist.examples_per_second = n_pairs / max(train_seconds, 1e-9)
    return hist


# ------------------------------------------------------------------------------------- inference


@torch.no_grad()
def item_vectors(model: AskGRU, texts, papers=None, batch_size: int = 1024, device="auto") -> torch.Tensor:
    """``f(X_j)`` for ``papers`` (default all) in eval mode: ``(n, K)`` on the model's device.

    Papers are encoded in chunks of similar length (so a chunk of titles is not as wide as the
    longest abstract) and returned in the order of ``papers``."""
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
    users = np.arange(model.n_users) if users is None else users
    return score_fn(model, texts, papers, batch_size, device)(users)


@torch.no_grad()
def tag_scores(model: AskGRU, texts, papers=None, batch_size: int = 256, device="auto") -> np.ndarray:
    """``p_jl = sigma(f(X_j) . t_l)`` for ``papers``: ``(n_papers, n_tags)`` (section 3.3)."""
    if model.n_tags == 0:
        raise ValueError("this model has no tag task: build AskGRU(..., n_tags=...) and train with lambda_mtl < 1")
    f = item_vectors(model, texts, papers, batch_size, device)
    return torch.sigmoid(model.tag_logits(f)).cpu().numpy()
