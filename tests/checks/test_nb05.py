"""Meta-tests of the notebook 05 checks: the notebook's answers pass with its PASS lines, plausible
wrong answers fail with the hint of their mistake, wrong types fail without raising."""
import numpy as np
import pytest
import torch

from course_lib import sessions
from course_lib.checks import WRONG_KINDS, nb05
from course_lib.evaluation import evaluate_sessions
from course_lib.torch_models import gru4rec as g


def _fails_with(capsys, verdict, hint):
    out = capsys.readouterr().out
    assert not verdict, out
    assert out.startswith("FAIL: ") and hint in out, out


# ------------------------------------------------------------------------------ session batches


def _steps(offsets, batch_size):
    return [tuple(s) for s in sessions.session_parallel_batches(offsets, batch_size)]


def test_session_batches_passes_the_library(capsys):
    assert nb05.check_session_batches(_steps)
    assert capsys.readouterr().out == (
        "PASS: the hand-made 3-session example matches, every pair is used once, and hidden states are reset "
        "exactly when a new session takes a slot\n")


def _drops_tail(offsets, batch_size):
    return [s for s in _steps(offsets, batch_size) if len(s[0]) == min(batch_size, len(offsets) - 1)]


def _first_not_reset(offsets, batch_size):
    steps = _steps(offsets, batch_size)
    return [(*s[:3], np.zeros_like(s[3]) if k == 0 else s[3]) for k, s in enumerate(steps)]


def _reset_a_step_late(offsets, batch_size):
    steps = _steps(offsets, batch_size)
    late = [np.zeros_like(steps[0][3])] + [s[3] for s in steps[:-1]]
    return [(*s[:3], r if len(r) == len(s[3]) else s[3]) for s, r in zip(steps, late)]


def _crosses_sessions(offsets, batch_size):
    """One slot reading all events as one stream: a session's last click predicts the next session's first."""
    return [(np.array([0]), np.array([e]), np.array([e + 1]), np.array([e == 0])) for e in range(offsets[-1] - 1)]


@pytest.mark.parametrize("answer, hint", [
    (lambda o, b: [(s[0], s[1], s[2], np.zeros_like(s[3])) for s in _steps(o, b)], "reset is never True"),
    (_first_not_reset, "at the first step every slot starts a fresh session"),
    (_reset_a_step_late, "reset must be True exactly where a new session takes a slot"),
    (_drops_tail, "the last steps are missing"),
    (lambda o, b: [(s[0], s[1], s[1], s[3]) for s in _steps(o, b)], "a step pairs a click with itself"),
    (lambda o, b: [(s[0], s[1], s[2]) for s in _steps(o, b)], "is not a tuple (slots, inp, out, reset)"),
    (lambda o, b: [(s[0], s[1][:1], s[2], s[3]) for s in _steps(o, b)], "their lengths must agree"),
], ids=["never-reset", "first-step", "late-reset", "tail", "self-pairs", "three-arrays", "ragged"])
def test_session_batches_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_session_batches(answer), hint)


def test_session_batches_random_sessions_catch_what_the_hand_case_cannot(capsys):
    hand = {2: [tuple(np.asarray(x) for x in s) for s in nb05.HAND_STEPS]}

    def hand_then_stream(offsets, batch_size):  # right on the hand case, crosses sessions elsewhere
        return hand[batch_size] if batch_size in hand else _crosses_sessions(offsets, batch_size)

    _fails_with(capsys, nb05.check_session_batches(hand_then_stream), "crosses from one session into the next")


@pytest.mark.parametrize("answer", WRONG_KINDS + [lambda o, b: 5, lambda o, b: [1, 2]])
def test_session_batches_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb05.check_session_batches(answer), "")


# ---------------------------------------------------------------------------------------- losses


def _top1(scores, *, target_is_negative=False, divide="C-1", reg=True, swap=False):
    """The notebook's TOP1 with one switchable slip."""
    B, C = scores.shape
    target = scores[:, :B].diagonal().unsqueeze(1)
    neg = torch.ones_like(scores, dtype=torch.bool)
    if not target_is_negative:
        neg[:, :B].fill_diagonal_(False)
    diff = target - scores if swap else scores - target
    per = torch.sigmoid(diff) + (torch.sigmoid(scores ** 2) if reg else 0.0)
    return (per * neg).sum(1).div({"C-1": C - 1, "C": C}[divide]).mean()


def _bpr_max(scores, bpreg=1.0, *, eps=1e-24, target_is_negative=False, swap=False):
    """The notebook's BPR-max with one switchable slip."""
    B, C = scores.shape
    target = scores[:, :B].diagonal().unsqueeze(1)
    neg = torch.ones_like(scores, dtype=torch.bool)
    if not target_is_negative:
        neg[:, :B].fill_diagonal_(False)
    s = torch.softmax(scores.masked_fill(~neg, float("-inf")), dim=1)
    pair = torch.sigmoid(scores - target if swap else target - scores)
    return (-torch.log((s * pair).sum(1) + eps) + bpreg * (s * scores ** 2).sum(1)).mean()


def test_losses_pass_the_notebook_answers_and_the_library(capsys):
    assert nb05.check_top1(_top1) and nb05.check_top1(g.top1_loss)
    assert nb05.check_bpr_max(_bpr_max) and nb05.check_bpr_max(g.bpr_max_loss)
    assert capsys.readouterr().out == (
        "PASS: top1_loss matches its formula and the gradient check passes (relative error < 1e-5)\n" * 2
        + "PASS: bpr_max_loss matches its formula and the gradient check passes (relative error < 1e-5)\n" * 2)


@pytest.mark.parametrize("answer, hint", [
    (lambda s: _top1(s, target_is_negative=True, divide="C"), "the target sits on the diagonal and is not a negative"),
    (lambda s: _top1(s, divide="C"), "average over the C - 1 negatives of a row"),
    (lambda s: _top1(s, reg=False), "the regularising term sigma(r_j^2)"),
    (lambda s: _top1(s, swap=True), "a negative costs when it scores ABOVE the target"),
    (lambda s: _top1(s).item(), "must return a scalar torch tensor"),
    (lambda s: _top1(s).detach(), "carries no gradient"),
    (lambda s: _top1(s) * torch.ones(4), "got a tensor of shape (4,): average over the rows"),
], ids=["target-as-negative", "divide-by-C", "no-reg", "swapped", "float", "detached", "per-row"])
def test_top1_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_top1(answer), hint)


@pytest.mark.parametrize("answer, hint", [
    (lambda s, bpreg: _bpr_max(s, bpreg, target_is_negative=True), "give the target (the diagonal) weight 0"),
    (lambda s, bpreg: _bpr_max(s), "use the bpreg argument"),
    (lambda s, bpreg: _bpr_max(s, 0.0), "the score regularisation bpreg * sum_j s_j r_j^2 is missing"),
    (lambda s, bpreg: _bpr_max(s, bpreg, swap=True), "the target must score ABOVE the negatives"),
    (lambda s, bpreg: _bpr_max(s, bpreg, eps=0.0), "keep the log's argument away from 0"),
    (lambda s, bpreg: g.bpr_loss(s), "that is plain BPR"),
], ids=["target-in-softmax", "constant-bpreg", "no-reg", "swapped", "no-epsilon", "plain-bpr"])
def test_bpr_max_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_bpr_max(answer), hint)


@pytest.mark.parametrize("check", [nb05.check_top1, nb05.check_bpr_max])
@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_loss_checks_fail_on_a_wrong_kind_without_raising(check, answer, capsys):
    _fails_with(capsys, check(answer), "")


# ------------------------------------------------------------------------------------ evaluation


def _evaluate(model, test, k, ties, *, reset=True, next_click=True, mode=None, mrr_cut=True):
    """The notebook's evaluation loop with one switchable slip."""
    ties = mode or ties
    cols = np.searchsorted(model.item_ids, test["ItemId"].to_numpy())
    ranks = []
    model.reset(1)
    for rows in test.groupby("SessionId", sort=False).indices.values():
        if reset:
            model.reset_slots(np.array([True]))
        items = cols[rows]
        for current, target in zip(items[:-1], items[1:] if next_click else items[:-1]):
            scores = np.asarray(model.score_next(np.array([current])))[0]
            greater, at_least = np.sum(scores > scores[target]), np.sum(scores >= scores[target])
            ranks.append({"optimistic": 1 + greater, "pessimistic": at_least,
                          "average": (1 + greater + at_least) / 2}[ties])
    ranks = np.asarray(ranks, dtype=float)
    mrr = np.where(ranks <= k, 1.0 / ranks, 0.0) if mrr_cut else 1.0 / ranks
    return float(np.mean(ranks <= k)), float(np.mean(mrr))


def test_evaluation_passes_the_notebook_answer_and_the_library(capsys):
    def library(model, test, k, ties):
        r = evaluate_sessions(model, test, cutoffs=(k,), ties=ties, batch_size=1)
        return r[f"Recall@{k}"], r[f"MRR@{k}"]

    assert nb05.check_evaluation(_evaluate) and nb05.check_evaluation(library)
    assert capsys.readouterr().out == \
        "PASS: your loop gives the same Recall@k and MRR@k as evaluate_sessions in all three tie modes\n" * 2


_SWAP = {"optimistic": "pessimistic", "pessimistic": "optimistic", "average": "average"}


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _evaluate(*a, reset=False), "the state of the model was not reset"),
    (lambda *a: _evaluate(*a, next_click=False), "the target of a click is the NEXT click"),
    (lambda *a: _evaluate(*a, mode="optimistic"), "'pessimistic' counts the equal scores"),
    (lambda m, t, k, ties: _evaluate(m, t, k, _SWAP[ties]), "optimistic and pessimistic are swapped"),
    (lambda *a: _evaluate(*a, mrr_cut=False), "MRR@k counts 0 for a target ranked below k"),
    (lambda *a: {"recall": 0.5, "mrr": 0.2}, "not a dict"),
    (lambda *a: 0.5, "returned shape (), expected (2,)"),
], ids=["no-reset", "same-click", "ties-ignored", "ties-swapped", "mrr-uncut", "dict", "one-number"])
def test_evaluation_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_evaluation(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_evaluation_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb05.check_evaluation(answer), "")
