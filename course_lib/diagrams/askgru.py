"""The Ask-the-GRU model (Bansal et al. 2016, Figure 1 and section 3) as a box-and-arrow diagram.

Bottom row: the text encoder ``g`` (word embeddings -> bidirectional GRU -> GRU -> mean over the
real words). Above it the item representation ``f(X_j) = g(X_j) + v_j`` (eq. 4), the score
``r_ij = b_i + b_j + u_i . f(X_j)`` (eq. 3) with its confidence-weighted squared loss (eq. 2), and
the tag head ``p_jl = sigma(f(X_j) . t_l)`` with its cost, mixed by ``lambda`` (section 3.3).
"""
from __future__ import annotations

from course_lib.diagrams import Box, draw

_W = 2.2  # the boxes of this diagram carry formulas: a little wider than the default


def askgru_boxes() -> tuple[list[Box], list[tuple]]:
    """The boxes and arrows of :func:`draw_askgru` (also what its test inspects)."""
    boxes = [
        # the text encoder g(X_j), read left to right
        Box("words", "paper j: words", 0.0, 0.0, role="input", note=r"$w_1 \dots w_n$ and a mask", width=_W),
        Box("emb", "word embeddings", 2.6, 0.0, role="embed", note=r"$e_t$: (B, L, $K_w$)", width=_W),
        Box("gru1", "bidirectional GRU", 5.2, 0.0, note=r"layer 1: (B, L, $2K_{h1}$)", width=_W),
        Box("gru2", "GRU", 7.8, 0.0, note=r"layer 2: (B, L, $K_{h2}$)", width=_W),
        Box("pool", "masked mean", 10.4, 0.0, role="merge", note=r"$g(X_j)$: (B, K)", width=_W),
        # the item representation and the score
        Box("item", r"item embedding $v_j$", 7.8, 1.3, role="embed", note="0 for a cold paper", width=_W),
        Box("f", r"$f(X_j) = g(X_j) + v_j$", 10.4, 1.3, role="merge", note="eq. 4: (B, K)", width=_W),
        Box("user", "user i", 5.2, 2.6, role="input", width=_W),
        Box("uemb", "user embedding", 7.8, 2.6, role="embed", note=r"$u_i$, bias $b_i$", width=_W),
        Box("score", "dot product", 10.4, 2.6, role="merge", note=r"$r_{ij} = b_i + b_j + u_i^\top f$", width=_W),
        Box("rec", r"$C_R$: squared loss", 10.4, 3.9, role="loss", note=r"weighted by $c_{ij}$ (eq. 2)", width=_W),
        # the second task: tags
        Box("temb", r"tag embeddings $t_l$", 13.0, 0.0, role="embed", note="(n_tags, K)", width=_W),
        Box("tags", "tag prediction", 13.0, 1.3, role="merge", note=r"$p_{jl} = \sigma(f^\top t_l)$", width=_W),
        Box("tagcost", r"$C_T$: weighted tag", 13.0, 2.6, role="loss", note="log-likelihood (3.3)", width=_W),
        Box("cost", r"$C = \lambda C_R$", 13.0, 3.9, role="loss", note=r"$+ (1 - \lambda) C_T$", width=_W),
    ]
    arrows = [
        ("words", "emb"), ("emb", "gru1"), ("gru1", "gru2"), ("gru2", "pool"), ("pool", "f"), ("item", "f"),
        ("user", "uemb"), ("uemb", "score"), ("f", "score"), ("score", "rec"),
        ("f", "tags"), ("temb", "tags"), ("tags", "tagcost"), ("tagcost", "cost"), ("rec", "cost"),
    ]
    return boxes, arrows


def draw_askgru(ax=None):
    """Draw the Ask-the-GRU model with multi-task learning; returns the matplotlib axes."""
    boxes, arrows = askgru_boxes()
    return draw(boxes, arrows, "Ask the GRU: text encoder, score, and the tag task (Bansal et al. 2016, Fig. 1)",
                ax=ax, figsize=(12, 4.4))
