"""The diagram primitive: boxes and arrows land where they are placed, bad names are refused."""
import matplotlib

matplotlib.use("Agg")
import pytest

from course_lib.diagrams import Box, draw


def test_draw_places_every_box_and_arrow():
    boxes = [Box("a", "input", 0, 0, role="input"), Box("b", "layer", 0, 2, note="(B, 64)")]
    ax = draw(boxes, [("a", "b", "x")], "tiny")
    assert len(ax.patches) == 2
    # the arrow itself is an annotation with empty text
    assert sorted(t.get_text() for t in ax.texts) == ["", "input", "layer\n(B, 64)", "x"]
    assert ax.get_title() == "tiny"
    assert ax.get_ylim() == (-0.8, 2.8)


def test_unknown_arrow_end_and_role_are_refused():
    with pytest.raises(ValueError, match=r"arrows name boxes that do not exist: \['c'\]"):
        draw([Box("a", "x", 0, 0)], [("a", "c")], "t")
    with pytest.raises(ValueError, match="role must be one of"):
        draw([Box("a", "x", 0, 0, role="nope")], [], "t")
