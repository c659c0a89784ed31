"""GRU4Rec (Hidasi et al., ICLR 2016) in the Theano programming model.

The same model, option names and weights as :mod:`course_lib.torch_models.gru4rec`, written the
way the authors' original code is: a symbolic graph for one session-parallel mini-batch step whose
``updates`` list holds the whole optimiser, including the row-wise (sparse) updates of the item
matrices. Options: ``loss`` (cross-entropy with optional ``logq``, bpr-max with ``bpreg``,
top1-max, bpr, top1), ``n_sample`` extra negatives drawn with probability
``popularity ** sample_alpha``, ``embedding`` (0 = one-hot input), ``constrained_embedding``,
``layers``, ``dropout_p_embed``, ``dropout_p_hidden``, ``dropout_state`` (the next step starts
from the dropped-out hidden state, "dropped", as in the authors' code, or from the undropped one,
"kept"), ``final_act``, ``optimizer`` (Adagrad with
``momentum`` as in the authors' code, or Adam), ``learning_rate``, ``batch_size``, ``n_epochs``.

The GRU step is GRU4Rec's (paper eqs. 2-5, the classic Theano GRU): the reset gate multiplies
``h`` *before* the recurrent matrix, ``tanh(W x + U (r * h))``, and the update gate interpolates
``h' = (1 - z) h + z h_cand``. The PyTorch track of GRU4Rec writes the same step by hand (it
does not use ``torch.nn.GRU``), so the two tracks agree to rounding.

Data preparation, session-parallel batches, negative samples and argument checks come from
:mod:`course_lib.sessions` (numpy only, no torch), so both tracks see exactly the same steps and
negatives; the fitted model follows the session scorer protocol (``item_ids``, ``reset``,
``reset_slots``, ``score_next``).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from course_lib.theano_models.compat import (
    Params, RandomStream, T, dropout, elu, floatX, function, log_sigmoid, log_softmax, sigmoid, theano,
)
from course_lib.sessions import (  # noqa: F401 (LOSSES: re-exported)
    LOSSES, SampleStore, check_slot_items, gru4rec_params, parse_final_act, session_parallel_batches, training_arrays,
)

_BIG = 1e30  # stands in for infinity when a column is masked out of a softmax


# ---------------------------------------------------------------------------------------------
# Losses. ``scores`` is (B, B + S): column j < B holds the target of slot j (the target of row i
# is on the diagonal), then the S extra samples. Every loss is averaged over the B rows.
# ---------------------------------------------------------------------------------------------
def _split(scores):
    """Target scores (B, 1) and a (B, B + S) 0/1 matrix that is 1 on the negatives."""
    b = scores.shape[0]
    target = scores[T.arange(b), T.arange(b)][:, None]
    neg = 1 - T.eye(b, scores.shape[1], dtype=scores.dtype)
    return target, neg


def cross_entropy_loss(scores, log_q=None, logq: float = 0.0):
    """``L_i = -log softmax(r)_i`` over targets + samples; with ``logq`` every column's score becomes
    ``r_j - logq * log q_j`` (sampled-softmax correction, ``log_q`` (B + S,))."""
    if logq and log_q is not None:
        scores = scores - np.asarray(logq, dtype=scores.dtype) * log_q[None, :]
    b = scores.shape[0]
    return -log_softmax(scores)[T.arange(b), T.arange(b)].mean()


def bpr_loss(scores):
    """``L_i = -1/N_S sum_{j != i} log sigmoid(r_i - r_j)``."""
    target, neg = _split(scores)
    return ((-log_sigmoid(target - scores) * neg).sum(axis=1) / neg.sum(axis=1)).mean()


def top1_loss(scores):
    """``L_i = 1/N_S sum_{j != i} [sigmoid(r_j - r_i) + sigmoid(r_j ** 2)]``."""
    target, neg = _split(scores)
    per_pair = sigmoid(scores - target) + sigmoid(scores**2)
    return ((per_pair * neg).sum(axis=1) / neg.sum(axis=1)).mean()


def _neg_log_softmax(scores, neg):
    """Log-softmax over the negatives of each row; the target gets (practically) ``-inf``."""
    masked = T.switch(neg > 0, scores, -_BIG)
    m = masked.max(axis=1, keepdims=True)
    return masked - m - T.log(T.exp(masked - m).sum(axis=1, keepdims=True))


def bpr_max_loss(scores, bpreg: float = 1.0):
    """BPR-max (Hidasi & Karatzoglou 2017): ``L_i = -log sum_j s_j sigmoid(r_i - r_j) + bpreg sum_j s_j r_j^2``
    with ``s_j`` the softmax over the negatives; the first term is a log-sum-exp of
    ``log s_j + log sigmoid(r_i - r_j)`` so it stays finite when every sigmoid underflows."""
    target, neg = _split(scores)
    log_s = _neg_log_softmax(scores, neg)
    z = log_s + log_sigmoid(target - scores) * neg  # (B, B + S)
    zm = z.max(axis=1, keepdims=True)
    ranking = -(zm[:, 0] + T.log(T.exp(z - zm).sum(axis=1)))
    reg = (T.exp(log_s) * scores**2).sum(axis=1)
    return (ranking + np.asarray(bpreg, dtype=scores.dtype) * reg).mean()


def top1_max_loss(scores):
    """TOP1-max: ``L_i = sum_j s_j [sigmoid(r_j - r_i) + sigmoid(r_j^2)]``, ``s_j`` as in BPR-max."""
    target, neg = _split(scores)
    s = T.exp(_neg_log_softmax(scores, neg))
    return (s * (sigmoid(scores - target) + sigmoid(scores**2))).sum(axis=1).mean()


def final_activation(name: str):
    """``linear``, ``tanh``, ``relu``, ``elu-<alpha>`` or ``leaky-<slope>`` on the scores (names
    parsed by :func:`course_lib.sessions.parse_final_act`)."""
    kind, p = parse_final_act(name)
    if kind == "linear":
        return lambda x: x
    return {"tanh": T.tanh, "relu": lambda x: T.maximum(x, 0), "elu": lambda x: elu(x, p),
            "leaky": lambda x: T.switch(x > 0, x, p * x)}[kind]


def _uniform(rng, shape, fan_in, fan_out):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (the initialisation of the paper's code)."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class GRU4Rec:
    """Session-based recommender with GRU layers, every training option switchable by name.

    Same constructor as the PyTorch ``GRU4Rec`` (no ``device``: the Theano family has no GPU path
    today) plus ``dtype`` (default floatX). Weights are shared variables named as the PyTorch
    track's ``W`` dict (``E``, ``Wx0``, ``Wrz0``, ``Wh0``, ``b0``, ..., ``Wy`` with the output bias as
    its last column), so
    :meth:`load_weights` takes ``torch_model.W``.
    """

    def __init__(self, layers=(100,), loss="cross-entropy", final_act="linear", n_sample=2048, sample_alpha=0.75,
                 logq=0.0, bpreg=1.0, embedding=0, constrained_embedding=False, dropout_p_embed=0.0,
                 dropout_p_hidden=0.0, optimizer="adagrad", learning_rate=0.05, momentum=0.0, batch_size=32,
                 n_epochs=10, sample_store_size=10_000_000, seed=0, dropout_state="dropped",
                 dtype: str | None = None):
        self.params = gru4rec_params(
            layers=layers, loss=loss, final_act=final_act, n_sample=n_sample, sample_alpha=sample_alpha, logq=logq,
            bpreg=bpreg, embedding=embedding, constrained_embedding=constrained_embedding,
            dropout_p_embed=dropout_p_embed, dropout_p_hidden=dropout_p_hidden, optimizer=optimizer,
            learning_rate=learning_rate, momentum=momentum, batch_size=batch_size, n_epochs=n_epochs,
            sample_store_size=sample_store_size, seed=seed, dropout_state=dropout_state)
        for k, v in self.params.items():
            setattr(self, k, v)
        self.dtype = dtype or floatX()
        self._act = final_activation(final_act)
        self.history: list[dict] = []
        self.data_report: dict = {}
        self.item_ids: np.ndarray | None = None
        self.W: Params | None = None
        self.compile_seconds: dict[str, float] = {}
        self._score_fn = None

    # --- parameters ----------------------------------------------------------------------------
    def _init_weights(self, n_items: int):
        """The PyTorch track's shapes and initialisation (numbers from ``numpy``, not torch)."""
        rng = np.random.default_rng(self.seed)
        W = self.W = Params(self.dtype)
        L = self.layers
        if self.constrained_embedding:
            d_in = L[-1]
        elif self.embedding:
            d_in = self.embedding
            W.add("E", _uniform(rng, (n_items, d_in), n_items, d_in))
        else:
            d_in = n_items
        for k, h in enumerate(L):
            W.add(f"Wx{k}", np.concatenate([_uniform(rng, (d_in, h), d_in, h) for _ in range(3)], 1))  # (d_in, 3h)
            W.add(f"Wrz{k}", np.concatenate([_uniform(rng, (h, h), h, h) for _ in range(2)], 1))  # (h, 2h)
            W.add(f"Wh{k}", _uniform(rng, (h, h), h, h))  # (h, h)
            W.add(f"b{k}", np.zeros(3 * h))
            d_in = h
        # output weights with the output bias as their last column: (n_items, h_last + 1)
        W.add("Wy", np.concatenate([_uniform(rng, (n_items, L[-1]), n_items, L[-1]), np.zeros((n_items, 1))], 1))
        self._row_params = {"Wy", "E"} | ({"Wx0"} if not (self.embedding or self.constrained_embedding) else set())
        self._score_fn = None

    def load_weights(self, weights) -> None:
        """Copy a ``{name: array or torch tensor}`` dict (e.g. the PyTorch track's ``W``) in."""
        self.W.load_state_dict(weights)

    def _input_table(self) -> str:
        if self.constrained_embedding:
            return "Wy"
        return "E" if self.embedding else "Wx0"

    # --- forward -------------------------------------------------------------------------------
    def _gru(self, k: int, gi, h):
        """One GRU step (paper eqs. 2-5); ``gi`` (B, 3h) is ``W x + b`` of the three gates."""
        n = self.layers[k]
        rz = sigmoid(gi[:, : 2 * n] + T.dot(h, self.W[f"Wrz{k}"]))  # (B, 2h)
        r, z = rz[:, :n], rz[:, n:]
        cand = T.tanh(gi[:, 2 * n :] + T.dot(r * h, self.W[f"Wh{k}"]))  # eq. 4, (B, h)
        return (1 - z) * h + z * cand  # eq. 2

    def _input_gates(self, x_rows, train: bool, stream):
        if self.embedding or self.constrained_embedding:
            x_rows = dropout(x_rows, self.dropout_p_embed, stream, train)
            return T.dot(x_rows, self.W["Wx0"]) + self.W["b0"]
        if train and self.dropout_p_embed > 0:  # one-hot input: dropping the unit drops the whole row
            u = stream.uniform((x_rows.shape[0], 1), dtype=x_rows.dtype)  # one draw per row
            keep = T.cast(u >= self.dropout_p_embed, x_rows.dtype)
            x_rows = x_rows * keep / np.asarray(1 - self.dropout_p_embed, dtype=x_rows.dtype)
        return x_rows + self.W["b0"]

    def _layers(self, gi0, H: list, train: bool, stream):
        new_h, gi, out = [], gi0, None
        for k in range(len(self.layers)):
            if k > 0:
                gi = T.dot(out, self.W[f"Wx{k}"]) + self.W[f"b{k}"]
            h = self._gru(k, gi, H[k])
            out = dropout(h, self.dropout_p_hidden, stream, train)
            new_h.append(out if self.dropout_state == "dropped" else h)  # as the PyTorch track
        return out, new_h

    def _hidden_inputs(self, tag: str) -> list:
        return [T.matrix(f"{tag}{k}", dtype=self.dtype) for k in range(len(self.layers))]  # (B, h_k)

    # --- the training step -------------------------------------------------------------------------
    def _compile_train_step(self):
        """``step(uniq_o, inv_o, uniq_i, inv_i, n_cols, log_q, *H) -> [loss, *H_new]``.

        ``uniq_*`` are the distinct rows of an item matrix that the step touches (``o``: the output
        matrix ``Wy``, ``i``: the input table) and ``inv_*`` map each use back to them
        (``np.unique(..., return_inverse=True)``). The gradient is taken with respect to the
        gathered rows only and the update list writes those rows back, so a step costs O(batch)
        instead of O(n_items): the sparse update of the authors' code.
        """
        dt, W = self.dtype, self.W
        ivec = lambda name: T.vector(name, dtype="int64")  # noqa: E731
        uniq_o, inv_o, uniq_i, inv_i = ivec("uniq_o"), ivec("inv_o"), ivec("uniq_i"), ivec("inv_i")
        n_cols = T.scalar("n_cols", dtype="int64")  # C = B + S
        log_q = T.vector("log_q", dtype=dt)  # (C,)
        H = self._hidden_inputs("h")
        stream = RandomStream(self.seed + 1)
        table = self._input_table()
        leaves = {"Wy": W["Wy"][uniq_o]}  # (U, h_last + 1): output weights, bias in the last column
        rows = {"Wy": uniq_o}
        if table != "Wy":
            leaves[table], rows[table] = W[table][uniq_i], uniq_i
            x_rows = leaves[table][inv_i]  # (B, 3h0) one-hot rows of Wx0, or (B, emb)
        else:  # constrained embedding: the inputs are rows of Wy (without the bias column)
            x_rows = leaves["Wy"][inv_o[n_cols:], :-1]  # (B, h_last)
        out, h_new = self._layers(self._input_gates(x_rows, True, stream), H, True, stream)  # (B, h_last)
        out = T.concatenate([out, T.ones((out.shape[0], 1), dtype=dt)], axis=1)  # the 1 multiplies the bias
        scores = self._act(T.dot(out, leaves["Wy"][inv_o[:n_cols]].T))  # (B, C)
        loss = self._loss_expr(scores, log_q)
        dense = [n for n in W.shared if n not in self._row_params]
        # a shrunken tail batch weighs in proportion to its size, as in the authors' code
        weight = T.cast(out.shape[0], dt) / np.asarray(self.batch_size, dtype=dt)
        grads = theano.grad(loss * weight, list(leaves.values()) + [W[n] for n in dense])
        updates = self._optimizer_updates(leaves, rows, dense, grads)
        return function([uniq_o, inv_o, uniq_i, inv_i, n_cols, log_q, *H], [loss, *h_new],
                        updates=updates + stream.pop_updates(), name="gru4rec_step")

    def _loss_expr(self, scores, log_q):
        if self.loss == "cross-entropy":
            return cross_entropy_loss(scores, log_q, self.logq)
        if self.loss == "bpr-max":
            return bpr_max_loss(scores, self.bpreg)
        return {"top1-max": top1_max_loss, "bpr": bpr_loss, "top1": top1_loss}[self.loss](scores)

    def _optimizer_updates(self, leaves: dict, rows: dict, dense: list, grads: list) -> list:
        """Adagrad (``G += g^2; v = momentum v + lr g / sqrt(G + eps); w -= v``) or Adam, as an
        update list; item matrices are updated on the gathered rows only."""
        dt = self.dtype
        c = lambda v: np.asarray(v, dtype=dt)  # noqa: E731
        lr, mom, eps = c(self.learning_rate), c(self.momentum), c(1e-6)
        if not hasattr(self, "_opt_state"):
            self._opt_state = {n: (theano.shared(np.zeros_like(v.get_value()), name=f"s1_{n}"),
                                   theano.shared(np.zeros_like(v.get_value()), name=f"s2_{n}"))
                               for n, v in self.W.shared.items()}
            self._t = theano.shared(c(0.0), name="adam_t")
        t_new = self._t + c(1.0)
        updates = [(self._t, t_new)]
        targets = [(n, leaves[n], rows[n]) for n in leaves] + [(n, None, None) for n in dense]
        for (name, leaf, idx), g in zip(targets, grads):
            s1, s2 = self._opt_state[name]
            param = self.W[name]
            if idx is None:
                take, put = (lambda buf: buf), (lambda buf, v: (buf, v))
            else:  # read and write back only the rows of this step
                take, put = (lambda buf: buf[idx]), (lambda buf, v: (buf, T.set_subtensor(buf[idx], v)))
            if self.optimizer == "adagrad":
                acc = take(s1) + g**2
                step = lr * g / T.sqrt(acc + eps)
                if self.momentum > 0:
                    step = mom * take(s2) + step
                    updates.append(put(s2, step))
                updates.append(put(s1, acc))
            else:
                m = c(0.9) * take(s1) + c(0.1) * g
                v = c(0.999) * take(s2) + c(0.001) * g**2
                updates += [put(s1, m), put(s2, v)]
                step = lr * (m / (c(1) - c(0.9) ** t_new)) / (T.sqrt(v / (c(1) - c(0.999) ** t_new)) + c(1e-8))
            updates.append(put(param, take(param) - step))
        return updates

    # --- training --------------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None, progress: bool = True,
            eval_cutoff: int = 20, init_weights=None) -> "GRU4Rec":
        """Train on ``train`` (SessionId, ItemId, Time) exactly as the PyTorch track does (same data
        preparation, batches and negative samples for the same seed). ``init_weights``: optional
        ``{name: array}`` to start from (the parity tests pass the PyTorch model's initial ``W``).
        ``history`` gets loss, events and events/s per epoch; ``compile_seconds`` the compile time.
        """
        from tqdm.auto import tqdm

        self.data_report, self.item_ids, item_idx, offsets, pop = training_arrays(train)
        n_items = len(self.item_ids)
        self.popularity = pop
        self._init_weights(n_items)
        if init_weights is not None:
            self.load_weights(init_weights)
        p_target = pop / pop.sum()
        p_sample = pop**self.sample_alpha / (pop**self.sample_alpha).sum()
        log_p_target, log_p_sample = np.log(p_target), np.log(p_sample)
        n_steps = sum(1 for _ in session_parallel_batches(offsets, self.batch_size))
        # the PyTorch track's store (numpy here): the same negatives for the same seed
        sampler = SampleStore(p_sample, self.n_sample, self.sample_store_size, self.seed + 2,
                              max_chunks=n_steps * self.n_epochs)
        t0 = time.perf_counter()
        step_fn = self._compile_train_step()
        self.compile_seconds["train_step"] = time.perf_counter() - t0
        n_pairs = len(item_idx) - (len(offsets) - 1)  # (input, target) pairs: events minus sessions
        constrained = self._input_table() == "Wy"
        self.history = []
        for epoch in range(self.n_epochs):
            t0, total, n_ev = time.perf_counter(), 0.0, 0
            H = [np.zeros((min(self.batch_size, len(offsets) - 1), h), dtype=self.dtype) for h in self.layers]
            bar = tqdm(total=n_pairs, desc=f"epoch {epoch + 1}/{self.n_epochs}", disable=not progress, leave=False,
                       unit="ev")
            for step_i, step in enumerate(session_parallel_batches(offsets, self.batch_size)):
                x, y = item_idx[step.inp], item_idx[step.out]
                sample = sampler.next()
                cols = y if sample is None else np.concatenate([y, sample])  # (C,) = (B + S,)
                uniq_o, inv_o = np.unique(np.concatenate([cols, x]) if constrained else cols, return_inverse=True)
                uniq_i, inv_i = (uniq_o[:0], inv_o[:0]) if constrained else np.unique(x, return_inverse=True)
                log_q = log_p_target[y]  # (C,): log-probability of each column being drawn
                if sample is not None:
                    log_q = np.concatenate([log_q, log_p_sample[sample]])
                h_in = [np.where(step.reset[:, None], 0.0, h[step.slots]).astype(self.dtype) for h in H]
                out = step_fn(uniq_o, inv_o, uniq_i, inv_i, len(cols), log_q, *h_in)
                loss = float(out[0])
                for h, hn in zip(H, out[1:]):
                    h[step.slots] = hn  # one-step BPTT: the state is carried as a plain array
                if not np.isfinite(loss):
                    raise ValueError(f"loss became {loss} at epoch {epoch + 1}, step {step_i}: lower "
                                     f"learning_rate (now {self.learning_rate}) or use another loss")
                total += loss * len(step.slots)
                n_ev += len(step.slots)
                if step_i % 50 == 0:
                    bar.update(n_ev - bar.n)
            bar.update(n_ev - bar.n)
            bar.close()
            secs = time.perf_counter() - t0
            rec = {"epoch": epoch + 1, "loss": total / max(n_ev, 1), "events": n_ev, "seconds": secs,
                   "events_per_s": n_ev / secs}
            if valid is not None:
                from course_lib.evaluation import evaluate_sessions

                res = evaluate_sessions(self, valid, cutoffs=(eval_cutoff,))
                rec.update({k: v for k, v in res.items() if isinstance(v, (int, float))})
            self.history.append(rec)
        return self

    # --- session scorer protocol --------------------------------------------------------------------
    def _check_fitted(self):
        if self.item_ids is None:
            raise ValueError("this GRU4Rec is not trained yet: call fit(train) first")

    def reset(self, n_slots: int) -> None:
        """Fresh zero hidden states for ``n_slots`` parallel sessions."""
        self._check_fitted()
        self._H = [np.zeros((int(n_slots), h), dtype=self.dtype) for h in self.layers]

    def reset_slots(self, mask) -> None:
        """Zero the hidden state of the slots where ``mask`` is True."""
        m = np.asarray(mask, dtype=bool)[:, None]
        self._H = [np.where(m, 0.0, h).astype(self.dtype) for h in self._H]

    def score_next(self, item_idx) -> np.ndarray:
        """Scores ``(n_slots, n_items)`` of every training item as the next click of each slot."""
        idx = check_slot_items(item_idx, getattr(self, "_H", None), self.item_ids)
        if self._score_fn is None:
            t0 = time.perf_counter()
            x = T.vector("x", dtype="int64")
            H = self._hidden_inputs("h")
            table = self.W[self._input_table()]
            x_rows = table[x, :-1] if self.constrained_embedding else table[x]
            out, h_new = self._layers(self._input_gates(x_rows, False, None), H, False, None)
            scores = self._act(T.dot(out, self.W["Wy"][:, :-1].T) + self.W["Wy"][:, -1])  # (n_slots, n_items)
            self._score_fn = function([x, *H], [scores, *h_new], name="gru4rec_score")
            self.compile_seconds["score_next"] = time.perf_counter() - t0
        scores, *self._H = self._score_fn(idx, *self._H)
        return scores

