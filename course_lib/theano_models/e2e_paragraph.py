"""Level (c) of the hands-on task in the Theano track: paragraph vectors trained end to end with the recommender.

As :mod:`course_lib.torch_models.e2e_paragraph`: the content vector of paper ``j`` is a row
``d_j`` of a learnt table, which gets gradients from the recommendation loss and from the PV-DBOW
loss with negative sampling (Le & Mikolov 2014; Mikolov et al. 2013 eq. 4), weighted by ``lambda_p2v``::

    L = L_rec + lambda_p2v * L_p2v
    L_p2v = 1/(B T) sum_j sum_t [ -log s(d_j . u_{w_jt}) - sum_k log s(-d_j . u_{n_tk}) ]

The sampled words ``(B, T)`` and noise words ``(T, K)`` are drawn in numpy
(:meth:`EndToEndParagraphVectors.sample_words`, the shared :func:`course_lib.training.sample_words`)
and fed to the compiled step as inputs (:meth:`EndToEndParagraphVectors.aux_inputs`). Cold papers get
vectors inferred from their text with the output word vectors frozen
(:meth:`EndToEndParagraphVectors.prepare_cold`, called by ``score_papers``).
"""
from __future__ import annotations

import numpy as np

from course_lib import training
from course_lib.theano_models.compat import Params, T, function, log_sigmoid, theano


def negative_sampling_loss(pos_scores, neg_scores):
    """Per-paper PV-DBOW loss, averaged over its sampled positions: symbolic ``(B,)``.

    ``pos_scores`` ``(B, T)`` are ``d_j . u_t`` for the words seen in the paper, ``neg_scores``
    ``(B, T, K)`` are ``d_j . u_tk`` for the noise words.
    ``l_j = 1/T sum_t [ -log s(d_j . u_t) - sum_k log s(-d_j . u_tk) ]``.
    """
    if pos_scores.ndim != 2 or neg_scores.ndim != 3:
        raise ValueError(f"pos_scores must be (B, T) and neg_scores (B, T, K); got {pos_scores.ndim} and "
                         f"{neg_scores.ndim} dimensions")
    return (-log_sigmoid(pos_scores) - log_sigmoid(-neg_scores).sum(axis=2)).mean(axis=1)


class EndToEndParagraphVectors:
    """Paragraph vectors as a content encoder whose auxiliary loss is ``lambda_p2v * L_p2v``.

    Called symbolically it returns the papers' rows ``d_j`` ``(B, dim)``; :meth:`aux_loss` is the
    weighted PV-DBOW loss of those papers on the sampled words. ``word_counts`` ``(vocab_size,)``
    are the corpus counts of each word id; padding (id 0) is never drawn as noise.
    ``init_vectors`` optionally starts the table from pretrained paragraph vectors (level (b)).
    """

    def __init__(self, n_papers: int, word_counts, dim: int = 64, *, lambda_p2v: float = 1.0, negative: int = 5,
                 n_words: int = 50, ns_exponent: float = 0.75, init_vectors=None, infer_steps: int = 100,
                 infer_lr: float = 0.1, seed: int = 0, dtype: str | None = None):
        self._cdf = training.noise_cdf(word_counts, ns_exponent)  # (vocab_size,)
        training.check_p2v_sizes(dim, lambda_p2v, negative, n_words, infer_steps, infer_lr)
        if not (isinstance(n_papers, (int, np.integer)) and n_papers >= 1):
            raise ValueError(f"n_papers must be an integer >= 1, got {n_papers!r}")
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

    def check(self, ids, mask, paper_idx) -> None:
        if np.asarray(ids).max(initial=0) >= self.vocab_size:
            raise ValueError(f"word ids must be in [0, {self.vocab_size}) (the vocabulary of word_counts), "
                             f"got {int(np.asarray(ids).max())}")

    def __call__(self, ids, mask, paper_idx, train=False, stream=None):
        return self.params["doc.weight"][paper_idx]  # (B, dim)

    def p2v_loss(self, doc, words, noise, word_out=None):
        """Per-paper PV-DBOW loss ``(B,)`` of the vectors ``doc`` ``(B, dim)``."""
        w = self.params["word_out.weight"] if word_out is None else word_out
        pos = (doc[:, None, :] * w[words]).sum(axis=2)  # (B, T)
        neg = T.dot(doc, w[noise.flatten()].T).reshape((doc.shape[0], noise.shape[0], noise.shape[1]))  # (B, T, K)
        return negative_sampling_loss(pos, neg)

    def aux_inputs(self) -> list:
        return [self.words, self.noise]

    def p2v_term(self, paper_idx):
        """Symbolic ``L_p2v`` (unweighted) of the papers ``paper_idx`` on the sampled words."""
        return self.p2v_loss(self.params["doc.weight"][paper_idx], self.words, self.noise).mean()

    def aux_loss(self, paper_idx):
        """Symbolic ``lambda_p2v * L_p2v`` of the papers ``paper_idx`` on the sampled words."""
        term = self.p2v_term(paper_idx)
        return np.asarray(self.lambda_p2v, dtype=term.dtype) * term

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
