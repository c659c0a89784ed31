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


def test_bpr_max_passes_the_notebook_answer_and_the_library(capsys):
    assert nb05.check_bpr_max(_bpr_max) and nb05.check_bpr_max(g.bpr_max_loss)
    assert capsys.readouterr().out == \
        "PASS: bpr_max_loss matches its formula and the gradient check passes (relative error < 1e-5)\n" * 2


def _bpr_max_dim0(scores, bpreg=1.0):
    """The softmax taken down the columns."""
    B = scores.shape[0]
    target = scores[:, :B].diagonal().unsqueeze(1)
    neg = torch.ones_like(scores, dtype=torch.bool)
    neg[:, :B].fill_diagonal_(False)
    s = torch.softmax(scores.masked_fill(~neg, float("-inf")), dim=0)
    return (-torch.log((s * torch.sigmoid(target - scores)).sum(1) + 1e-24) + bpreg * (s * scores ** 2).sum(1)).mean()


@pytest.mark.parametrize("answer, hint", [
    (lambda s, bpreg: _bpr_max(s, bpreg, target_is_negative=True), "give the target (the diagonal) weight 0"),
    (lambda s, bpreg: _bpr_max(s), "use the bpreg argument"),
    (lambda s, bpreg: _bpr_max(s, 0.0), "the score regularisation bpreg * sum_j s_j r_j^2 is missing"),
    (lambda s, bpreg: _bpr_max(s, bpreg, swap=True), "the target must score ABOVE the negatives"),
    (lambda s, bpreg: _bpr_max(s, bpreg, eps=0.0), "keep the log's argument away from 0"),
    (lambda s, bpreg: g.bpr_loss(s), "that is plain BPR"),
    (_bpr_max_dim0, "the softmax runs over the wrong axis"),
], ids=["target-in-softmax", "constant-bpreg", "no-reg", "swapped", "no-epsilon", "plain-bpr", "softmax-axis"])
def test_bpr_max_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_bpr_max(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_bpr_max_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb05.check_bpr_max(answer), "")


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


# ------------------------------------------------------------------------------------- GRU cell


def _cell(self, k, gi, h, *, z_swap=False, reset_after=False, rz_swap=False, no_reset=False, cand=torch.tanh,
          layer=None, x_only=False, cand_only=False, detach_h=False):
    """The notebook's GRU cell with one switchable slip."""
    n = h.shape[1]
    k = k if layer is None else layer
    U = self.W[f"Wrz{k}"]
    (a, b) = ((slice(n, 2 * n), slice(0, n)) if rz_swap else (slice(0, n), slice(n, 2 * n)))
    r = torch.sigmoid(gi[:, a] + (0 if x_only else h @ U[:, a]))
    z = torch.sigmoid(gi[:, b] + (0 if x_only else h @ U[:, b]))
    if no_reset:
        c = cand(gi[:, 2 * n:] + h @ self.W[f"Wh{k}"])
    elif reset_after:
        c = cand(gi[:, 2 * n:] + r * (h @ self.W[f"Wh{k}"]))
    else:
        c = cand(gi[:, 2 * n:] + (r * h) @ self.W[f"Wh{k}"])
    if cand_only:
        return c
    old = h.detach() if detach_h else h
    return z * old + (1 - z) * c if z_swap else (1 - z) * old + z * c


CELL_PASS = ("PASS: your cell matches eqs. 2-5 on both layers of a 2-layer model, and its gradients match finite "
             "differences\n")


def test_gru_cell_passes_the_notebook_answer_and_the_library(capsys):
    assert nb05.check_gru_cell(_cell) and nb05.check_gru_cell(g.GRU4Rec.gru_cell)
    assert capsys.readouterr().out == CELL_PASS * 2


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _cell(*a, z_swap=True), "the update gate weighs the wrong term"),
    (lambda *a: _cell(*a, reset_after=True), "the reset gate acts on h_{t-1} before the matrix"),
    (lambda *a: _cell(*a, rz_swap=True), "the blocks are in the order (r, z, candidate)"),
    (lambda *a: _cell(*a, no_reset=True), "the reset gate r_t is missing"),
    (lambda *a: _cell(*a, cand=torch.sigmoid), "the candidate uses tanh"),
    (lambda *a: _cell(*a, layer=0), "use the weights of layer k"),
    (lambda *a: _cell(*a, x_only=True), "the gates also read the previous state"),
    (lambda *a: _cell(*a, cand_only=True), "you returned the candidate"),
    (lambda *a: _cell(*a, detach_h=True), "the gradient of gru_cell differs from finite differences"),
    (lambda self, k, gi, h: gi, "return the new state h_t (B, h), not the three gate inputs"),
    (lambda self, k, gi, h: _cell(self, k, gi, h).detach().numpy(), "must return a torch tensor"),
], ids=["z-swapped", "reset-after-U", "r-z-swapped", "no-reset-gate", "sigmoid-candidate", "layer-0", "gates-x-only",
        "candidate-only", "detached", "gate-inputs", "numpy"])
def test_gru_cell_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_gru_cell(answer), hint)


# --------------------------------------------------------------------------------- forward step


def _forward(self, x, hidden, reset=None, *, reset_mode="before", bias=True, deep="out", out_layer=-1,
             give_back=False):
    """The notebook's forward step with one switchable slip."""
    if reset is not None and reset_mode == "before":
        hidden = [h.masked_fill(reset, 0.0) for h in hidden]
    elif reset is not None and reset_mode == "inverted":
        hidden = [h.masked_fill(~reset, 0.0) for h in hidden]
    elif reset is not None and reset_mode == "all" and reset.any():
        hidden = [torch.zeros_like(h) for h in hidden]
    gi0 = self.W["Wx0"][x] + (self.W["b0"] if bias else 0.0)
    gi, new_hidden = gi0, []
    for k in range(len(self.layers)):
        if k > 0:
            gi = gi0 if deep == "input" else out @ self.W[f"Wx{k}"] + self.W[f"b{k}"]
        out = self.gru_cell(k, gi, hidden[k])
        new_hidden.append(out)
    if reset is not None and reset_mode == "after":
        new_hidden = [h.masked_fill(reset, 0.0) for h in new_hidden]
    return new_hidden[out_layer], (hidden if give_back else new_hidden)


FORWARD_PASS = ("PASS: your forward step matches the model's on a 2-layer model, and zeroes exactly the slots of new "
                "sessions\n")


def test_forward_passes_the_notebook_answer_and_the_library(capsys):
    assert nb05.check_forward(_forward) and nb05.check_forward(g.GRU4Rec.forward)
    assert capsys.readouterr().out == FORWARD_PASS * 2


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _forward(*a, reset_mode="none"), "zero their states before the GRU step"),
    (lambda *a: _forward(*a, reset_mode="inverted"), "you zeroed the slots that CONTINUE their session"),
    (lambda *a: _forward(*a, reset_mode="after"), "BEFORE the step"),
    (lambda *a: _forward(*a, reset_mode="all"), "zero only the rows (slots) where reset is True"),
    (lambda *a: _forward(*a, bias=False), "miss their bias b0"),
    (lambda *a: _forward(*a, deep="input"), "a deeper layer k reads the new state of layer k - 1"),
    (lambda *a: _forward(*a, out_layer=0), "out is the LAST layer's new state"),
    (lambda *a: _forward(*a, give_back=True), "return the NEW states"),
    (lambda *a: (_forward(*a)[0], _forward(*a)[1][-1]), "new_hidden must be a list with one state per layer"),
    (lambda *a: (_forward(*a)[0], _forward(*a)[1][:1]), "this model has 2 layers, your list has 1"),
    (lambda *a: _forward(*a)[0], "forward must return a pair (out, new_hidden)"),
], ids=["no-reset", "inverted-reset", "reset-after", "reset-all", "no-bias", "deep-input", "first-layer-out",
        "old-states", "tensor-states", "one-state", "out-only"])
def test_forward_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_forward(answer), hint)


# ------------------------------------------------------------------------------- sampled scores


def _score_items(self, out, cols=None, *, bias="last", act=None, all_items=False, transpose=False):
    """The notebook's scores with one switchable slip."""
    Wy = self.W["Wy"] if cols is None or all_items else self.W["Wy"][cols]
    if bias == "first":
        s = out @ Wy[:, 1:].T + Wy[:, 0]
    else:
        s = out @ Wy[:, :-1].T + (Wy[:, -1] if bias == "last" else 0.0)
    s = s.T if transpose else s
    return {None: s, "softmax": torch.softmax(s, dim=1), "sigmoid": torch.sigmoid(s)}[act]


SCORES_PASS = "PASS: your scores match on sampled columns (targets first, then samples) and on all items\n"


def test_score_items_passes_the_notebook_answer_and_the_library(capsys):
    assert nb05.check_score_items(_score_items) and nb05.check_score_items(g.GRU4Rec.score_items)
    assert capsys.readouterr().out == SCORES_PASS * 2


def _no_none(self, out, cols=None):
    Wy = self.W["Wy"][cols]
    return out @ Wy[:, :-1].T + Wy[:, -1]


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _score_items(*a, bias="none"), "the output bias is missing"),
    (lambda *a: _score_items(*a, bias="first"), "the output bias is the LAST column of Wy"),
    (lambda *a: _score_items(*a, act="softmax"), "return the raw scores: the loss applies its own softmax"),
    (lambda *a: _score_items(*a, act="sigmoid"), "its own sigmoid"),
    (lambda *a: _score_items(*a, all_items=True), "score only the items in cols"),
    (lambda *a: _score_items(*a, transpose=True), "one row per output (B rows)"),
    (lambda self, out, cols=None: out @ self.W["Wy"][cols].T, "its last column is the output bias"),
    (lambda self, out, cols=None: _score_items(self, out, cols).detach(), "carries no gradient"),
    (_no_none, "with cols=None"),
], ids=["no-bias", "first-column-bias", "softmax", "sigmoid", "all-items", "transposed", "bias-in-product",
        "detached", "cols-none"])
def test_score_items_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_score_items(answer), hint)


# -------------------------------------------------------------------------------- training step


def _train_step(model, batch, hidden, optimizer, *, weight=True, zero_grad="start", update="optimizer",
                cols="targets+samples", reset=True, log_q=True, start="given", returns="loss", states="new"):
    """The notebook's training step with one switchable slip."""
    if zero_grad == "start":
        optimizer.zero_grad()
    c = {"targets+samples": torch.cat([batch.y, batch.sample]), "targets": batch.y,
         "samples first": torch.cat([batch.sample, batch.y])}[cols]
    h = hidden if start == "given" else [torch.zeros_like(t) for t in hidden]
    out, new_hidden = model(batch.x, h, batch.reset if reset else None)
    loss = model.loss_function(model.score_items(out, c), batch.log_q if log_q else None)
    (loss * (batch.weight if weight else 1.0)).backward()
    if zero_grad == "before step":
        optimizer.zero_grad()
    if update == "optimizer":
        optimizer.step()
    elif update == "by hand":
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    elif update == "rows":
        optimizer.step(model.rows_used(batch.x, c))
    if zero_grad == "end":
        optimizer.zero_grad()
    value = loss * batch.weight if returns == "weighted" else loss
    return value.item(), (new_hidden if states == "new" else hidden)


STEP_PASS = ("PASS: two steps with BPR-max and two with the sampled cross-entropy (logQ) give the right losses, "
             "states and weights\n")


def test_train_step_passes_the_notebook_answer_and_its_variants(capsys):
    def library_style(model, batch, hidden, optimizer):  # the reset inside the step, a tensor loss
        if batch.reset is not None:
            hidden = [h.masked_fill(batch.reset, 0.0) for h in hidden]
        cols = torch.cat([batch.y, batch.sample])
        out, new_hidden = model(batch.x, hidden)
        loss = model.loss_function(model.score_items(out, cols), batch.log_q)
        optimizer.zero_grad()
        (loss * batch.weight).backward()
        optimizer.step()
        return loss, new_hidden

    assert nb05.check_train_step(_train_step)
    assert nb05.check_train_step(lambda *a: _train_step(*a, zero_grad="end"))  # clean before each step: also right
    assert nb05.check_train_step(library_style)
    assert capsys.readouterr().out == STEP_PASS * 3


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _train_step(*a, weight=False), "multiply the loss by batch.weight"),
    (lambda *a: _train_step(*a, zero_grad="never"), "your second step added the gradients of the first"),
    (lambda *a: _train_step(*a, update="none"), "you computed gradients, but no weight moved"),
    (lambda *a: _train_step(*a, zero_grad="before step"), "no gradient reached the weights"),
    (lambda *a: _train_step(*a, update="by hand"), "not through the optimizer you were given"),
    (lambda *a: _train_step(*a, update="rows"), "a torch optimizer's step() takes no arguments"),
    (lambda *a: _train_step(*a, cols="targets"), "AND the extra samples"),
    (lambda *a: _train_step(*a, cols="samples first"), "the targets come first"),
    (lambda *a: _train_step(*a, reset=False), "pass batch.reset to the forward step"),
    (lambda *a: _train_step(*a, start="zeros"), "not from zeros"),
    (lambda *a: _train_step(*a, returns="weighted"), "not the loss times batch.weight"),
    (lambda *a: _train_step(*a, log_q=False), "pass batch.log_q to the loss function"),
    (lambda *a: _train_step(*a, states="given"), "return the NEW states"),
    (lambda *a: _train_step(*a)[0], "must return a pair (loss, new_hidden)"),
], ids=["no-weight", "no-zero-grad", "no-step", "zero-grad-before-step", "by-hand", "row-optimizer", "targets-only",
        "samples-first", "no-reset", "zero-start", "weighted-return", "no-log-q", "old-states", "loss-only"])
def test_train_step_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb05.check_train_step(answer), hint)


# ----------------------------------------------------------------------------- trained model


def _results(mine, ref=0.53, pop=0.11):
    return {"your GRU4Rec": {"Recall@20": mine}, "reference GRU4Rec": {"Recall@20": ref}, "POP": {"Recall@20": pop}}


def test_trained_passes_a_model_near_the_reference(capsys):
    assert nb05.check_trained(_results(0.52))
    assert capsys.readouterr().out == ("PASS: your GRU4Rec is more than 0.2 above POP on Recall@20 and within 0.05 of "
                                       "the reference\n")


@pytest.mark.parametrize("results, hint", [
    (_results(0.12), "is not 0.2 above POP"),
    (_results(0.45), "below the reference"),
    (_results(float("nan")), "training diverged"),
    ({"your GRU4Rec": {"Recall@20": 0.5}, "POP": {"Recall@20": 0.1}}, "results needs a row 'reference GRU4Rec'"),
    ({"your GRU4Rec": 0.5, "reference GRU4Rec": {"Recall@20": 0.5}, "POP": {"Recall@20": 0.1}}, "with 'Recall@20'"),
], ids=["near-pop", "far-below-reference", "nan", "missing-row", "row-not-a-dict"])
def test_trained_names_the_problem(results, hint, capsys):
    _fails_with(capsys, nb05.check_trained(results), hint)


@pytest.mark.parametrize("check", [nb05.check_gru_cell, nb05.check_forward, nb05.check_score_items,
                                   nb05.check_train_step, nb05.check_trained])
@pytest.mark.parametrize("answer", WRONG_KINDS + [torch.zeros(3), "text"])
def test_model_checks_fail_on_a_wrong_kind_without_raising(check, answer, capsys):
    _fails_with(capsys, check(answer), "")
