"""The hybrid flip recommender of the RecSys Summer School 2017 hands-on task, in Theano style.

The same model, names and parameters as :mod:`course_lib.torch_models.hybrid`, written the way the
2017 sheet asked for it: symbolic variables, shared parameters, a compiled ``function`` whose
``updates`` list is the optimiser. Given papers, it scores **all** users:

* item-ID embedding ``v_j`` (zero for papers without training likes: cold start, as in
  Ask-the-GRU section 3),
* a content vector ``c_j`` from an encoder (level (a) and (b) in :mod:`~course_lib.theano_models.content`,
  level (c) in :mod:`~course_lib.theano_models.e2e_paragraph`, level (d) the ``GRUEncoder`` of
  :mod:`~course_lib.theano_models.askgru`), called symbolically as
  ``encoder(ids, mask, paper_idx, train, stream) -> (batch, out_dim)``,
* merged by concatenation ``[v_j ; c_j]`` or by sum ``v_j + W c_j``,
* optional processing layers ``h = ELU(A h + b)`` (alpha = 1),
* scores ``h U^T + b_user``: ``(batch_papers, n_users)``,

with separate dropouts on the user, item and content embeddings and the processing layers, the
three losses of the sheet (weighted MSE, BPR, listwise) and Adagrad written as an update list.
The negative users are drawn in numpy (:func:`sample_loss_inputs`) and fed to the compiled step;
the loss is a graph of the scores and those inputs (:func:`compute_loss`), as in the PyTorch track.
Training (:func:`train_hybrid`): the compiled step of :func:`make_train_step` inside the course's
training loop (:func:`course_lib.training.hybrid_loop`); your own ``loss_fn`` (a graph) or
``step_fn`` (your compiled step) can replace the library's.

Parameter names and shapes are those of the PyTorch module's ``state_dict`` (a linear layer's
weight is ``(out, in)``), so ``model.load_state_dict(torch_model.state_dict())`` copies weights
across tracks; the parity tests do exactly that.
"""
from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np

from course_lib.data import check_ids
from course_lib.theano_models.compat import (
    Params, RandomStream, T, adagrad, adam, dropout, elu, floatX, function, log_sigmoid, log_softmax,
)
from course_lib.theano_models.content import make_text_batch
from course_lib.training import (
    LOSSES, as_losses, check_model_args, check_paper_texts, check_saved_encoder, check_text_batch, hybrid_loop,
    prepare_hybrid_run,
)
from course_lib.validation import check_int, check_memory


# --------------------------------------------------------------------------------------------
# Paper texts


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
        return make_text_batch(self, papers)


# --------------------------------------------------------------------------------------------
# Model


class HybridRecommender:
    """Item-ID embedding + content encoder -> merge -> ELU layers -> product with user embeddings.

    Same parameters as the PyTorch ``HybridRecommender`` (``item_dim``, ``merge``, ``hidden``,
    ``user_bias``, ``dropout_user``, ``dropout_item``, ``dropout_content``, ``dropout_hidden``,
    ``init_std``, ``seed``) plus ``dtype`` (default floatX) and ``activation``, the symbolic
    nonlinearity of the processing layers (default :func:`~compat.elu`; notebook 06 passes the
    learner's own ELU; not saved: set ``model.activation`` again after ``load``). Initial values are drawn from
    ``numpy.random.default_rng(seed)`` (the same distributions as torch, not the same numbers).
    """

    def __init__(self, n_users: int, n_papers: int, encoder=None, *, item_dim: int = 64, merge: str = "concat",
                 hidden: tuple[int, ...] = (), user_bias: bool = True, dropout_user: float = 0.0,
                 dropout_item: float = 0.0, dropout_content: float = 0.0, dropout_hidden: float = 0.0,
                 init_std: float = 0.05, seed: int = 0, dtype: str | None = None, activation=elu):
        if not callable(activation):
            raise ValueError(f"activation must be a function of a symbolic tensor (e.g. compat.elu), got {activation!r}")
        rates = dict(dropout_user=dropout_user, dropout_item=dropout_item, dropout_content=dropout_content,
                     dropout_hidden=dropout_hidden)
        check_model_args(n_users, n_papers, item_dim, merge, encoder, hidden, init_std, **rates)
        self.n_users, self.n_papers, self.merge, self.hidden = int(n_users), int(n_papers), merge, tuple(hidden)
        self.encoder, self.rates, self.user_bias, self.seed = encoder, rates, bool(user_bias), int(seed)
        self.dtype, self.activation = dtype or floatX(), activation
        self.config = dict(n_users=self.n_users, n_papers=self.n_papers, item_dim=int(item_dim), merge=merge,
                           hidden=[int(h) for h in hidden], user_bias=self.user_bias,
                           **{k: float(v) for k, v in rates.items()}, init_std=float(init_std), seed=self.seed,
                           dtype=self.dtype)
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
        """Mark the papers that have training likes (boolean array of length ``n_papers``)."""
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
            rep = self.activation(T.dot(rep, p[f"layers.{3 * k}.weight"].T) + p[f"layers.{3 * k}.bias"])  # (B, h)
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
        """The numeric inputs of a compiled call, checked in the course's words before running."""
        check_text_batch(ids, mask, paper_idx, self.n_papers, self.encoder)

    def score_papers(self, papers, texts, batch_size: int = 256) -> np.ndarray:
        """Scores of all users for ``papers``: ``(len(papers), n_users)`` float32, dropout off."""
        papers = check_ids(papers, self.n_papers, "paper")
        check_int("batch_size", batch_size)
        if not self.params["item_known"].get_value().any():
            raise ValueError("this model is untrained (no paper is marked as having training likes): train it with "
                             "train_hybrid(model, texts, train_likes, ...) first, or call model.set_known_papers(...) "
                             "for weights you loaded yourself")
        check_memory(4 * len(papers) * self.n_users, f"the ({len(papers)}, {self.n_users}) score matrix",
                     "score fewer papers at a time")
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

    def save(self, path) -> None:
        """Save the configuration and all weights (encoder included) in one ``.npz`` file."""
        encoder = type(self.encoder).__name__ if self.encoder is not None else None
        np.savez(path, __config__=np.array(json.dumps({"config": self.config, "encoder": encoder})),
                 **self.state_dict())

    @classmethod
    def load(cls, path, encoder=None) -> "HybridRecommender":
        """Rebuild a saved model. Pass an encoder built with the same sizes (and dtype) as the saved one."""
        with np.load(Path(path)) as data:
            saved = json.loads(str(data["__config__"]))
            state = {k: data[k] for k in data.files if k != "__config__"}
        check_saved_encoder(saved["encoder"], encoder)
        config = dict(saved["config"], hidden=tuple(saved["config"]["hidden"]))
        model = cls(encoder=encoder, **config)
        try:
            model.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"the saved weights do not fit this model (different sizes?): {exc}") from None
        return model


# --------------------------------------------------------------------------------------------
# Losses: symbolic, on ``scores`` (B, n_users); ``targets`` are 1.0 for likes, 0.0 otherwise.


def _check_ndim(**variables) -> None:
    want = {"scores": 2, "targets": 2, "neg_mask": 2, "rows": 1, "pos": 1, "neg": 2}
    for name, var in variables.items():
        if var is not None and getattr(var, "ndim", None) != want[name]:
            raise ValueError(f"{name} must be a symbolic {want[name]}-d variable (scores and targets (B, n_users), "
                             f"rows and pos (P,), neg (P, n_sample)); got {getattr(var, 'ndim', type(var).__name__)}")


def weighted_mse_loss(scores, targets, alpha: float, neg_mask=None):
    """Weighted MSE of the task sheet: target 1 with weight ``alpha`` (>> 1) on likes, 0 with weight 1.

    ``L = 1/B sum_i [ alpha sum_{u in P_i} (1 - s_iu)^2 + sum_{u in N_i} s_iu^2 ]``; ``N_i`` are all
    non-likers, or only those marked in ``neg_mask`` ``(B, n_users)`` (negative sampling).
    """
    _check_ndim(scores=scores, targets=targets, neg_mask=neg_mask)
    pos = targets
    neg = 1 - pos if neg_mask is None else neg_mask * (1 - pos)
    err = (targets - scores) ** 2
    a = np.asarray(alpha, dtype=scores.dtype)
    return (a * (err * pos).sum(axis=1) + (err * neg).sum(axis=1)).mean()


def _pair_scores(scores, rows, pos, neg):
    _check_ndim(scores=scores, rows=rows, pos=pos, neg=neg)
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
    targets = np.asarray(targets)
    if targets.ndim != 2:
        raise ValueError(f"targets must be (B, n_users), got shape {targets.shape}")
    check_int("n_sample", n_sample)
    out = np.empty((len(rows), n_sample), dtype=np.int64)
    for i, r in enumerate(rows):
        pool = np.flatnonzero(targets[r] == 0)
        if pool.size == 0:
            raise ValueError("a paper is liked by every user, so no negative user can be sampled")
        out[i] = pool[rng.integers(0, pool.size, n_sample)]
    return out


def positive_pairs(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, user) with a like, as two ``(P,)`` index arrays."""
    rows, users = np.nonzero(np.asarray(targets) > 0)
    if len(rows) == 0:
        raise ValueError("this batch has no likes at all; train only on papers with training likes")
    return rows.astype(np.int64), users.astype(np.int64)


def sample_loss_inputs(loss: str, targets: np.ndarray, n_sample: int | None = None,
                       rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """What ``loss`` needs besides the scores, with its negative users drawn (numpy): ``targets`` and,
    for ``"wmse"``, ``neg_mask`` ``(B, n_users)`` (all ones: every non-liker counts; with ``n_sample``,
    the ``n_sample`` non-likers drawn for each paper), or, for ``"bpr"`` and ``"listwise"``, ``rows``,
    ``pos`` ``(P,)`` (every like of the batch) and ``neg`` ``(P, n_sample)`` (default 20 per like)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss == "wmse":
        if n_sample is None:
            return {"targets": targets, "neg_mask": np.ones_like(targets)}
        neg = sample_negative_users(targets, np.arange(len(targets)), n_sample, rng)
        mask = np.zeros_like(targets)
        np.put_along_axis(mask, neg, 1.0, axis=1)
        return {"targets": targets, "neg_mask": mask}
    rows, pos = positive_pairs(targets)
    neg = sample_negative_users(targets, rows, n_sample or 20, rng)  # (P, n_sample)
    return {"targets": targets, "rows": rows, "pos": pos, "neg": neg}


def _loss_symbols(loss: str, dtype: str) -> dict:
    """The symbolic twins of :func:`sample_loss_inputs`' arrays: the compiled step's inputs."""
    out = {"targets": T.matrix("targets", dtype=dtype)}  # (B, n_users)
    if loss == "wmse":
        out["neg_mask"] = T.matrix("neg_mask", dtype=dtype)  # (B, n_users)
    else:
        out.update(rows=T.vector("rows", dtype="int64"), pos=T.vector("pos", dtype="int64"),
                   neg=T.matrix("neg", dtype="int64"))  # (P,), (P,), (P, N_S)
    return out


def compute_loss(loss: str, scores, inputs: dict, *, alpha: float = 50.0):
    """The graph of ``"wmse"``, ``"bpr"`` or ``"listwise"``: ``inputs`` are the symbolic twins of
    :func:`sample_loss_inputs`' arrays (``targets``, ``neg_mask`` or ``rows``/``pos``/``neg``)."""
    if loss == "wmse":
        return weighted_mse_loss(scores, inputs["targets"], alpha, inputs["neg_mask"])
    if loss in ("bpr", "listwise"):
        return (bpr_loss if loss == "bpr" else listwise_loss)(scores, inputs["rows"], inputs["pos"], inputs["neg"])
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def hybrid_loss(model: HybridRecommender, batch: list, scores, inputs: dict, *, loss: str = "wmse",
                alpha: float = 50.0) -> dict:
    """The library's ``loss_fn``, as graphs: ``{"loss": L_rec + L_aux, "rec_loss": L_rec, "aux_loss": L_aux}``.

    ``batch`` is ``[ids, mask, paper_idx]`` (symbolic), ``scores`` the symbolic ``(B, n_users)``,
    ``L_rec = compute_loss(loss, scores, inputs, alpha=alpha)`` and ``L_aux`` the encoder's own
    weighted term (level (c): ``lambda_p2v * L_p2v`` on sampled words; 0 otherwise).
    """
    rec = compute_loss(loss, scores, inputs, alpha=alpha)
    aux = model.encoder.aux_loss(batch[2]) if hasattr(model.encoder, "aux_loss") else T.zeros((), dtype=model.dtype)
    return {"loss": rec + aux, "rec_loss": rec, "aux_loss": aux}


class _CompiledStep:
    """``step(ids, mask, paper_idx, targets) -> {name: float}``: the numpy draws of one step (negative
    users, level (c)'s words) and one call of the compiled function."""

    def __init__(self, fn, names, input_keys, model, loss, n_sample, seed):
        self.fn, self.names, self.input_keys = fn, names, input_keys
        self.model, self.loss, self.n_sample = model, loss, n_sample
        self.neg_rng = np.random.default_rng(int(seed) + 1)
        self.word_rng = np.random.default_rng(int(seed) + 2)  # level (c): the words of the PV-DBOW loss
        self.sample_words = getattr(model.encoder, "sample_words", None)

    def __call__(self, ids, mask, paper_idx, targets) -> dict[str, float]:
        targets = np.asarray(targets, dtype=self.model.dtype)
        extra = self.sample_words(ids, mask, self.word_rng) if self.sample_words else ()
        inputs = sample_loss_inputs(self.loss, targets, self.n_sample, self.neg_rng)
        out = self.fn(ids, mask, paper_idx, *(inputs[k] for k in self.input_keys), *extra)
        return dict(zip(self.names, (float(v) for v in out)))


def make_train_step(model: HybridRecommender, *, loss: str = "wmse", alpha: float = 50.0,
                    n_sample: int | None = None, optimizer: str = "adagrad", lr: float = 0.1,
                    weight_decay: float = 0.0, loss_fn=None, seed: int = 0):
    """Compile the library's training step: ``step(ids, mask, paper_idx, targets) -> {"loss": ..., ...}``.

    The graph: scores with dropout (a random stream seeded by the model's seed), the negative
    users of ``loss`` as inputs (drawn in numpy with ``seed + 1`` at every call,
    :func:`sample_loss_inputs`; level (c)'s words with ``seed + 2``), ``loss_fn(model, batch,
    scores, inputs)`` (default :func:`hybrid_loss`; a symbolic scalar, or a dict of them with
    ``"loss"``), and an update list that is the optimiser (:func:`~compat.adagrad` or
    :func:`~compat.adam`) plus the random generators' state updates. Returns every named loss as a float.
    """
    loss_fn = partial(hybrid_loss, loss=loss, alpha=alpha) if loss_fn is None else loss_fn
    inputs = _loss_symbols(loss, model.dtype)
    stream = RandomStream(model.seed)
    terms = loss_fn(model, model.inputs(), model.scores(train=True, stream=stream), inputs)
    terms = terms if isinstance(terms, dict) else {"loss": terms}
    if "loss" not in terms:
        raise ValueError(f"loss_fn returned a dict without 'loss' (the graph to minimise); it has {sorted(terms)}")
    aux_inputs = model.encoder.aux_inputs() if hasattr(model.encoder, "aux_inputs") else []
    opt = adagrad if optimizer == "adagrad" else adam
    updates, _ = opt(terms["loss"], model.params.trainable_vars(), lr, weight_decay=weight_decay)
    fn = function(model.inputs() + list(inputs.values()) + aux_inputs, list(terms.values()),
                  updates=updates + stream.pop_updates(), name="train_step")
    return _CompiledStep(fn, list(terms), list(inputs), model, loss, n_sample, seed)


# --------------------------------------------------------------------------------------------
# Training


def train_hybrid(model: HybridRecommender, texts, train_likes, valid_likes=None, *, loss: str = "wmse",
                 alpha: float = 50.0, n_sample: int | None = None, optimizer: str = "adagrad", lr: float = 0.1,
                 weight_decay: float = 0.0, batch_size: int = 64, epochs: int = 20, patience: int = 3,
                 monitor: str = "Recall@50", seed: int = 0, progress: bool = True, loss_fn=None,
                 step_fn=None) -> dict[str, list]:
    """Train on mini-batches of papers with early stopping on validation ``monitor``.

    The same loop as the PyTorch ``train_hybrid`` (same arguments, same paper order for the same
    ``seed``, same history keys: :func:`course_lib.training.hybrid_loop`); the step is one compiled
    function (:func:`make_train_step`). Your own code plugs in in two ways:

    * ``loss_fn(model, batch, scores, inputs) -> graph | dict of graphs``: your loss inside the
      library's compiled step; ``batch`` is ``[ids, mask, paper_idx]``, ``scores`` the symbolic
      ``(B, n_users)`` with dropout, ``inputs`` the symbolic twins of :func:`sample_loss_inputs`'
      arrays for ``loss``. The library's is :func:`hybrid_loss`.
    * ``step_fn(ids, mask, paper_idx, targets) -> number | dict``: your own compiled step (a
      ``theano.function`` whose updates train the model), called with each batch's word ids and
      mask ``(B, L)``, paper indices ``(B,)`` and targets ``(B, n_users)`` (1.0 for likes). A
      function with one output returns the loss; with several, return a dict with ``"loss"``.
      ``optimizer``, ``lr``, ``weight_decay``, ``loss``, ``alpha``, ``n_sample`` are then not used.

    The history also holds ``compile_seconds`` (one entry; 0 with your own ``step_fn``).
    """
    texts = PaperTexts.from_corpus(texts)
    papers = prepare_hybrid_run((model.n_users, model.n_papers), len(texts), train_likes, valid_likes,
                                loss_fn=loss_fn, step_fn=step_fn, loss=loss, optimizer=optimizer, monitor=monitor,
                                batch_size=batch_size, epochs=epochs, patience=patience, lr=lr, alpha=alpha,
                                n_sample=n_sample, weight_decay=weight_decay)
    model.set_known_papers(papers.known)

    t0 = time.perf_counter()
    step = step_fn or make_train_step(model, loss=loss, alpha=alpha, n_sample=n_sample, optimizer=optimizer, lr=lr,
                                      weight_decay=weight_decay, loss_fn=loss_fn, seed=seed)
    compile_seconds = time.perf_counter() - t0 if step_fn is None else 0.0

    def step_on(batch_papers: np.ndarray):
        batch = texts.batch(batch_papers)
        model.check_batch(*batch)
        return as_losses(step(*batch, papers.by_paper[batch[2]].toarray().astype(model.dtype)))  # (B, n_users)

    history = hybrid_loop(step_on, model, papers, train_likes, lambda p: model.score_papers(p, texts),
                          batch_size=batch_size, epochs=epochs, patience=patience, monitor=monitor, seed=seed,
                          cause=f"lower lr (now {lr}) or alpha (now {alpha}), or check the inputs for NaN",
                          progress=progress, desc="hybrid (Theano)")
    history["compile_seconds"] = [compile_seconds]
    return history
