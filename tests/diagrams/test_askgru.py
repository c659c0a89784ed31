"""The Ask-the-GRU diagram shows the paper's data flow: text to item vector, score and both costs."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from course_lib.diagrams.askgru import askgru_boxes, draw_askgru


def _reaches(arrows, start, goal):
    step = {}
    for a, b in arrows:
        step.setdefault(a, []).append(b)
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(step.get(node, []))
    return False


def test_the_words_reach_both_costs_through_the_encoder_and_the_item_vector():
    boxes, arrows = askgru_boxes()
    arrows = [a[:2] for a in arrows]
    # the encoder is a chain in the order of Figure 1
    chain = ["words", "emb", "gru1", "gru2", "pool", "f"]
    assert all((a, b) in arrows for a, b in zip(chain, chain[1:]))
    assert _reaches(arrows, "words", "rec") and _reaches(arrows, "words", "tagcost")
    # users never touch the tags; the tags never touch the score
    assert not _reaches(arrows, "user", "tags") and not _reaches(arrows, "temb", "score")
    assert {("rec", "cost"), ("tagcost", "cost"), ("item", "f")} <= set(arrows)
    roles = {b.name: b.role for b in boxes}
    assert roles["rec"] == roles["tagcost"] == roles["cost"] == "loss"


def test_draw_askgru_draws_every_box_with_its_formula():
    boxes, _ = askgru_boxes()
    ax = draw_askgru()
    assert len(ax.patches) == len(boxes) == 15
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "g(X_j) + v_j" in texts and r"\sigma(f^\top t_l)" in texts and "masked mean" in texts
    assert "Ask the GRU" in ax.get_title()
    plt.close(ax.figure)
