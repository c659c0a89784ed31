"""Checks for notebook 05 (session-based recommendations with GRU4Rec)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import numerical_gradient, rel_error, report, run_check

# Three hand-made sessions in training order: A = events 0..2, B = 3..4, C = 5..7.
HAND_OFFSETS = np.array([0, 3, 5, 8])
HAND_STEPS = [  # (slots, inp, out, reset) with batch_size=2
    ([0, 1], [0, 3], [1, 4], [True, True]),
    ([0, 1], [1, 5], [2, 6], [False, True]),
    ([1], [6], [7], [False]),
]


def _as_lists(steps):
    return [tuple(np.asarray(x).tolist() for x in step) for step in steps]


def check_session_batches(session_parallel_batches) -> bool:
    """``session_parallel_batches(offsets, batch_size)`` -> steps ``(slots, inp, out, reset)``.

    Checked on the hand-made example of three sessions, then by running a "counting RNN" over
    random sessions: its state is reset where ``reset`` says and grows by one per step, so it must
    always equal the position of the input inside its own session.
    """
    got = {}
    if not run_check("session_parallel_batches", lambda: got.update(v=list(session_parallel_batches(HAND_OFFSETS, 2)))):
        return False
    steps = _as_lists(got["v"])
    want = [tuple(s) for s in HAND_STEPS]
    if steps != want:
        lines = "\n  ".join(f"step {k}: expected {w}, got {s}" for k, (w, s) in
                            enumerate(zip(want + [None] * 9, steps + [None] * 9)) if w != s and (w or s))
        return report(False, "", "on sessions A=[0,1,2], B=[3,4], C=[5,6,7] with 2 slots the steps "
                                 "(slots, inp, out, reset) differ:\n  " + lines)
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 7, size=40)
    offsets = np.r_[0, np.cumsum(lengths)]
    session_of = np.repeat(np.arange(len(lengths)), lengths)
    state = np.zeros(5)
    pairs = []
    for slots, inp, out, reset in (tuple(np.asarray(x) for x in s) for s in session_parallel_batches(offsets, 5)):
        state[slots] = np.where(reset.astype(bool), 0, state[slots]) + 1
        position = inp - offsets[session_of[inp]] + 1
        if not np.array_equal(state[slots], position):
            return report(False, "", "a slot's hidden state was not reset when a new session took the slot "
                                     "(or was reset in the middle of a session): check `reset`")
        if np.any(session_of[inp] != session_of[out]):
            return report(False, "", "an (inp, out) pair crosses from one session into the next")
        pairs += list(zip(inp.tolist(), out.tolist()))
    n_pairs = int((lengths - 1).sum())
    if len(pairs) != n_pairs or len(set(pairs)) != n_pairs:
        return report(False, "", f"40 random sessions have {n_pairs} (input, target) pairs; your steps "
                                 f"produced {len(pairs)} ({len(set(pairs))} distinct): some are dropped or repeated")
    return report(True, "the hand-made 3-session example matches, every pair is used once, and hidden "
                        "states are reset exactly when a new session takes a slot", "")


def _ref_top1(r):
    b = r.shape[0]
    sig = lambda x: 1 / (1 + np.exp(-x))
    out = []
    for i in range(b):
        rj = np.delete(r[i], i)
        out.append(np.mean(sig(rj - r[i, i]) + sig(rj**2)))
    return float(np.mean(out))


def _ref_bpr_max(r, bpreg):
    b = r.shape[0]
    sig = lambda x: 1 / (1 + np.exp(-x))
    out = []
    for i in range(b):
        rj = np.delete(r[i], i)
        s = np.exp(rj - rj.max())
        s /= s.sum()
        out.append(-np.log(np.sum(s * sig(r[i, i] - rj))) + bpreg * np.sum(s * rj**2))
    return float(np.mean(out))


def _check_loss(name, fn, reference, **kw) -> bool:
    import torch

    rng = np.random.default_rng(1)
    r = rng.normal(size=(4, 6))  # 4 slots: 4 in-batch targets + 2 extra samples
    got = {}
    if not run_check(name, lambda: got.update(v=fn(torch.tensor(r, dtype=torch.float64), **kw))):
        return False
    value = got["v"]
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        return report(False, "", f"{name} must return a scalar torch tensor (the mean over the rows), got {value!r}")
    want = reference(r, **kw)
    if abs(value.item() - want) > 1e-6 * max(1.0, abs(want)):
        return report(False, "", f"{name} on a 4x6 score matrix is {value.item():.6f}, the formula gives "
                                 f"{want:.6f}; remember the target sits on the diagonal and is not a negative")
    t = torch.tensor(r, dtype=torch.float64, requires_grad=True)
    loss = fn(t, **kw)
    if not loss.requires_grad:
        return report(False, "", f"{name} returned a tensor without a gradient: keep every step in torch")
    loss.backward()
    num = numerical_gradient(lambda x: reference(x, **kw), r)
    err = rel_error(t.grad.numpy(), num)
    if err > 1e-5:
        return report(False, "", f"the gradient of {name} differs from finite differences: relative error {err:.2e}")
    return report(True, f"{name} matches its formula and the gradient check passes (relative error < 1e-5)", "")


def check_top1(top1_loss) -> bool:
    """TOP1 = mean_i mean_{j != i} [sigmoid(r_j - r_i) + sigmoid(r_j^2)] (Hidasi et al. 2016, 3.1.3)."""
    return _check_loss("top1_loss", top1_loss, _ref_top1)


def check_bpr_max(bpr_max_loss) -> bool:
    """BPR-max = -log sum_j s_j sigmoid(r_i - r_j) + bpreg sum_j s_j r_j^2, s = softmax over negatives."""
    return _check_loss("bpr_max_loss", bpr_max_loss, _ref_bpr_max, bpreg=0.5)


def _eval_case():
    # items 1..6; popularity 1:3, 2:3, 3:2, 4:2, 5:1, 6:1, so a popularity model has many ties
    train = pd.DataFrame({"SessionId": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 4],
                          "ItemId": [1, 2, 3, 1, 2, 4, 3, 5, 1, 2, 4, 6], "Time": np.arange(12.0)})
    test = pd.DataFrame({"SessionId": [7, 7, 7, 8, 8, 9, 9, 9, 9],
                         "ItemId": [5, 5, 3, 6, 1, 2, 4, 2, 6], "Time": np.arange(9.0)})
    return train, test


def check_evaluation(evaluate_next_item) -> bool:
    """``evaluate_next_item(model, test, k, ties)`` -> ``(recall, mrr)`` must equal
    ``course_lib.evaluation.evaluate_sessions`` for S-POP (whose state must be reset per session)
    in every tie mode."""
    from ..evaluation import evaluate_sessions
    from ..session_baselines import SPop

    train, test = _eval_case()
    model = SPop().fit(train)
    for ties in ("optimistic", "pessimistic", "average"):
        for k in (1, 3):
            got = {}
            if not run_check("evaluate_next_item", lambda: got.update(v=evaluate_next_item(model, test, k, ties))):
                return False
            want = evaluate_sessions(model, test, cutoffs=(k,), ties=ties, batch_size=1)
            rec, mrr = (float(x) for x in got["v"])
            if not (np.isclose(rec, want[f"Recall@{k}"]) and np.isclose(mrr, want[f"MRR@{k}"])):
                hint = ("ties: with g higher scores and e equal ones (target included) the rank is 1+g "
                        "(optimistic), g+e (pessimistic) or their mean (average)")
                if ties == "optimistic":
                    hint = ("check that the model is reset at each new session and fed every event but the "
                            "last one, and that the target is the NEXT item")
                return report(False, "", f"with ties='{ties}', k={k}: expected Recall {want[f'Recall@{k}']:.4f} "
                                         f"and MRR {want[f'MRR@{k}']:.4f}, got {rec:.4f} and {mrr:.4f}; {hint}")
    return report(True, "your loop gives the same Recall@k and MRR@k as evaluate_sessions in all three tie modes", "")
