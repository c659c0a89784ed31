"""Ask the GRU (Bansal et al., RecSys 2016) in the Theano programming model.

The same model as :mod:`course_lib.torch_models.askgru`, written with symbolic variables, shared
parameters and ``scan``: word embeddings -> bidirectional GRU -> GRU -> masked mean pooling
(section 3.2), ``f(X_j) = g(X_j) + v_j`` (eq. 4), scores ``u_i . f(X_j)``, and the multi-task loss
of section 3.3.

The GRU step follows ``torch.nn.GRU`` exactly (see :func:`gru_step`), so the same weights give the
same numbers in both tracks.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from course_lib.data import check_ids
from course_lib.training import sample_user_pairs
from course_lib.theano_models.compat import (
    Params, RandomStream, T, adam, dropout, function, log_sigmoid, scan, sigmoid,
)
from course_lib.theano_models.hybrid import PaperTexts


def init_gru(params: Params, prefix: str, suffix: str, n_in: int, n_hidden: int, rng: np.random.Generator):
    """Add the four tensors of one GRU direction under torch's names, e.g. ``gru1.weight_ih_l0``.

    Gates are stacked ``[r, z, n]`` along the first axis, as in ``torch.nn.GRU``; initialised
    uniform in ``+-1/sqrt(n_hidden)`` like torch.
    """
    bound = 1.0 / np.sqrt(n_hidden)
    shapes = {"weight_ih": (3 * n_hidden, n_in), "weight_hh": (3 * n_hidden, n_hidden),
              "bias_ih": (3 * n_hidden,), "bias_hh": (3 * n_hidden,)}
    for name, shape in shapes.items():
        params.add(f"{prefix}.{name}_l0{suffix}", rng.uniform(-bound, bound, size=shape))


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


def gru_layer(x, mask, params: Params, prefix: str, suffix: str = "", go_backwards: bool = False):
    """Run one GRU direction over a padded batch with ``scan``.

    ``x``: ``(batch, seq_len, n_in)``; ``mask``: ``(batch, seq_len)``. Returns the hidden states
    ``(batch, seq_len, H)`` in the original time order (zero-initial state, like torch).
    """
    W_ih, W_hh = params[f"{prefix}.weight_ih_l0{suffix}"], params[f"{prefix}.weight_hh_l0{suffix}"]
    b_ih, b_hh = params[f"{prefix}.bias_ih_l0{suffix}"], params[f"{prefix}.bias_hh_l0{suffix}"]
    H = W_hh.get_value(borrow=True).shape[1]
    xp = T.dot(x, W_ih.T) + b_ih  # (batch, seq_len, 3H)
    h0 = T.zeros((x.shape[0], H), dtype=x.dtype)  # (batch, H)
    hs = scan(gru_step, sequences=[xp.dimshuffle(1, 0, 2), mask.T], outputs_info=[h0],
              non_sequences=[W_hh, b_hh], go_backwards=go_backwards, name=f"{prefix}{suffix}")
    if go_backwards:  # scan emits states in processing order: last position first
        hs = hs[::-1]
    return hs.dimshuffle(1, 0, 2)  # (batch, seq_len, H)


def masked_mean(h, mask):
    """Mean of ``h`` ``(batch, seq_len, H)`` over the real positions of ``mask``: ``(batch, H)``."""
    # an empty paper gives zeros, not 0/0 (the PyTorch encoders clamp the length to 1 as well)
    return (h * mask[:, :, None]).sum(axis=1) / T.maximum(mask.sum(axis=1), 1)[:, None]


# ------------------------------------------------------------------------------------ encoders

EMB_DIM, HIDDEN1, HIDDEN2 = 200, 400, 200  # section 4.1.2: K_w = K = 200, K_h1 = 400, K_h2 = 200
DROPOUT = (0.1, 0.5, 0.3)  # embedding layer, first-layer output, second-layer output
ALPHA_CONF, EPS_CONF = 10.0, 1e-8  # c_ij = 1 + alpha log(1 + |R_i| / eps)
BATCH_USERS, REG_USER, MAX_UPDATES = 512, 0.01, 20_000


def _embedding_table(n_words: int, emb_dim: int, embeddings, rng: np.random.Generator) -> np.ndarray:
    """Pretrained vectors (trained further) or word2vec-scale noise; row 0 is padding, zero."""
    if n_words < 2:
        raise ValueError(f"n_words must be >= 2 (padding + at least one word), got {n_words}")
    if embeddings is None:
        table = rng.normal(0.0, 1.0 / np.sqrt(emb_dim), size=(n_words, emb_dim))
    else:
        table = np.array(getattr(embeddings, "matrix", embeddings), dtype=np.float64)
        if table.shape != (n_words, emb_dim):
            raise ValueError(f"embeddings have shape {table.shape}, expected ({n_words}, {emb_dim}): align them with "
                             "the same Vocabulary and pass emb_dim=their dimension")
    table[0] = 0.0
    return table


class EmbedEncoder:
    """*Embed*: ``g(X_j) = 1/|X_j| sum_{w in X_j} e_w`` (eq. 5), with dropout on the embeddings."""

    def __init__(self, n_words: int, emb_dim: int = EMB_DIM, dropout_emb: float = DROPOUT[0], embeddings=None,
                 seed: int = 0, dtype: str | None = None):
        self.params = Params(dtype)
        self.params.add("embedding.weight", _embedding_table(n_words, emb_dim, embeddings, np.random.default_rng(seed)))
        self.out_dim, self.dropout_emb = emb_dim, dropout_emb

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        emb = dropout(self.params["embedding.weight"][ids], self.dropout_emb, stream, train)  # (B, L, K_w)
        return masked_mean(emb, mask)  # (B, K_w)


class GRUEncoder:
    """*GRU* (section 3.2, Figure 1): embeddings -> bidirectional GRU (``hidden1`` per direction)
    -> GRU (``hidden2``) on the concatenated states -> mean over the real tokens.

    Written with :func:`gru_layer` (``scan``); parameters named as in the PyTorch ``GRUEncoder``
    (``gru1.weight_ih_l0``, ``gru1.weight_ih_l0_reverse``, ``gru2.weight_hh_l0``, ...). Dropout
    0.1 / 0.5 / 0.3 on the embeddings and the outputs of the two layers (section 4.1.2).
    """

    def __init__(self, n_words: int, emb_dim: int = EMB_DIM, hidden1: int = HIDDEN1, hidden2: int = HIDDEN2,
                 dropout: tuple[float, float, float] = DROPOUT, embeddings=None, seed: int = 0,
                 dtype: str | None = None):
        if len(dropout) != 3:
            raise ValueError(f"dropout must be 3 probabilities (embedding, layer 1, layer 2), got {dropout}")
        rng = np.random.default_rng(seed)
        self.params = Params(dtype)
        self.params.add("embedding.weight", _embedding_table(n_words, emb_dim, embeddings, rng))
        init_gru(self.params, "gru1", "", emb_dim, hidden1, rng)
        init_gru(self.params, "gru1", "_reverse", emb_dim, hidden1, rng)
        init_gru(self.params, "gru2", "", 2 * hidden1, hidden2, rng)
        self.out_dim, self.dropout = hidden2, tuple(dropout)

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        p, d = self.params, self.dropout
        emb = dropout(p["embedding.weight"][ids], d[0], stream, train)  # (B, L, K_w)
        h1 = T.concatenate([gru_layer(emb, mask, p, "gru1"),
                            gru_layer(emb, mask, p, "gru1", "_reverse", go_backwards=True)], axis=2)  # (B, L, 2 H1)
        h1 = dropout(h1, d[1], stream, train)
        h2 = dropout(gru_layer(h1, mask, p, "gru2"), d[2], stream, train)  # (B, L, H2)
        return masked_mean(h2, mask)  # (B, H2)


# --------------------------------------------------------------------------------------- model


class AskGRU:
    """``f(X_j) = g(X_j) + v_j`` (eq. 4, ``v_j = 0`` for cold papers) and
    ``r_ij = b_i + b_j + u_i . f(X_j)`` (eq. 3, ``b_j = 0`` for cold papers); tag logits
    ``f(X_j) . t_l`` (section 3.3). Parameters named as in the PyTorch ``AskGRU``."""

    def __init__(self, encoder, n_users: int, n_papers: int, n_tags: int = 0, seed: int = 0):
        if n_users < 1 or n_papers < 1 or n_tags < 0:
            raise ValueError(f"need n_users >= 1, n_papers >= 1, n_tags >= 0; got {n_users}, {n_papers}, {n_tags}")
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
        p, idx = self.params, self.paper_idx
        return (p["user_emb"][users] * f).sum(axis=1) + p["user_bias"][users] + p["warm"][idx] * p["item_bias"][idx]

    def tag_logits(self, f):
        return T.dot(f, self.params["tag_emb"].T)  # (B, n_tags)

    def text_inputs(self) -> list:
        return [self.ids, self.mask, self.paper_idx]

    def _item_vectors_fn(self):
        if "f" not in self._fns:
            self._fns["f"] = function(self.text_inputs(), self.item_repr(), name="item_vectors")
        return self._fns["f"]


# ---------------------------------------------------------------------------------------- losses


def confidence_weights(n_likes, alpha_conf: float = ALPHA_CONF, eps_conf: float = EPS_CONF) -> np.ndarray:
    """``c_ij = 1 + alpha log(1 + |R_i| / eps)`` (section 4.1.2), from each user's number of likes."""
    n = np.asarray(n_likes, dtype=np.float64)
    if (n < 0).any():
        raise ValueError("numbers of likes must be >= 0")
    return 1.0 + alpha_conf * np.log1p(n / eps_conf)


def weighted_squared_loss(pred, target, conf):
    """``1/|R| sum c_ij (r_hat_ij - r_ij)^2`` over the sampled pairs (eq. 2 without ``Omega``)."""
    return (conf * (pred - target) ** 2).mean()


def tag_loss(logits, tags, tag_neg_weight: float):
    """``C_T = -1/|T| sum_j sum_l [t_jl log p_jl + c' (1 - t_jl) log(1 - p_jl)]`` (section 3.3),
    averaged over the batch's papers; ``log(1 - sigma(x)) = log sigma(-x)`` keeps it finite."""
    c = np.asarray(tag_neg_weight, dtype=logits.dtype)
    return -(tags * log_sigmoid(logits) + c * (1 - tags) * log_sigmoid(-logits)).sum(axis=1).mean()


def multitask_loss(loss_rec, loss_tag, lambda_mtl: float):
    """``C = lambda C_R + (1 - lambda) C_T`` (section 3.3)."""
    if not 0.0 <= lambda_mtl <= 1.0:
        raise ValueError(f"lambda_mtl must be in [0, 1], got {lambda_mtl}")
    return lambda_mtl * loss_rec + (1.0 - lambda_mtl) * loss_tag


def compile_train_step(model: AskGRU, lambda_mtl: float = 1.0, tag_neg_weight: float = 0.01, lr: float = 1e-3,
                       reg_user: float = REG_USER, seed: int = 0):
    """``step(ids, mask, paper_idx, users, target, conf, tags) -> (loss, loss_rec, loss_tag)``: one Adam
    update of eq. (2) + ``reg_user * mean ||u_i||^2`` (+ the tag loss when ``lambda_mtl < 1``)."""
    multitask_loss(0.0, 0.0, lambda_mtl)  # validates lambda_mtl
    dt = model.dtype
    users = T.vector("users", dtype="int64")  # (2B,)
    target, conf = T.vector("target", dtype=dt), T.vector("conf", dtype=dt)  # (2B,)
    tags = T.matrix("tags", dtype=dt)  # (2B, n_tags)
    stream = RandomStream(seed)
    f = model.item_repr(train=True, stream=stream)  # (2B, K)
    loss_rec = weighted_squared_loss(model.score_pairs(users, f), target, conf)
    loss_rec = loss_rec + np.asarray(reg_user, dt) * (model.params["user_emb"][users] ** 2).sum(axis=1).mean()
    loss_t = tag_loss(model.tag_logits(f), tags, tag_neg_weight) if lambda_mtl < 1.0 else T.zeros((), dtype=dt)
    loss = multitask_loss(loss_rec, loss_t, lambda_mtl)
    updates, _ = adam(loss, model.params.trainable_vars(), lr)
    return function(model.text_inputs() + [users, target, conf, tags], [loss, loss_rec, loss_t],
                    updates=updates + stream.pop_updates(), name="askgru_step")


def fit(model: AskGRU, likes, texts, *, tags=None, lambda_mtl: float = 1.0, tag_neg_weight: float = 0.01,
        train_papers=None, valid_likes=None, valid_papers=None, valid_exclude=None, valid_k: int = 50,
        batch_users: int = BATCH_USERS, max_updates: int = MAX_UPDATES, lr: float = 1e-3, reg_user: float = REG_USER,
        alpha_conf: float = ALPHA_CONF, eps_conf: float = EPS_CONF, eval_every: int = 500, patience: int = 5,
        seed: int = 0, progress: bool = True) -> dict:
    """Train as the PyTorch ``fit`` does (section 4.1.2: ``B`` users with one positive and one
    negative paper each, Adam, early stopping on validation Recall@``valid_k``), with one compiled
    step. Returns a history dict with the same fields as the PyTorch ``History`` plus
    ``compile_seconds``."""
    from tqdm.auto import tqdm

    from course_lib.evaluation import evaluate_ranking

    likes = sp.csr_matrix(likes, dtype=np.float32)
    if likes.shape != (model.n_users, model.n_papers):
        raise ValueError(f"likes has shape {likes.shape}, the model expects ({model.n_users}, {model.n_papers})")
    if likes.nnz == 0:
        raise ValueError("likes is empty: there is nothing to train on")
    if lambda_mtl < 1.0 and tags is None:
        raise ValueError(f"lambda_mtl={lambda_mtl} asks for the tag task but tags is None; pass tags= or lambda_mtl=1")
    if tags is None:
        tags = sp.csr_matrix((model.n_papers, model.n_tags), dtype=np.float32)
    tags = sp.csr_matrix(tags, dtype=np.float32)
    texts = PaperTexts.from_corpus(texts)
    rng = np.random.default_rng(seed)
    likes.sort_indices()
    n_likes = np.diff(likes.indptr)
    users_pool = np.flatnonzero(n_likes)
    liked = np.asarray(likes.sum(axis=0)).ravel() > 0
    train_papers = np.flatnonzero(liked) if train_papers is None else check_ids(train_papers, model.n_papers, "paper")
    conf_all = confidence_weights(n_likes, alpha_conf, eps_conf).astype(model.dtype)
    model.params["warm"].set_value(liked.astype(model.dtype))
    t0 = time.perf_counter()
    step_fn = compile_train_step(model, lambda_mtl, tag_neg_weight, lr, reg_user, seed)
    hist = {"update": [], "loss": [], "loss_rec": [], "loss_tag": [], "valid_recall": [], "best_update": 0,
            "best_recall": float("nan"), "compile_seconds": time.perf_counter() - t0}
    best_state, best, bad_evals, sums = None, -np.inf, 0, np.zeros(3)
    n_pairs, train_seconds, start = 0, 0.0, time.perf_counter()
    for step in tqdm(range(1, max_updates + 1), disable=not progress, desc="GRU (Theano)", leave=False):
        t1 = time.perf_counter()
        users, pos, neg = sample_user_pairs(likes, users_pool, train_papers, batch_users, rng)
        papers = np.concatenate([pos, neg])  # (2B,)
        u = np.concatenate([users, users])
        target = np.r_[np.ones(users.size), np.zeros(users.size)]
        out = step_fn(*texts.batch(papers), u, target, conf_all[u], tags[papers].toarray())
        if not np.isfinite(out[0]):
            raise ValueError(f"loss became {float(out[0])} at update {step}; lower lr (now {lr}) or check the inputs")
        train_seconds += time.perf_counter() - t1
        n_pairs += papers.size
        sums += [float(v) for v in out]
        if step % eval_every == 0 or step == max_updates:
            n_period = step - (hist["update"][-1] if hist["update"] else 0)
            hist["update"].append(step)
            for name, value in zip(("loss", "loss_rec", "loss_tag"), sums / n_period):
                hist[name].append(float(value))
            sums[:] = 0
            if valid_likes is not None:
                cand = np.arange(model.n_papers) if valid_papers is None else np.asarray(valid_papers)
                excl = None if valid_exclude is None else sp.csr_matrix(valid_exclude)[:, cand]
                res = evaluate_ranking(score(model, texts, papers=cand), sp.csr_matrix(valid_likes)[:, cand],
                                       exclude=excl, ks=(valid_k,), metrics=("recall",))
                rec = float(res[f"Recall@{valid_k}"])
                hist["valid_recall"].append(rec)
                if rec > best:
                    best, bad_evals, hist["best_update"] = rec, 0, step
                    best_state = model.state_dict()
                else:
                    bad_evals += 1
                    if bad_evals >= patience:
                        break
    if best_state is not None:
        model.load_state_dict(best_state)
        hist["best_recall"] = best
    else:
        hist["best_update"] = step
    hist["n_updates"], hist["seconds"] = step, time.perf_counter() - start
    hist["examples_per_second"] = n_pairs / max(train_seconds, 1e-9)
    return hist


# ------------------------------------------------------------------------------------- inference


def item_vectors(model: AskGRU, texts, papers=None, batch_size: int = 256) -> np.ndarray:
    """``f(X_j)`` for ``papers`` (default all), dropout off: ``(n, K)``."""
    texts = PaperTexts.from_corpus(texts)
    papers = np.arange(model.n_papers) if papers is None else check_ids(papers, model.n_papers, "paper")
    fn = model._item_vectors_fn()
    out = [fn(*texts.batch(papers[s:s + batch_size])) for s in range(0, papers.size, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.encoder.out_dim), dtype=model.dtype)


def score(model: AskGRU, texts, users=None, papers=None, batch_size: int = 256) -> np.ndarray:
    """``r_ij`` for ``users`` x ``papers`` (default all): dense ``(n_users, n_papers)`` float32."""
    users = np.arange(model.n_users) if users is None else check_ids(users, model.n_users, "user")
    papers = np.arange(model.n_papers) if papers is None else check_ids(papers, model.n_papers, "paper")
    f = item_vectors(model, texts, papers, batch_size)  # (P, K)
    s = model.params.state_dict()
    item_bias = s["item_bias"][papers] * s["warm"][papers]  # (P,)
    return (s["user_emb"][users] @ f.T + s["user_bias"][users][:, None] + item_bias[None]).astype(np.float32)


def tag_scores(model: AskGRU, texts, papers=None, batch_size: int = 256) -> np.ndarray:
    """``p_jl = sigma(f(X_j) . t_l)``: ``(n_papers, n_tags)`` (section 3.3)."""
    if model.n_tags == 0:
        raise ValueError("this model has no tag task: build AskGRU(..., n_tags=...) and train with lambda_mtl < 1")
    f = item_vectors(model, texts, papers, batch_size)
    return 1.0 / (1.0 + np.exp(-(f @ model.params["tag_emb"].get_value().T)))
