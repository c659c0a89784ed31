"""Level (c) of the hands-on task: paragraph vectors trained end to end with the recommender.

The paper vector ``d_j`` is one table shared by two branches: the recommender (left), which merges
it with the item-ID embedding and scores every user, and PV-DBOW (right), which asks ``d_j`` to
predict words of the paper against noise words. The joint loss ``L_rec + lambda_p2v L_p2v`` sends
gradients into ``d_j`` from both (:mod:`course_lib.torch_models.e2e_paragraph`).
"""
from __future__ import annotations

from course_lib.diagrams import Box, draw

BOXES = [
    # the recommender branch
    Box("paper", "paper id $j$", 1.4, 0, role="input"),
    Box("item", "item-ID embedding $v_j$", 0, 1.4, role="embed", note="zero for a cold paper", width=2.5),
    Box("doc", "paper vector $d_j$", 3.0, 1.4, role="embed", note="shared by both branches", width=2.5),
    Box("merge", "concat $[v_j; d_j]$", 1.4, 2.8, role="merge", width=2.2),
    Box("layers", "ELU layers (optional)", 1.4, 4.2, role="layer", note="$h$", width=2.5),
    Box("users", "user embeddings $U$", -1.6, 5.6, role="embed", width=2.4),
    Box("scores", "scores $h\\,U^T + b$", 1.4, 5.6, role="merge", note="(B, n_users)", width=2.2),
    Box("rec", "$L_{rec}$", 1.4, 7.0, role="loss", note="listwise / BPR / weighted MSE", width=2.8),
    # the PV-DBOW branch
    Box("words", "$T$ words of paper $j$", 5.6, 0, role="input", width=2.4),
    Box("noise", "$K$ noise words per word", 8.2, 0, role="input", width=2.4),
    Box("wout", "output word vectors $u$", 6.9, 1.4, role="embed", width=2.6),
    Box("pv", "$\\sigma(d_j \\cdot u_w)$, $\\sigma(-d_j \\cdot u_n)$", 5.6, 2.8, role="merge", width=2.8),
    Box("p2v", "$L_{p2v}$", 5.6, 7.0, role="loss", note="PV-DBOW, negative sampling", width=2.8),
    # where they meet
    Box("joint", "$L = L_{rec} + \\lambda_{p2v}\\, L_{p2v}$", 3.5, 8.4, role="loss", width=3.2),
]

ARROWS = [
    ("paper", "item"), ("paper", "doc"), ("item", "merge"), ("doc", "merge"), ("merge", "layers"),
    ("layers", "scores"), ("users", "scores"), ("scores", "rec"),
    ("words", "wout"), ("noise", "wout"), ("doc", "pv"), ("wout", "pv"), ("pv", "p2v", "mean over the $T$ words"),
    ("rec", "joint"), ("p2v", "joint"),
]


def draw_e2e(ax=None):
    """The level (c) model: the recommender and PV-DBOW branches sharing the paper vector ``d_j``;
    returns the matplotlib axes."""
    return draw(BOXES, ARROWS, "Level (c): paragraph vectors trained end to end with the recommender",
                ax=ax, figsize=(10, 7.5))
