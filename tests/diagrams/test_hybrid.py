"""The hybrid recommender's diagram: every part of the task sheet's model is drawn, at every level."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from course_lib.diagrams.hybrid import LEVELS, draw_hybrid, hybrid_diagram


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_each_level_draws_the_whole_model_with_its_content(level):
    ax = draw_hybrid(level)
    text = "\n".join(t.get_text() for t in ax.texts)
    for part in ("item-ID embedding", "merge: concat", "sum $v_j + W c_j$", "ELU", "user embeddings", "scores",
                 "weighted MSE", "BPR / listwise", "sampled negative users", LEVELS[level][0]):
        assert part in text, part
    for rate in ("dropout_item", "dropout_content", "dropout_hidden", "dropout_user"):
        assert text.count(rate) == 1, rate  # each of the four dropouts, on the box it acts on
    boxes, arrows = hybrid_diagram(level)
    assert len(ax.patches) == len(boxes)
    # every box lies inside the axes, so none is cut off in the stored figure
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for b in boxes:
        assert x0 < b.x - b.width / 2 and b.x + b.width / 2 < x1 and y0 < b.y - b.height / 2 < b.y + b.height / 2 < y1
    assert f"level ({level})" in ax.get_title()
    plt.close(ax.figure)


def test_only_level_c_adds_the_paragraph_vector_loss_to_the_training_loss():
    for level in sorted(LEVELS):
        names = {a[:2] for a in hybrid_diagram(level)[1]}
        assert (("aux", "loss") in names) == (level == "c"), level


def test_the_paper_flows_from_its_id_and_text_to_the_loss():
    boxes, arrows = hybrid_diagram("b")
    edges = {a[:2] for a in arrows}
    reached, frontier = set(), {"paper_id", "text"}
    while frontier:
        reached |= frontier
        frontier = {b for a, b in edges if a in frontier} - reached
    assert {"item", "content", "merge", "layers", "scores", "loss"} <= reached
    assert ("users", "scores") in edges and ("targets", "loss") in edges


def test_an_unknown_level_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"level must be one of .*'a'.*got 'e'"):
        draw_hybrid("e")
