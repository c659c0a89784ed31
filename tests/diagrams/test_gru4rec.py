"""GRU4Rec's diagrams: the network flows from the click to the loss with its carried state and
sampled columns; the session-parallel picture follows the library's steps."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from course_lib.diagrams.gru4rec import draw_gru4rec, draw_session_parallel, gru4rec_diagram, session_parallel_diagram


def test_the_model_diagram_draws_every_part_inside_the_axes():
    ax = draw_gru4rec()
    text = "\n".join(t.get_text() for t in ax.texts)
    for part in ("one-hot", "GRU layer", "$h_t = (1 - z_t)", "zeroed where a new session starts", "$B$ targets",
                 "samples", "BPR-max", "TOP1", "cross-entropy", "detached"):
        assert part in text, part
    boxes, _ = gru4rec_diagram()
    assert len(ax.patches) == len(boxes)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for b in boxes:
        assert x0 < b.x - b.width / 2 and b.x + b.width / 2 < x1 and y0 < b.y - b.height / 2 < b.y + b.height / 2 < y1
    plt.close(ax.figure)


def test_a_click_reaches_the_loss_and_the_state_and_columns_feed_in():
    _, arrows = gru4rec_diagram()
    edges = {a[:2] for a in arrows}
    reached, frontier = set(), {"click"}
    while frontier:
        reached |= frontier
        frontier = {b for a, b in edges if a in frontier} - reached
    assert {"input", "gru", "more", "scores", "loss"} <= reached
    assert ("state", "gru") in edges and ("cols", "scores") in edges


def test_the_session_parallel_picture_follows_the_steps():
    # A = 3 clicks, B = 2, C = 3 with 2 slots: the example table of the notebook
    boxes, arrows = session_parallel_diagram((3, 2, 3), 2)
    by_name = {b.name: b for b in boxes}
    assert [by_name[n].label for n in ("s0t0", "s1t0", "s0t1", "s1t1", "s1t2")] == \
        ["A1 → A2", "B1 → B2", "A2 → A3", "C1 → C2", "C2 → C3"]
    assert len(boxes) == 5  # slot 0 leaves after A ends: no session is left
    # red (a new session) exactly at the starts; the state is carried only inside a session
    assert {b.name for b in boxes if b.role == "loss"} == {"s0t0", "s1t0", "s1t1"}
    assert set(arrows) == {("s0t0", "s0t1"), ("s1t1", "s1t2")}
    ax = draw_session_parallel((3, 2, 3), 2)
    assert len(ax.patches) == 5 and "2 slots" in ax.get_title()
    plt.close(ax.figure)


def test_a_session_of_one_click_is_refused():
    with pytest.raises(ValueError, match=r"lengths\[1\] must be an integer >= 2, got 1"):
        session_parallel_diagram((3, 1), 2)
