"""Shared matplotlib figures of the course: learning curves, Recall@M curves, result bar charts.

Every function draws on ``ax`` when given (so a notebook can put several plots side by side)
and otherwise on a new figure, labels its axes, sets a title, and returns the axes.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4))[1]


def plot_learning_curve(history: Mapping[str, Sequence[float]], loss_keys: Sequence[str] = ("loss",),
                        metric_keys: Sequence[str] | None = None, ax=None, title: str = "Learning curve"):
    """Training loss per epoch (left axis) and validation metrics (right axis) from a history.

    ``history`` is a dict of lists with an ``"epoch"`` list (as returned by
    :func:`course_lib.torch_models.hybrid.train_hybrid`); ``metric_keys`` defaults to every key
    starting with ``"valid_"``. A ``"best_epoch"`` entry is marked by a dotted line.
    """
    if "epoch" not in history or not len(history["epoch"]):
        raise ValueError("history needs a non-empty 'epoch' list (the output of a training run)")
    epochs = np.asarray(history["epoch"])
    for key in loss_keys:
        if key not in history:
            raise ValueError(f"history has no {key!r}; it has {sorted(history)}")
    ax = _axes(ax)
    for key in loss_keys:
        ax.plot(epochs, history[key], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    metric_keys = [k for k in history if k.startswith("valid_")] if metric_keys is None else list(metric_keys)
    lines, labels = ax.get_legend_handles_labels()
    if metric_keys:
        right = ax.twinx()
        for i, key in enumerate(metric_keys):
            right.plot(epochs[: len(history[key])], history[key], marker="s", linestyle="--",
                       color=f"C{i + len(loss_keys)}", label=key)
        right.set_ylabel("validation metric")
        more = right.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    if history.get("best_epoch"):
        ax.axvline(history["best_epoch"][0], color="grey", linestyle=":", label="best epoch")
        lines.append(ax.get_lines()[-1])
        labels.append("best epoch")
    ax.legend(lines, labels, loc="best", fontsize="small")
    return ax


def flip_recall_curve(paper_scores, likes_test, papers, likes_train=None,
                      ms: Sequence[int] = tuple(range(10, 101, 10))) -> dict[int, float]:
    """Recall@M of the flip scenario for every M in ``ms``, by :func:`course_lib.evaluation.evaluate_flip`.

    ``paper_scores`` ``(len(papers), n_users)``; ``likes_test``/``likes_train`` ``(n_users, n_papers)``.
    """
    from course_lib.evaluation import evaluate_flip

    res = evaluate_flip(paper_scores, likes_test, likes_train, papers, ks=tuple(ms), metrics=("recall",))
    return {int(m): float(res[f"Recall@{m}"]) for m in ms}


def plot_recall_vs_m(curves: Mapping[str, Mapping[int, float]], ax=None,
                     title: str = "Recall@M", xlabel: str = "M (length of the list)"):
    """One line per model: ``curves`` maps a name to ``{M: recall}`` (e.g. from :func:`flip_recall_curve`)."""
    if not curves:
        raise ValueError("curves is empty: pass {model name: {M: recall}}")
    ax = _axes(ax)
    for name, curve in curves.items():
        ms = sorted(curve)
        ax.plot(ms, [curve[m] for m in ms], marker=".", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Recall@M")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_results_bar(rows, metrics: Sequence[str], label: str | Sequence[str] = "model", ax=None,
                     title: str = "Results"):
    """Grouped bars: one group per row of ``rows`` (list of dicts or a DataFrame), one bar per metric.

    ``label`` names the column(s) whose values, joined by " / ", label each group; missing values
    (e.g. a cold-start metric of a model that cannot score cold papers) leave a gap.
    """
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: nothing to plot")
    labels = [label] if isinstance(label, str) else list(label)
    for key in list(metrics) + labels:
        if key not in rows[0]:
            raise ValueError(f"rows have no column {key!r}; they have {sorted(rows[0])}")
    ax = _axes(ax)
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(metrics))
    for i, metric in enumerate(metrics):
        vals = [np.nan if r.get(metric) is None else float(r[metric]) for r in rows]
        ax.bar(x + (i - (len(metrics) - 1) / 2) * width, vals, width, label=metric)
    ax.set_xticks(x)
    ax.set_xticklabels([" / ".join(str(r[k]) for k in labels) for r in rows], rotation=45, ha="right",
                       fontsize="small")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return ax
