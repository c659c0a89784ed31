"""Which words made the model recommend a paper? Per-word saliency of Ask the GRU (section 4.3).

For a user ``i`` and a paper ``j`` with word embeddings ``e_{j,1..n_j}``, the saliency of word ``t``
is ``|| d r_ij / d e_{j,t} ||``: backpropagate the score to the embeddings and take the norm over
the embedding dimension (the paper's Figure 2 uses it, after Denil et al. 2014 and Li et al. 2016).
The model is put in eval mode so that dropout does not blur the picture.

Note that for the *Embed* encoder (a plain mean) every position gets the same saliency
``||u_i|| / n_j``: only an order-aware encoder can single words out.
"""
from __future__ import annotations

import numpy as np
import torch

from course_lib.data import check_ids
from course_lib.torch_models.askgru import AskGRU, score
from course_lib.torch_models.content import make_text_batch
from course_lib.torch_models.utils import resolve_device


def word_saliency(model: AskGRU, texts, paper: int, users, device="auto") -> np.ndarray:
    """``|| d r_ij / d e_{j,t} ||`` for one paper and each user in ``users``: ``(n_users, n_tokens)``.

    ``texts`` is the :class:`course_lib.text.EncodedCorpus` the model was trained on; the columns
    are the paper's real tokens (its padding is left out).
    """
    dev = resolve_device(device)
    paper = int(check_ids([paper], model.n_papers, "paper")[0])
    users = check_ids(np.atleast_1d(users), model.n_users, "user")
    if users.size == 0:
        raise ValueError("users is empty: pass at least one user id")
    n_tokens = int(np.asarray(texts.lengths)[paper])
    if n_tokens == 0:
        raise ValueError(f"paper {paper} has no tokens, so there is no word to score")
    was_training = model.training
    model.eval().to(dev)
    # one copy of the paper per user: the copies do not interact, so one backward pass gives all
    batch = make_text_batch(texts, np.full(users.size, paper), device=dev)  # ids (U, L)
    # cuDNN only differentiates RNNs in training mode; the plain kernels do it in eval mode too
    with torch.backends.cudnn.flags(enabled=False):
        emb = model.encoder.embed(batch.ids).detach().requires_grad_(True)  # (U, L, K_w)
        g = model.encoder.encode_embedded(emb, batch.mask)  # (U, K)
        warm = model.warm[batch.paper_idx].unsqueeze(-1).to(g.dtype)
        f = g + warm * model.item_emb[batch.paper_idx]  # eq. (4)
        r = model.score_pairs(torch.as_tensor(users, device=dev), f, batch.paper_idx)  # (U,)
        (grad,) = torch.autograd.grad(r.sum(), emb)  # (U, L, K_w)
    model.train(was_training)
    return grad.norm(dim=-1)[:, :n_tokens].detach().cpu().numpy()


def top_users(model: AskGRU, texts, paper: int, n_top: int = 10, device="auto") -> np.ndarray:
    """The ``n_top`` users with the highest predicted score ``r_ij`` for ``paper``, best first."""
    if n_top < 1:
        raise ValueError(f"n_top must be >= 1, got {n_top}")
    paper = int(check_ids([paper], model.n_papers, "paper")[0])
    scores = score(model, texts, papers=[paper], device=device)[:, 0]  # (n_users,)
    return np.argsort(-scores, kind="stable")[: min(n_top, model.n_users)]


def paper_saliency(model: AskGRU, texts, paper: int, user: int | None = None, n_top: int = 10,
                   device="auto") -> tuple[np.ndarray, np.ndarray]:
    """Saliency of each word of ``paper``: for ``user``, or averaged over its ``n_top`` top users.

    Returns ``(saliency (n_tokens,), users used)``.
    """
    users = np.array([user]) if user is not None else top_users(model, texts, paper, n_top, device)
    return word_saliency(model, texts, paper, users, device).mean(axis=0), users


def saliency_explorer(model: AskGRU, texts, vocab, titles, papers=None, n_top: int = 10, max_matches: int = 50,
                      device="auto"):
    """The interactive explorer of :func:`course_lib.widgets.saliency_explorer` for this model:
    saliency by :func:`paper_saliency` (one user, or the mean over the paper's ``n_top`` top users)."""
    from course_lib.widgets import saliency_explorer as explorer

    def saliency_fn(paper, user):
        return paper_saliency(model, texts, paper, user=user, n_top=n_top, device=device)

    return explorer(saliency_fn, texts, vocab, titles, papers=papers, max_matches=max_matches)
