"""Saliency heatmaps of a paper's words (Ask the GRU, section 4.3, Figure 2), three ways.

* :func:`saliency_html`: the words as HTML, shaded and sized by saliency (shows in any exported
  notebook, like the paper's Figure 2);
* :func:`saliency_figure`: the same as a matplotlib figure (shows in static renderings and PDFs);
* :func:`saliency_explorer`: an ipywidgets control: search a paper by its title, pick one user or
  "top users", and see the heatmap update.

Everything here takes plain words, numbers and functions, so it serves the models of either
track without importing one: the explorer calls the ``saliency_fn`` it is given
(:func:`course_lib.torch_models.saliency.saliency_explorer` passes the PyTorch model's).
"""
from __future__ import annotations

import html
from typing import Callable, Sequence

import numpy as np

TOP_USERS = -1  # the explorer's user-menu value for "average over the paper's top users"


def _normalise(words: Sequence[str], saliency) -> np.ndarray:
    s = np.asarray(saliency, dtype=np.float64).ravel()
    if s.size != len(words):
        raise ValueError(f"got {len(words)} words but {s.size} saliency values; pass one value per word")
    if not np.all(np.isfinite(s)) or (s < 0).any():
        raise ValueError("saliency values must be finite and >= 0 (they are gradient norms)")
    top = s.max() if s.size else 0.0
    return s / top if top > 0 else np.zeros_like(s)


def saliency_html(words: Sequence[str], saliency, title: str | None = None) -> str:
    """Words as ``<span>``s whose red background and font size grow with saliency / max saliency."""
    level = _normalise(words, saliency)
    spans = []
    for w, a in zip(words, level):
        spans.append(
            f'<span title="{a:.2f}" style="background: rgba(220, 40, 40, {a:.2f}); '
            f'font-size: {90 + 50 * a:.0f}%; padding: 0 2px; border-radius: 3px">{html.escape(w)}</span>'
        )
    head = f"<div style='font-weight: bold; margin-bottom: 4px'>{html.escape(title)}</div>" if title else ""
    return f"<div style='line-height: 1.9; max-width: 60em'>{head}{' '.join(spans)}</div>"


def saliency_figure(words: Sequence[str], saliency, title: str | None = None, line_chars: int = 70, ax=None):
    """The heatmap as a matplotlib figure: words laid out in lines of about ``line_chars``
    characters, each on a box coloured by its saliency (colour bar: saliency / max)."""
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import Normalize

    level = _normalise(words, saliency)
    lines, current, width = [], [], 0
    for i, w in enumerate(words):
        if current and width + len(w) > line_chars:
            lines.append(current)
            current, width = [], 0
        current.append(i)
        width += len(w) + 1
    if current:
        lines.append(current)
    if ax is None:
        _, ax = plt.subplots(figsize=(line_chars * 0.11 + 1.5, 0.32 * max(len(lines), 1) + 0.9))
    cmap = plt.get_cmap("Reds")
    for row, idx in enumerate(lines):
        x = 0
        for i in idx:
            ax.text(x, -row, words[i], family="monospace", fontsize=9, va="center",
                    bbox={"facecolor": cmap(0.85 * level[i]), "edgecolor": "none", "pad": 1.5})
            x += len(words[i]) + 1
    ax.set_xlim(-1, line_chars + 2)
    ax.set_ylim(-len(lines) + 0.4, 0.8)
    ax.axis("off")
    ax.set_title(title or "Word saliency ||d r_ij / d e_t||")
    ax.figure.colorbar(cm.ScalarMappable(Normalize(0, 1), cmap), ax=ax, fraction=0.02, pad=0.01,
                       label="saliency / max")
    return ax.figure


def saliency_explorer(saliency_fn: Callable, texts, vocab, titles: Sequence[str], papers=None,
                      max_matches: int = 50):
    """An ipywidgets view: a title search box, a paper menu, a user menu ("top users" or one of
    them) and the heatmap of the chosen paper (:func:`saliency_html`).

    ``saliency_fn(paper, user_or_None) -> (saliency (n_words,), users)`` gives the saliency of the
    paper's words for one user, or (``None``) averaged over its top users, and those users.
    ``texts``/``vocab``: the encoded corpus and its vocabulary; ``titles``: one per paper;
    ``papers``: the papers offered (default all). Returns the ``VBox``; its ``.children[-1]`` is
    the ``HTML`` widget with the heatmap.
    """
    import ipywidgets as W

    if not callable(saliency_fn):
        raise ValueError(f"saliency_fn must be a function (paper, user) -> (saliency, users), got "
                         f"{type(saliency_fn).__name__}; for a PyTorch Ask-the-GRU model use "
                         "course_lib.torch_models.saliency.saliency_explorer(model, ...)")
    papers = np.arange(len(titles)) if papers is None else np.asarray(papers)
    if papers.size == 0:
        raise ValueError("papers is empty: offer at least one paper")
    search = W.Text(placeholder="words of the title", description="Search:")
    paper_menu = W.Dropdown(description="Paper:", layout=W.Layout(width="90%"))
    user_menu = W.Dropdown(description="User:")
    view = W.HTML()

    def matches(query: str):
        q = query.lower().split()
        hits = [int(j) for j in papers if all(w in titles[j].lower() for w in q)]
        return [(f"{titles[j][:90]} (#{j})", j) for j in hits[:max_matches]]

    def set_silently(menu, options, value, handler):
        menu.unobserve(handler, "value")
        menu.options = options
        menu.value = value
        menu.observe(handler, "value")

    def render(*_):
        paper, user = paper_menu.value, user_menu.value
        if paper is None:
            view.value = "<i>no paper matches the search</i>"
            return
        n = int(np.asarray(texts.lengths)[paper])
        words = vocab.decode(texts.ids[paper, :n])
        sal, users = saliency_fn(paper, None if user == TOP_USERS else user)
        if user == TOP_USERS:
            options = [("top users (mean)", TOP_USERS)] + [(f"user {int(u)}", int(u)) for u in users]
            set_silently(user_menu, options, TOP_USERS, render)
            who = f"averaged over its top {len(users)} users"
        else:
            who = f"for user {user}"
        view.value = saliency_html(words, sal, title=f"{titles[paper]}: saliency {who}")

    def on_paper(*_):
        set_silently(user_menu, [("top users (mean)", TOP_USERS)], TOP_USERS, render)
        render()

    def on_search(*_):
        options = matches(search.value)
        set_silently(paper_menu, options, options[0][1] if options else None, on_paper)
        on_paper()

    user_menu.options = [("top users (mean)", TOP_USERS)]
    user_menu.value = TOP_USERS
    search.observe(on_search, "value")
    paper_menu.observe(on_paper, "value")
    user_menu.observe(render, "value")
    on_search()
    return W.VBox([search, paper_menu, user_menu, view])
