"""Checks for notebook 05 (session-based recommendations with GRU4Rec)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import Fail, Mistake, as_array, as_tensor, call, check, diagnose, numerical_gradient, passed, rel_error

# Three hand-made sessions in training order: A = events 0..2, B = 3..4, C = 5..7.
HAND_OFFSETS = np.array([0, 3, 5, 8])
HAND_STEPS = [  # (slots, inp, out, reset) with batch_size=2
    ([0, 1], [0, 3], [1, 4], [True, True]),
    ([0, 1], [1, 5], [2, 6], [False, True]),
    ([1], [6], [7], [False]),
]

_STEPS = "a list of steps (slots, inp, out, reset), each four arrays of the same length"


def _steps(name: str, value) -> list[tuple]:
    """The learner's steps as a list of 4-tuples of numpy arrays, or a Fail saying what was expected."""
    if value is None or isinstance(value, (dict, str)) or not hasattr(value, "__iter__"):
        raise Fail(f"{name} must return {_STEPS}; got {type(value).__name__ if value is not None else 'None'}")
    steps = []
    for k, step in enumerate(value):
        if not hasattr(step, "__len__") or isinstance(step, (str, dict)) or len(step) != 4:
            raise Fail(f"step {k} of {name} is not a tuple (slots, inp, out, reset): each step has these four arrays")
        arrays = [np.asarray(x).reshape(-1) for x in step]
        if len({len(a) for a in arrays}) != 1:
            raise Fail(f"in step {k} the arrays slots, inp, out, reset have lengths {[len(a) for a in arrays]}: they "
                       "hold one entry per active slot, so their lengths must agree")
        steps.append(tuple(arrays))
    return steps


def _as_lists(steps):
    return [tuple(x.tolist() for x in step) for step in steps]


@check("session_parallel_batches", expects=_STEPS)
def check_session_batches(session_parallel_batches):
    """``session_parallel_batches(offsets, batch_size)`` -> steps ``(slots, inp, out, reset)``.

    Checked on the hand-made example of three sessions, then by running a "counting RNN" over
    random sessions: its state is reset where ``reset`` says and grows by one per step, so it must
    always equal the position of the input inside its own session.
    """
    name = "session_parallel_batches"
    steps = _as_lists(_steps(name, call(name, session_parallel_batches, HAND_OFFSETS, 2)))
    want = [tuple(s) for s in HAND_STEPS]
    if steps != want:
        def resets(s):
            return [[bool(r) for r in step[3]] for step in s]

        def without_reset(s):
            return [step[:3] for step in s]

        same_moves = without_reset(steps) == without_reset(want)
        lines = "\n  ".join(f"step {k}: expected {w}, got {s}" for k, (w, s) in
                            enumerate(zip(want + [None] * 9, steps + [None] * 9)) if w != s and (w or s))
        raise diagnose(steps, [
            Mistake("reset is never True: flag the slots whose session has just started (every slot at the first "
                    "step, then each slot that a new session takes)",
                    when=lambda s: same_moves and not any(map(any, resets(s)))),
            Mistake("at the first step every slot starts a fresh session: flag all of them for reset",
                    when=lambda s: same_moves and resets(s)[1:] == resets(want)[1:]),
            Mistake("reset must be True exactly where a new session takes a slot (and at the first step), False "
                    "while a slot continues its session", when=lambda s: same_moves),
            Mistake("the last steps are missing: when no session is left to refill a slot, that slot leaves and the "
                    "others go on (the final sessions are trained on, not dropped)",
                    when=lambda s: s == want[: len(s)] and len(s) < len(want)),
            Mistake("a step pairs a click with itself: the target of a click is the NEXT event of its session",
                    when=lambda s: all(step[1] == step[2] for step in s)),
        ], "on sessions A=[0,1,2], B=[3,4], C=[5,6,7] with 2 slots the steps (slots, inp, out, reset) differ:\n  "
           + lines)
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 7, size=40)
    offsets = np.r_[0, np.cumsum(lengths)]
    session_of = np.repeat(np.arange(len(lengths)), lengths)
    state = np.zeros(5)
    pairs = []
    for slots, inp, out, reset in _steps(name, call(name, session_parallel_batches, offsets, 5)):
        slots, inp, out = slots.astype(int), inp.astype(int), out.astype(int)
        if slots.min(initial=0) < 0 or slots.max(initial=0) >= 5 or inp.max(initial=0) >= offsets[-1] \
                or out.max(initial=0) >= offsets[-1]:
            raise Fail("a slot or an event index is out of range: slots are 0 .. batch_size - 1, events 0 .. "
                       "offsets[-1] - 1")
        state[slots] = np.where(reset.astype(bool), 0, state[slots]) + 1
        position = inp - offsets[session_of[inp]] + 1
        if np.any(session_of[inp] != session_of[out]):
            raise Fail("an (inp, out) pair crosses from one session into the next: a session's last click has no "
                       "target inside the session")
        if not np.array_equal(state[slots], position):
            raise Fail("a slot's hidden state was not reset when a new session took the slot (or was reset in the "
                       "middle of a session): check `reset`")
        pairs += list(zip(inp.tolist(), out.tolist()))
    n_pairs = int((lengths - 1).sum())
    if len(pairs) != n_pairs or len(set(pairs)) != n_pairs:
        raise Fail(f"40 random sessions have {n_pairs} (input, target) pairs; your steps produced {len(pairs)} "
                   f"({len(set(pairs))} distinct): some are dropped or repeated")
    return passed("the hand-made 3-session example matches, every pair is used once, and hidden states are reset "
                  "exactly when a new session takes a slot")


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _negatives(r, include_target):
    """For each row, the scores that count as negatives: (B, C - 1), or (B, C) with the target."""
    b = r.shape[0]
    return np.stack([r[i] if include_target else np.delete(r[i], i) for i in range(b)])


def _ref_top1(r, *, include_target=False, divide="negatives", reg=True, swap=False, rows="mean"):
    """TOP1 with one common mistake switched on (defaults: the paper's formula)."""
    b, c = r.shape
    neg = _negatives(r, include_target)
    target = r[np.arange(b), np.arange(b)][:, None]
    per = _sig(target - neg if swap else neg - target) + (_sig(neg ** 2) if reg else 0.0)
    n = {"negatives": c - 1, "columns": c, "none": 1}[divide]
    per_row = per.sum(1) / n
    return float(per_row.mean() if rows == "mean" else per_row.sum())


def _ref_bpr_max(r, bpreg, *, include_target=False, swap=False, plain=False, reg="softmax"):
    """BPR-max with one common mistake switched on (defaults: the formula of Hidasi & Karatzoglou 2017)."""
    b = r.shape[0]
    neg = _negatives(r, include_target)
    target = r[np.arange(b), np.arange(b)][:, None]
    s = np.exp(neg - neg.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    pair = _sig(neg - target if swap else target - neg)
    if plain:
        return float(-np.log(pair).mean())
    ranking = -np.log((s * pair).sum(1) + 1e-24)
    penalty = (s * neg ** 2).sum(1) if reg == "softmax" else (neg ** 2).mean(1)
    return float((ranking + bpreg * penalty).mean())


def _check_loss(name, fn, reference, mistakes, **kw):
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(1)
    r = rng.normal(size=(4, 6))
    value = as_tensor(name, call(name, fn, torch.tensor(r), **kw), what="a scalar torch tensor")
    if value.numel() != 1:
        raise Fail(f"{name} must return one number (the mean over the rows), got a tensor of shape "
                   f"{tuple(value.shape)}" + (": average over the rows" if tuple(value.shape) == (4,) else ""))
    got, want = float(value.detach()), reference(r, **kw)
    if not abs(got - want) <= 1e-6 * max(1.0, abs(want)):
        raise diagnose(got, [Mistake(h, lambda s=s: s(r)) for h, s in mistakes],
                       f"{name} on a 4x6 score matrix is {got:.6f}, the formula gives {want:.6f}; the target of row "
                       "i sits on the diagonal, every other column of the row is a negative", rtol=1e-6)
    t = torch.tensor(r, dtype=torch.float64, requires_grad=True)
    loss = as_tensor(name, call(name, fn, t, **kw), need_grad=True)
    loss.backward()
    num = numerical_gradient(lambda x: reference(x, **kw), r)
    err = rel_error(t.grad.numpy(), num)
    if err > 1e-5:
        raise Fail(f"the gradient of {name} differs from finite differences: relative error {err:.2e}")


@check("top1_loss", expects="a scalar torch tensor: TOP1 averaged over the rows")
def check_top1(top1_loss):
    """TOP1 = mean_i mean_{j != i} [sigmoid(r_j - r_i) + sigmoid(r_j^2)] (Hidasi et al. 2016, 3.1.3)."""
    _check_loss("top1_loss", top1_loss, _ref_top1, [
        ("the target sits on the diagonal and is not a negative: leave scores[i, i] out of the average",
         lambda r: _ref_top1(r, include_target=True, divide="columns")),
        ("the target sits on the diagonal and is not a negative: leave scores[i, i] out of the sum",
         lambda r: _ref_top1(r, include_target=True)),
        ("average over the C - 1 negatives of a row (you divided by all C columns)",
         lambda r: _ref_top1(r, divide="columns")),
        ("average over the negatives of a row (you summed them)", lambda r: _ref_top1(r, divide="none")),
        ("the regularising term sigma(r_j^2), which pushes negative scores towards 0, is missing",
         lambda r: _ref_top1(r, reg=False)),
        ("a negative costs when it scores ABOVE the target: sigma(r_j - r_i), not sigma(r_i - r_j)",
         lambda r: _ref_top1(r, swap=True)),
        ("average over the rows (you summed them)", lambda r: _ref_top1(r, rows="sum")),
    ])
    return passed("top1_loss matches its formula and the gradient check passes (relative error < 1e-5)")


@check("bpr_max_loss", expects="a scalar torch tensor: BPR-max averaged over the rows")
def check_bpr_max(bpr_max_loss):
    """BPR-max = -log sum_j s_j sigmoid(r_i - r_j) + bpreg sum_j s_j r_j^2, s = softmax over negatives."""
    import torch  # noqa: PLC0415

    _check_loss("bpr_max_loss", bpr_max_loss, _ref_bpr_max, [
        ("the softmax weights run over the negatives only: give the target (the diagonal) weight 0",
         lambda r: _ref_bpr_max(r, 0.5, include_target=True)),
        ("use the bpreg argument (here 0.5), not a constant", lambda r: _ref_bpr_max(r, 1.0)),
        ("the score regularisation bpreg * sum_j s_j r_j^2 is missing", lambda r: _ref_bpr_max(r, 0.0)),
        ("the target must score ABOVE the negatives: sigma(r_i - r_j)", lambda r: _ref_bpr_max(r, 0.5, swap=True)),
        ("that is plain BPR (the mean of -log sigma over the negatives): BPR-max takes -log of the softmax-weighted "
         "sum and adds bpreg times the weighted r_j^2",
         lambda r: _ref_bpr_max(r, 0.5, plain=True)),
        ("weight the regulariser r_j^2 with the same softmax weights s_j", lambda r: _ref_bpr_max(r, 0.5, reg="mean")),
    ], bpreg=0.5)
    far = np.zeros((3, 5))
    far[np.arange(3), np.arange(3)] = -1000.0  # every target far below its negatives
    value = as_tensor("bpr_max_loss", call("bpr_max_loss", bpr_max_loss, torch.tensor(far), bpreg=0.5))
    if not bool(torch.isfinite(value).all()):
        raise Fail("bpr_max_loss is inf when the target scores far below every negative: sigma(r_i - r_j) is then 0 "
                   "and so is the weighted sum; keep the log's argument away from 0 as the authors do")
    return passed("bpr_max_loss matches its formula and the gradient check passes (relative error < 1e-5)")


def _eval_case():
    # items 1..6; popularity 1:3, 2:3, 3:2, 4:2, 5:1, 6:1, so a popularity model has many ties
    train = pd.DataFrame({"SessionId": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 4],
                          "ItemId": [1, 2, 3, 1, 2, 4, 3, 5, 1, 2, 4, 6], "Time": np.arange(12.0)})
    test = pd.DataFrame({"SessionId": [7, 7, 7, 8, 8, 9, 9, 9, 9],
                         "ItemId": [5, 5, 3, 6, 1, 2, 4, 2, 6], "Time": np.arange(9.0)})
    return train, test


def _eval_variant(model, test, k, ties, *, reset=True, target_offset=1, rank_base=1, mrr_cut=True, strict=False):
    """The evaluation loop with one common mistake switched on (defaults: the right loop)."""
    cols = np.searchsorted(model.item_ids, test["ItemId"].to_numpy())
    ranks = []
    model.reset(1)
    for rows in test.groupby("SessionId", sort=False).indices.values():
        if reset:
            model.reset_slots(np.array([True]))
        items = cols[rows]
        for t in range(len(items) - 1):
            scores = np.asarray(model.score_next(np.array([items[t]])))[0]
            s = scores[items[t + target_offset]]
            g, ge = np.sum(scores > s), np.sum(scores >= s)
            ranks.append({"optimistic": rank_base + g, "pessimistic": ge - 1 + rank_base,
                          "average": (2 * rank_base + g + ge - 1) / 2}[ties])
    ranks = np.asarray(ranks, dtype=float)
    hit = ranks < k if strict else ranks <= k
    mrr = np.where(hit, 1.0 / np.maximum(ranks, 1e-12), 0.0) if mrr_cut else 1.0 / np.maximum(ranks, 1e-12)
    return float(np.mean(hit)), float(np.mean(mrr))


_SETTINGS = [(ties, k) for ties in ("optimistic", "pessimistic", "average") for k in (1, 3)]


@check("evaluate_next_item", expects="a pair (recall, mrr) of numbers")
def check_evaluation(evaluate_next_item):
    """``evaluate_next_item(model, test, k, ties)`` -> ``(recall, mrr)`` must equal
    ``course_lib.evaluation.evaluate_sessions`` for S-POP (whose state must be reset per session)
    in every tie mode."""
    from course_lib.evaluation import evaluate_sessions  # noqa: PLC0415
    from course_lib.session_baselines import SPop  # noqa: PLC0415

    train, test = _eval_case()
    model = SPop().fit(train)
    got, want = [], []
    for ties, k in _SETTINGS:
        value = call("evaluate_next_item", evaluate_next_item, model, test, k, ties)
        if isinstance(value, dict):
            raise Fail("evaluate_next_item must return the pair (recall, mrr), not a dict")
        got.append(as_array("evaluate_next_item", value, shape=(2,), what="a pair (recall, mrr)"))
        ref = evaluate_sessions(model, test, cutoffs=(k,), ties=ties, batch_size=1)
        want.append([ref[f"Recall@{k}"], ref[f"MRR@{k}"]])
    got, want = np.array(got), np.array(want)
    if np.allclose(got, want):
        return passed("your loop gives the same Recall@k and MRR@k as evaluate_sessions in all three tie modes")

    def table(mode=None, swap=False, **kw):
        swapped = {"optimistic": "pessimistic", "pessimistic": "optimistic", "average": "average"}
        return [_eval_variant(SPop().fit(train), test, k, mode or (swapped[t] if swap else t), **kw)
                for t, k in _SETTINGS]

    first = int(np.flatnonzero(~np.isclose(got, want).all(1))[0])
    ties, k = _SETTINGS[first]
    raise diagnose(got, [
        Mistake("the state of the model was not reset when a new session started (reset the slot at each session's "
                "first click)", lambda: table(reset=False)),
        Mistake("the target of a click is the NEXT click of the session, not the click itself",
                lambda: table(target_offset=0)),
        Mistake("the tie rule is ignored: with ties='pessimistic' equal scores rank above the target, with "
                "'optimistic' below it, 'average' takes the mean", lambda: table("average")),
        Mistake("the tie rule is ignored: 'pessimistic' counts the equal scores (target included) as ranked above "
                "it, 'average' takes the mean of the two ranks", lambda: table("optimistic")),
        Mistake("the tie rule is ignored: 'optimistic' counts only the strictly higher scores (rank 1 + g)",
                lambda: table("pessimistic")),
        Mistake("optimistic and pessimistic are swapped: optimistic counts only the strictly higher scores (rank "
                "1 + g), pessimistic the higher-or-equal ones (g + e)", lambda: table(swap=True)),
        Mistake("ranks start at 1 (the best item has rank 1, not 0)", lambda: table(rank_base=0)),
        Mistake("MRR@k counts 0 for a target ranked below k", lambda: table(mrr_cut=False)),
        Mistake("a target at rank exactly k is a hit: Recall@k counts rank <= k", lambda: table(strict=True)),
    ], f"with ties='{ties}', k={k}: expected Recall {want[first, 0]:.4f} and MRR {want[first, 1]:.4f}, got "
       f"{got[first, 0]:.4f} and {got[first, 1]:.4f}; check the loop over sessions and the rank rule")
