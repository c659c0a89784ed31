"""The hybrid flip recommender of the RecSys Summer School 2017 hands-on task, in PyTorch.

Task sheet (``hands-on-task-rsss2017.md``): given a paper, score **all** users; the paper is
represented by

* an item-ID embedding (a learnt vector per paper, "to be indexed by the item ids"),
* a content representation from any encoder (levels (a)-(d): TF-IDF word average, paragraph
  vectors, end-to-end paragraph vectors, GRU) with the interface
  ``encoder(batch: TextBatch) -> (batch, out_dim)``, attribute ``out_dim`` and optional
  ``aux_loss(batch)`` (an already weighted auxiliary loss, e.g. the paragraph2vec term of level
  (c)) and optional ``prepare_cold(batch)`` (fit per-paper content for papers without training
  likes before they are scored, e.g. paragraph-vector inference),
* merged by concatenation or by sum (the content projected to the item dimension by its own
  weight matrix), passed through optional processing layers with ELU (alpha = 1), and
* multiplied with the user embeddings: ``scores = h @ U.T (+ user bias)``, shape
  ``(batch_papers, n_users)``.

Cold-start papers have no training likes, so their item-ID embedding was never trained: as in
Ask-the-GRU (section 3: "for cold-start prediction ... we set v_j = 0") it is replaced by zeros,
and the paper is represented by its content alone. The model keeps a boolean buffer
``item_known`` (set by :func:`train_hybrid` from the training likes) for this.

Losses (task sheet, "Loss options"; slides on GRU4Rec losses): weighted MSE, BPR, listwise
(softmax cross-entropy). The negative users of a batch are drawn first (:func:`sample_loss_inputs`),
then the loss is a function of the scores and those draws (:func:`compute_loss`), as in the Theano
track, where the draws are inputs of the compiled step. Training (:func:`train_hybrid`): one step
(:func:`make_train_step`: the loss of :func:`hybrid_loss`, Adagrad by default) inside the course's
training loop (:func:`course_lib.training.hybrid_loop`: mini-batches of papers, early stopping on
validation Recall@M). Your own ``loss_fn`` or ``step_fn`` can replace the library's.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from course_lib.data import check_ids
from course_lib.torch_models.utils import TextBatch, minimise, resolve_device, torch_generator
from course_lib.training import (
    LOSSES, check_model_args, check_paper_texts, check_saved_encoder, hybrid_loop, prepare_hybrid_run,
)
from course_lib.validation import check_int, check_memory


# --------------------------------------------------------------------------------------------
# Paper texts on the device


class PaperTexts:
    """Every paper's padded word ids and mask, kept on one device, cut into :class:`TextBatch`es.

    ``ids`` is ``(n_papers, max_len)`` int64 (0 = padding), ``mask`` ``(n_papers, max_len)``.
    A batch is trimmed to its longest paper so short texts do not pay for long ones.
    """

    def __init__(self, ids, mask, device="auto"):
        dev = resolve_device(device)
        ids, mask = np.asarray(ids), np.asarray(mask)
        check_paper_texts(ids, mask)
        self.ids = torch.as_tensor(ids, dtype=torch.long, device=dev)
        self.mask = torch.as_tensor(mask, dtype=torch.float32, device=dev)
        self.device = dev

    @classmethod
    def from_corpus(cls, corpus, device="auto") -> "PaperTexts":
        """From anything with ``.ids`` and ``.mask`` (e.g. ``course_lib.text.EncodedCorpus``)."""
        if isinstance(corpus, PaperTexts):
            return corpus if corpus.device == resolve_device(device) else cls(
                corpus.ids.cpu(), corpus.mask.cpu(), device)
        return cls(corpus.ids, corpus.mask, device)

    def __len__(self) -> int:
        return self.ids.shape[0]

    def batch(self, papers) -> TextBatch:
        papers = check_ids(papers, len(self), "paper")
        idx = torch.as_tensor(papers, device=self.device)
        mask = self.mask[idx]  # (B, max_len)
        width = max(1, int(mask.sum(1).max().item()))
        return TextBatch(self.ids[idx, :width], mask[:, :width], idx)


# --------------------------------------------------------------------------------------------
# Model


class HybridRecommender(nn.Module):
    """Item-ID embedding + content encoder -> merge -> ELU layers -> product with user embeddings.

    Parameters (names of the task sheet): ``item_dim`` size of the item-ID embedding;
    ``merge`` ``"concat"`` (``[v_j ; c_j]``) or ``"sum"`` (``v_j + W c_j``, ``W`` of shape
    ``(item_dim, out_dim)``); ``hidden`` sizes of the optional processing layers
    (``h = ELU(A h + b)``, alpha = 1); ``user_bias`` adds a learnt per-user offset (how active a
    user is, which matters a lot in the flip scenario); ``dropout_user``, ``dropout_item``,
    ``dropout_content``, ``dropout_hidden`` are the separate dropout rates of the task sheet.
    ``encoder=None`` gives a pure collaborative model (item-ID embedding only).
    """

    def __init__(
        self,
        n_users: int,
        n_papers: int,
        encoder: nn.Module | None = None,
        *,
        item_dim: int = 64,
        merge: str = "concat",
        hidden: tuple[int, ...] = (),
        user_bias: bool = True,
        dropout_user: float = 0.0,
        dropout_item: float = 0.0,
        dropout_content: float = 0.0,
        dropout_hidden: float = 0.0,
        init_std: float = 0.05,
        seed: int = 0,
    ):
        super().__init__()
        check_model_args(n_users, n_papers, item_dim, merge, encoder, hidden, init_std, dropout_user=dropout_user,
                         dropout_item=dropout_item, dropout_content=dropout_content, dropout_hidden=dropout_hidden)
        self.config = dict(
            n_users=int(n_users), n_papers=int(n_papers), item_dim=int(item_dim), merge=merge,
            hidden=tuple(int(h) for h in hidden), user_bias=bool(user_bias),
            dropout_user=float(dropout_user), dropout_item=float(dropout_item),
            dropout_content=float(dropout_content), dropout_hidden=float(dropout_hidden),
            init_std=float(init_std), seed=int(seed),
        )
        self.n_users, self.n_papers, self.merge = int(n_users), int(n_papers), merge
        self.encoder = encoder
        # Our own initialisation stream, so building a model never shifts the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.item_emb = nn.Embedding(n_papers, item_dim)
            nn.init.normal_(self.item_emb.weight, std=init_std)
            rep_dim = item_dim
            self.content_proj = None
            if encoder is not None:
                if merge == "sum":
                    self.content_proj = nn.Linear(encoder.out_dim, item_dim, bias=False)
                else:
                    rep_dim = item_dim + encoder.out_dim
            layers: list[nn.Module] = []
            for h in self.config["hidden"]:
                layers += [nn.Linear(rep_dim, h), nn.ELU(alpha=1.0), nn.Dropout(dropout_hidden)]
                rep_dim = h
            self.layers = nn.Sequential(*layers)
            self.user_emb = nn.Embedding(n_users, rep_dim)
            nn.init.normal_(self.user_emb.weight, std=init_std)
        self.user_bias = nn.Parameter(torch.zeros(n_users)) if user_bias else None
        self.drop_user = nn.Dropout(dropout_user)
        self.drop_item = nn.Dropout(dropout_item)
        self.drop_content = nn.Dropout(dropout_content)
        # True for papers with training likes; the others get a zero item-ID embedding (cold start).
        self.register_buffer("item_known", torch.zeros(n_papers, dtype=torch.bool))

    @property
    def device(self) -> torch.device:
        return self.item_emb.weight.device

    def set_known_papers(self, known) -> None:
        """Mark the papers that have training likes (boolean array of length ``n_papers``)."""
        known = torch.as_tensor(np.asarray(known), dtype=torch.bool)
        if known.shape != (self.n_papers,):
            raise ValueError(f"known must have shape ({self.n_papers},), got {tuple(known.shape)}")
        self.item_known.copy_(known.to(self.item_known.device))

    def represent(self, batch: TextBatch) -> torch.Tensor:
        """The paper representation after merging and processing, ``(batch, rep_dim)``."""
        if not isinstance(batch, TextBatch):
            raise ValueError(f"the model reads a TextBatch (e.g. PaperTexts.batch(papers)), got {type(batch).__name__}")
        idx = batch.paper_idx
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_papers):
            raise ValueError(f"paper ids must be in [0, {self.n_papers}), got {int(idx.min())}..{int(idx.max())}")
        # (B, item_dim); zero where the paper had no training likes (Ask-the-GRU, section 3)
        item = self.item_emb(idx) * self.item_known[idx].unsqueeze(1).to(self.item_emb.weight.dtype)
        rep = self.drop_item(item)
        if self.encoder is not None:
            content = self.drop_content(self.encoder(batch))  # (B, out_dim)
            if content.shape != (len(idx), self.encoder.out_dim):
                raise ValueError(
                    f"the encoder returned shape {tuple(content.shape)}, expected ({len(idx)}, {self.encoder.out_dim})"
                )
            if self.merge == "sum":
                rep = rep + self.content_proj(content)  # (B, item_dim)
            else:
                rep = torch.cat([rep, content], dim=1)  # (B, item_dim + out_dim)
        return self.layers(rep)

    def forward(self, batch: TextBatch) -> torch.Tensor:
        """Preferences of every user for the batch's papers, ``(batch, n_users)``."""
        h = self.represent(batch)  # (B, D)
        users = self.drop_user(self.user_emb.weight)  # (n_users, D)
        scores = h @ users.T  # (B, n_users)
        if self.user_bias is not None:
            scores = scores + self.user_bias
        return scores

    def aux_loss(self, batch: TextBatch) -> torch.Tensor:
        """The encoder's own weighted auxiliary loss (0 when it has none)."""
        fn = getattr(self.encoder, "aux_loss", None)
        if fn is None:
            return torch.zeros((), device=self.device)
        return torch.as_tensor(fn(batch), dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def score_papers(self, papers, texts, batch_size: int = 256) -> np.ndarray:
        """Scores of all users for ``papers``: numpy ``(len(papers), n_users)``, in eval mode.

        Papers without training likes are cold: their item embedding is zero and, when the
        encoder has ``prepare_cold``, their content is fitted first (e.g. paragraph-vector
        inference for level (c)).
        """
        papers = check_ids(papers, self.n_papers, "paper")
        check_int("batch_size", batch_size)
        if not bool(self.item_known.any()):
            raise ValueError("this model is untrained (no paper is marked as having training likes): train it with "
                             "train_hybrid(model, texts, train_likes, ...) first, or call model.set_known_papers(...) "
                             "for weights you loaded yourself")
        check_memory(4 * len(papers) * self.n_users, f"the ({len(papers)}, {self.n_users}) score matrix",
                     "score fewer papers at a time")
        texts = PaperTexts.from_corpus(texts, self.device)
        if len(texts) != self.n_papers:
            raise ValueError(f"texts has {len(texts)} papers but the model was built for {self.n_papers}")
        was_training = self.training
        self.eval()
        try:
            cold = papers[~self.item_known.cpu().numpy()[papers]]
            if len(cold) and hasattr(self.encoder, "prepare_cold"):
                with torch.enable_grad():
                    for start in range(0, len(cold), batch_size):
                        self.encoder.prepare_cold(texts.batch(cold[start:start + batch_size]))
            out = np.empty((len(papers), self.n_users), dtype=np.float32)
            for start in range(0, len(papers), batch_size):
                chunk = papers[start:start + batch_size]
                out[start:start + len(chunk)] = self(texts.batch(chunk)).cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def save(self, path) -> None:
        """Save the configuration and all weights (encoder included)."""
        torch.save({"config": self.config, "state": self.state_dict(),
                    "encoder": type(self.encoder).__name__ if self.encoder is not None else None}, path)

    @classmethod
    def load(cls, path, encoder: nn.Module | None = None, device="auto") -> "HybridRecommender":
        """Rebuild a saved model. Pass an encoder built with the same sizes as the saved one."""
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        check_saved_encoder(ckpt["encoder"], encoder)
        model = cls(encoder=encoder, **ckpt["config"])
        try:
            model.load_state_dict(ckpt["state"])
        except RuntimeError as exc:
            raise ValueError(f"the saved weights do not fit this model (different sizes?): {exc}") from None
        return model.to(resolve_device(device))


# --------------------------------------------------------------------------------------------
# Losses. `scores` and `targets` are (B, n_users); targets are 1.0 for likes, 0.0 otherwise.


def _check_scores(scores, targets) -> None:
    if not (isinstance(scores, torch.Tensor) and isinstance(targets, torch.Tensor)):
        raise ValueError(f"scores and targets must be torch tensors (B, n_users), got {type(scores).__name__} and "
                         f"{type(targets).__name__}")
    if scores.dim() != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must have the same shape "
                         "(papers in the batch, n_users)")


def _check_pairs(scores, rows, pos, neg) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, n_users), got shape {tuple(scores.shape)}")
    if rows.dim() != 1 or rows.shape != pos.shape or neg.dim() != 2 or neg.shape[0] != rows.shape[0]:
        raise ValueError(f"rows {tuple(rows.shape)} and pos {tuple(pos.shape)} must be (P,) and neg "
                         f"{tuple(neg.shape)} (P, n_sample): one row of negatives per like")


def weighted_mse_loss(scores: torch.Tensor, targets: torch.Tensor, alpha: float,
                      neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted MSE of the task sheet: target 1 with weight ``alpha`` (>> 1) on likes, 0 with weight 1.

    ``L = 1/B sum_i [ alpha sum_{u in P_i} (1 - s_iu)^2 + sum_{u in N_i} s_iu^2 ]`` where ``P_i``
    are the users who liked paper ``i`` and ``N_i`` all other users, or, with negative sampling,
    only the non-likers marked in ``neg_mask`` ``(B, n_users)``.
    """
    _check_scores(scores, targets)
    pos = targets > 0
    neg = ~pos if neg_mask is None else (neg_mask.bool() & ~pos)
    err = (targets - scores) ** 2
    per_row = alpha * (err * pos).sum(1) + (err * neg).sum(1)
    return per_row.mean()


def bpr_loss(scores: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """BPR averaged over sampled negatives (slides, GRU4Rec losses), then over the positive pairs.

    ``L = 1/P sum_p 1/N_S sum_j -log sigma(s[rows_p, pos_p] - s[rows_p, neg_pj])``;
    ``neg`` is ``(P, N_S)``.
    """
    _check_pairs(scores, rows, pos, neg)
    s_pos = scores[rows, pos].unsqueeze(1)  # (P, 1)
    s_neg = scores[rows.unsqueeze(1), neg]  # (P, N_S)
    return -nn.functional.logsigmoid(s_pos - s_neg).mean()


def listwise_loss(scores: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Softmax over the positive and its sampled negatives, cross-entropy on the positive.

    ``L = 1/P sum_p -log( e^{s_pos} / (e^{s_pos} + sum_j e^{s_neg_j}) )``.
    """
    _check_pairs(scores, rows, pos, neg)
    s_pos = scores[rows, pos].unsqueeze(1)  # (P, 1)
    s_neg = scores[rows.unsqueeze(1), neg]  # (P, N_S)
    logits = torch.cat([s_pos, s_neg], dim=1)  # (P, 1 + N_S)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def sample_negative_users(targets: torch.Tensor, rows: torch.Tensor, n_sample: int,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """For each entry of ``rows``, ``n_sample`` users (with replacement) who did not like that paper.

    Returns ``(len(rows), n_sample)`` user indices, drawn uniformly among the non-likers.
    """
    if targets.dim() != 2:
        raise ValueError(f"targets must be (B, n_users), got shape {tuple(targets.shape)}")
    n_users = targets.shape[1]
    check_int("n_sample", n_sample)
    if bool(((targets > 0).sum(1)[rows] >= n_users).any()):
        raise ValueError("a paper is liked by every user, so no negative user can be sampled")
    # rejection sampling: uniform users, redrawn where they liked the paper. Likes are sparse,
    # so a few rounds suffice, far cheaper than a multinomial over (P, n_users) weights.
    neg = torch.randint(0, n_users, (len(rows), n_sample), generator=generator, device=targets.device)
    for _ in range(1000):
        bad = targets[rows.unsqueeze(1), neg] > 0  # (P, n_sample)
        if not bool(bad.any()):
            return neg
        neg[bad] = torch.randint(0, n_users, (int(bad.sum()),), generator=generator, device=targets.device)
    raise ValueError("could not draw negative users: nearly every user liked these papers")


def positive_pairs(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (row, user) with a like, as two ``(P,)`` index tensors."""
    rows, users = torch.nonzero(targets > 0, as_tuple=True)
    if len(rows) == 0:
        raise ValueError("this batch has no likes at all; train only on papers with training likes")
    return rows, users


def sample_loss_inputs(loss: str, targets: torch.Tensor, n_sample: int | None = None,
                       generator: torch.Generator | None = None) -> dict[str, torch.Tensor | None]:
    """What ``loss`` needs besides the scores, with its negative users drawn: a dict with ``targets``
    and, for ``"wmse"``, ``neg_mask`` ``(B, n_users)`` (None: every non-liker counts; with
    ``n_sample``, the ``n_sample`` non-likers drawn for each paper, duplicates counting once), or,
    for ``"bpr"`` and ``"listwise"``, ``rows``, ``pos`` ``(P,)`` (every like of the batch) and ``neg``
    ``(P, n_sample)`` (``n_sample`` non-likers of the paper per like, default 20)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss == "wmse":
        if n_sample is None:
            return {"targets": targets, "neg_mask": None}
        rows = torch.arange(len(targets), device=targets.device)
        neg = sample_negative_users(targets, rows, n_sample, generator)  # (B, n_sample)
        return {"targets": targets, "neg_mask": torch.zeros_like(targets).scatter_(1, neg, 1.0)}
    rows, pos = positive_pairs(targets)
    neg = sample_negative_users(targets, rows, n_sample or 20, generator)  # (P, n_sample)
    return {"targets": targets, "rows": rows, "pos": pos, "neg": neg}


def compute_loss(loss: str, scores: torch.Tensor, inputs: dict, *, alpha: float = 50.0) -> torch.Tensor:
    """One of ``"wmse"``, ``"bpr"``, ``"listwise"`` on a batch: ``inputs`` from :func:`sample_loss_inputs`.

    For BPR and listwise every like in the batch is one "positive user" with its own negatives;
    weighted MSE weighs the likes by ``alpha``.
    """
    if loss == "wmse":
        return weighted_mse_loss(scores, inputs["targets"], alpha, inputs["neg_mask"])
    if loss in ("bpr", "listwise"):
        return (bpr_loss if loss == "bpr" else listwise_loss)(scores, inputs["rows"], inputs["pos"], inputs["neg"])
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def hybrid_loss(model: HybridRecommender, batch: TextBatch, scores: torch.Tensor, inputs: dict, *,
                loss: str = "wmse", alpha: float = 50.0) -> dict[str, torch.Tensor]:
    """The library's ``loss_fn``: ``{"loss": L_rec + L_aux, "rec_loss": L_rec, "aux_loss": L_aux}``.

    ``L_rec = compute_loss(loss, scores, inputs, alpha=alpha)``; ``L_aux = model.aux_loss(batch)`` is
    the encoder's own weighted term (level (c): ``lambda_p2v * L_p2v``; 0 otherwise). A ``loss_fn``
    of your own gets the same four arguments and returns a scalar tensor or such a dict.
    """
    rec = compute_loss(loss, scores, inputs, alpha=alpha)
    aux = model.aux_loss(batch)
    return {"loss": rec + aux, "rec_loss": rec, "aux_loss": aux}


def make_train_step(model: HybridRecommender, *, loss: str = "wmse", alpha: float = 50.0,
                    n_sample: int | None = None, optimizer: str = "adagrad", lr: float = 0.1,
                    weight_decay: float = 0.0, loss_fn=None, seed: int = 0):
    """The library's training step: ``step(batch, targets) -> {"loss": ..., ...}`` (floats).

    ``batch`` is a :class:`TextBatch`, ``targets`` ``(B, n_users)`` float32, 1.0 for likes. One call:
    dropout on, the scores ``model(batch)``, the negative users of ``loss`` drawn with a generator
    seeded by ``seed`` (:func:`sample_loss_inputs`), ``loss_fn(model, batch, scores, inputs)``
    (default :func:`hybrid_loss` with ``loss`` and ``alpha``), one ``optimizer`` step (Adagrad or
    Adam with ``lr`` and ``weight_decay``) on its ``"loss"``. Returns every named loss as a float.
    """
    gen = torch_generator(seed, model.device)
    opt_cls = torch.optim.Adagrad if optimizer == "adagrad" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = partial(hybrid_loss, loss=loss, alpha=alpha) if loss_fn is None else loss_fn

    def step(batch: TextBatch, targets: torch.Tensor) -> dict[str, float]:
        model.train()
        scores = model(batch)  # (B, n_users)
        return minimise(loss_fn(model, batch, scores, sample_loss_inputs(loss, targets, n_sample, gen)), opt)

    return step


# --------------------------------------------------------------------------------------------
# Training


def train_hybrid(
    model: HybridRecommender,
    texts,
    train_likes: sp.spmatrix,
    valid_likes: sp.spmatrix | None = None,
    *,
    loss: str = "wmse",
    alpha: float = 50.0,
    n_sample: int | None = None,
    optimizer: str = "adagrad",
    lr: float = 0.1,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    epochs: int = 20,
    patience: int = 3,
    monitor: str = "Recall@50",
    seed: int = 0,
    device="auto",
    progress: bool = True,
    loss_fn=None,
    step_fn=None,
) -> dict[str, list]:
    """Train ``model`` on mini-batches of papers; early stopping on validation ``monitor``.

    ``train_likes`` and ``valid_likes`` are ``(n_users, n_papers)`` like matrices. Only papers
    with training likes are trained on; they become the model's "known" papers, every other paper
    is cold (zero item embedding). After each epoch the validation papers (those with a like in
    ``valid_likes``) are scored and :func:`course_lib.evaluation.evaluate_flip` computes Recall@M
    (training likes excluded); the best epoch's weights are restored at the end. ``n_sample`` is
    the number of sampled negative users (per like for BPR / listwise, default 20; per paper for
    weighted MSE, default all users), at most ``n_users``. ``monitor`` is ``"Recall@K"``.

    The step is :func:`make_train_step` with these arguments, and the loop the course's
    :func:`course_lib.training.hybrid_loop`. Your own code plugs in in two ways:

    * ``loss_fn(model, batch, scores, inputs) -> tensor | dict``: your loss inside the library's
      step. ``batch`` is the :class:`TextBatch` of the papers, ``scores = model(batch)``
      ``(B, n_users)`` (dropout on), ``inputs`` the dict of :func:`sample_loss_inputs` for ``loss``
      and ``n_sample`` (``targets``, and ``neg_mask`` or ``rows``/``pos``/``neg``). Return the
      scalar to minimise, or a dict with it under ``"loss"`` and other terms to record (e.g.
      ``rec_loss``, ``aux_loss``). The library's is :func:`hybrid_loss`.
    * ``step_fn(batch, targets) -> number | dict``: your whole step (forward, loss, backward,
      your own optimizer's step) on a :class:`TextBatch` and its ``(B, n_users)`` targets; return
      the loss as a float, or a dict of floats with ``"loss"``. ``optimizer``, ``lr``,
      ``weight_decay``, ``loss``, ``alpha``, ``n_sample`` and ``loss_fn`` are then not used.

    Returns the history: lists ``epoch``, one per named loss of the step (the library's: ``loss``
    = ``rec_loss + aux_loss``, ``rec_loss``, ``aux_loss``), ``seconds``, ``train_seconds``,
    ``n_steps``, one list per validation metric (e.g. ``valid_Recall@50``) and ``best_epoch``
    (a one-element list).
    """
    dev = resolve_device(device)
    texts = PaperTexts.from_corpus(texts, dev)
    papers = prepare_hybrid_run((model.n_users, model.n_papers), len(texts), train_likes, valid_likes,
                                loss_fn=loss_fn, step_fn=step_fn, loss=loss, optimizer=optimizer, monitor=monitor,
                                batch_size=batch_size, epochs=epochs, patience=patience, lr=lr, alpha=alpha,
                                n_sample=n_sample, weight_decay=weight_decay)
    model.to(dev)
    model.set_known_papers(papers.known)

    torch.manual_seed(int(seed))  # dropout masks come from the global stream
    step = step_fn or make_train_step(model, loss=loss, alpha=alpha, n_sample=n_sample, optimizer=optimizer, lr=lr,
                                      weight_decay=weight_decay, loss_fn=loss_fn, seed=seed)

    def step_on(batch_papers: np.ndarray):
        targets = torch.as_tensor(papers.by_paper[batch_papers].toarray(), device=dev)  # (B, n_users)
        return step(texts.batch(batch_papers), targets)

    history = hybrid_loop(step_on, model, papers, train_likes, lambda p: model.score_papers(p, texts),
                          batch_size=batch_size, epochs=epochs, patience=patience, monitor=monitor, seed=seed,
                          cause=f"lower lr (now {lr}) or alpha (now {alpha}), or check the inputs for NaN",
                          progress=progress, desc="hybrid")
    model.eval()
    return history
