"""GRU4Rec (Hidasi et al., ICLR 2016) as diagrams: the network for one click, and session-parallel
mini-batches.

:func:`draw_gru4rec` draws the model of ``course_lib.torch_models.gru4rec`` for one step of a
session (the paper's Figure 1 with the later sampled output): the current click as a one-hot
vector, which picks a row of the input weights (or an embedding), the GRU layers with the hidden
state carried to the next click and zeroed when a new session starts, the scores of the
mini-batch's targets and the extra samples, and the ranking loss with the target on the diagonal.

:func:`draw_session_parallel` draws the paper's Figure 2 for a few made-up sessions, from the steps
that :func:`course_lib.sessions.session_parallel_batches` yields: one row per slot, one column per
step, each box an (input -> target) pair, an arrow where the hidden state is carried, a red box where
a new session takes the slot and its state starts from zero.
"""
from __future__ import annotations

import string

import numpy as np

from course_lib.diagrams import Box, draw
from course_lib.validation import check_int


def gru4rec_diagram() -> tuple[list[Box], list[tuple]]:
    """The boxes and arrows of GRU4Rec for one click of every slot of a mini-batch."""
    w = 3.9  # two lines of about 40 characters
    boxes = [
        Box("click", "current click $x_t$ of each slot", 0.0, 0.0, role="input", width=w,
            note="one-hot over the $N$ items: $(B, N)$"),
        Box("input", "input row of $x_t$: $W_x[x_t] + b$", 0.0, 1.3, role="embed", width=w,
            note="one-hot $\\times W_x$ = a row lookup $(B, 3h)$"),
        Box("gru", "GRU layer: gates $r_t, z_t$, candidate $\\hat h_t$", 0.0, 2.6, role="layer", width=w,
            note="$h_t = (1 - z_t)\\, h_{t-1} + z_t\\, \\hat h_t$"),
        Box("state", "hidden state $h_{t-1}$ of each slot", 5.0, 2.6, role="layer", width=w,
            note="zeroed where a new session starts"),
        Box("more", "more GRU layers (optional)", 0.0, 3.9, role="layer", width=w,
            note="layer $k$ reads layer $k-1$'s $h_t$"),
        Box("scores", "scores $\\hat r = W_y h_t + b_y$", 0.0, 5.2, role="merge", width=w,
            note="training: $(B, B + S)$; evaluation: all $N$ items"),
        Box("cols", "output columns: the $B$ targets", 5.0, 5.2, role="input", width=w,
            note="+ $S$ samples $\\propto$ popularity$^{\\alpha}$"),
        Box("loss", "loss: BPR-max, TOP1 or cross-entropy", 0.0, 6.5, role="loss", width=w,
            note="row $i$'s target sits in column $i$"),
    ]
    arrows = [("click", "input"), ("input", "gru", "$W_x x_t + b$"), ("state", "gru", "$h_{t-1}$"),
              ("gru", "more", "$h_t$"), ("more", "scores"), ("cols", "scores"), ("scores", "loss")]
    return boxes, arrows


def draw_gru4rec(ax=None, title: str | None = None):
    """Draw GRU4Rec for one click (input, GRU layers with their carried state, sampled scores, loss);
    returns the axes. The new state goes back to the state box for the slot's next click, detached
    (one-step back-propagation through time)."""
    boxes, arrows = gru4rec_diagram()
    ax = draw(boxes, arrows, title or "GRU4Rec: one click of every slot of a session-parallel mini-batch", ax=ax,
              figsize=(11, 8))
    gru, state = next(b for b in boxes if b.name == "gru"), next(b for b in boxes if b.name == "state")
    # the new state goes back to the slot's state for its next click: an arc above the arrow h_{t-1}
    start, end = (gru.x + gru.width / 2 + 0.05, gru.y + 0.2), (state.x, state.y + state.height / 2 + 0.05)
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="#333333", linestyle="--",
                                                          connectionstyle="arc3,rad=-0.5"))
    ax.text((start[0] + end[0]) / 2, gru.y + 1.2, "$h_t$, kept for the slot's next click\n(detached: one-step BPTT)",
            fontsize=8, color="#333333", ha="center", va="bottom")
    ax.set_xlim(min(b.x - b.width / 2 for b in boxes) - 0.2, max(b.x + b.width / 2 for b in boxes) + 0.2)
    return ax


def session_parallel_diagram(lengths=(4, 2, 3, 2, 3), batch_size: int = 3) -> tuple[list[Box], list[tuple]]:
    """Boxes (one per slot and step, labelled input -> target) and arrows (the state carried along a
    slot) of session-parallel mini-batches over sessions of the given ``lengths`` (each >= 2)."""
    from course_lib.sessions import session_parallel_batches  # noqa: PLC0415

    lengths = [check_int(f"lengths[{k}]", n, minimum=2) for k, n in enumerate(lengths)]
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if len(lengths) > len(string.ascii_uppercase):
        raise ValueError(f"at most {len(string.ascii_uppercase)} sessions can be drawn, got {len(lengths)}")
    offsets = np.r_[0, np.cumsum(lengths)]
    session_of = np.repeat(np.arange(len(lengths)), lengths)

    def event(e: int) -> str:
        s = session_of[e]
        return f"{string.ascii_uppercase[s]}{e - offsets[s] + 1}"

    boxes, arrows, last = [], [], {}
    for t, step in enumerate(session_parallel_batches(offsets, batch_size)):
        for slot, i, o, reset in zip(step.slots, step.inp, step.out, step.reset):
            name = f"s{slot}t{t}"
            boxes.append(Box(name, f"{event(i)} → {event(o)}", 2.2 * t, -1.1 * slot,
                             role="loss" if reset else "input", width=1.5, height=0.6))
            if slot in last and not reset:
                arrows.append((last[slot], name))
            last[slot] = name
    return boxes, arrows


def draw_session_parallel(lengths=(4, 2, 3, 2, 3), batch_size: int = 3, ax=None, title: str | None = None):
    """Draw session-parallel mini-batches (the paper's Figure 2): rows are slots, columns are steps,
    red boxes start a new session (state zeroed); returns the axes."""
    boxes, arrows = session_parallel_diagram(lengths, batch_size)
    names = ", ".join(f"{string.ascii_uppercase[k]} ({n} clicks)" for k, n in enumerate(lengths))
    ax = draw(boxes, arrows, title or f"Session-parallel mini-batches: sessions {names}, {batch_size} slots", ax=ax,
              figsize=(10, 3.6))
    n_slots = min(batch_size, len(lengths))
    for slot in range(n_slots):
        ax.text(min(b.x for b in boxes) - 1.0, -1.1 * slot, f"slot {slot}", ha="right", va="center", fontsize=9)
    for t in range(int(max(b.x for b in boxes) / 2.2) + 1):
        ax.text(2.2 * t, 0.6, f"step {t}", ha="center", va="bottom", fontsize=9)
    bottom = -1.1 * (n_slots - 1) - 0.6
    legend = ("red: a new session takes the slot, its state starts at zero\n"
              "blue: the state is carried along the arrow; a slot with no session left leaves the batch")
    ax.text(min(b.x for b in boxes) - 0.75, bottom - 0.15, legend, ha="left", va="top", fontsize=8)
    ax.set_xlim(min(b.x for b in boxes) - 1.8, max(b.x for b in boxes) + 1.0)
    ax.set_ylim(bottom - 0.6, 1.1)
    return ax
