"""The compiled-step diagram of notebook 06: every stage of the step is drawn, inside the axes."""
import matplotlib

matplotlib.use("Agg")

from course_lib.diagrams.theano import draw_compiled_step


def test_the_compiled_step_diagram_shows_every_stage_inside_the_axes():
    ax = draw_compiled_step()
    labels = [t.get_text().split("\n")[0] for t in ax.texts]
    for stage in ("symbolic inputs", "model graph", "loss graph", "theano.grad(L, θ)", "update list",
                  "shared variables", "step(...) returns"):
        assert stage in labels, labels
    assert len(ax.patches) == 7
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for patch in ax.patches:  # no box is cut off at the edge of the figure
        box = patch.get_bbox()
        assert x0 <= box.x0 and box.x1 <= x1 and y0 <= box.y0 and box.y1 <= y1, box
