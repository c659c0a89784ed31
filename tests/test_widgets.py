"""Saliency heatmaps: static HTML, matplotlib figure and the ipywidgets explorer."""
import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from course_lib.text import Vocabulary
from course_lib.widgets import TOP_USERS, saliency_explorer, saliency_figure, saliency_html


def test_html_shades_by_relative_saliency_and_escapes_words():
    html = saliency_html(["maximum", "<likelihood>", "the"], [2.0, 4.0, 0.0], title="EM & co")
    alphas = [float(a) for a in re.findall(r"rgba\(220, 40, 40, ([0-9.]+)\)", html)]
    assert alphas == [0.5, 1.0, 0.0]
    assert "&lt;likelihood&gt;" in html and "<likelihood>" not in html
    assert "EM &amp; co" in html
    sizes = [int(s) for s in re.findall(r"font-size: (\d+)%", html)]
    assert sizes == [115, 140, 90]


def test_html_rejects_mismatched_or_negative_saliency():
    with pytest.raises(ValueError, match="one value per word"):
        saliency_html(["a", "b"], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        saliency_html(["a"], [-1.0])
    assert "0.00" in saliency_html(["a"], [0.0])  # all-zero saliency: nothing shaded, no division by 0


def test_figure_draws_every_word_with_its_shade():
    words = ["iteratively", "reweighted", "least", "squares"] * 5
    fig = saliency_figure(words, np.arange(20.0), line_chars=30)
    ax = fig.axes[0]
    texts = [t for t in ax.texts]
    assert [t.get_text() for t in texts] == words
    assert len({round(t.get_position()[1]) for t in texts}) > 1  # wrapped over several lines
    reds = [t.get_bbox_patch().get_facecolor() for t in texts]
    assert reds[0] != reds[-1]
    assert ax.get_title()


def _fake_corpus():
    vocab = Vocabulary(["<PAD>", "<UNK>", "<NUM>", "deep", "learning", "topic", "models", "em"], [0, 0, 0, 1, 1, 1, 1, 1])
    ids = np.array([[3, 4, 0], [5, 6, 0], [7, 0, 0]])
    lengths = np.array([2, 2, 1])
    return SimpleNamespace(ids=ids, lengths=lengths, mask=(ids > 0).astype(np.float32)), vocab


def test_explorer_searches_titles_and_renders_the_chosen_paper():
    texts, vocab = _fake_corpus()
    titles = ["Deep learning", "Topic models", "The EM algorithm"]
    calls = []

    def fake_saliency(paper, user):
        calls.append((paper, user))
        n = texts.lengths[paper]
        return np.arange(1.0, n + 1), np.array([7, 3])

    box = saliency_explorer(fake_saliency, texts, vocab, titles)
    search, paper_menu, user_menu, view = box.children
    assert [v for _, v in paper_menu.options] == [0, 1, 2]
    assert "deep" in view.value and "learning" in view.value
    assert calls[-1] == (0, None)
    assert [v for _, v in user_menu.options] == [TOP_USERS, 7, 3]

    search.value = "topic"
    assert [v for _, v in paper_menu.options] == [1]
    assert "models" in view.value and "deep" not in view.value

    user_menu.value = 3
    assert calls[-1] == (1, 3) and "for user 3" in view.value

    search.value = "no such title"
    assert "no paper matches" in view.value
