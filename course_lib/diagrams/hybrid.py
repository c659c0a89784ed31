"""The hybrid flip recommender of the RecSys Summer School 2017 hands-on task, as one diagram.

:func:`draw_hybrid` draws the model of ``course_lib.torch_models.hybrid`` (and of its Theano
twin) from the paper's id and text up to the loss: the item-ID embedding, the content
representation of one of the task sheet's levels (a)-(d), the merge (concatenation, or a sum
after projecting the content with ``W``), the optional ELU processing layers, the product with
the user embeddings, and the losses with their sampled negative users. The four dropout rates of
the task sheet (``dropout_item``, ``dropout_content``, ``dropout_hidden``, ``dropout_user``) are
written on the boxes they act on. Notebooks 01, 02, 03 and 06 call it with their level.
"""
from __future__ import annotations

from course_lib.diagrams import Box, draw
from course_lib.validation import check_choice

LEVELS = {
    "a": ("TF-IDF weighted average\nof word vectors", "fine-tuning optional"),
    "b": ("pretrained paragraph\nvector (PV-DBOW)", "inferred for a new paper"),
    "c": ("paragraph vector\ntrained end to end", "plus its own PV-DBOW loss"),
    "d": ("GRU over the\npaper's words", "trained end to end"),
}
"""Content level -> (what the content box says, its second line), after the task sheet."""

TITLES = {
    "a": "level (a): TF-IDF weighted word vectors",
    "b": "level (b): pretrained paragraph vectors",
    "c": "level (c): paragraph vectors trained end to end",
    "d": "level (d): a GRU trained end to end",
}


def hybrid_diagram(level: str = "a") -> tuple[list[Box], list[tuple]]:
    """The boxes and arrows of the hybrid recommender with content level ``level`` (``"a"``-``"d"``)."""
    check_choice("level", level, tuple(LEVELS))
    content, content_note = LEVELS[level]
    w = 2.6  # wide enough for two lines of about 24 characters
    boxes = [
        Box("paper_id", "paper id $j$", 0.0, 0.0, role="input", width=w),
        Box("text", "paper text (word ids)", 4.2, 0.0, role="input", width=w),
        Box("item", "item-ID embedding $v_j$", 0.0, 1.3, role="embed", width=w,
            note="0 for a cold paper\ndropout_item"),
        Box("content", f"content $c_j$: {content}", 4.2, 1.4, role="embed", width=w, height=1.0,
            note=f"{content_note}\ndropout_content"),
        Box("merge", "merge: concat $[v_j ; c_j]$", 2.1, 2.7, role="merge", width=w,
            note="or sum $v_j + W c_j$"),
        Box("layers", "optional layers $h \\leftarrow \\mathrm{ELU}(A h + b)$", 2.1, 3.9, role="layer", width=w + 0.6,
            note="ELU $\\alpha = 1$ · dropout_hidden"),
        Box("users", "user embeddings $u_i$, bias $b_i$", 6.5, 5.1, role="embed", width=w,
            note="all $n$ users · dropout_user"),
        Box("scores", "scores $s_{ji} = h_j \\cdot u_i + b_i$", 2.1, 5.1, role="merge", width=w,
            note="one per user: $(n,)$"),
        Box("targets", "likes of paper $j$ (1 / 0)", 6.5, 6.3, role="input", width=w,
            note="+ sampled negative users"),
        Box("loss", "loss: weighted MSE ($\\alpha \\gg 1$)", 2.1, 6.3, role="loss", width=w + 0.6,
            note="or BPR / listwise over sampled negatives"),
    ]
    arrows = [("paper_id", "item"), ("text", "content"), ("item", "merge"), ("content", "merge"),
              ("merge", "layers", "$h_j$"), ("layers", "scores"), ("users", "scores"), ("scores", "loss"),
              ("targets", "loss")]
    if level == "c":
        boxes.append(Box("aux", "PV-DBOW loss of\nthe paper's words", 6.5, 3.3, role="loss", width=w, height=0.9,
                         note="weight $\\lambda$"))
        arrows += [("content", "aux"), ("aux", "loss", "+")]
    return boxes, arrows


def draw_hybrid(level: str = "a", ax=None, title: str | None = None):
    """Draw the hybrid recommender with content level ``level`` (``"a"``-``"d"``); returns the axes.

    From the bottom: the paper's id and text, the item-ID embedding and the content representation
    of the level, the merge, the optional ELU layers, the scores of all users, the loss (level
    (c) adds its paragraph-vector term)."""
    boxes, arrows = hybrid_diagram(level)
    ax = draw(boxes, arrows, title or f"The hybrid recommender, content {TITLES[level]}", ax=ax, figsize=(12, 9.5))
    # draw() leaves 1.3 units beside the outermost centres; these boxes are wider than that
    ax.set_xlim(min(b.x - b.width / 2 for b in boxes) - 0.2, max(b.x + b.width / 2 for b in boxes) + 0.2)
    return ax
