"""GRU4Rec in PyTorch: session-based recommendation with a GRU (Hidasi et al., ICLR 2016).

The model reads one click at a time and scores every item as the next click. Everything the paper
and its later versions (Hidasi & Karatzoglou 2017, "Recurrent Neural Networks with Top-k Gains";
the 2017 RecSys summer school slides) use to train it is here and can be switched by name:

* session-parallel mini-batches (paper, Section 3.1.1;
  :func:`course_lib.sessions.session_parallel_batches`), one-step back-propagation through time,
  the hidden state of a slot reset to zero when its session ends;
* negatives = the other targets of the mini-batch (Section 3.1.2) plus ``n_sample`` extra items drawn
  in proportion to ``popularity ** sample_alpha`` from a precomputed store (top-k gains paper);
* losses: ``cross-entropy`` (softmax, optional ``logq`` correction), ``bpr-max`` (with ``bpreg``),
  ``top1-max``, ``bpr``, ``top1`` (Section 3.1.3 and the top-k gains paper);
* input: one-hot (``embedding=0``), a separate item embedding (``embedding>0``), or the constrained
  embedding that reuses the output weights (``constrained_embedding=True``);
* ``layers`` of GRUs, dropout on the input and on the hidden layers (the dropped-out hidden state is
  carried to the next step, as in the authors' code), a final activation;
* Adagrad with momentum applied only to the rows of the item matrices used in the mini-batch, as in
  the authors' code, or Adam; weights uniform in +-sqrt(6 / (fan_in + fan_out)) (Section 4.2).

BPR and TOP1 follow the original paper and the 2017 slides: ``-1/N_S sum log sigmoid(r_i - r_j)``
and ``1/N_S sum [sigmoid(r_j - r_i) + sigmoid(r_j ** 2)]`` (the Chinese translation in
``shared/papers`` drops BPR's minus sign and garbles TOP1's regulariser). As in the formulas, a
row's own target is not one of its negatives; the authors' code keeps it in the BPR/TOP1 average,
which only adds a constant and rescales the gradient by ``N_S / (N_S + 1)``.

The fitted model follows the session scorer protocol of ``docs/ARCHITECTURE.md`` (``item_ids``,
``reset``, ``reset_slots``, ``score_next``), so ``course_lib.evaluation.evaluate_sessions`` ranks
the next item against all training items exactly as it does for the baselines.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

# the numpy half lives in course_lib.sessions (shared with the Theano track); re-exported here
from course_lib.sessions import (  # noqa: F401
    COLUMNS, LOSSES, SampleStore, Step, check_slot_items, gru4rec_params, parse_final_act, prepare_sessions,
    session_parallel_batches, training_arrays,
)
from course_lib.torch_models.utils import resolve_device, torch_generator


# ---------------------------------------------------------------------------------------------
# Losses. ``scores`` is (B, B + n_sample): row i scores the items of the mini-batch's targets
# (column j < B is the target of slot j, so the target of row i sits on the diagonal) followed by
# the extra samples. Every loss is averaged over the B rows. A row without any negative (a tail
# batch of one slot and no extra samples) gives no ranking signal: the pairwise losses are 0 there.
# ---------------------------------------------------------------------------------------------
def _split(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target scores (B, 1) and a (B, B + S) mask that is True on the negatives."""
    b = scores.shape[0]
    target = scores[:, :b].diagonal().unsqueeze(1)
    neg_mask = torch.ones_like(scores, dtype=torch.bool)
    neg_mask[:, :b].fill_diagonal_(False)
    return target, neg_mask


def cross_entropy_loss(scores: torch.Tensor, log_q: torch.Tensor | None = None, logq: float = 0.0) -> torch.Tensor:
    """Cross-entropy over the softmax of the scores (slides, "GRU4Rec (2/3)").

    ``L_i = -log( exp(r_i) / sum_{j in targets+samples} exp(r_j) )``, optionally with the logQ
    correction of sampled softmax: every column's score becomes ``r_j - logq * log q_j`` where
    ``log_q`` (B + S,) is the log-probability that item j is drawn as a column.
    """
    if logq and log_q is not None:
        scores = scores - logq * log_q.unsqueeze(0)
    return -torch.log_softmax(scores, dim=1).diagonal().mean()


def bpr_loss(scores: torch.Tensor) -> torch.Tensor:
    """BPR averaged over the negatives (paper, Section 3.1.3).

    ``L_i = -1/N_S sum_{j != i} log sigmoid(r_i - r_j)``.
    """
    if scores.shape[1] < 2:
        return scores.sum() * 0.0
    target, neg = _split(scores)
    per_pair = -F.logsigmoid(target - scores)
    return (per_pair * neg).sum(1).div(neg.sum(1)).mean()


def top1_loss(scores: torch.Tensor) -> torch.Tensor:
    """TOP1 (paper, Section 3.1.3): a relative-rank estimate plus a score regulariser.

    ``L_i = 1/N_S sum_{j != i} [ sigmoid(r_j - r_i) + sigmoid(r_j ** 2) ]``.
    """
    if scores.shape[1] < 2:
        return scores.sum() * 0.0
    target, neg = _split(scores)
    per_pair = torch.sigmoid(scores - target) + torch.sigmoid(scores**2)
    return (per_pair * neg).sum(1).div(neg.sum(1)).mean()


def _neg_softmax(scores: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Softmax over the negatives of each row (the target gets weight 0)."""
    return torch.softmax(scores.masked_fill(~neg, float("-inf")), dim=1)


def bpr_max_loss(scores: torch.Tensor, bpreg: float = 1.0) -> torch.Tensor:
    """BPR-max (Hidasi & Karatzoglou 2017, eq. for BPR-max; slides "Improving GRU4Rec").

    ``L_i = -log( sum_j s_j sigmoid(r_i - r_j) ) + bpreg * sum_j s_j r_j ** 2`` with
    ``s_j = softmax over the negatives j != i``. The log of the weighted sum is computed as a
    log-sum-exp so it stays finite when every sigmoid underflows.
    """
    if scores.shape[1] < 2:
        return scores.sum() * 0.0
    target, neg = _split(scores)
    masked = scores.masked_fill(~neg, float("-inf"))
    log_s = masked - torch.logsumexp(masked, dim=1, keepdim=True)  # log softmax over negatives
    ranking = -torch.logsumexp(log_s + F.logsigmoid(target - scores).masked_fill(~neg, 0.0), dim=1)
    reg = (log_s.exp() * scores**2).sum(1)
    return (ranking + bpreg * reg).mean()


def top1_max_loss(scores: torch.Tensor) -> torch.Tensor:
    """TOP1-max (Hidasi & Karatzoglou 2017): TOP1 with softmax weights on the negatives.

    ``L_i = sum_j s_j [ sigmoid(r_j - r_i) + sigmoid(r_j ** 2) ]``, ``s_j`` as in BPR-max.
    """
    if scores.shape[1] < 2:
        return scores.sum() * 0.0
    target, neg = _split(scores)
    s = _neg_softmax(scores, neg)
    return (s * (torch.sigmoid(scores - target) + torch.sigmoid(scores**2))).sum(1).mean()


def final_activation(name: str):
    """``linear``, ``tanh``, ``relu``, ``elu-<alpha>`` or ``leaky-<slope>`` applied to the scores
    (names parsed by :func:`course_lib.sessions.parse_final_act`)."""
    kind, p = parse_final_act(name)
    if kind == "linear":
        return lambda x: x
    return {"tanh": torch.tanh, "relu": torch.relu, "elu": lambda x: F.elu(x, p),
            "leaky": lambda x: F.leaky_relu(x, p)}[kind]


# ---------------------------------------------------------------------------------------------
# Optimiser: Adagrad with momentum as in the authors' code, Adam; both update only the rows of
# the item matrices that the mini-batch touched.
# ---------------------------------------------------------------------------------------------
class _RowOptimizer:
    """Updates a parameter (whole or a set of rows ``idx``) from its gradient.

    adagrad: ``G += g**2; v = momentum * v + lr * g / sqrt(G + eps); w -= v`` (no momentum: v is the
    step). adam: Kingma & Ba with a global step count, rows updated lazily like SparseAdam.
    """

    def __init__(self, params: dict[str, torch.Tensor], method: str, lr: float, momentum: float,
                 eps: float = 1e-6, betas=(0.9, 0.999)):
        self.method, self.lr, self.momentum, self.eps, self.betas = method, lr, momentum, eps, betas
        self.state = {name: [torch.zeros_like(p), torch.zeros_like(p)] for name, p in params.items()}
        self.t = 0

    def tick(self):
        self.t += 1

    @torch.no_grad()
    def update(self, name: str, param: torch.Tensor, grad: torch.Tensor, idx: torch.Tensor | None = None):
        """Update ``param``, or only its rows ``idx`` (unique), from ``grad`` (in place, few copies)."""
        s1, s2 = self.state[name]
        get = (lambda buf: buf) if idx is None else (lambda buf: buf.index_select(0, idx))
        put = (lambda buf, val: None) if idx is None else (lambda buf, val: buf.index_copy_(0, idx, val))
        if self.method == "adagrad":
            acc = get(s1).addcmul_(grad, grad)
            put(s1, acc)
            step = grad / (acc + self.eps).sqrt_()
            step.mul_(self.lr)
            if self.momentum > 0:
                step = get(s2).mul_(self.momentum).add_(step)
                put(s2, step)
        else:
            b1, b2 = self.betas
            m = get(s1).mul_(b1).add_(grad, alpha=1 - b1)
            v = get(s2).mul_(b2).addcmul_(grad, grad, value=1 - b2)
            put(s1, m)
            put(s2, v)
            step = (m / (1 - b1**self.t)).div_((v / (1 - b2**self.t)).sqrt_().add_(1e-8)).mul_(self.lr)
        if idx is None:
            param.sub_(step)
        else:
            param.index_add_(0, idx, step, alpha=-1.0)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
def _uniform(shape, gen, fan_in, fan_out, device):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (the initialisation of the paper's code)."""
    a = float(np.sqrt(6.0 / (fan_in + fan_out)))
    return torch.empty(shape, device=device).uniform_(-a, a, generator=gen)


class GRU4Rec:
    """Session-based recommender with GRU layers; every training feature switchable by name.

    Parameters follow the authors' code: ``layers`` (hidden sizes), ``loss`` (one of
    :data:`LOSSES`), ``final_act``, ``n_sample``, ``sample_alpha``, ``logq``, ``bpreg``,
    ``embedding`` (0 = one-hot input), ``constrained_embedding``, ``dropout_p_embed``,
    ``dropout_p_hidden``, ``optimizer`` ("adagrad" with ``momentum`` or "adam"),
    ``learning_rate``, ``batch_size``, ``n_epochs``, ``sample_store_size``, ``seed``, ``device``.

    Three switches name where the authors' two implementations differ from each other or from us
    (``course bench gru4rec-official`` measures them): ``reset_after`` (False: the candidate state
    is ``tanh(W x + U (r * h))`` as in the paper's eq. 4 and the authors' Theano code; True:
    ``tanh(W x + r * (U h))`` as in their PyTorch code, which uses ``torch.nn.GRUCell``);
    ``dropout_state`` ("dropped", the default: the next step starts from the dropped-out hidden
    state, as in both of the authors' codes; "kept": from the undropped one); ``logq_counts`` (False: log q is
    a log-probability; True: the log of the raw counts ``n_j`` for targets and ``n_j ** sample_alpha``
    for samples, as the authors' PyTorch code; the two differ by a shift of the sampled columns).

    Use ``fit(train)`` with a frame of ``SessionId``, ``ItemId``, ``Time``; afterwards the model
    scores items through the session scorer protocol. ``history`` holds one dict per epoch and
    ``data_report`` what was dropped or re-sorted on the way in.
    """

    def __init__(self, layers=(100,), loss="cross-entropy", final_act="linear", n_sample=2048,
                 sample_alpha=0.75, logq=0.0, bpreg=1.0, embedding=0, constrained_embedding=False,
                 dropout_p_embed=0.0, dropout_p_hidden=0.0, optimizer="adagrad", learning_rate=0.05,
                 momentum=0.0, batch_size=32, n_epochs=10, sample_store_size=10_000_000, seed=0,
                 reset_after=False, dropout_state="dropped", logq_counts=False, device="auto"):
        params = gru4rec_params(
            layers=layers, loss=loss, final_act=final_act, n_sample=n_sample, sample_alpha=sample_alpha, logq=logq,
            bpreg=bpreg, embedding=embedding, constrained_embedding=constrained_embedding,
            dropout_p_embed=dropout_p_embed, dropout_p_hidden=dropout_p_hidden, optimizer=optimizer,
            learning_rate=learning_rate, momentum=momentum, batch_size=batch_size, n_epochs=n_epochs,
            sample_store_size=sample_store_size, seed=seed, dropout_state=dropout_state)
        # plus this track's keys, in the key order saved models have always had
        state = params.pop("dropout_state")
        self.params = dict(params, reset_after=bool(reset_after), dropout_state=state, logq_counts=bool(logq_counts))
        for k, v in self.params.items():
            setattr(self, k, v)
        self.device = resolve_device(device)
        self._act = final_activation(final_act)
        self.history: list[dict] = []
        self.data_report: dict = {}
        self.item_ids: np.ndarray | None = None
        self.W: dict[str, torch.Tensor] = {}
        self._H: list[torch.Tensor] | None = None

    # --- data --------------------------------------------------------------------------------
    @staticmethod
    def prepare(df: pd.DataFrame, what: str = "train") -> tuple[pd.DataFrame, dict]:
        """Validate a session frame and put it in training order (:func:`course_lib.sessions.prepare_sessions`)."""
        return prepare_sessions(df, what)

    # --- parameters ----------------------------------------------------------------------------
    def _init_weights(self, n_items: int):
        gen = torch_generator(self.seed, "cpu")
        dev, L = "cpu", self.layers
        W: dict[str, torch.Tensor] = {}
        if self.constrained_embedding:
            d_in = L[-1]
        elif self.embedding:
            d_in = self.embedding
            W["E"] = _uniform((n_items, d_in), gen, n_items, d_in, dev)
        else:
            d_in = n_items
        for k, h in enumerate(L):
            # input weights of the three gates (r, z, candidate), each block initialised on its own
            W[f"Wx{k}"] = torch.cat([_uniform((d_in, h), gen, d_in, h, dev) for _ in range(3)], 1)  # (d_in, 3h)
            W[f"Wrz{k}"] = torch.cat([_uniform((h, h), gen, h, h, dev) for _ in range(2)], 1)  # (h, 2h)
            W[f"Wh{k}"] = _uniform((h, h), gen, h, h, dev)  # (h, h)
            W[f"b{k}"] = torch.zeros(3 * h)
            d_in = h
        # output weights with the output bias By as their last column (one gather, one matmul)
        W["Wy"] = torch.cat([_uniform((n_items, L[-1]), gen, n_items, L[-1], dev), torch.zeros(n_items, 1)], 1)
        self.W = {k: v.to(self.device) for k, v in W.items()}
        # the item-indexed matrices get row-wise (sparse) updates
        self._row_params = {"Wy", "E"} | ({"Wx0"} if not (self.embedding or self.constrained_embedding) else set())
        self._gen = torch_generator(self.seed + 1, self.device)

    # --- forward ---------------------------------------------------------------------------------
    def _dropout(self, x: torch.Tensor, p: float, rows_only: bool = False) -> torch.Tensor:
        if p <= 0:
            return x
        shape = (x.shape[0], 1) if rows_only else x.shape
        keep = torch.empty(shape, device=x.device).bernoulli_(1 - p, generator=self._gen)
        return x * keep / (1 - p)

    def _gru(self, k: int, gi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One GRU step (paper eqs. 2-5): gi (B, 3h) is W x + b of the three gates."""
        n = h.shape[1]
        rz = torch.sigmoid(gi[:, : 2 * n] + h @ self.W[f"Wrz{k}"])  # (B, 2h)
        r, z = rz[:, :n], rz[:, n:]
        if self.reset_after:  # the authors' PyTorch code (torch.nn.GRUCell, cuDNN): r * (U h)
            cand = torch.tanh(gi[:, 2 * n :] + r * (h @ self.W[f"Wh{k}"]))
        else:  # eq. 4 and the authors' Theano code: U (r * h)
            cand = torch.tanh(gi[:, 2 * n :] + (r * h) @ self.W[f"Wh{k}"])  # (B, h)
        return (1 - z) * h + z * cand  # eq. 2

    def _input_gates(self, x_rows: torch.Tensor, train: bool) -> torch.Tensor:
        """Gate pre-activations of the first layer from the input rows (B, 3h0)."""
        if self.embedding or self.constrained_embedding:
            x_rows = self._dropout(x_rows, self.dropout_p_embed) if train else x_rows
            return x_rows @ self.W["Wx0"] + self.W["b0"]
        # one-hot input: x_rows already is the row of Wx0 of the clicked item; dropping the one-hot
        # input unit removes the whole row
        x_rows = self._dropout(x_rows, self.dropout_p_embed, rows_only=True) if train else x_rows
        return x_rows + self.W["b0"]

    def _layers(self, gi0: torch.Tensor, H: list[torch.Tensor], train: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        new_h, gi, out = [], gi0, None
        for k in range(len(self.layers)):
            if k > 0:
                gi = out @ self.W[f"Wx{k}"] + self.W[f"b{k}"]
            h = self._gru(k, gi, H[k])
            out = self._dropout(h, self.dropout_p_hidden) if train else h
            new_h.append(out if self.dropout_state == "dropped" else h)
        return out, new_h

    def _input_table(self) -> str:
        if self.constrained_embedding:
            return "Wy"
        return "E" if self.embedding else "Wx0"

    # --- training --------------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None = None, progress: bool = True,
            eval_cutoff: int = 20) -> "GRU4Rec":
        """Train on ``train`` (SessionId, ItemId, Time); evaluate on ``valid`` after each epoch.

        Items are the distinct ``ItemId`` of ``train``; ``history`` gets the mean loss, events and
        events/s of each epoch (and Recall/MRR@``eval_cutoff`` on ``valid`` when given).
        """
        self.data_report, self.item_ids, item_idx, offsets, pop = training_arrays(train)
        n_items = len(self.item_ids)
        self.popularity = pop
        self._init_weights(n_items)
        dev = self.device
        items_t = torch.as_tensor(item_idx, dtype=torch.long, device=dev)
        # log q of a column: targets follow popularity, samples popularity ** alpha; as probabilities,
        # or (logq_counts, the authors' PyTorch code) as the raw counts n_j and n_j ** alpha
        p_target = pop / pop.sum()
        p_sample = pop**self.sample_alpha / (pop**self.sample_alpha).sum()
        q_target, q_sample = (pop, pop**self.sample_alpha) if self.logq_counts else (p_target, p_sample)
        log_p_target = torch.as_tensor(np.log(q_target), dtype=torch.float32, device=dev)
        log_p_sample = torch.as_tensor(np.log(q_sample), dtype=torch.float32, device=dev)
        # the steps are the same every epoch: build their index tensors once, so an epoch does no
        # numpy -> torch conversion and no per-step gathers of the item array
        steps = _step_tensors(offsets, self.batch_size, items_t)
        sampler = _SampleStore(p_sample, self.n_sample, self.sample_store_size, self.seed + 2, dev,
                               max_chunks=len(steps) * self.n_epochs)
        opt = _RowOptimizer(self.W, self.optimizer, self.learning_rate, self.momentum)
        n_pairs = len(item_idx) - (len(offsets) - 1)  # (input, target) pairs: events minus sessions
        loss_fn = self._loss_fn()
        self.history = []
        for epoch in range(self.n_epochs):
            t0, total, n_ev = time.perf_counter(), 0.0, 0
            H = [torch.zeros(min(self.batch_size, len(offsets) - 1), h, device=dev) for h in self.layers]
            bar = tqdm(total=n_pairs, desc=f"epoch {epoch + 1}/{self.n_epochs}", disable=not progress,
                       leave=False, unit="ev")
            for step_i, (slots, x, y, reset) in enumerate(steps):
                # slots is None while every slot is busy (most steps): the states are used whole
                h_in = H if slots is None else [h.index_select(0, slots) for h in H]
                if reset is not None:
                    h_in = [h.masked_fill(reset, 0.0) for h in h_in]
                loss, h_new = self._train_step(x, y, h_in, sampler, log_p_target, log_p_sample, loss_fn, opt)
                if slots is None:
                    H = h_new  # one-step BPTT: the state is carried without its graph
                else:
                    for h, hn in zip(H, h_new):
                        h.index_copy_(0, slots, hn)
                if not np.isfinite(loss):
                    raise ValueError(f"loss became {loss} at epoch {epoch + 1}, step {step_i}: lower "
                                     f"learning_rate (now {self.learning_rate}) or use another loss")
                total += loss * len(x)
                n_ev += len(x)
                if step_i % 50 == 0:
                    bar.update(n_ev - bar.n)
            bar.update(n_ev - bar.n)
            bar.close()
            secs = time.perf_counter() - t0
            rec = {"epoch": epoch + 1, "loss": total / max(n_ev, 1), "events": n_ev,
                   "seconds": secs, "events_per_s": n_ev / secs}
            if valid is not None:
                from course_lib.evaluation import evaluate_sessions

                res = evaluate_sessions(self, valid, cutoffs=(eval_cutoff,))
                rec.update({k: v for k, v in res.items() if "@" in k})  # Recall@K, MRR@K on valid
            self.history.append(rec)
        return self

    def _loss_fn(self):
        if self.loss == "cross-entropy":
            return lambda s, log_q: cross_entropy_loss(s, log_q, self.logq)
        if self.loss == "bpr-max":
            return lambda s, log_q: bpr_max_loss(s, self.bpreg)
        return {"top1-max": lambda s, q: top1_max_loss(s), "bpr": lambda s, q: bpr_loss(s),
                "top1": lambda s, q: top1_loss(s)}[self.loss]

    def _train_step(self, x, y, h_in, sampler, log_p_target, log_p_sample, loss_fn, opt):
        W, B = self.W, len(x)
        sample = sampler.next()
        cols = torch.cat([y, sample]) if sample is not None else y  # (C,) = (B + S,) output items
        C = len(cols)
        # Gather the rows the step needs of every item-indexed matrix as new leaves, so gradient and
        # update touch only those rows; `inv` maps each use to its (unique) row.
        table = self._input_table()
        out_idx = torch.cat([cols, x]) if table == "Wy" else cols
        uniq_o, inv_o = _unique_rows(out_idx, len(self.item_ids))
        leaves = {"Wy": (uniq_o, W["Wy"].index_select(0, uniq_o).requires_grad_())}
        if table != "Wy":
            uniq_i, inv_i = _unique_rows(x, len(self.item_ids))
            leaves[table] = (uniq_i, W[table].index_select(0, uniq_i).requires_grad_())
            x_rows = leaves[table][1].index_select(0, inv_i)  # (B, 3h0) one-hot rows of Wx0, or (B, emb)
        else:
            x_rows = leaves["Wy"][1].index_select(0, inv_o[C:])[:, :-1]  # (B, h_last): the constrained embedding
        dense = [n for n in W if n not in self._row_params]
        for n in dense:
            W[n].requires_grad_()
        out, h_new = self._layers(self._input_gates(x_rows, True), h_in, True)  # (B, h_last)
        out = torch.cat([out, out.new_ones(B, 1)], 1)  # (B, h_last + 1): the 1 multiplies the bias
        scores = self._act(out @ leaves["Wy"][1].index_select(0, inv_o[:C]).T)  # (B, C)
        log_q = None
        if self.logq:
            log_q = log_p_target[y] if sample is None else torch.cat([log_p_target[y], log_p_sample[sample]])
        loss = loss_fn(scores, log_q)
        # a shrunken tail batch weighs in proportion to its size, as in the authors' code
        grads = torch.autograd.grad(loss * (B / self.batch_size), [leaf for _, leaf in leaves.values()] + [W[n] for n in dense])
        opt.tick()
        with torch.no_grad():
            for (name, (uniq, _)), g in zip(leaves.items(), grads):
                opt.update(name, W[name], g, uniq)
            for n, g in zip(dense, grads[len(leaves):]):
                W[n].requires_grad_(False)
                opt.update(n, W[n], g)
        return loss.item(), [h.detach() for h in h_new]

    # --- session scorer protocol --------------------------------------------------------------------
    def _check_fitted(self):
        if self.item_ids is None:
            raise ValueError("this GRU4Rec is not trained yet: call fit(train) or GRU4Rec.load(path) first")

    def reset(self, n_slots: int) -> None:
        """Fresh zero hidden states for ``n_slots`` parallel sessions."""
        self._check_fitted()
        self._H = [torch.zeros(int(n_slots), h, device=self.device) for h in self.layers]

    def reset_slots(self, mask) -> None:
        """Zero the hidden state of the slots where ``mask`` is True (a new session starts there)."""
        m = torch.as_tensor(np.asarray(mask, dtype=bool), device=self.device).unsqueeze(1)
        self._H = [h.masked_fill(m, 0.0) for h in self._H]

    @torch.no_grad()
    def score_next(self, item_idx) -> torch.Tensor:
        """Scores (n_slots, n_items) of every training item as the next click of each slot."""
        idx = check_slot_items(item_idx, getattr(self, "_H", None), self.item_ids)
        x = torch.as_tensor(idx, device=self.device)
        table = self.W[self._input_table()]
        x_rows = table[x, :-1] if self.constrained_embedding else table[x]
        out, self._H = self._layers(self._input_gates(x_rows, False), self._H, False)
        return self._act(out @ self.W["Wy"][:, :-1].T + self.W["Wy"][:, -1])

    # --- persistence -----------------------------------------------------------------------------
    def save(self, path) -> None:
        self._check_fitted()
        torch.save({"params": self.params, "item_ids": self.item_ids, "popularity": self.popularity,
                    "weights": {k: v.cpu() for k, v in self.W.items()}, "history": self.history,
                    "data_report": self.data_report}, path)

    @classmethod
    def load(cls, path, device="auto") -> "GRU4Rec":
        blob = torch.load(path, weights_only=False)
        model = cls(**blob["params"], device=device)
        model.item_ids, model.popularity = blob["item_ids"], blob["popularity"]
        model.history, model.data_report = blob["history"], blob["data_report"]
        model.W = {k: v.to(model.device) for k, v in blob["weights"].items()}
        return model


def _step_tensors(offsets: np.ndarray, batch_size: int, items_t: torch.Tensor) -> list[tuple]:
    """The steps of :func:`session_parallel_batches` as tensors ``(slots, x, y, reset)``: ``x``/``y``
    (n_active,) input and target item columns; ``slots`` None while all slots are active, else the
    active slot indices; ``reset`` None when no session starts, else an (n_active, 1) bool mask."""
    dev, steps = items_t.device, []
    n_slots = min(batch_size, len(offsets) - 1)
    for step in session_parallel_batches(offsets, batch_size):
        slots = None if len(step.slots) == n_slots else torch.as_tensor(step.slots, device=dev)
        reset = torch.as_tensor(step.reset, device=dev).unsqueeze(1) if step.reset.any() else None
        steps.append((slots, items_t[torch.as_tensor(step.inp, device=dev)],
                      items_t[torch.as_tensor(step.out, device=dev)], reset))
    return steps

def _unique_rows(idx: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of ``idx`` (all in [0, n)) and the position of each entry among them.

    Same result as ``torch.unique(idx, return_inverse=True)``; when the catalogue is not much
    larger than ``idx``, marking a length-n table is about twice as fast as sorting.
    """
    if n > 8 * len(idx):
        return torch.unique(idx, return_inverse=True)
    mark = torch.zeros(n, dtype=torch.long, device=idx.device)
    mark[idx] = 1
    uniq = mark.nonzero().squeeze(1)
    return uniq, (mark.cumsum(0) - 1)[idx]


class _SampleStore(SampleStore):
    """:class:`course_lib.sessions.SampleStore` with each store moved to ``device`` as a tensor
    (``device=None`` keeps numpy); the same draws, so both tracks see the same negatives."""

    def __init__(self, p: np.ndarray, n_sample: int, store_size: int, seed: int, device, max_chunks: int):
        super().__init__(p, n_sample, store_size, seed, max_chunks)
        self.device = device

    def _convert(self, draw: np.ndarray):
        return draw if self.device is None else torch.as_tensor(draw, device=self.device)
