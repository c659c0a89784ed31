"""The compiled training step of the Theano track (notebook 06), drawn as its computation graph.

Symbolic inputs and shared variables feed the model's graph; the loss is a graph of the scores;
``theano.grad`` turns it into more graph; the update list (the optimiser, plus the random
generators' state updates) says what the compiled function writes back into the shared variables
after each call. Nothing here runs Theano: it is a picture, drawn with :func:`course_lib.diagrams.draw`.
"""
from __future__ import annotations

from course_lib.diagrams import Box, draw

_WIDE = dict(width=3.4, height=1.0)


def draw_compiled_step(ax=None, figsize=(12.5, 4.2)):
    """The graph that ``compile_training_step`` (notebook 06, Exercise 4) compiles into one function:
    symbolic inputs -> model graph -> loss -> gradients -> update list -> shared variables. Returns the axes."""
    boxes = [
        Box("inputs", "symbolic inputs", 0, 3, role="input", note="ids, mask (B, L), paper_idx (B,)\ntargets (B, n_users)",
            **_WIDE),
        Box("model", "model graph", 4.2, 3, role="layer", note="dropout masks (RNG draws)\nscores s (B, n_users)", **_WIDE),
        Box("loss", "loss graph", 8.4, 3, role="loss", note="weighted MSE L (a scalar)", **_WIDE),
        Box("out", "step(...) returns", 12.6, 3, role="merge", note="the loss L of the batch", **_WIDE),
        Box("shared", "shared variables", 0, 0.6, role="embed", note="weights θ, Adagrad sums G,\nRNG states", **_WIDE),
        Box("updates", "update list", 4.2, 0.6, role="merge",
            note="(G, G + g²)\n(θ, θ − η g / (√G + ε))\n(rng, next rng)", width=3.4, height=1.3),
        Box("grad", "theano.grad(L, θ)", 8.4, 0.6, role="loss", note="g = ∂L/∂θ: more graph", **_WIDE),
    ]
    arrows = [("inputs", "model"), ("shared", "model", " read"), ("model", "loss"), ("loss", "out"), ("loss", "grad"),
              ("grad", "updates"), ("updates", "shared")]
    ax = draw(boxes, arrows, "One compiled training step: the update list is written back after every call",
              ax=ax, figsize=figsize)
    ax.text(2.1, 0.75, "write", fontsize=8, ha="center", va="bottom", color="#333333")
    ax.set_xlim(-1.9, 14.5)  # the boxes are wider than draw's default margin allows for
    ax.set_ylim(-0.3, 3.8)
    return ax
