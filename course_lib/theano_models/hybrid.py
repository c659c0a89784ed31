"""The hybrid flip recommender of the RecSys Summer School 2017 hands-on task, in Theano style.

The same model, names and parameters as :mod:`course_lib.torch_models.hybrid`, written the way the
2017 sheet asked for it: symbolic variables, shared parameters, a compiled ``function`` whose
``updates`` list is the optimiser. Given papers, it scores **all** users:

* item-ID embedding ``v_j`` (zero for papers without training likes: cold start, as in
  Ask-the-GRU section 3),
* a content vector ``c_j`` from an encoder (level (a) :class:`TfidfWordAverage`, level (b)
  :class:`PretrainedParagraphVectors`, level (d) :class:`course_lib.theano_models.askgru.GRUEncoder`),
* merged by concatenation ``[v_j ; c_j]`` or by sum ``v_j + W c_j``,
* optional processing layers ``h = ELU(A h + b)`` (alpha = 1),
* scores ``h U^T + b_user``: ``(batch_papers, n_users)``,

with separate dropouts on the user, item and content embeddings and the processing layers, the
three losses of the sheet (weighted MSE, BPR, listwise) and Adagrad written as an update list.

Parameter names and shapes are those of the PyTorch module's ``state_dict`` (a linear layer's
weight is ``(out, in)``), so ``model.load_state_dict(torch_model.state_dict())`` copies weights
across tracks; the parity tests do exactly that.

A Theano content encoder has ``out_dim``, ``params`` (:class:`~compat.Params`) and is called
symbolically as ``encoder(ids, mask, paper_idx, train, stream) -> (batch, out_dim)``.
"""
from __future__ import annotations

import time

import numpy as np

from course_lib import training
from course_lib.data import check_ids
from course_lib.theano_models.compat import (
    Params, RandomStream, T, adagrad, adam, dropout, elu, floatX, function, log_sigmoid, log_softmax, theano,
)
from course_lib.training import (
    LOSSES, OPTIMIZERS, EarlyStopping, check_finite, check_model_args, check_paper_texts, check_train_args,
    paper_batches, select_papers,
)


# --------------------------------------------------------------------------------------------
# Paper texts and content encoders


class PaperTexts:
    """Every paper's padded word ids and mask (numpy), cut into trimmed batches.

    ``ids`` ``(n_papers, max_len)`` int64 (0 = padding), ``mask`` ``(n_papers, max_len)``;
    :meth:`batch` returns ``(ids, mask, paper_idx)`` cut to the longest paper of the batch.
    """

    def __init__(self, ids, mask):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.mask = np.asarray(mask, dtype=np.float64)
        check_paper_texts(self.ids, self.mask)

    @classmethod
    def from_corpus(cls, corpus) -> "PaperTexts":
        """From anything with ``.ids`` and ``.mask`` (e.g. ``course_lib.text.EncodedCorpus``)."""
        return corpus if isinstance(corpus, PaperTexts) else cls(corpus.ids, corpus.mask)

    def __len__(self) -> int:
        return self.ids.shape[0]

    def batch(self, papers):
        papers = check_ids(papers, len(self), "paper")
        mask = self.mask[papers]  # (B, max_len)
        width = max(1, int(mask.sum(1).max()))
        return self.ids[papers, :width], mask[:, :width], papers


class TfidfWordAverage:
    """Level (a): ``c_j = sum_t idf(w_t) e_{w_t} / sum_t idf(w_t)`` over the tokens of paper ``j``.

    Ask-the-GRU eq. (5) weighted by TF-IDF: summing over token positions counts each word ``tf``
    times. ``fine_tune`` makes the word vectors trainable (the idf weights stay fixed).
    """

    def __init__(self, word_vectors, idf, fine_tune: bool = False, dtype: str | None = None):
        wv = np.asarray(getattr(word_vectors, "matrix", word_vectors), dtype=np.float64)
        idf = np.asarray(idf, dtype=np.float64)
        if wv.ndim != 2 or min(wv.shape) == 0:
            raise ValueError(f"word_vectors must be a non-empty (n, dim) matrix, got shape {wv.shape}")
        if idf.shape != (wv.shape[0],):
            raise ValueError(f"idf has shape {idf.shape} but word_vectors has {wv.shape[0]} rows; "
                             "both must come from the same vocabulary")
        self.params = Params(dtype)
        self.params.add("embedding.weight", wv, trainable=fine_tune)
        self.params.add("idf", idf, trainable=False)
        self.out_dim, self.vocab_size, self.fine_tune = int(wv.shape[1]), int(wv.shape[0]), fine_tune
        self._idf = idf

    def check(self, ids, mask, paper_idx) -> None:
        """A paper whose weights sum to 0 would divide by zero: say which one, before running."""
        total = (self._idf[ids] * mask).sum(1)
        if (total <= 0).any():
            bad = np.asarray(paper_idx)[total <= 0].tolist()[:5]
            raise ValueError(f"papers {bad} have no token with a positive idf weight (empty text, or only "
                             "padding / words that occur in every paper); give them text or drop them")

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        w = self.params["idf"][ids] * mask  # (B, L)
        w = w / w.sum(axis=1, keepdims=True)
        # Scatter the weights into a (B, V) bag of words and multiply it with the word vectors,
        # instead of gathering (B, L, dim) vectors: the gradient of the word vectors is then one
        # matrix product, not a scatter-add of B * L rows (slow in PyTensor's Python fallback).
        rows = T.arange(ids.shape[0])[:, None]  # (B, 1)
        bow = T.inc_subtensor(T.zeros((ids.shape[0], self.vocab_size), dtype=w.dtype)[rows, ids], w)  # (B, V)
        return T.dot(bow, self.params["embedding.weight"])  # (B, dim)


class PretrainedParagraphVectors:
    """Level (b): look the paper up in a ``(n_papers, dim)`` table of paragraph vectors."""

    def __init__(self, vectors, fine_tune: bool = False, dtype: str | None = None):
        table = np.asarray(getattr(vectors, "matrix", vectors), dtype=np.float64)
        if table.ndim != 2 or min(table.shape) == 0:
            raise ValueError(f"vectors must be a non-empty (n, dim) matrix, got shape {table.shape}")
        self.params = Params(dtype)
        self.params.add("table.weight", table, trainable=fine_tune)
        self.out_dim, self.n_papers, self.fine_tune = int(table.shape[1]), int(table.shape[0]), fine_tune

    def check(self, ids, mask, paper_idx) -> None:
        check_ids(paper_idx, self.n_papers, "paper")

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        return self.params["table.weight"][paper_idx]  # (B, dim)


class EndToEndParagraphVectors:
    """Level (c): paragraph vectors trained end to end with the recommender.

    As :class:`course_lib.torch_models.e2e_paragraph.EndToEndParagraphVectors`: the content vector
    of paper ``j`` is a row ``d_j`` of a learnt table, which also gets the PV-DBOW loss with
    negative sampling (Le & Mikolov 2014; Mikolov et al. 2013 eq. 4), weighted by ``lambda_p2v``::

        L_p2v = 1/(B T) sum_j sum_t [ -log s(d_j . u_{w_jt}) - sum_k log s(-d_j . u_{n_tk}) ]

    The sampled words ``(B, T)`` and noise words ``(T, K)`` are drawn in numpy
    (:meth:`sample_words`) and fed to the compiled step as inputs (:meth:`aux_inputs`). Cold
    papers get vectors inferred from their text with the output word vectors frozen
    (:meth:`prepare_cold`, called by ``score_papers``).
    """

    def __init__(self, n_papers: int, word_counts, dim: int = 64, *, lambda_p2v: float = 1.0, negative: int = 5,
                 n_words: int = 50, ns_exponent: float = 0.75, init_vectors=None, infer_steps: int = 100,
                 infer_lr: float = 0.1, seed: int = 0, dtype: str | None = None):
        self._cdf = training.noise_cdf(word_counts, ns_exponent)  # (vocab_size,)
        training.check_p2v_sizes(dim, lambda_p2v, negative, n_words)
        self.lambda_p2v, self.negative, self.n_words = float(lambda_p2v), int(negative), int(n_words)
        self.infer_steps, self.infer_lr, self.seed = int(infer_steps), float(infer_lr), int(seed)
        self.out_dim, self.n_papers, self.vocab_size = int(dim), int(n_papers), self._cdf.size
        rng = np.random.default_rng(seed)
        doc = (rng.random((n_papers, dim)) - 0.5) / dim if init_vectors is None else np.asarray(init_vectors)
        if doc.shape != (n_papers, dim):
            raise ValueError(f"init_vectors has shape {doc.shape}, expected ({n_papers}, {dim})")
        self.params = Params(dtype)
        self.params.add("noise_cdf", self._cdf, trainable=False)  # kept so torch state_dicts load
        self.params.add("doc.weight", doc)
        self.params.add("word_out.weight", np.zeros((self.vocab_size, dim)))  # as word2vec: zero at start
        self.words = T.matrix("p2v_words", dtype="int64")  # (B, T)
        self.noise = T.matrix("p2v_noise", dtype="int64")  # (T, K)
        self._infer_fn = None

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        return self.params["doc.weight"][paper_idx]  # (B, dim)

    def p2v_loss(self, doc, words, noise, word_out=None):
        """Per-paper PV-DBOW loss ``(B,)`` of the vectors ``doc`` ``(B, dim)``."""
        w = self.params["word_out.weight"] if word_out is None else word_out
        pos = (doc[:, None, :] * w[words]).sum(axis=2)  # (B, T)
        neg = T.dot(doc, w[noise.flatten()].T).reshape((doc.shape[0], noise.shape[0], noise.shape[1]))  # (B, T, K)
        return (-log_sigmoid(pos) - log_sigmoid(-neg).sum(axis=2)).mean(axis=1)

    def aux_inputs(self) -> list:
        return [self.words, self.noise]

    def aux_loss(self, paper_idx):
        """Symbolic ``lambda_p2v * L_p2v`` of the papers ``paper_idx`` on the sampled words."""
        doc = self.params["doc.weight"][paper_idx]
        return np.asarray(self.lambda_p2v, dtype=doc.dtype) * self.p2v_loss(doc, self.words, self.noise).mean()

    def sample_words(self, ids, mask, rng: np.random.Generator):
        """``n_words`` token ids per paper (positions uniform over its tokens) ``(B, T)`` and
        ``negative`` noise words per position ``(T, K)`` from the unigram^0.75 distribution
        (:func:`course_lib.training.sample_words`)."""
        return training.sample_words(ids, mask, self.n_words, self.negative, self._cdf, rng)

    def prepare_cold(self, ids, mask, paper_idx) -> None:
        """Infer the vectors of papers from their text alone (output word vectors frozen, Adagrad
        on new vectors only, ``infer_steps`` steps, seeded) and store them in the table."""
        dtype = self.params.dtype
        if self._infer_fn is None:
            self._vecs = theano.shared(np.zeros((1, self.out_dim), dtype=dtype), name="infer_vecs")
            self._acc = theano.shared(np.zeros((1, self.out_dim), dtype=dtype), name="infer_acc")
            loss = self.p2v_loss(self._vecs, self.words, self.noise).sum()  # each paper on its own
            g = theano.grad(loss, self._vecs)
            acc = self._acc + g**2
            lr = np.asarray(self.infer_lr, dtype=dtype)
            new = self._vecs - lr * g / (T.sqrt(acc) + np.asarray(1e-10, dtype=dtype))
            self._infer_fn = function(self.aux_inputs(), loss, updates=[(self._acc, acc), (self._vecs, new)])
        rng = np.random.default_rng(self.seed + 2)
        n = len(paper_idx)
        self._vecs.set_value(((rng.random((n, self.out_dim)) - 0.5) / self.out_dim).astype(dtype))
        self._acc.set_value(np.zeros((n, self.out_dim), dtype=dtype))
        for _ in range(self.infer_steps):
            self._infer_fn(*self.sample_words(ids, mask, rng))
        table = self.params["doc.weight"].get_value()
        table[np.asarray(paper_idx)] = self._vecs.get_value()
        self.params["doc.weight"].set_value(table)


# --------------------------------------------------------------------------------------------
# Model


class HybridRecommender:
    """Item-ID embedding + content encoder -> merge -> ELU layers -> product with user embeddings.

    Same parameters as the PyTorch ``HybridRecommender`` (``item_dim``, ``merge``, ``hidden``,
    ``user_bias``, ``dropout_user``, ``dropout_item``, ``dropout_content``, ``dropout_hidden``,
    ``init_std``, ``seed``) plus ``dtype`` (default floatX). Initial values are drawn from
    ``numpy.random.default_rng(seed)`` (the same distributions as torch, not the same numbers).
    """

    def __init__(self, n_users: int, n_papers: int, encoder=None, *, item_dim: int = 64, merge: str = "concat",
                 hidden: tuple[int, ...] = (), user_bias: bool = True, dropout_user: float = 0.0,
                 dropout_item: float = 0.0, dropout_content: float = 0.0, dropout_hidden: float = 0.0,
                 init_std: float = 0.05, seed: int = 0, dtype: str | None = None):
        rates = dict(dropout_user=dropout_user, dropout_item=dropout_item, dropout_content=dropout_content,
                     dropout_hidden=dropout_hidden)
        check_model_args(n_users, n_papers, item_dim, merge, encoder, **rates)
        self.n_users, self.n_papers, self.merge, self.hidden = int(n_users), int(n_papers), merge, tuple(hidden)
        self.encoder, self.rates, self.user_bias, self.seed = encoder, rates, bool(user_bias), int(seed)
        self.dtype = dtype or floatX()
        rng = np.random.default_rng(seed)
        p = self.params = Params(self.dtype)
        p.add("item_emb.weight", rng.normal(0.0, init_std, size=(n_papers, item_dim)))
        rep_dim = item_dim
        if encoder is not None:
            if encoder.params.dtype != self.dtype:
                raise ValueError(f"the encoder holds {encoder.params.dtype} parameters but the model is {self.dtype}; "
                                 f"build both with the same dtype= (e.g. dtype={self.dtype!r} for the encoder)")
            p.include("encoder", encoder.params)
            if merge == "sum":
                bound = 1 / np.sqrt(encoder.out_dim)  # torch's nn.Linear default initialisation
                p.add("content_proj.weight", rng.uniform(-bound, bound, size=(item_dim, encoder.out_dim)))
            else:
                rep_dim = item_dim + encoder.out_dim
        for k, h in enumerate(self.hidden):  # torch's Sequential(Linear, ELU, Dropout): Linear at 3k
            bound = 1 / np.sqrt(rep_dim)
            p.add(f"layers.{3 * k}.weight", rng.uniform(-bound, bound, size=(h, rep_dim)))
            p.add(f"layers.{3 * k}.bias", rng.uniform(-bound, bound, size=(h,)))
            rep_dim = h
        p.add("user_emb.weight", rng.normal(0.0, init_std, size=(n_users, rep_dim)))
        if user_bias:
            p.add("user_bias", np.zeros(n_users))
        # 1.0 for papers with training likes; the others get a zero item-ID embedding (cold start)
        p.add("item_known", np.zeros(n_papers), trainable=False)
        self.ids = T.matrix("ids", dtype="int64")  # (B, L)
        self.mask = T.matrix("mask", dtype=self.dtype)  # (B, L)
        self.paper_idx = T.vector("paper_idx", dtype="int64")  # (B,)
        self._score_fn = None

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.params.state_dict()

    def load_state_dict(self, state) -> None:
        self.params.load_state_dict(state)

    def set_known_papers(self, known) -> None:
        known = np.asarray(known, dtype=bool)
        if known.shape != (self.n_papers,):
            raise ValueError(f"known must have shape ({self.n_papers},), got {known.shape}")
        self.params["item_known"].set_value(known.astype(self.dtype))

    def represent(self, train: bool = False, stream: RandomStream | None = None):
        """Symbolic paper representation after merge and processing layers, ``(B, rep_dim)``."""
        p, idx, r = self.params, self.paper_idx, self.rates
        item = p["item_emb.weight"][idx] * p["item_known"][idx][:, None]  # (B, item_dim)
        rep = dropout(item, r["dropout_item"], stream, train)
        if self.encoder is not None:
            content = self.encoder(self.ids, self.mask, idx, train, stream)  # (B, out_dim)
            content = dropout(content, r["dropout_content"], stream, train)
            if self.merge == "sum":
                rep = rep + T.dot(content, p["content_proj.weight"].T)  # (B, item_dim)
            else:
                rep = T.concatenate([rep, content], axis=1)  # (B, item_dim + out_dim)
        for k in range(len(self.hidden)):
            rep = elu(T.dot(rep, p[f"layers.{3 * k}.weight"].T) + p[f"layers.{3 * k}.bias"])  # (B, h)
            rep = dropout(rep, r["dropout_hidden"], stream, train)
        return rep

    def scores(self, train: bool = False, stream: RandomStream | None = None):
        """Symbolic preferences of every user for the batch's papers, ``(B, n_users)``."""
        h = self.represent(train, stream)
        users = dropout(self.params["user_emb.weight"], self.rates["dropout_user"], stream, train)
        s = T.dot(h, users.T)  # (B, n_users)
        return s + self.params["user_bias"] if self.user_bias else s

    def inputs(self) -> list:
        return [self.ids, self.mask, self.paper_idx]

    def check_batch(self, ids, mask, paper_idx) -> None:
        check_ids(paper_idx, self.n_papers, "paper")
        if self.encoder is not None and hasattr(self.encoder, "check"):
            self.encoder.check(ids, mask, paper_idx)

    def score_papers(self, papers, texts, batch_size: int = 256) -> np.ndarray:
        """Scores of all users for ``papers``: ``(len(papers), n_users)`` float32, dropout off."""
        papers = check_ids(papers, self.n_papers, "paper")
        texts = PaperTexts.from_corpus(texts)
        if len(texts) != self.n_papers:
            raise ValueError(f"texts has {len(texts)} papers but the model was built for {self.n_papers}")
        cold = papers[self.params["item_known"].get_value()[papers] == 0]
        if len(cold) and hasattr(self.encoder, "prepare_cold"):  # level (c): infer their vectors first
            for start in range(0, len(cold), batch_size):
                self.encoder.prepare_cold(*texts.batch(cold[start:start + batch_size]))
        if self._score_fn is None:
            self._score_fn = function(self.inputs(), self.scores(train=False), name="score")
        out = np.empty((len(papers), self.n_users), dtype=np.float32)
        for start in range(0, len(papers), batch_size):
            batch = texts.batch(papers[start:start + batch_size])
            self.check_batch(*batch)
            out[start:start + len(batch[2])] = self._score_fn(*batch)
        return out


# --------------------------------------------------------------------------------------------
# Losses: symbolic, on ``scores`` (B, n_users); ``targets`` are 1.0 for likes, 0.0 otherwise.


def weighted_mse_loss(scores, targets, alpha: float, neg_mask=None):
    """Weighted MSE of the task sheet: target 1 with weight ``alpha`` (>> 1) on likes, 0 with weight 1.

    ``L = 1/B sum_i [ alpha sum_{u in P_i} (1 - s_iu)^2 + sum_{u in N_i} s_iu^2 ]``; ``N_i`` are all
    non-likers, or only those marked in ``neg_mask`` ``(B, n_users)`` (negative sampling).
    """
    pos = targets
    neg = 1 - pos if neg_mask is None else neg_mask * (1 - pos)
    err = (targets - scores) ** 2
    a = np.asarray(alpha, dtype=scores.dtype)
    return (a * (err * pos).sum(axis=1) + (err * neg).sum(axis=1)).mean()


def _pair_scores(scores, rows, pos, neg):
    s_pos = scores[rows, pos][:, None]  # (P, 1)
    s_neg = scores[rows[:, None], neg]  # (P, N_S)
    return s_pos, s_neg


def bpr_loss(scores, rows, pos, neg):
    """``L = 1/P sum_p 1/N_S sum_j -log sigma(s[rows_p, pos_p] - s[rows_p, neg_pj])``; ``neg`` (P, N_S)."""
    s_pos, s_neg = _pair_scores(scores, rows, pos, neg)
    return -log_sigmoid(s_pos - s_neg).mean()


def listwise_loss(scores, rows, pos, neg):
    """Softmax over the positive and its negatives, cross-entropy on the positive:
    ``L = 1/P sum_p -log( e^{s_pos} / (e^{s_pos} + sum_j e^{s_neg_j}) )``."""
    s_pos, s_neg = _pair_scores(scores, rows, pos, neg)
    logits = T.concatenate([s_pos, s_neg], axis=1)  # (P, 1 + N_S)
    return -log_softmax(logits)[:, 0].mean()


def sample_negative_users(targets: np.ndarray, rows: np.ndarray, n_sample: int, rng: np.random.Generator) -> np.ndarray:
    """For each entry of ``rows``, ``n_sample`` non-likers of that paper, uniformly with replacement."""
    if n_sample < 1:
        raise ValueError(f"n_sample must be >= 1, got {n_sample}")
    out = np.empty((len(rows), n_sample), dtype=np.int64)
    for i, r in enumerate(rows):
        pool = np.flatnonzero(targets[r] == 0)
        if pool.size == 0:
            raise ValueError("a paper is liked by every user, so no negative user can be sampled")
        out[i] = pool[rng.integers(0, pool.size, n_sample)]
    return out


def positive_pairs(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, user) with a like, as two ``(P,)`` index arrays."""
    rows, users = np.nonzero(targets > 0)
    if len(rows) == 0:
        raise ValueError("this batch has no likes at all; train only on papers with training likes")
    return rows.astype(np.int64), users.astype(np.int64)


class LossInputs:
    """The symbolic inputs a loss needs besides the scores, and how to fill them from a batch."""

    def __init__(self, loss: str, dtype: str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.loss = loss
        self.targets = T.matrix("targets", dtype=dtype)  # (B, n_users)
        self.neg_mask = T.matrix("neg_mask", dtype=dtype)  # (B, n_users), wmse only
        self.rows = T.vector("rows", dtype="int64")  # (P,)
        self.pos = T.vector("pos", dtype="int64")  # (P,)
        self.neg = T.matrix("neg", dtype="int64")  # (P, N_S)

    def symbols(self) -> list:
        if self.loss == "wmse":
            return [self.targets, self.neg_mask]
        return [self.rows, self.pos, self.neg]

    def expression(self, scores, alpha: float):
        if self.loss == "wmse":
            return weighted_mse_loss(scores, self.targets, alpha, self.neg_mask)
        return (bpr_loss if self.loss == "bpr" else listwise_loss)(scores, self.rows, self.pos, self.neg)

    def values(self, targets: np.ndarray, n_sample: int | None, rng: np.random.Generator) -> list:
        """Numeric values for :meth:`symbols`, sampling negative users as ``compute_loss`` does."""
        if self.loss == "wmse":
            if n_sample is None:
                return [targets, np.ones_like(targets)]
            neg = sample_negative_users(targets, np.arange(len(targets)), n_sample, rng)
            mask = np.zeros_like(targets)
            np.put_along_axis(mask, neg, 1.0, axis=1)
            return [targets, mask]
        rows, pos = positive_pairs(targets)
        return [rows, pos, sample_negative_users(targets, rows, n_sample or 20, rng)]


# --------------------------------------------------------------------------------------------
# Training


def compile_train_step(model: HybridRecommender, loss: str = "wmse", alpha: float = 10.0, optimizer: str = "adagrad",
                       lr: float = 0.05, weight_decay: float = 0.0):
    """Compile one training step: ``step(ids, mask, paper_idx, *loss_inputs[, words, noise]) -> [loss, aux]``.

    The graph: scores with dropout (random stream seeded by the model's seed), the loss, and an
    update list that is the optimiser (:func:`~compat.adagrad` or :func:`~compat.adam`) plus the
    random generators' state updates. Returns ``(step, loss_inputs)``.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be 'adagrad' or 'adam', got {optimizer!r}")
    li = LossInputs(loss, model.dtype)
    stream = RandomStream(model.seed)
    cost = li.expression(model.scores(train=True, stream=stream), alpha)
    aux_inputs, aux = [], T.zeros((), dtype=model.dtype)
    if hasattr(model.encoder, "aux_loss"):  # level (c): + lambda_p2v * L_p2v on sampled words
        aux_inputs, aux = model.encoder.aux_inputs(), model.encoder.aux_loss(model.paper_idx)
    params = model.params.trainable_vars()
    opt = adagrad if optimizer == "adagrad" else adam
    updates, _ = opt(cost + aux, params, lr, weight_decay=weight_decay)
    step = function(model.inputs() + li.symbols() + aux_inputs, [cost, aux], updates=updates + stream.pop_updates(),
                    name="train_step")
    return step, li


def train_hybrid(model: HybridRecommender, texts, train_likes, valid_likes=None, *, loss: str = "wmse",
                 alpha: float = 10.0, n_sample: int | None = None, optimizer: str = "adagrad", lr: float = 0.05,
                 weight_decay: float = 0.0, batch_size: int = 64, epochs: int = 20, patience: int = 3,
                 monitor: str = "Recall@50", seed: int = 0, progress: bool = True) -> dict[str, list]:
    """Train on mini-batches of papers with early stopping on validation ``monitor``.

    The same loop as the PyTorch ``train_hybrid`` (same argument names, same paper order for the
    same ``seed``, same history keys; the framework-neutral parts are shared in
    :mod:`course_lib.training`); the step itself is one compiled function. The history also
    holds ``compile_seconds`` (one entry), and per epoch ``train_seconds`` (the steps alone,
    without validation) and ``n_steps``.
    """
    from tqdm.auto import tqdm

    texts = PaperTexts.from_corpus(texts)
    check_train_args((model.n_users, model.n_papers), train_likes, valid_likes, loss=loss, optimizer=optimizer,
                     monitor=monitor, batch_size=batch_size, epochs=epochs, patience=patience, n_texts=len(texts))
    papers = select_papers(train_likes, valid_likes)
    model.set_known_papers(papers.known)

    t0 = time.perf_counter()
    step, li = compile_train_step(model, loss, alpha, optimizer, lr, weight_decay)
    history: dict[str, list] = {"epoch": [], "loss": [], "aux_loss": [], "seconds": [],
                                "compile_seconds": [time.perf_counter() - t0], "train_seconds": [], "n_steps": []}
    rng = np.random.default_rng(int(seed))
    neg_rng = np.random.default_rng(int(seed) + 1)
    word_rng = np.random.default_rng(int(seed) + 2)  # level (c): the words of the PV-DBOW loss
    sample_words = getattr(model.encoder, "sample_words", None)
    stopper = EarlyStopping(monitor, patience)
    for epoch in tqdm(range(1, epochs + 1), desc="epochs", disable=not progress, leave=False):
        t0 = time.perf_counter()
        tot, tot_aux, n_batches = 0.0, 0.0, 0
        for batch_papers in paper_batches(papers.train_papers, batch_size, rng):
            batch = texts.batch(batch_papers)
            model.check_batch(*batch)
            targets = papers.by_paper[batch[2]].toarray().astype(model.dtype)  # (B, n_users)
            extra = sample_words(batch[0], batch[1], word_rng) if sample_words else ()
            value, aux = (float(v) for v in step(*batch, *li.values(targets, n_sample, neg_rng), *extra))
            check_finite(value, aux, epoch, n_batches + 1, lr, alpha)
            tot, tot_aux, n_batches = tot + value, tot_aux + aux, n_batches + 1
        history["train_seconds"].append(time.perf_counter() - t0)  # the steps only, without validation
        history["n_steps"].append(n_batches)
        history["epoch"].append(epoch)
        history["loss"].append(tot / n_batches)
        history["aux_loss"].append(tot_aux / n_batches)
        if papers.valid_papers is not None:
            scores = model.score_papers(papers.valid_papers, texts)
            stopper.update(history, epoch, stopper.evaluate(scores, papers, train_likes), model)
        history["seconds"].append(time.perf_counter() - t0)
        if papers.valid_papers is not None and stopper.stop:
            break
    stopper.finish(history, model)
    return history
