"""Paragraph vectors (Le & Mikolov 2014, "Distributed Representations of Sentences and Documents").

Two models, both trained with negative sampling (Mikolov et al. 2013, eq. 4):

* PV-DBOW (section 2.3): the paragraph vector ``d_j`` alone predicts each word ``w`` of paragraph
  ``j``: ``h = d_j``.
* PV-DM (section 2.2): the paragraph vector and the words of a window around position ``t``
  predict the word at ``t``; the context is the mean ``h = (d_j + sum_c e_{w_c}) / (1 + n_c)``
  (the "mean" variant of gensim's ``dm_mean``; the paper also allows concatenation). As in
  word2vec, each example uses a window half-width drawn uniformly from ``1..window``.

For a target word ``w_O`` with output vector ``u_{w_O}`` and ``K`` noise words ``w_k`` drawn from
the unigram distribution raised to ``ns_exponent`` (3/4 in word2vec), the loss of one example is

    L = -log sigma(u_{w_O} . h) - sum_k log sigma(-u_{w_k} . h)          (negative_sampling_loss)

A paragraph vector for an unseen paper (cold start) is found the same way with every word and
output vector frozen: only the new paragraph vector is trained (section 2.2, "inference stage").

Token ids follow :mod:`course_lib.text`: 0 is padding and 1 the unknown word; both are dropped
before training, as word2vec drops out-of-vocabulary words.

Every setting and input is checked before any work (:mod:`course_lib.validation`): a bad value
is a ``ValueError`` naming the argument, the value and what is allowed, and a loss that becomes
NaN or infinite stops training with :class:`~course_lib.validation.TrainingDiverged`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_lib.data import check_ids
from course_lib.torch_models.utils import resolve_device, torch_generator
from course_lib.validation import (check_choice, check_finite, check_int, check_nonnegative, check_positive,
                                   check_real, check_shape)

N_SPECIAL = 2  # ids 0 (<PAD>) and 1 (<UNK>) are not words to predict
MODES = ("dbow", "dm")


def _check_settings(dim, mode, window, negative, ns_exponent, sample, epochs, lr) -> dict:
    """The training settings shared by :class:`ParagraphVectors` and :func:`gensim_doc2vec`, checked."""
    return dict(dim=check_int("dim", dim), mode=check_choice("mode", mode, MODES),
                window=check_int("window", window), negative=check_int("negative", negative),
                ns_exponent=check_real("ns_exponent", ns_exponent), sample=check_nonnegative("sample", sample),
                epochs=check_int("epochs", epochs), lr=check_positive("lr", lr))


def negative_sampling_loss(h: torch.Tensor, pos_out: torch.Tensor, neg_out: torch.Tensor) -> torch.Tensor:
    """Negative-sampling loss of each example: ``(B,)``.

    ``h`` ``(B, dim)`` hidden (context) vectors, ``pos_out`` ``(B, dim)`` output vectors of the
    true words, ``neg_out`` ``(B, K, dim)`` output vectors of the noise words.
    ``L = -log sigma(pos_out . h) - sum_k log sigma(-neg_out_k . h)``; ``logsigmoid`` keeps it
    finite for large scores.
    """
    check_shape("h", h.shape, (None, None), "(batch, dim)")
    batch, dim = h.shape
    check_shape("pos_out", pos_out.shape, (batch, dim), "(batch, dim)")
    check_shape("neg_out", neg_out.shape, (batch, None, dim), "(batch, K, dim)")
    pos = (h * pos_out).sum(-1)  # (B,)
    neg = torch.bmm(neg_out, h.unsqueeze(-1)).squeeze(-1)  # (B, K)
    return -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)


def _check_counts(counts) -> np.ndarray:
    c = np.array(counts, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"counts must be one count per word id, shape (vocab,), got shape {c.shape}")
    if not np.all(np.isfinite(c)) or (c < 0).any():
        raise ValueError("counts must be finite and >= 0 (how often each word id occurs), got "
                         f"{c[~np.isfinite(c) | (c < 0)][:3]}")
    return c


def noise_distribution(counts: np.ndarray, ns_exponent: float = 0.75) -> np.ndarray:
    """``P(w) ∝ count(w)^ns_exponent`` over the vocabulary, 0 for padding/unknown: ``(vocab,)`` float64."""
    ns_exponent = check_real("ns_exponent", ns_exponent)
    c = _check_counts(counts)
    c[:N_SPECIAL] = 0.0
    if c.sum() <= 0:
        raise ValueError("the corpus has no known word to sample noise words from")
    p = np.where(c > 0, c ** ns_exponent, 0.0)
    return p / p.sum()


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's sub-sampling of frequent words: a token of word ``w`` is kept with probability
    ``min(1, (sqrt(f / (s T)) + 1) * s T / f)`` (``f`` its count, ``T`` all tokens, ``s = sample``),
    as in the word2vec C code and gensim; ``sample=0`` keeps every token."""
    sample = check_nonnegative("sample", sample)
    c = _check_counts(counts)
    if sample == 0:
        return np.ones_like(c)
    threshold = sample * c.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        p = (np.sqrt(c / threshold) + 1.0) * threshold / c
    return np.where(c > 0, np.minimum(p, 1.0), 1.0)


def compact_docs(encoded, allow_empty: bool = False) -> list[np.ndarray]:
    """Word ids of each document without padding and unknown words.

    ``encoded`` is a :class:`course_lib.text.EncodedCorpus`, a padded ``(n_docs, len)`` id array,
    or a list of id sequences. An empty document is an error naming it, unless ``allow_empty``.
    """
    rows = encoded.ids if hasattr(encoded, "ids") else encoded
    if isinstance(rows, str):
        raise ValueError("the corpus is one text; encode the texts first: course_lib.text.encode_corpus(texts, vocab)")
    if isinstance(rows, np.ndarray):
        if rows.ndim != 2:
            raise ValueError(f"a corpus array must have shape (n_docs, max_len) of word ids, got shape {rows.shape}"
                             + (": one document? wrap it as [ids]" if rows.ndim == 1 else ""))
        rows = list(rows)
    docs = [_doc_ids(r, i) for i, r in enumerate(rows)]
    if not docs:
        raise ValueError("the corpus has no documents")
    docs = [d[d >= N_SPECIAL] for d in docs]
    empty = [i for i, d in enumerate(docs) if d.size == 0]
    if empty and not allow_empty:
        shown = ", ".join(map(str, empty[:5])) + (" ..." if len(empty) > 5 else "")
        raise ValueError(
            f"documents {shown} have no known word (empty, or only <UNK>/<PAD>); remove them, give them "
            "text, or pass allow_empty=True to keep their randomly initialised vectors"
        )
    return docs


def _doc_ids(row, i: int) -> np.ndarray:
    """Document ``i`` of a corpus as int64 word ids, or an error saying what it is instead."""
    if isinstance(row, str):
        raise ValueError(f"document {i} is text ({row[:30]!r}), not word ids; encode the texts first: "
                         "course_lib.text.encode_corpus(texts, vocab)")
    ids = np.asarray(row)
    if ids.ndim != 1:
        what = f"the single number {ids.item()!r}" if ids.ndim == 0 else f"shape {ids.shape}"
        raise ValueError(f"document {i} must be a sequence of word ids, got {what}"
                         + ("; one document? wrap it as [ids]" if ids.ndim == 0 else ""))
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"document {i} holds {ids.dtype} values; word ids are integers "
                         "(course_lib.text.encode_corpus gives them)")
    if ids.size and ids.min() < 0:
        raise ValueError(f"word ids must be >= 0 (0 is <PAD>), got {ids.min()} in document {i}")
    return ids.astype(np.int64)


class ParagraphVectors(nn.Module):
    """PV-DBOW or PV-DM with negative sampling, trained by mini-batch SGD (gradient in :meth:`sgd_step`).

    Parameters follow gensim's ``Doc2Vec`` names where they exist: ``dim`` (vector size),
    ``mode`` ("dbow" or "dm"), ``window`` (PV-DM context half-width), ``negative`` (noise words
    per example), ``ns_exponent``, ``sample`` (sub-sampling threshold), ``epochs``, ``lr`` (start
    learning rate, decayed linearly to ``lr * 1e-3`` as in word2vec), ``batch_size`` (examples,
    i.e. (paragraph, word) pairs, per step), ``seed``, ``device``, and ``dm_update`` (how PV-DM
    shares the gradient among its inputs, see :meth:`sgd_step`).

    The loss of a mini-batch is the *sum* of the per-example losses, so a step of SGD with rate
    ``lr`` is the sum of the per-example word2vec updates at that rate.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 100,
        mode: str = "dbow",
        window: int = 5,
        negative: int = 5,
        ns_exponent: float = 0.75,
        sample: float = 1e-3,
        epochs: int = 20,
        lr: float = 0.025,
        batch_size: int = 1024,
        seed: int = 0,
        device="auto",
        dm_update: str = "word2vec",
    ):
        super().__init__()
        if not (isinstance(vocab_size, (int, np.integer)) and vocab_size > N_SPECIAL):
            raise ValueError(f"vocab_size must be an integer > {N_SPECIAL} (ids 0 and 1 are <PAD> and <UNK>): pass "
                             f"len(vocab) of the vocabulary that encoded the corpus; got {vocab_size!r}")
        settings = _check_settings(dim, mode, window, negative, ns_exponent, sample, epochs, lr)
        self.config = dict(vocab_size=int(vocab_size), **settings, batch_size=check_int("batch_size", batch_size),
                           seed=check_int("seed", seed, minimum=0),
                           dm_update=check_choice("dm_update", dm_update, ("word2vec", "exact")))
        c = self.config
        self.mode, self.dim, self.window, self.negative = c["mode"], c["dim"], c["window"], c["negative"]
        self.epochs, self.lr, self.batch_size, self.seed = c["epochs"], c["lr"], c["batch_size"], c["seed"]
        self.ns_exponent, self.sample, self.dm_update = c["ns_exponent"], c["sample"], c["dm_update"]
        self.device = resolve_device(device)
        dim = self.dim
        gen = torch_generator(self.seed)
        # word2vec initialisation: input vectors uniform in +-0.5/dim, output vectors zero
        self.doc_vectors = nn.Embedding(0, dim)
        self.word_vectors = nn.Embedding(vocab_size, dim)
        self.out_vectors = nn.Embedding(vocab_size, dim)
        with torch.no_grad():
            self.word_vectors.weight.uniform_(-0.5 / dim, 0.5 / dim, generator=gen)
            self.out_vectors.weight.zero_()
        self.register_buffer("noise_cdf", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("keep_prob", torch.ones(vocab_size, dtype=torch.float64))
        self.loss_history: list[float] = []
        self.to(self.device)

    # ------------------------------------------------------------------ model
    def hidden(self, doc_table: nn.Embedding, doc: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """The hidden vector ``h``: ``d_j`` (DBOW) or the mean of ``d_j`` and the context words (DM): ``(B, dim)``.

        ``context`` ``(B, 2 * window)`` word ids, 0 where the window leaves the paragraph.
        """
        h = doc_table(doc)  # (B, dim)
        if self.mode == "dbow":
            return h
        mask = (context > 0).unsqueeze(-1).to(h.dtype)  # (B, 2w, 1)
        words = (self.word_vectors(context) * mask).sum(1)  # (B, dim)
        return (h + words) / (1.0 + mask.sum(1))

    def _check_batch(self, doc_table: nn.Embedding, doc, target, negatives, context) -> None:
        """Shapes and id ranges of one batch, in the course's words (not an embedding IndexError)."""
        n_docs, n_words = doc_table.num_embeddings, self.config["vocab_size"]
        check_shape("doc", tuple(doc.shape), (None,), "(batch,)")
        batch = doc.shape[0]
        check_shape("target", tuple(target.shape), (batch,), "(batch,)")
        check_shape("negatives", tuple(negatives.shape), (batch, None), "(batch, K)")
        for name, ids, n in (("doc", doc, n_docs), ("target", target, n_words), ("negatives", negatives, n_words)):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
                bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
                raise ValueError(f"{name} ids must be in [0, {n}), got {bad}")
        if self.mode == "dm":
            if context is None:
                raise ValueError("mode='dm' needs the context word ids: context of shape (batch, 2 * window)")
            check_shape("context", tuple(context.shape), (batch, 2 * self.window), "(batch, 2 * window)")
            if context.numel() and (int(context.min()) < 0 or int(context.max()) >= n_words):
                raise ValueError(f"context ids must be in [0, {n_words}) (0 where the window leaves the paragraph)")

    def loss(self, doc_table: nn.Embedding, doc, target, negatives, context=None) -> torch.Tensor:
        """Per-example losses ``(B,)`` for paragraphs ``doc``, true words ``target`` ``(B,)`` and
        noise words ``negatives`` ``(B, K)``, differentiable by autograd (used by tests and notebooks;
        training uses the same gradient written out in :meth:`sgd_step`)."""
        self._check_batch(doc_table, doc, target, negatives, context)
        h = self.hidden(doc_table, doc, context)
        return negative_sampling_loss(h, self.out_vectors(target), self.out_vectors(negatives))

    def sgd_step(self, doc_table: nn.Embedding, doc, target, negatives, context=None, lr: float = 0.025,
                 train_words: bool = True) -> torch.Tensor:
        """One SGD step on the summed loss of a batch (see :meth:`_step`), after checking the batch."""
        self._check_batch(doc_table, doc, target, negatives, context)
        return self._step(doc_table, doc, target, negatives, context, check_positive("lr", lr), train_words)

    @torch.no_grad()
    def _step(self, doc_table: nn.Embedding, doc, target, negatives, context, lr: float,
              train_words: bool) -> torch.Tensor:
        """One SGD step on the summed loss of a batch, with the gradient written out (no autograd).

        With scores ``s = u . h`` and labels ``y`` (1 for the true word, 0 for noise words),
        ``dL/ds = sigma(s) - y``, so ``dL/du = (sigma(s) - y) h`` and ``dL/dh = sum (sigma(s) - y) u``;
        in PV-DM the exact gradient of the mean gives each of the ``1 + n_c`` input vectors
        ``dL/dh / (1 + n_c)`` (``dm_update="exact"``), while word2vec and gensim give each of them the
        whole ``dL/dh`` (``dm_update="word2vec"``, the default: larger steps for the inputs, which
        gives better paragraph vectors at the same number of epochs). ``index_add_`` sums the updates
        of a row that occurs several times in the batch, as autograd would. ``train_words=False``
        (inference) updates the paragraph vectors only. Returns the batch's summed loss before the step.
        """
        h = self.hidden(doc_table, doc, context)  # (B, dim)
        words = torch.cat([target[:, None], negatives], dim=1)  # (B, 1 + K)
        u = self.out_vectors.weight[words]  # (B, 1 + K, dim)
        scores = torch.bmm(u, h.unsqueeze(-1)).squeeze(-1)  # (B, 1 + K)
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1.0
        loss = -(F.logsigmoid(scores[:, 0]) + F.logsigmoid(-scores[:, 1:]).sum(1)).sum()
        g = torch.sigmoid(scores) - labels  # (B, 1 + K) = dL/ds
        grad_h = torch.bmm(g.unsqueeze(1), u).squeeze(1)  # (B, dim)
        if train_words:
            grad_u = g.unsqueeze(-1) * h.unsqueeze(1)  # (B, 1 + K, dim)
            self.out_vectors.weight.index_add_(0, words.reshape(-1), grad_u.reshape(-1, self.dim), alpha=-lr)
        if self.mode == "dm":
            mask = context > 0  # (B, 2w)
            if self.dm_update == "exact":
                grad_h = grad_h / (1.0 + mask.sum(1, keepdim=True))
            if train_words:
                # every context slot gets grad_h; the padding slots all point at row 0, which is
                # reset to zero below (cheaper than selecting the real slots with a boolean mask)
                rows = context[mask]  # (n_context,)
                grad_w = grad_h.unsqueeze(1).expand(-1, context.shape[1], -1)[mask]  # (n_context, dim)
                self.word_vectors.weight.index_add_(0, rows, grad_w, alpha=-lr)
        doc_table.weight.index_add_(0, doc, grad_h, alpha=-lr)
        return loss

    # --------------------------------------------------------------- training
    def _examples(self, docs: list[np.ndarray]):
        """All (paragraph, position) examples as tensors, plus the padded token table."""
        lengths = np.array([d.size for d in docs])
        width = int(lengths.max())
        w = self.window if self.mode == "dm" else 0
        tokens = np.zeros((len(docs), width + 2 * w), dtype=np.int64)  # (n_docs, w + width + w)
        for i, d in enumerate(docs):
            tokens[i, w : w + d.size] = d
        doc = np.repeat(np.arange(len(docs)), lengths)  # (n_examples,)
        pos = np.concatenate([np.arange(n) for n in lengths]) + w  # (n_examples,)
        return torch.from_numpy(tokens), torch.from_numpy(doc), torch.from_numpy(pos)

    def _run(self, doc_table: nn.Embedding, docs: list[np.ndarray], epochs: int, lr: float, seed: int,
             progress: bool, desc: str, train_words: bool) -> list[float]:
        """The SGD loop shared by :meth:`fit` and :meth:`infer`: returns the mean loss per epoch."""
        tokens, doc_idx, pos = self._examples(docs)
        targets = tokens[doc_idx, pos]  # (n_examples,)
        if targets.numel() == 0:
            return []
        offsets = torch.tensor([o for o in range(-self.window, self.window + 1) if o != 0])  # (2w,)
        gen = torch_generator(seed)
        n_steps_guess = epochs * max(1, int(np.ceil(targets.numel() / self.batch_size)))
        step, history = 0, []
        keep_prob = self.keep_prob.cpu()[targets]
        cdf = self.noise_cdf.cpu()
        dev = self.device
        bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
        for epoch in bar:
            kept = torch.nonzero(torch.rand(targets.numel(), generator=gen, dtype=torch.float64) < keep_prob)[:, 0]
            order = kept[torch.randperm(kept.numel(), generator=gen)]
            total, count = 0.0, 0
            for start in range(0, order.numel(), self.batch_size):
                ex = order[start : start + self.batch_size]  # (B,)
                negatives = torch.searchsorted(cdf, torch.rand(ex.numel(), self.negative, generator=gen,
                                                               dtype=torch.float64))  # (B, K)
                negatives = negatives.clamp_(max=cdf.numel() - 1)
                context = None
                if self.mode == "dm":
                    context = tokens[doc_idx[ex, None], pos[ex, None] + offsets]  # (B, 2w)
                    # word2vec's reduced window: each example uses a width drawn from 1..window
                    width = torch.randint(1, self.window + 1, (ex.numel(), 1), generator=gen)  # (B, 1)
                    context = (context * (offsets.abs() <= width)).to(dev)
                step_lr = lr * max(1e-3, 1.0 - step / n_steps_guess)  # word2vec's linear decay
                batch_loss = self._step(doc_table, doc_idx[ex].to(dev), targets[ex].to(dev), negatives.to(dev),
                                        context, step_lr, train_words).item()
                check_finite(batch_loss, where=f"{desc} epoch {epoch + 1}, step {step}",
                             cause=f"the vectors grew without bound; lower lr (now {lr})")
                total += batch_loss
                count += ex.numel()
                step += 1
            history.append(total / max(count, 1))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
        return history

    def fit(self, encoded_corpus, progress: bool = True, allow_empty: bool = False) -> "ParagraphVectors":
        """Train paragraph, word and output vectors on a corpus (one paragraph per document).

        ``encoded_corpus``: :class:`course_lib.text.EncodedCorpus`, padded id array or id lists.
        Row ``j`` of :attr:`vectors` is then the paragraph vector of document ``j``; the mean loss
        per example of each epoch is appended to :attr:`loss_history`.
        """
        docs = compact_docs(encoded_corpus, allow_empty=allow_empty)
        counts = np.bincount(np.concatenate(docs), minlength=self.config["vocab_size"]).astype(np.float64)
        if counts.size > self.config["vocab_size"]:
            raise ValueError(
                f"word ids go up to {counts.size - 1} but vocab_size={self.config['vocab_size']}; "
                "pass vocab_size=len(vocab) of the vocabulary that encoded the corpus"
            )
        self.noise_cdf = torch.from_numpy(np.cumsum(noise_distribution(counts, self.ns_exponent))).to(self.device)
        self.keep_prob = torch.from_numpy(keep_probability(counts, self.sample)).to(self.device)
        self.doc_vectors = self._new_table(len(docs), self.seed + 1)
        self.loss_history = self._run(self.doc_vectors, docs, self.epochs, self.lr, self.seed, progress,
                                      f"PV-{self.mode.upper()}", train_words=True)
        return self

    def _new_table(self, n: int, seed: int) -> nn.Embedding:
        table = nn.Embedding(n, self.dim)
        with torch.no_grad():
            table.weight.uniform_(-0.5 / self.dim, 0.5 / self.dim, generator=torch_generator(seed))
        return table.to(self.device)

    def infer(self, encoded_docs, epochs: int | None = None, lr: float | None = None, seed: int | None = None,
              progress: bool = False, allow_empty: bool = False) -> np.ndarray:
        """Paragraph vectors of unseen documents: ``(n_docs, dim)`` float32.

        Word and output vectors are frozen; only the new paragraph vectors are trained, with the
        training objective (Le & Mikolov 2014, section 2.2). ``epochs``/``lr`` default to the
        training ones; the same ``seed`` gives the same vectors.
        """
        if self.noise_cdf.numel() == 0:
            raise ValueError("call fit(...) before infer(...): the word and output vectors are not trained yet")
        epochs = self.epochs if epochs is None else check_int("epochs", epochs)
        lr = self.lr if lr is None else check_positive("lr", lr)
        seed = self.seed if seed is None else check_int("seed", seed, minimum=0)
        docs = compact_docs(encoded_docs, allow_empty=allow_empty)
        too_big = max((int(d.max()) for d in docs if d.size), default=0)
        if too_big >= self.config["vocab_size"]:
            raise ValueError(f"word id {too_big} is outside the vocabulary of size {self.config['vocab_size']}")
        table = self._new_table(len(docs), seed + 1)
        self.last_infer_history = self._run(table, docs, epochs, lr, seed, progress, "infer", train_words=False)
        return table.weight.detach().cpu().numpy().astype(np.float32)

    # ---------------------------------------------------------------- results
    @property
    def vectors(self) -> np.ndarray:
        """Paragraph vectors of the training documents: ``(n_docs, dim)`` float32."""
        return self.doc_vectors.weight.detach().cpu().numpy().astype(np.float32)

    def most_similar(self, doc_idx: int, topn: int = 10) -> list[tuple[int, float]]:
        """The ``topn`` training documents closest to document ``doc_idx`` by cosine, itself excluded."""
        if self.doc_vectors.num_embeddings == 0:
            raise ValueError("the model is not trained yet: call fit(corpus) before most_similar")
        return most_similar(self.vectors, doc_idx, topn)

    def save(self, path: str | Path) -> None:
        torch.save({"config": self.config, "n_docs": self.doc_vectors.num_embeddings,
                    "state": self.state_dict(), "loss_history": self.loss_history}, path)

    @classmethod
    def load(cls, path: str | Path, device="auto") -> "ParagraphVectors":
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**blob["config"], device="cpu")
        model.doc_vectors = nn.Embedding(blob["n_docs"], model.dim)
        model.noise_cdf = torch.zeros(blob["state"]["noise_cdf"].shape, dtype=torch.float64)
        model.load_state_dict(blob["state"])
        model.loss_history = list(blob["loss_history"])
        model.device = resolve_device(device)
        return model.to(model.device)


# ------------------------------------------------------------------ helpers
def most_similar(vectors: np.ndarray, doc_idx: int, topn: int = 10) -> list[tuple[int, float]]:
    """Indices and cosines of the ``topn`` rows of ``vectors`` closest to row ``doc_idx`` (itself excluded)."""
    vectors = _check_vectors(vectors)
    topn = check_int("topn", topn)
    (doc_idx,) = check_ids([doc_idx], vectors.shape[0], "document")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit[doc_idx]
    sims[doc_idx] = -np.inf
    top = np.argsort(-sims, kind="stable")[:topn]
    return [(int(i), float(sims[i])) for i in top]


def paper_vectors(encoded, train_papers: Sequence[int] | None = None, progress: bool = False,
                  **kwargs) -> tuple[np.ndarray, ParagraphVectors]:
    """The ``(n_papers, dim)`` table for :class:`course_lib.torch_models.content.PretrainedParagraphVectors`.

    Fits :class:`ParagraphVectors` (``kwargs``, e.g. ``vocab_size``, ``dim``, ``mode``) on the
    text of ``train_papers`` and infers the vectors of all other papers (cold start: their text
    is used only for inference, never for training the word vectors). ``train_papers=None``
    fits on every paper. Returns the table and the fitted model.
    """
    n = encoded.ids.shape[0] if hasattr(encoded, "ids") else len(encoded)
    rows = encoded.ids if hasattr(encoded, "ids") else encoded
    train = np.arange(n) if train_papers is None else np.unique(check_ids(train_papers, n, "paper"))
    if train.size == 0:
        raise ValueError("train_papers is empty: paragraph vectors need training papers")
    model = ParagraphVectors(**kwargs).fit([rows[i] for i in train], progress=progress)
    table = np.zeros((n, model.dim), dtype=np.float32)
    table[train] = model.vectors
    cold = np.setdiff1d(np.arange(n), train)
    if cold.size:
        table[cold] = model.infer([rows[i] for i in cold], progress=progress)
    return table, model


def _check_vectors(vectors) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    check_shape("vectors", v.shape, (None, None), "(n_docs, dim)")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"vectors has {int((~np.isfinite(v)).any(axis=1).sum())} rows with NaN or inf: "
                         "the training that made them diverged; train again with a lower lr")
    return v


def relevance_from_features(features: sp.spmatrix) -> sp.csr_matrix:
    """``(n, n)`` boolean: papers ``i != j`` that share a feature (a tag when ``features`` is
    ``paper_tags``, a user when it is ``likes.T``)."""
    f = sp.csr_matrix(features, dtype=np.float32)
    rel = (f @ f.T).tocsr()
    rel.setdiag(0)
    rel.eliminate_zeros()
    rel.data[:] = 1.0
    return rel


def neighbour_precision(vectors: np.ndarray, relevant: sp.spmatrix, k: int = 10) -> dict:
    """How often a paper's ``k`` nearest papers (cosine) are relevant to it, against chance.

    ``precision``: mean over papers with at least one relevant paper of |top-k ∩ relevant| / k.
    ``random``: the expected value of the same for ``k`` papers drawn at random, i.e. the mean of
    |relevant(i)| / (n - 1). ``lift`` is their ratio.
    """
    vectors = _check_vectors(vectors)
    rel = sp.csr_matrix(relevant)
    n = vectors.shape[0]
    if rel.shape != (n, n):
        raise ValueError(f"relevant has shape {rel.shape}, expected ({n}, {n}) for {n} vectors")
    k = check_int("k", k, minimum=1, maximum=n - 1)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T  # (n, n)
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]  # (n, k)
    n_rel = np.diff(rel.indptr)
    queries = np.flatnonzero(n_rel > 0)
    if queries.size == 0:
        raise ValueError("no paper has a relevant paper; the relevance matrix is empty")
    hits = np.asarray(rel[np.repeat(queries, k), top[queries].ravel()]).reshape(-1, k).sum(1)
    precision = float(np.mean(hits / k))
    random = float(np.mean(n_rel[queries] / (n - 1)))
    return {"precision": precision, "random": random, "lift": precision / random, "queries": int(queries.size)}


def gensim_doc2vec(encoded, dim: int = 100, mode: str = "dbow", window: int = 5, negative: int = 5,
                   ns_exponent: float = 0.75, sample: float = 1e-3, epochs: int = 20, lr: float = 0.025,
                   seed: int = 0) -> np.ndarray:
    """gensim's ``Doc2Vec`` on exactly the documents our model sees (ids as tokens): ``(n_docs, dim)``."""
    from gensim.models.doc2vec import Doc2Vec, TaggedDocument

    from course_lib.word_vectors import _stable_hash

    c = _check_settings(dim, mode, window, negative, ns_exponent, sample, epochs, lr)
    seed = check_int("seed", seed, minimum=0)
    docs = compact_docs(encoded)
    tagged = [TaggedDocument([str(t) for t in d], [i]) for i, d in enumerate(docs)]
    model = Doc2Vec(tagged, vector_size=c["dim"], dm=1 if c["mode"] == "dm" else 0, dm_mean=1, window=c["window"],
                    negative=c["negative"], hs=0, ns_exponent=c["ns_exponent"], sample=c["sample"],
                    epochs=c["epochs"], alpha=c["lr"], min_alpha=c["lr"] * 1e-3, min_count=1, seed=seed, workers=1,
                    hashfxn=_stable_hash)
    return np.stack([model.dv[i] for i in range(len(docs))]).astype(np.float32)


def compare_with_gensim(encoded, relevant: sp.spmatrix, vocab_size: int, k: int = 10, modes=("dbow",),
                        progress: bool = False, **kwargs) -> list[dict]:
    """Ours vs gensim's Doc2Vec with the same settings, on nearest-paper retrieval.

    For each mode, both models are trained on the same documents and scored by
    :func:`neighbour_precision` against ``relevant`` (e.g. :func:`relevance_from_features` of the
    tags); returns one row per model with the precision, the chance level and the training time.
    """
    rows = []
    for mode in modes:
        check_choice("mode", mode, MODES)
        settings = dict(kwargs, mode=mode)
        start = time.perf_counter()
        ours = ParagraphVectors(vocab_size, **settings).fit(encoded, progress=progress).vectors
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        theirs = gensim_doc2vec(encoded, **{k_: v for k_, v in settings.items() if k_ not in ("batch_size", "device")})
        t_theirs = time.perf_counter() - start
        for name, vecs, secs in ((f"ours PV-{mode.upper()}", ours, t_ours),
                                 (f"gensim PV-{mode.upper()}", theirs, t_theirs)):
            res = neighbour_precision(vecs, relevant, k)
            rows.append({"model": name, f"precision@{k}": res["precision"], "random": res["random"],
                         "lift": res["lift"], "seconds": secs})
    return rows
