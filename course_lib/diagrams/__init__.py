"""Model diagrams drawn with matplotlib, one module per model (``hybrid``, ``askgru``, ``gru4rec``).

A diagram is a list of :class:`Box` (a labelled rectangle at a grid position) and arrows between
box names, drawn by :func:`draw`. Notebooks call a model's ``draw_*`` function in a cell, so the
figure is stored with the master notebook and redrawn in the student one (and on Colab) without
any image file to keep in sync.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

# colours by role, the same in every diagram of the course
ROLE_COLOURS = {
    "input": "#dbe9f6",    # data that comes in (ids, words, clicks)
    "embed": "#fde6c8",    # embedding tables and content representations
    "layer": "#e3f1da",    # trainable layers (GRU, dense, ELU)
    "merge": "#efe0f3",    # merges, products, scores
    "loss": "#f8d7d7",     # losses and training signals
}


@dataclass(frozen=True)
class Box:
    """A labelled box centred at ``(x, y)`` in diagram units (1 unit ~ one box width).

    ``role`` picks the colour (:data:`ROLE_COLOURS`); ``note`` is a smaller second line, e.g. a shape."""

    name: str
    label: str
    x: float
    y: float
    role: str = "layer"
    note: str = ""
    width: float = 1.8
    height: float = 0.7


def draw(boxes: Sequence[Box], arrows: Sequence[tuple[str, str] | tuple[str, str, str]], title: str,
         ax=None, figsize=(8, 4.5)):
    """Draw ``boxes`` and the ``arrows`` between them (``(from, to)`` or ``(from, to, label)``); returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    by_name = {b.name: b for b in boxes}
    unknown = sorted({n for a in arrows for n in a[:2]} - set(by_name))
    if unknown:
        raise ValueError(f"arrows name boxes that do not exist: {unknown}")
    if ax is None:
        ax = plt.subplots(figsize=figsize)[1]
    for b in boxes:
        colour = ROLE_COLOURS.get(b.role)
        if colour is None:
            raise ValueError(f"box {b.name!r}: role must be one of {sorted(ROLE_COLOURS)}, got {b.role!r}")
        ax.add_patch(FancyBboxPatch((b.x - b.width / 2, b.y - b.height / 2), b.width, b.height,
                                    boxstyle="round,pad=0.05", facecolor=colour, edgecolor="#444444"))
        text = b.label if not b.note else f"{b.label}\n{b.note}"
        ax.text(b.x, b.y, text, ha="center", va="center", fontsize=9)
    for arrow in arrows:
        a, c = by_name[arrow[0]], by_name[arrow[1]]
        # leave from the edge of the box facing the target, so arrows do not cross box labels
        dx, dy = c.x - a.x, c.y - a.y
        if abs(dy) * a.width >= abs(dx) * a.height:
            start = (a.x, a.y + (a.height / 2 + 0.05) * (1 if dy > 0 else -1))
            end = (c.x, c.y - (c.height / 2 + 0.05) * (1 if dy > 0 else -1))
        else:
            start = (a.x + (a.width / 2 + 0.05) * (1 if dx > 0 else -1), a.y)
            end = (c.x - (c.width / 2 + 0.05) * (1 if dx > 0 else -1), c.y)
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="#333333"))
        if len(arrow) == 3:
            ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, arrow[2], fontsize=8, color="#333333",
                    ha="left", va="center")
    xs = [b.x for b in boxes]
    ys = [b.y for b in boxes]
    ax.set_xlim(min(xs) - 1.3, max(xs) + 1.3)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title)
    return ax
