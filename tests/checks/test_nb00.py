import numpy as np
import pytest
import scipy.sparse as sp

from course_lib import metrics
from course_lib.checks import nb00


def _right(scores, test, m):
    return metrics.recall_at_m(scores, test, ms=(m,))[m]


def _over_all_rows(scores, test, m):
    top = np.argsort(-scores, axis=1)[:, :m]
    t = test.toarray()
    n = t.sum(axis=1)
    hits = np.take_along_axis(t, top, axis=1).sum(axis=1)
    return float(np.mean(np.where(n > 0, hits / np.maximum(n, 1), 0)))


def test_recall_check_passes_right_and_names_mistakes(capsys):
    assert nb00.check_recall_at_m(_right)
    assert capsys.readouterr().out.startswith("PASS")
    assert not nb00.check_recall_at_m(_over_all_rows)
    assert "skip queries that have no test item" in capsys.readouterr().out

    def not_done(scores, test, m):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        nb00.check_recall_at_m(not_done)
    assert "not implemented yet" in capsys.readouterr().out

    def broken(scores, test, m):
        raise IndexError("index 7 is out of bounds")

    assert not nb00.check_recall_at_m(broken)
    assert "recall_at_m raised IndexError: index 7" in capsys.readouterr().out


def test_popularity_check(capsys):
    def right(likes, papers):
        return np.tile(np.asarray(likes.sum(axis=1)).ravel(), (len(papers), 1))

    def papers_instead(likes, papers):
        return np.tile(np.asarray(likes.sum(axis=0)).ravel()[papers][:, None], (1, likes.shape[0]))

    assert nb00.check_popularity_scores(right)
    assert not nb00.check_popularity_scores(papers_instead)
    assert "rank USERS" in capsys.readouterr().out
    assert not nb00.check_popularity_scores(lambda likes, papers: np.zeros((1, 1)))
