"""The notebook 05 checks accept right answers and reject typical wrong ones."""
import numpy as np
import torch

from course_lib.checks import nb05
from course_lib.evaluation import evaluate_sessions
from course_lib.torch_models import gru4rec as g


def _steps(offsets, batch_size):
    return [tuple(s) for s in g.session_parallel_batches(offsets, batch_size)]


def test_session_batches_check(capsys):
    assert nb05.check_session_batches(_steps)

    def never_reset(offsets, batch_size):
        return [(s.slots, s.inp, s.out, np.zeros_like(s.reset)) for s in g.session_parallel_batches(offsets, batch_size)]

    def drops_tail(offsets, batch_size):
        steps = _steps(offsets, batch_size)
        return [s for s in steps if len(s[0]) == min(batch_size, len(offsets) - 1)]

    assert not nb05.check_session_batches(never_reset)
    assert not nb05.check_session_batches(drops_tail)
    assert "FAIL" in capsys.readouterr().out


def test_loss_checks(capsys):
    assert nb05.check_top1(g.top1_loss)
    assert nb05.check_bpr_max(g.bpr_max_loss)
    assert not nb05.check_top1(g.bpr_loss)
    assert not nb05.check_bpr_max(lambda s, bpreg: g.bpr_max_loss(s, bpreg=0.0))  # forgot the regulariser
    assert not nb05.check_top1(lambda s: torch.tensor(g.top1_loss(s).item()))  # no gradient
    out = capsys.readouterr().out
    assert "relative error" in out and "without a gradient" in out


def test_evaluation_check(capsys):
    def right(model, test, k, ties):
        r = evaluate_sessions(model, test, cutoffs=(k,), ties=ties, batch_size=1)
        return r[f"Recall@{k}"], r[f"MRR@{k}"]

    def optimistic_always(model, test, k, ties):
        return right(model, test, k, "optimistic")

    def never_reset(model, test, k, ties):
        one = test.assign(SessionId=0)  # all sessions glued into one: state carried across them
        return right(model, one, k, ties)

    assert nb05.check_evaluation(right)
    assert not nb05.check_evaluation(optimistic_always)
    assert not nb05.check_evaluation(never_reset)
    assert "ties" in capsys.readouterr().out
