"""Content encoders of the hybrid recommender in the Theano track: paper text in, one vector per paper out.

The same encoders as :mod:`course_lib.torch_models.content`, written with shared variables. Every
encoder has the same interface, so the hybrid model never changes between content levels:

* an attribute ``out_dim`` and the parameters ``params`` (:class:`~compat.Params`, named as the
  PyTorch module's ``state_dict``);
* it is called symbolically: ``encoder(ids, mask, paper_idx, train, stream) -> (batch, out_dim)``,
  with ``ids`` ``(B, L)`` int64, ``mask`` ``(B, L)``, ``paper_idx`` ``(B,)``;
* optionally ``check(ids, mask, paper_idx)`` (numeric inputs checked before a compiled call) and,
  for level (c), ``aux_loss``, ``aux_inputs``, ``sample_words`` and ``prepare_cold``.

Levels of the hands-on task implemented here:

* (a) :class:`TfidfWordAverage`: TF-IDF weighted average of pretrained word vectors,
* (b) :class:`PretrainedParagraphVectors`: a table of paragraph vectors computed beforehand.

Level (c) is :mod:`course_lib.theano_models.e2e_paragraph`, level (d) the ``GRUEncoder`` of
:mod:`course_lib.theano_models.askgru`.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from course_lib.data import check_ids
from course_lib.theano_models.compat import Params, T, function
from course_lib.validation import check_int


def _as_matrix(values, what: str) -> np.ndarray:
    table = np.array(getattr(values, "matrix", values), dtype=np.float64)  # a copy, never the caller's array
    if table.ndim != 2 or min(table.shape) == 0:
        raise ValueError(f"{what} must be a non-empty (n, dim) matrix, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return table


class TfidfWordAverage:
    """Level (a): ``c_j = sum_t idf(w_t) e_{w_t} / sum_t idf(w_t)`` over the tokens of paper ``j``.

    Ask-the-GRU eq. (5) weighted by TF-IDF: summing over token positions counts each word ``tf``
    times. ``fine_tune`` makes the word vectors trainable (the idf weights stay fixed).
    """

    def __init__(self, word_vectors, idf, fine_tune: bool = False, dtype: str | None = None):
        wv = _as_matrix(word_vectors, "word_vectors")
        idf = np.asarray(idf, dtype=np.float64)
        if idf.shape != (wv.shape[0],):
            raise ValueError(f"idf has shape {idf.shape} but word_vectors has {wv.shape[0]} rows; "
                             "both must come from the same vocabulary")
        if (idf < 0).any() or not np.isfinite(idf).all():
            raise ValueError("idf must be finite and non-negative")
        self.params = Params(dtype)
        self.params.add("embedding.weight", wv, trainable=fine_tune)
        self.params.add("idf", idf, trainable=False)
        self.out_dim, self.vocab_size, self.fine_tune = int(wv.shape[1]), int(wv.shape[0]), fine_tune
        self._idf = idf

    def check(self, ids, mask, paper_idx) -> None:
        """A paper whose weights sum to 0 would divide by zero: say which one, before running."""
        if np.asarray(ids).max(initial=0) >= self.vocab_size:
            raise ValueError(f"word ids must be in [0, {self.vocab_size}) (the vocabulary of the word vectors), "
                             f"got {int(np.asarray(ids).max())}")
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
    """Level (b): look the paper up in a ``(n_papers, dim)`` table of paragraph vectors.

    The table is computed before the recommender is trained (vectors inferred for cold papers);
    ``fine_tune`` lets the recommendation loss move the rows of the papers it trains on.
    """

    def __init__(self, vectors, fine_tune: bool = False, dtype: str | None = None):
        table = _as_matrix(vectors, "vectors")
        self.params = Params(dtype)
        self.params.add("table.weight", table, trainable=fine_tune)
        self.out_dim, self.n_papers, self.fine_tune = int(table.shape[1]), int(table.shape[0]), fine_tune

    def check(self, ids, mask, paper_idx) -> None:
        check_ids(paper_idx, self.n_papers, "paper")

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        return self.params["table.weight"][paper_idx]  # (B, dim)


def make_text_batch(encoded, paper_idx, trim: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, mask, paper_idx)`` of papers ``paper_idx`` from anything with ``.ids`` and ``.mask``
    ``(n_papers, max_len)`` (an :class:`course_lib.text.EncodedCorpus`, a ``PaperTexts``): the inputs
    of a compiled model. With ``trim`` the columns that are padding for every paper of the batch
    are cut off, so short papers do not pay for the longest paper of the corpus."""
    idx = check_ids(paper_idx, np.asarray(encoded.ids).shape[0], "paper")
    ids, mask = np.asarray(encoded.ids)[idx], np.asarray(encoded.mask)[idx]  # (B, max_len)
    if trim and idx.size:
        width = max(1, int(mask.sum(1).max()))
        ids, mask = ids[:, :width], mask[:, :width]
    return ids.astype(np.int64), mask, idx


def make_text_batches(encoded, paper_idx, batch_size: int = 256, shuffle: bool = False,
                      seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield :func:`make_text_batch` batches over ``paper_idx`` (shuffled with ``seed`` if asked)."""
    check_int("batch_size", batch_size)
    idx = check_ids(paper_idx, np.asarray(encoded.ids).shape[0], "paper")
    if shuffle:
        idx = np.random.default_rng(seed).permutation(idx)
    for start in range(0, idx.size, batch_size):
        yield make_text_batch(encoded, idx[start : start + batch_size])


def encode_all(encoder, encoded, batch_size: int = 512) -> np.ndarray:
    """Content vectors of every paper of ``encoded``, dropout off: ``(n_papers, out_dim)`` float32."""
    dtype = encoder.params.dtype
    ids, mask, idx = T.matrix("ids", dtype="int64"), T.matrix("mask", dtype=dtype), T.vector("idx", dtype="int64")
    fn = function([ids, mask, idx], encoder(ids, mask, idx, train=False), name="encode_all")
    out = []
    for batch in make_text_batches(encoded, np.arange(np.asarray(encoded.ids).shape[0]), batch_size):
        if hasattr(encoder, "check"):
            encoder.check(*batch)
        out.append(fn(*batch))
    return np.concatenate(out).astype(np.float32)
