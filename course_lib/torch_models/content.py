"""Content encoders of the hybrid recommender: paper text in, one vector per paper out.

Every encoder has the same interface, so the hybrid model never changes between content levels:

* it is an ``nn.Module`` with an attribute ``out_dim``;
* ``forward(batch: TextBatch) -> (batch_size, out_dim)``;
* ``aux_loss(batch) -> scalar tensor``: an extra unsupervised loss to add to the recommendation
  loss (0 for the encoders here; level (c) uses it for its paragraph-vector objective).

Levels of the hands-on task implemented here:

* (a) :class:`TfidfWordAverage`: TF-IDF weighted average of pretrained word vectors,
* (b) :class:`PretrainedParagraphVectors`: a table of paragraph vectors computed beforehand
  (Le & Mikolov 2014), cold papers' vectors inferred by :mod:`course_lib.torch_models.paragraph2vec`.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from course_lib.data import check_ids
from course_lib.torch_models.utils import TextBatch, resolve_device


def _as_matrix(values, what: str) -> torch.Tensor:
    if hasattr(values, "matrix"):  # course_lib.word_vectors.WordVectors
        values = values.matrix
    # a copy: fine-tuning must never write into the caller's array
    t = torch.tensor(np.asarray(values, dtype=np.float32))
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty (n, dim) matrix, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return t


class TfidfWordAverage(nn.Module):
    """Level (a): ``g(X_j) = sum_w tf(w, j) idf(w) e_w / sum_w tf(w, j) idf(w)``.

    The average of word embeddings of Ask-the-GRU eq. (5), weighted by TF-IDF. Summing
    ``idf(w_t) e_{w_t}`` over the token positions ``t`` of a paper counts each word ``tf`` times,
    so no term-frequency table is needed; padding positions have mask 0 and weight 0.

    ``word_vectors``: ``(vocab_size, dim)`` array or :class:`course_lib.word_vectors.WordVectors`;
    ``idf``: ``(vocab_size,)`` from :func:`course_lib.text.idf_vector`; ``fine_tune`` lets the
    recommendation loss update the word vectors (the idf weights stay fixed).
    """

    def __init__(self, word_vectors, idf, fine_tune: bool = False):
        super().__init__()
        weights = _as_matrix(word_vectors, "word_vectors")
        idf = torch.tensor(np.asarray(idf, dtype=np.float32))
        if idf.shape != (weights.shape[0],):
            raise ValueError(
                f"idf has shape {tuple(idf.shape)} but word_vectors has {weights.shape[0]} rows; "
                "both must come from the same vocabulary"
            )
        if (idf < 0).any() or not torch.isfinite(idf).all():
            raise ValueError("idf must be finite and non-negative")
        self.embedding = nn.Embedding.from_pretrained(weights, freeze=not fine_tune, padding_idx=0)
        self.register_buffer("idf", idf)
        self.out_dim = int(weights.shape[1])
        self.fine_tune = fine_tune

    def weights(self, batch: TextBatch) -> torch.Tensor:
        """Per-position weights ``idf(w_t) * mask_t``, normalised to sum 1 per paper: ``(B, L)``."""
        w = self.idf[batch.ids] * batch.mask  # (B, L)
        total = w.sum(dim=1, keepdim=True)  # (B, 1)
        if (total <= 0).any():
            bad = batch.paper_idx[(total[:, 0] <= 0)].tolist()[:5]
            raise ValueError(
                f"papers {bad} have no token with a positive idf weight (empty text, or only padding / "
                "words that occur in every paper); give them text or drop them"
            )
        return w / total

    def forward(self, batch: TextBatch) -> torch.Tensor:
        w = self.weights(batch)  # (B, L)
        emb = self.embedding(batch.ids)  # (B, L, dim)
        return torch.einsum("bl,bld->bd", w, emb)  # (B, dim)

    def aux_loss(self, batch: TextBatch) -> torch.Tensor:
        return self.idf.new_zeros(())


class PretrainedParagraphVectors(nn.Module):
    """Level (b): look ``batch.paper_idx`` up in a ``(n_papers, dim)`` table of paragraph vectors.

    The table is computed before the recommender is trained: PV-DBOW / PV-DM vectors for the
    training papers and vectors inferred for the cold papers (Le & Mikolov 2014, section 2.2), see
    :func:`course_lib.torch_models.paragraph2vec.paper_vectors`. ``fine_tune`` lets the
    recommendation loss move the vectors; only papers seen in training batches move (with no
    weight decay), so the inferred cold-paper vectors stay as inferred.
    """

    def __init__(self, vectors, fine_tune: bool = False):
        super().__init__()
        weights = _as_matrix(vectors, "vectors")
        self.table = nn.Embedding.from_pretrained(weights, freeze=not fine_tune)
        self.out_dim = int(weights.shape[1])
        self.n_papers = int(weights.shape[0])
        self.fine_tune = fine_tune

    def forward(self, batch: TextBatch) -> torch.Tensor:
        if batch.paper_idx.numel():
            lo, hi = int(batch.paper_idx.min()), int(batch.paper_idx.max())
            if lo < 0 or hi >= self.n_papers:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"paper ids must be in [0, {self.n_papers}), got {bad}: the paragraph-vector table "
                    "must have one row per paper of the corpus (cold papers inferred)"
                )
        return self.table(batch.paper_idx)  # (B, dim)

    def aux_loss(self, batch: TextBatch) -> torch.Tensor:
        return self.table.weight.new_zeros(())


def make_text_batch(encoded, paper_idx, device="cpu", trim: bool = True) -> TextBatch:
    """The :class:`TextBatch` of papers ``paper_idx`` from an :class:`course_lib.text.EncodedCorpus`.

    With ``trim`` the padded columns that are padding for every paper of the batch are cut off,
    so short papers do not pay for the longest paper of the corpus.
    """
    idx = check_ids(paper_idx, encoded.ids.shape[0], "paper")
    ids, mask = encoded.ids[idx], encoded.mask[idx]  # (B, max_len)
    if trim and idx.size:
        width = max(1, int(np.asarray(encoded.lengths)[idx].max()))
        ids, mask = ids[:, :width], mask[:, :width]
    return TextBatch.from_arrays(ids, mask, idx, device=resolve_device(device))


def make_text_batches(
    encoded, paper_idx, batch_size: int = 256, device="cpu", shuffle: bool = False, seed: int = 0
) -> Iterator[TextBatch]:
    """Yield :func:`make_text_batch` batches over ``paper_idx`` (shuffled with ``seed`` if asked)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    idx = check_ids(paper_idx, encoded.ids.shape[0], "paper")
    if shuffle:
        idx = np.random.default_rng(seed).permutation(idx)
    for start in range(0, idx.size, batch_size):
        yield make_text_batch(encoded, idx[start : start + batch_size], device=device)


def encode_all(encoder: nn.Module, encoded, batch_size: int = 512, device="cpu") -> np.ndarray:
    """Content vectors of every paper of ``encoded`` in eval mode: ``(n_papers, out_dim)`` float32."""
    was_training = encoder.training
    encoder.eval()
    out = []
    with torch.no_grad():
        for batch in make_text_batches(encoded, np.arange(encoded.ids.shape[0]), batch_size, device):
            out.append(encoder(batch).cpu().numpy())
    encoder.train(was_training)
    return np.concatenate(out).astype(np.float32)
