"""Shared figures: they draw what they are given, label it, and refuse empty input in words."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from course_lib.plots import flip_recall_curve, plot_learning_curve, plot_recall_vs_m, plot_results_bar  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_learning_curve_plots_loss_and_validation_on_two_axes():
    hist = {"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "aux_loss": [0, 0, 0],
            "valid_Recall@50": [0.1, 0.3, 0.2], "best_epoch": [2]}
    ax = plot_learning_curve(hist)
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), [3.0, 2.0, 1.5])
    right = [a for a in ax.figure.axes if a is not ax][0]
    np.testing.assert_array_equal(right.get_lines()[0].get_ydata(), [0.1, 0.3, 0.2])
    assert ax.get_lines()[-1].get_xdata()[0] == 2  # the best epoch is marked
    assert ax.get_xlabel() == "epoch" and ax.get_title()
    assert right.get_ylabel() == "validation metric"
    with pytest.raises(ValueError, match="non-empty 'epoch'"):
        plot_learning_curve({"loss": [1.0]})


def test_flip_recall_curve_on_a_hand_computed_case_and_its_plot():
    # 3 users x 2 papers; paper 0 liked by users 0 and 2 in test
    likes_test = sp.csr_matrix(np.array([[1, 0], [0, 0], [1, 1]], dtype=np.float32))
    scores = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]])  # rows: papers 0 and 1
    curve = flip_recall_curve(scores, likes_test, papers=[0, 1], ms=(1, 2, 3))
    # paper 0: top1 = {0} -> 1/2, top2 = {0,1} -> 1/2, top3 -> 1; paper 1: user 2 ranked first -> 1
    assert curve == {1: pytest.approx(0.75), 2: pytest.approx(0.75), 3: pytest.approx(1.0)}
    ax = plot_recall_vs_m({"model": curve, "other": {1: 0.1, 2: 0.2, 3: 0.3}})
    assert len(ax.get_lines()) == 2
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.75, 0.75, 1.0])
    assert ax.get_ylabel() == "Recall@M"
    with pytest.raises(ValueError, match="curves is empty"):
        plot_recall_vs_m({})


def test_results_bar_draws_one_bar_per_metric_and_row_with_gaps_for_missing():
    rows = [{"model": "pop", "cold": 0.1, "warm": 0.2}, {"model": "wmf", "cold": None, "warm": 0.4}]
    ax = plot_results_bar(rows, ["cold", "warm"], label="model")
    heights = [p.get_height() for p in ax.patches]
    assert heights[0] == 0.1 and np.isnan(heights[1]) and heights[2:] == [0.2, 0.4]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pop", "wmf"]
    with pytest.raises(ValueError, match="no column 'recall'"):
        plot_results_bar(rows, ["recall"])
