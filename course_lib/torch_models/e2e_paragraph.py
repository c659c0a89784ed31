"""Level (c) of the hands-on task: paragraph vectors trained end to end with the preference model.

The content representation of paper ``j`` is its paragraph vector ``d_j`` (a row of a learnt
table). Unlike level (b), where ``d_j`` is fitted by paragraph2vec first and then frozen, here
``d_j`` gets gradients from two losses at once (the task sheet: "jointly train the item
representations (paragraph vectors) with the preference model; requires experimentation for
balancing the loss"):

``L = L_rec + lambda_p2v * L_p2v``

* ``L_rec`` is the recommendation loss of :mod:`course_lib.torch_models.hybrid`;
* ``L_p2v`` is the PV-DBOW objective with negative sampling (Le & Mikolov 2014, section 2.3, with
  the negative-sampling loss of Mikolov et al. 2013, eq. 4): for each paper of the batch, words
  ``w`` drawn from its text must score high against ``d_j`` and ``K`` noise words low::

      L_p2v = 1/(B T) sum_j sum_t [ -log s(d_j . u_{w_jt}) - sum_k log s(-d_j . u_{n_tk}) ]

  with output word vectors ``u``, ``T = n_words`` positions sampled per paper and ``K`` noise
  words per position drawn from the unigram distribution raised to ``ns_exponent`` (0.75),
  shared by the papers of a mini-batch.

``lambda_p2v`` is the balance. With ``lambda_p2v = 0`` the table is just a second item-ID
embedding: it fits the training likes, but cold papers get nothing useful from it. A large
``lambda_p2v`` ties ``d_j`` to the words of the paper, so that a cold paper's vector, inferred
from its text alone (:meth:`EndToEndParagraphVectors.infer_vectors`, output word vectors frozen,
as paragraph2vec's inference step), lives in the same space the recommender was trained on.
Notebook 03 runs the experiment that balances the two.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from course_lib.torch_models.utils import TextBatch, torch_generator
from course_lib.training import check_p2v_sizes, noise_cdf
from course_lib.validation import check_int


def negative_sampling_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Per-paper PV-DBOW loss, averaged over its sampled positions: ``(B,)``.

    ``pos_scores`` ``(B, T)`` are ``d_j . u_t`` for the words seen in the paper, ``neg_scores``
    ``(B, T, K)`` are ``d_j . u_tk`` for the noise words.
    ``l_j = 1/T sum_t [ -log s(d_j . u_t) - sum_k log s(-d_j . u_tk) ]``.
    """
    per_pos = -nn.functional.logsigmoid(pos_scores) - nn.functional.logsigmoid(-neg_scores).sum(-1)  # (B, T)
    return per_pos.mean(1)


class EndToEndParagraphVectors(nn.Module):
    """Paragraph vectors as a content encoder whose auxiliary loss is ``lambda_p2v * L_p2v``.

    ``forward(batch) -> (B, dim)`` returns the papers' rows of the table ``d``;
    ``aux_loss(batch)`` the weighted PV-DBOW loss of those papers (sampled with the encoder's
    own seeded generator); ``prepare_cold(batch)`` infers and stores the vectors of papers the
    recommender has not trained on. ``word_counts`` ``(vocab_size,)`` are the corpus counts of
    each word id (e.g. ``Vocabulary.counts``); padding (id 0) is never drawn as noise.
    ``init_vectors`` optionally starts the table from pretrained paragraph vectors (level (b)).
    """

    def __init__(
        self,
        n_papers: int,
        word_counts,
        dim: int = 64,
        *,
        lambda_p2v: float = 1.0,
        negative: int = 5,
        n_words: int = 50,
        ns_exponent: float = 0.75,
        init_vectors=None,
        infer_steps: int = 100,
        infer_lr: float = 0.1,
        seed: int = 0,
    ):
        super().__init__()
        cdf = noise_cdf(word_counts, ns_exponent)  # (vocab_size,), shared with the Theano track
        check_p2v_sizes(dim, lambda_p2v, negative, n_words, infer_steps, infer_lr)
        check_int("n_papers", n_papers)
        self.lambda_p2v, self.negative, self.n_words = float(lambda_p2v), int(negative), int(n_words)
        self.infer_steps, self.infer_lr, self.seed = int(infer_steps), float(infer_lr), int(seed)
        self.out_dim, self.n_papers, self.vocab_size = int(dim), int(n_papers), cdf.size
        self.register_buffer("noise_cdf", torch.as_tensor(cdf, dtype=torch.float64))
        gen = torch_generator(seed)
        self.doc = nn.Embedding(n_papers, dim)
        self.word_out = nn.Embedding(self.vocab_size, dim)
        with torch.no_grad():
            self.doc.weight.copy_((torch.rand(n_papers, dim, generator=gen) - 0.5) / dim)
            self.word_out.weight.zero_()  # as word2vec: output vectors start at zero
            if init_vectors is not None:
                init = torch.as_tensor(np.asarray(init_vectors, dtype=np.float32))
                if init.shape != (n_papers, dim):
                    raise ValueError(f"init_vectors has shape {tuple(init.shape)}, expected ({n_papers}, {dim})")
                self.doc.weight.copy_(init)
        self._gen: torch.Generator | None = None

    def _generator(self) -> torch.Generator:
        dev = self.doc.weight.device
        if self._gen is None or self._gen.device.type != dev.type:
            self._gen = torch_generator(self.seed + 1, dev)
        return self._gen

    def forward(self, batch: TextBatch) -> torch.Tensor:
        idx = batch.paper_idx
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n_papers):
            raise ValueError(f"paper ids must be in [0, {self.n_papers}), got {idx.min().item()}..{idx.max().item()}")
        return self.doc(idx)  # (B, dim)

    def sample_words(self, batch: TextBatch, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_words`` token ids from each paper (positions drawn uniformly, so words by their tf)
        ``(B, T)`` and ``negative`` noise words per position ``(T, K)``, shared by the papers of
        the batch (as GRU4Rec shares its negatives within a mini-batch: far fewer draws and
        lookups, the same loss in expectation). The same distributions as the numpy
        :func:`course_lib.training.sample_words` of the Theano track, drawn on the device with a
        torch generator (so not the same numbers for the same seed), and any mask, not only a
        right-padded one."""
        if bool((batch.mask.sum(1) == 0).any()):
            raise ValueError("a paper of this batch has an empty text; paragraph vectors need words")
        pos_at = torch.multinomial(batch.mask, self.n_words, replacement=True, generator=generator)  # (B, T)
        words = torch.gather(batch.ids, 1, pos_at)  # (B, T)
        u = torch.rand(self.n_words, self.negative, generator=generator, dtype=torch.float64,
                       device=words.device)  # (T, K)
        noise = torch.searchsorted(self.noise_cdf, u, right=True).clamp_(max=self.vocab_size - 1)
        return words, noise

    def p2v_loss(self, doc: torch.Tensor, batch: TextBatch, generator: torch.Generator,
                 word_out: torch.Tensor | None = None) -> torch.Tensor:
        """Per-paper PV-DBOW loss ``(B,)`` of the vectors ``doc`` on the texts of ``batch``."""
        w = self.word_out.weight if word_out is None else word_out
        words, noise = self.sample_words(batch, generator)
        pos = torch.einsum("bd,btd->bt", doc, w[words])  # (B, T)
        neg = (doc @ w[noise.flatten()].T).view(len(doc), *noise.shape)  # (B, T, K)
        return negative_sampling_loss(pos, neg)

    def p2v_term(self, batch: TextBatch) -> torch.Tensor:
        """``L_p2v`` (unweighted) on the batch's papers, with the encoder's own seeded word draws:
        what a joint loss of your own weighs by its balance (``aux_loss`` weighs it by ``lambda_p2v``)."""
        return self.p2v_loss(self(batch), batch, self._generator()).mean()

    def aux_loss(self, batch: TextBatch) -> torch.Tensor:
        """``lambda_p2v * L_p2v`` on the batch's papers (0 without computing when lambda_p2v = 0)."""
        if self.lambda_p2v == 0:
            return self.doc.weight.new_zeros(())
        return self.lambda_p2v * self.p2v_term(batch)

    def infer_vectors(self, batch: TextBatch, steps: int | None = None, lr: float | None = None) -> torch.Tensor:
        """Fit vectors for the batch's papers from their text alone: ``(B, dim)``.

        Paragraph2vec's inference (Le & Mikolov 2014, section 2.2): the output word vectors are
        frozen and only new paper vectors are trained on ``L_p2v`` (Adagrad, ``steps`` full-batch
        steps, seeded so the same model gives the same vectors).
        """
        steps = self.infer_steps if steps is None else int(steps)
        lr = self.infer_lr if lr is None else float(lr)
        gen = torch_generator(self.seed + 2, self.doc.weight.device)
        init = (torch.rand(len(batch), self.out_dim, generator=gen, device=self.doc.weight.device) - 0.5)
        vecs = (init / self.out_dim).requires_grad_(True)  # (B, dim), same start as training rows
        frozen = self.word_out.weight.detach()
        opt = torch.optim.Adagrad([vecs], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                loss = self.p2v_loss(vecs, batch, gen, frozen).sum()  # sum: each paper on its own
                opt.zero_grad()
                loss.backward()
                opt.step()
        return vecs.detach()

    def prepare_cold(self, batch: TextBatch) -> None:
        """Infer the vectors of (cold) papers and store them in the table; called by
        :meth:`HybridRecommender.score_papers` for papers without training likes."""
        vecs = self.infer_vectors(batch)
        with torch.no_grad():
            self.doc.weight[batch.paper_idx] = vecs
