"""Meta-tests of the notebook 00 checks: the right answer passes with the notebook's PASS line,
plausible wrong answers fail with the hint of their mistake, wrong types fail without raising."""
import numpy as np
import pytest

from course_lib import metrics
from course_lib.checks import WRONG_KINDS, nb00


def _fails_with(capsys, verdict, hint):
    out = capsys.readouterr().out
    assert not verdict, out
    assert out.startswith("FAIL: ") and hint in out, out


# ---------------------------------------------------------------------------------- Recall@M


def _recall(scores, test, m, *, rows="with_test", denominator="n", order=-1, extra=0):
    """A learner's Recall@M, written with one switchable slip."""
    relevant = test.toarray() > 0
    top = np.argsort(order * scores, axis=1)[:, : m + extra]
    hits = np.take_along_axis(relevant, top, axis=1).sum(1)
    n = relevant.sum(1)
    keep = n > 0 if rows == "with_test" else np.ones(len(n), bool)
    d = {"n": n, "m": np.full_like(n, m), "min": np.minimum(n, m)}[denominator]
    return float(np.mean(np.where(n[keep] > 0, hits[keep] / np.maximum(d[keep], 1), 0.0)))


def test_recall_passes_the_library_metric(capsys):
    assert nb00.check_recall_at_m(lambda s, t, m: metrics.recall_at_m(s, t, ms=(m,))[m])
    assert capsys.readouterr().out == \
        "PASS: recall_at_m matches the hand-made case and course_lib.metrics on random cases\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda s, t, m: _recall(s, t, m, rows="all"), "skip queries that have no test item"),
    (lambda s, t, m: _recall(s, t, m, denominator="m"), "that is precision@m"),
    (lambda s, t, m: _recall(s, t, m, order=1), "you took the LOWEST scores"),
    (lambda s, t, m: _recall(s, t, m, denominator="min"), "you divided by min(m, number of test items)"),
    (lambda s, t, m: _recall(s, t, m, extra=1), "your top list holds m + 1 items"),
    (lambda s, t, m: np.array([1 / 3, 1.0, 0.0]), "you returned one value per query"),
], ids=["all-rows", "precision", "lowest", "capped", "off-by-one", "per-query"])
def test_recall_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb00.check_recall_at_m(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_recall_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb00.check_recall_at_m(answer), "")


def test_recall_empty_rows_giving_nan_are_named(capsys):
    def nan_for_empty(scores, test, m):
        relevant = test.toarray() > 0
        top = np.argsort(-scores, axis=1)[:, :m]
        with np.errstate(invalid="ignore"):
            return float(np.mean(np.take_along_axis(relevant, top, 1).sum(1) / relevant.sum(1)))

    _fails_with(capsys, nb00.check_recall_at_m(nan_for_empty), "a query without test items divides 0 by 0")


def test_recall_not_implemented_is_raised_again(capsys):
    def not_done(scores, test, m):
        raise NotImplementedError("Exercise 1: Recall@M")

    with pytest.raises(NotImplementedError):
        nb00.check_recall_at_m(not_done)
    assert "recall_at_m is not implemented yet" in capsys.readouterr().out


# --------------------------------------------------------------------------------- popularity


def _right_popularity(likes, papers):
    return np.tile(np.asarray(likes.sum(axis=1)).ravel(), (len(papers), 1))


def test_popularity_passes(capsys):
    assert nb00.check_popularity_scores(_right_popularity)
    assert capsys.readouterr().out == "PASS: every paper ranks the most active users first\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda likes, papers: np.tile(np.asarray(likes.sum(axis=0)).ravel()[papers][:, None], (1, likes.shape[0])),
     "you scored papers by their popularity"),
    (lambda likes, papers: _right_popularity(likes, papers).T, "you returned (n_users, n_papers)"),
    (lambda likes, papers: np.tile(likes.sum(axis=1), (len(papers), 1)), "is an (n_users, 1) matrix: flatten it"),
    (lambda likes, papers: np.asarray(likes.sum(axis=1)).ravel(), "repeat the row of user activity"),
    (lambda likes, papers: _right_popularity(likes, papers) / likes.sum(), "you normalised the counts"),
    (lambda likes, papers: _right_popularity(likes, np.arange(likes.shape[1])), "not one per paper of the matrix"),
], ids=["paper-popularity", "transposed", "matrix", "one-row", "normalised", "all-papers"])
def test_popularity_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb00.check_popularity_scores(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS + [lambda likes, papers: likes])
def test_popularity_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb00.check_popularity_scores(answer), "")
