"""The level (c) diagram: both branches read the one paper vector, and both losses reach the joint loss."""
import matplotlib

matplotlib.use("Agg")

from course_lib.diagrams import e2e


def _reaches(start: str, goal: str) -> bool:
    edges = {}
    for arrow in e2e.ARROWS:
        edges.setdefault(arrow[0], []).append(arrow[1])
    todo, seen = [start], set()
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += edges.get(node, [])
    return False


def test_the_paper_vector_feeds_both_losses_and_the_word_vectors_only_the_text_loss():
    assert _reaches("doc", "rec") and _reaches("doc", "p2v")
    assert _reaches("wout", "p2v") and not _reaches("wout", "rec")
    assert _reaches("item", "rec") and not _reaches("item", "p2v")
    assert all(_reaches(name, "joint") for name in ("paper", "words", "noise", "users"))


def test_draw_e2e_draws_every_box_with_its_label():
    ax = e2e.draw_e2e()
    assert len(ax.patches) == len(e2e.BOXES)
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("paper vector $d_j$") for t in texts)
    assert any("\\lambda_{p2v}" in t for t in texts)
    assert ax.get_title().startswith("Level (c)")
