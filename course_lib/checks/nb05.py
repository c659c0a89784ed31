"""Checks for notebook 05 (GRU4Rec built by hand): the GRU cell, session-parallel mini-batches,
the forward step with its hidden-state reset, the scores of the sampled output, BPR-max, the
training step, the trained model against the reference, and the (optional) evaluation loop."""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import (
    Fail, Mistake, as_array, as_scalar, as_tensor, call, check, check_torch_gradient, close, describe, diagnose,
    numerical_gradient, passed, rel_error,
)

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


def _bpr_max_columns(r, bpreg):
    """BPR-max with the softmax taken down each column (over the rows) instead of along each row."""
    b = r.shape[0]
    masked = r.copy()
    masked[np.arange(b), np.arange(b)] = -np.inf
    s = np.exp(masked - masked.max(0, keepdims=True))
    s /= s.sum(0, keepdims=True)
    target = r[np.arange(b), np.arange(b)][:, None]
    ranking = -np.log((s * _sig(target - r)).sum(1) + 1e-24)
    return float((ranking + bpreg * (s * r ** 2).sum(1)).mean())


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
        ("the softmax runs over the wrong axis: the weights s_j of row i are a softmax over that row's negatives "
         "(along dim 1, the columns), not down a column over the rows", lambda r: _bpr_max_columns(r, 0.5)),
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


# ------------------------------------------------------------------------------------------------
# The model by hand: GRU cell, forward step with reset, sampled scores, training step. Each check
# runs the learner's function on a small library GRU4Rec whose weights are float64 with non-zero
# biases (so a missing bias shows) and compares it with the library's own method.
# ------------------------------------------------------------------------------------------------
def _model(layers=(4,), n_items=7, seed=0, **kw):
    """A GRU4Rec with drawn float64 weights for ``n_items`` items, biases included, in eval mode."""
    import torch  # noqa: PLC0415
    from torch import nn  # noqa: PLC0415

    from course_lib.torch_models.gru4rec import GRU4Rec  # noqa: PLC0415

    model = GRU4Rec(layers=list(layers), n_sample=0, seed=seed, device="cpu", **kw)
    model.init_weights(n_items)
    gen = torch.Generator().manual_seed(seed + 10)
    weights = {}
    for name, w in model.W.items():
        w = w.detach().double().clone()
        if name.startswith("b"):
            w = 0.5 * torch.randn(w.shape, generator=gen, dtype=torch.float64)
        elif name == "Wy":
            w[:, -1] = 0.5 * torch.randn(n_items, generator=gen, dtype=torch.float64)
        weights[name] = nn.Parameter(w)
    model.W = nn.ParameterDict(weights)
    return model.eval()


def _randn(gen, *shape, scale=1.0):
    import torch  # noqa: PLC0415

    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


def _cell(model, k, gi, h, *, z_swap=False, reset_after=False, rz_swap=False, no_reset=False, cand="tanh",
          layer=None, gates_x_only=False, cand_only=False):
    """The GRU step of the paper (eqs. 2-5) in the library's weight layout, or one common mistake."""
    import torch  # noqa: PLC0415

    n, k = h.shape[1], k if layer is None else layer
    U, Wh = model.W[f"Wrz{k}"], model.W[f"Wh{k}"]
    blocks = (slice(n, 2 * n), slice(0, n)) if rz_swap else (slice(0, n), slice(n, 2 * n))
    r, z = (torch.sigmoid(gi[:, b] + (0.0 if gates_x_only else h @ U[:, b])) for b in blocks)
    act = torch.tanh if cand == "tanh" else torch.sigmoid
    if no_reset:
        c = act(gi[:, 2 * n:] + h @ Wh)
    elif reset_after:
        c = act(gi[:, 2 * n:] + r * (h @ Wh))
    else:
        c = act(gi[:, 2 * n:] + (r * h) @ Wh)
    if cand_only:
        return c
    return z * h + (1 - z) * c if z_swap else (1 - z) * h + z * c


_CELL = "a torch tensor (B, h): the new hidden state h_t of layer k"


@check("gru_cell", expects=_CELL)
def check_gru_cell(gru_cell):
    """``gru_cell(self, k, gi, h) -> (B, h)``: one GRU step of layer ``k`` (paper, eqs. 2-5) with the
    library's weights ``self.W["Wrz{k}"]`` (h, 2h) and ``self.W["Wh{k}"]`` (h, h); ``gi`` (B, 3h) holds
    the input parts ``W x + b`` of (r, z, candidate). Checked on both layers of a two-layer model
    against the library's cell, then by a numerical gradient check."""
    import torch  # noqa: PLC0415

    from course_lib.torch_models.gru4rec import GRU4Rec  # noqa: PLC0415

    model = _model(layers=(4, 4), n_items=6)
    gen = torch.Generator().manual_seed(3)
    B, n = 3, 4
    shape_hints = {(B, 3 * n): "return the new state h_t (B, h), not the three gate inputs",
                   (B, 2 * n): "return the new state h_t (B, h), not the gates r and z"}
    for k in (1, 0):
        gi, h = _randn(gen, B, 3 * n), _randn(gen, B, n, scale=0.8)
        got = as_tensor("gru_cell", call("gru_cell", gru_cell, model, k, gi, h), shape=(B, n),
                        what="a torch tensor (B, h): the new hidden state", shape_hints=shape_hints)
        want = GRU4Rec.gru_cell(model, k, gi, h)
        if not close(got, want, rtol=1e-7, atol=1e-10):
            raise diagnose(got, [
                Mistake("the update gate weighs the wrong term: in eq. 2, z_t multiplies the candidate and "
                        "1 - z_t the previous state", lambda: _cell(model, k, gi, h, z_swap=True)),
                Mistake("the reset gate acts on h_{t-1} before the matrix (eq. 4: U applied to r_t * h_{t-1}); you "
                        "applied it to the product U h_{t-1} (torch.nn.GRUCell's variant)",
                        lambda: _cell(model, k, gi, h, reset_after=True)),
                Mistake("the blocks are in the order (r, z, candidate): the first h columns of gi and of Wrz belong "
                        "to the reset gate r, the next h to the update gate z",
                        lambda: _cell(model, k, gi, h, rz_swap=True)),
                Mistake("the reset gate r_t is missing from the candidate (eq. 4)",
                        lambda: _cell(model, k, gi, h, no_reset=True)),
                Mistake("the candidate uses tanh; only the gates r and z use the sigmoid",
                        lambda: _cell(model, k, gi, h, cand="sigmoid")),
                Mistake("use the weights of layer k (the names end in k), not always those of layer 0",
                        lambda: _cell(model, k, gi, h, layer=0)),
                Mistake("the gates also read the previous state: r_t and z_t add U h_{t-1} (the two blocks of "
                        "Wrz) to their part of gi", lambda: _cell(model, k, gi, h, gates_x_only=True)),
                Mistake("you returned the candidate; the new state interpolates between h_{t-1} and the candidate "
                        "(eq. 2)", lambda: _cell(model, k, gi, h, cand_only=True)),
            ], f"layer {k}: your new state differs from eqs. 2-5 (relative error {rel_error(got, want):.1e}); "
               "gi holds the input parts of (r, z, candidate), Wrz the U of r and z, Wh the U of the candidate",
                rtol=1e-7, atol=1e-10)
    gi, h = _randn(gen, B, 3 * n), _randn(gen, B, n, scale=0.8)
    check_torch_gradient("gru_cell", lambda hh: gru_cell(model, 0, gi, hh), h.numpy())
    check_torch_gradient("gru_cell", lambda gg: gru_cell(model, 0, gg, h), gi.numpy())
    return passed("your cell matches eqs. 2-5 on both layers of a 2-layer model, and its gradients match finite "
                  "differences")


def _forward(model, x, hidden, reset, *, reset_mode="before", bias=True, deep="out", out_layer=-1):
    """One step of every slot (the library's forward) or one common mistake."""
    import torch  # noqa: PLC0415

    from course_lib.torch_models.gru4rec import GRU4Rec  # noqa: PLC0415

    W = model.W
    if reset is not None and reset_mode != "none":
        mask = {"before": reset, "inverted": ~reset, "after": None,
                "all": torch.ones_like(reset) if bool(reset.any()) else reset}[reset_mode]
        if mask is not None:
            hidden = [h.masked_fill(mask, 0.0) for h in hidden]
    gi0 = W["Wx0"][x] + (W["b0"] if bias else 0.0)
    new, gi = [], gi0
    for k in range(len(model.layers)):
        if k > 0:
            gi = gi0 if deep == "input" else new[-1] @ W[f"Wx{k}"] + W[f"b{k}"]
        new.append(GRU4Rec.gru_cell(model, k, gi, hidden[k]))
    if reset is not None and reset_mode == "after":
        new = [h.masked_fill(reset, 0.0) for h in new]
    return new[out_layer], new


_FORWARD = "a pair (out, new_hidden): out (B, h_last) and a list with one new state (B, h_k) per layer"


def _forward_answer(value, B, layers):
    """The learner's (out, new_hidden) as tensors, or a Fail saying what is off."""
    if _is_tensor(value) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Fail(f"forward must return {_FORWARD}; got {describe(value)}")
    out, new = value
    out = as_tensor("forward", out, shape=(B, layers[-1]), what="out, the last layer's new state (B, h_last)")
    if _is_tensor(new) or not isinstance(new, (tuple, list)):
        raise Fail(f"new_hidden must be a list with one state per layer ({len(layers)} here), got {describe(new)}")
    if len(new) != len(layers):
        raise Fail(f"new_hidden must hold one new state per layer: this model has {len(layers)} layers, your list "
                   f"has {len(new)}")
    return out, [as_tensor("forward", h, shape=(B, n), what=f"the new state of layer {k} (B, {n})")
                 for k, (h, n) in enumerate(zip(new, layers))]


def _is_tensor(value) -> bool:
    return (type(value).__module__ or "").startswith("torch") and hasattr(value, "shape")


@check("forward", expects=_FORWARD)
def check_forward(forward):
    """``forward(self, x, hidden, reset=None) -> (out, new_hidden)``: zero the states of the slots
    where ``reset`` (B, 1) is True, feed the one-hot input (a row of ``Wx0`` plus ``b0``) through
    every layer (``self.gru_cell``), return the last layer's state and the new states of all layers.
    Checked on a two-layer model, without and with a reset."""
    import torch  # noqa: PLC0415

    model = _model(layers=(4, 4), n_items=7)
    gen = torch.Generator().manual_seed(5)
    x, B = torch.tensor([2, 5, 0, 5]), 4
    hidden = [_randn(gen, B, 4, scale=0.8), _randn(gen, B, 4, scale=0.8)]
    reset = torch.tensor([[True], [False], [True], [False]])
    for case in (None, reset):
        given = [h.clone() for h in hidden]
        out, new = _forward_answer(call("forward", forward, model, x, given, case), B, model.layers)
        want_out, want_new = _forward(model, x, hidden, case)
        got = torch.cat([out, *new], 1)
        if close(got, torch.cat([want_out, *want_new], 1), rtol=1e-7, atol=1e-10):
            continue

        def variant(**kw):
            o, n = _forward(model, x, hidden, case, **kw)
            return lambda: torch.cat([o, *n], 1)

        where = "with reset None" if case is None else "with reset = [[True], [False], [True], [False]]"
        raise diagnose(got, [
            Mistake("the slots where reset is True start a new session: zero their states before the GRU step",
                    variant(reset_mode="none")),
            Mistake("you zeroed the slots that CONTINUE their session: reset is True where a new session starts",
                    variant(reset_mode="inverted")),
            Mistake("zero the states of a new session BEFORE the step (its first click reads a zero state), not the "
                    "new states after it", variant(reset_mode="after")),
            Mistake("zero only the rows (slots) where reset is True, not every slot", variant(reset_mode="all")),
            Mistake("the first layer's gate inputs miss their bias b0 (the one-hot input picks a row of Wx0, then "
                    "the bias is added)", variant(bias=False)),
            Mistake("a deeper layer k reads the new state of layer k - 1 through its own Wx{k} and b{k}, not the "
                    "click's gate inputs", variant(deep="input")),
            Mistake("out is the LAST layer's new state (the scores are computed from it)", variant(out_layer=0)),
            Mistake("return the NEW states (one per layer), not the states you were given",
                    when=lambda g: all(close(a, b, rtol=1e-7, atol=1e-10) for a, b in zip(new, hidden))),
        ], f"{where}: your output or new states differ from the model's step (relative error "
           f"{rel_error(got, torch.cat([want_out, *want_new], 1)):.1e}); the input of an item is its row of Wx0 "
           "plus b0, every layer runs self.gru_cell", rtol=1e-7, atol=1e-10)
    return passed("your forward step matches the model's on a 2-layer model, and zeroes exactly the slots of new "
                  "sessions")


def _scores(model, out, cols, *, bias="last", act=None):
    """Scores of the items ``cols`` (the library's) or one common mistake."""
    import torch  # noqa: PLC0415

    Wy = model.W["Wy"] if cols is None else model.W["Wy"][cols]
    if bias == "first":
        s = out @ Wy[:, 1:].T + Wy[:, 0]
    else:
        s = out @ Wy[:, :-1].T + (Wy[:, -1] if bias == "last" else 0.0)
    return {None: s, "softmax": torch.softmax(s, dim=1), "sigmoid": torch.sigmoid(s), "tanh": torch.tanh(s)}[act]


_SCORES = "a torch tensor (B, C): the score of every item in cols for every row of out"


@check("score_items", expects=_SCORES)
def check_score_items(score_items):
    """``score_items(self, out, cols=None) -> (B, C)``: ``out @ Wy[cols, :-1].T + Wy[cols, -1]`` (the
    output bias is the last column of ``Wy``); every item when ``cols`` is None."""
    import torch  # noqa: PLC0415

    from course_lib.torch_models.gru4rec import GRU4Rec  # noqa: PLC0415

    model = _model(layers=(4,), n_items=7)
    out = _randn(torch.Generator().manual_seed(7), 3, 4)
    cols = torch.tensor([2, 5, 0, 6, 6])  # the 3 targets, then 2 samples (an item may come twice)
    errors = {RuntimeError: "a shape does not fit: Wy has h_last + 1 columns, its last column is the output bias "
                            "and the others multiply out"}
    got = as_tensor("score_items", call("score_items", score_items, model, out, cols, errors=errors), shape=(3, 5),
                    what=_SCORES, need_grad=True,
                    shape_hints={(3, 7): "score only the items in cols (the targets and the samples), not every item",
                                 (5, 3): "one row per output (B rows), one column per item of cols: (B, C)"})
    want = GRU4Rec.score_items(model, out, cols)
    if not close(got, want, rtol=1e-7, atol=1e-10):
        raise diagnose(got, [
            Mistake("the output bias is missing: the last column of Wy holds it", lambda: _scores(model, out, cols,
                                                                                                bias="none")),
            Mistake("the output bias is the LAST column of Wy, the first h_last columns multiply out",
                    lambda: _scores(model, out, cols, bias="first")),
            Mistake("return the raw scores: the loss applies its own softmax", lambda: _scores(model, out, cols,
                                                                                            act="softmax")),
            Mistake("return the raw scores (this model's final activation is linear): the loss applies its own "
                    "sigmoid", lambda: _scores(model, out, cols, act="sigmoid")),
            Mistake("this model's final activation is linear: no tanh on the scores",
                    lambda: _scores(model, out, cols, act="tanh")),
        ], f"your scores differ from out times the rows cols of Wy plus their bias (relative error "
           f"{rel_error(got, want):.1e})", rtol=1e-7, atol=1e-10)
    every = "with cols=None score every item, in the order of the rows of Wy (evaluation ranks all of them)"
    got = call("score_items", score_items, model, out, None, errors={Exception: every})
    if not _is_tensor(got) or tuple(got.shape) != (3, 7):
        raise Fail(f"with cols=None score_items returned {describe(got)}, expected shape (3, 7): {every}")
    if not close(got, GRU4Rec.score_items(model, out, None), rtol=1e-7, atol=1e-10):
        raise Fail(f"with cols=None your scores differ from those of all items: {every}")
    return passed("your scores match on sampled columns (targets first, then samples) and on all items")


def _step_batches(with_log_q: bool):
    """Two steps of 3 active slots out of 4 (weight 0.75): the second slot starts a new session in
    the first step; 3 extra samples per step."""
    import torch  # noqa: PLC0415

    from course_lib.sessions import Batch  # noqa: PLC0415

    gen = torch.Generator().manual_seed(11)

    def log_q():
        return torch.log_softmax(_randn(gen, 8), 0)[:6] if with_log_q else None

    return [Batch(torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6]), torch.tensor([0, 7, 2]),
                  torch.tensor([[False], [True], [False]]), log_q(), 0.75),
            Batch(torch.tensor([4, 5, 6]), torch.tensor([7, 1, 0]), torch.tensor([3, 3, 5]), None, log_q(), 0.75)]


def _step(model, batch, hidden, optimizer, *, weight=True, zero_grad=True, cols="targets+samples", reset=True,
          log_q=True, start="given", returns="loss"):
    """The training step (right by default) or one common mistake."""
    import torch  # noqa: PLC0415

    if zero_grad:
        optimizer.zero_grad()
    c = {"targets+samples": torch.cat([batch.y, batch.sample]), "targets": batch.y,
         "samples first": torch.cat([batch.sample, batch.y])}[cols]
    h = hidden if start == "given" else [torch.zeros_like(t) for t in hidden]
    out, new = model(batch.x, h, batch.reset if reset else None)
    loss = model.loss_function(model.score_items(out, c), batch.log_q if log_q else None)
    (loss * (batch.weight if weight else 1.0)).backward()
    optimizer.step()
    return (loss * batch.weight if returns == "weighted" else loss).item(), new


_STEP = "a pair (loss, new_hidden): the loss of the step (a number) and the list of new states"


def _run_steps(step_fn, loss: str, slips: dict | None = None) -> dict:
    """Two training steps on a fresh small model with a torch SGD (momentum 0.5): by the learner's
    ``step_fn`` (``slips`` None) or by :func:`_step` with ``slips``. What came out, as a record."""
    import torch  # noqa: PLC0415

    with_log_q = loss == "cross-entropy"
    model = _model(layers=(4,), n_items=8, loss=loss, **({"logq": 1.0} if with_log_q else {})).train()
    before = torch.cat([w.detach().reshape(-1) for w in model.W.values()]).clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.5)
    hidden = [_randn(torch.Generator().manual_seed(13), 3, 4, scale=0.8)]
    losses, states, returned_given = [], [], []
    for batch in _step_batches(with_log_q):
        if slips is None:
            value = call("train_step", step_fn, model, batch, [h.clone() for h in hidden], optimizer, expects=_STEP,
                         errors={TypeError: "if this comes from the optimizer: a torch optimizer's step() takes no "
                                            "arguments"})
            if _is_tensor(value) or not isinstance(value, (tuple, list)) or len(value) != 2:
                raise Fail(f"train_step must return {_STEP}; got {describe(value)}")
            value, new = value
            value = as_scalar("train_step", value, what="the loss of the step, one number")
            if _is_tensor(new) or not isinstance(new, (tuple, list)) or len(new) != 1:
                raise Fail(f"the new states must be a list with one (B, h) tensor per layer (1 here), got "
                           f"{describe(new)}: return what the forward pass gave")
            new = [as_tensor("train_step", new[0], shape=(3, 4), what="the new state of the layer (B, h)")]
        else:
            value, new = _step(model, batch, hidden, optimizer, **slips)
        returned_given.append(close(new[0], hidden[0], rtol=1e-9, atol=1e-12))
        losses.append(value)
        states.append(new[0].detach().reshape(-1))
        hidden = [new[0].detach()]
    after = torch.cat([w.detach().reshape(-1) for w in model.W.values()])
    return {"fingerprint": torch.cat([torch.tensor(losses, dtype=torch.float64), *states, after]).numpy(),
            "moved": not torch.equal(before, after),
            "grads": any(w.grad is not None and bool(torch.any(w.grad != 0)) for w in model.W.values()),
            "used_optimizer": len(optimizer.state) > 0, "returned_given": all(returned_given)}


@check("train_step", expects=_STEP)
def check_train_step(train_step):
    """``train_step(model, batch, hidden, optimizer) -> (loss, new_hidden)``: the columns are the
    targets then the samples, the forward step gets ``batch.reset``, the loss gets ``batch.log_q``,
    the gradient is that of ``loss * batch.weight``, the optimizer (any torch optimizer) takes one
    step after the old gradients were cleared. Two steps with BPR-max, then two with cross-entropy
    and the logQ correction, each compared with the right step on the same model."""
    for loss in ("bpr-max", "cross-entropy"):
        mine = _run_steps(train_step, loss)
        want = _run_steps(None, loss, {})
        if close(mine["fingerprint"], want["fingerprint"], rtol=1e-7, atol=1e-10):
            continue
        if not mine["moved"]:
            raise Fail("you computed gradients, but no weight moved: let the optimizer take its step" if mine["grads"]
                       else "no gradient reached the weights: back-propagate the weighted loss before the optimizer's "
                            "step (clear old gradients before that, not between the backward pass and the step)")
        if not mine["used_optimizer"]:
            raise Fail("the weights moved, but not through the optimizer you were given: let it take the step (it "
                       "keeps its own state, such as momentum or Adagrad's running sums)")
        if mine["returned_given"]:
            raise Fail("return the NEW states of the forward pass, not the states you were given")

        def variant(**slips):
            return lambda: _run_steps(None, loss, slips)["fingerprint"]

        raise diagnose(mine["fingerprint"], [
            Mistake("multiply the loss by batch.weight before the backward pass (a step with fewer active slots "
                    "weighs less)", variant(weight=False)),
            Mistake("clear the gradients at every step: your second step added the gradients of the first",
                    variant(zero_grad=False)),
            Mistake("score the targets of the mini-batch AND the extra samples (batch.sample)",
                    variant(cols="targets")),
            Mistake("the targets come first: row i's target must sit in column i (the diagonal the loss reads), the "
                    "samples after the B targets", variant(cols="samples first")),
            Mistake("pass batch.reset to the forward step: the slots of new sessions must start from a zero state",
                    variant(reset=False)),
            Mistake("start from the states the loop hands in (hidden), not from zeros: a session's state is carried "
                    "from one step to the next", variant(start="zeros")),
            Mistake("return the loss itself, not the loss times batch.weight (the loop weighs each step by its "
                    "events)", variant(returns="weighted")),
            Mistake("pass batch.log_q to the loss function (the logQ correction of the sampled cross-entropy)",
                    variant(log_q=False)),
        ], f"with the {loss} loss, your two steps give other losses, states or weights than the right step: scores "
           "of the targets then the samples, the loss times the weight, one optimizer step after clearing the old "
           "gradients", rtol=1e-7, atol=1e-10)
    return passed("two steps with BPR-max and two with the sampled cross-entropy (logQ) give the right losses, states "
                  "and weights")


@check("the results table", expects="results[name]['Recall@20'] numbers for your model, the reference and POP")
def check_trained(results, mine: str = "your GRU4Rec", reference: str = "reference GRU4Rec", baseline: str = "POP",
                  metric: str = "Recall@20", margin: float = 0.2, tol: float = 0.05):
    """Your trained model is at least ``margin`` above ``baseline`` and within ``tol`` of ``reference``
    on ``metric`` (a PASS line without measured numbers, so it is the same on every machine)."""
    if not isinstance(results, dict):
        raise Fail(f"results must be a dict of rows {{name: {{metric: value}}}}, got {describe(results)}")
    values = {}
    for row in (mine, reference, baseline):
        if row not in results or not isinstance(results[row], dict) or metric not in results[row]:
            raise Fail(f"results needs a row {row!r} with {metric!r}; it has {sorted(map(str, results))}")
        values[row] = as_scalar(f"results[{row!r}][{metric!r}]", results[row][metric], returned=False)
    got, ref, base = values[mine], values[reference], values[baseline]
    if np.isnan(got):
        raise Fail(f"{mine} has {metric} = NaN: training diverged; compare your step with the reference's settings")
    if got < base + margin:
        raise Fail(f"{mine} ({got:.3f}) is not {margin} above {baseline} ({base:.3f}): did the training loss go down "
                   "(learning curve)? Is every exercise's check PASS, and is MyGRU4Rec built from your functions?")
    if abs(got - ref) > tol:
        side = "below" if got < ref else "above"
        raise Fail(f"{mine} ({got:.3f}) is {abs(got - ref):.3f} {side} the reference ({ref:.3f}), more than {tol}: "
                   "train both with the same settings, seed and data")
    return passed(f"{mine} is more than {margin} above {baseline} on {metric} and within {tol} of the reference")
