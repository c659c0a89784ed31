"""Checks of notebook 02 (intermediate): paragraph vectors, PV-DBOW and PV-DM.

Each check runs the learner's code on small inputs whose right answer is known (a formula, a
hand-computed value, a planted corpus) and prints ``PASS: ...`` or says what is wrong.
"""
from __future__ import annotations

import weakref

import numpy as np
import torch
import torch.nn.functional as F

from . import (Fail, Mistake, as_array, as_scalar, as_tensor, call, check, close, describe, diagnose,
               numerical_gradient, passed, rel_error)


def _ns(h, pos, neg, *, pos_sign=1.0, neg_sign=-1.0, neg_reduce="sum"):
    """The negative-sampling loss per example, with the signs and the reduction over K as parameters
    (the defaults give ``-log s(u_O . h) - sum_k log s(-u_k . h)``)."""
    s_pos = (h * pos).sum(-1)  # (B,)
    s_neg = torch.bmm(neg, h.unsqueeze(-1)).squeeze(-1)  # (B, K)
    noise = F.logsigmoid(neg_sign * s_neg)
    return -F.logsigmoid(pos_sign * s_pos) - (noise.sum(-1) if neg_reduce == "sum" else noise.mean(-1))


def _inputs(seed=0, batch=4, k=3, dim=5, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(batch, dim, generator=gen, dtype=torch.float64),
            scale * torch.randn(batch, dim, generator=gen, dtype=torch.float64),
            scale * torch.randn(batch, k, dim, generator=gen, dtype=torch.float64))


@check("ns_loss", expects="a tensor (batch,): -log sigma(u_O . h) - sum_k log sigma(-u_k . h) per example")
def check_ns_loss(ns_loss):
    """Exercise 1: value against the formula, autograd and finite-difference gradients, stability."""
    h, pos, neg = _inputs()
    got = as_tensor("ns_loss", call("ns_loss", ns_loss, h, pos, neg), shape=(4,),
                    shape_hints={(): "you reduced over the batch: return one loss per example (batch,)",
                                 (1,): "you reduced over the batch: return one loss per example (batch,)",
                                 (4, 3): "sum the K noise-word terms of each example",
                                 (4, 1): "return shape (batch,): squeeze the last dimension"})
    expected = _ns(h, pos, neg)
    err = rel_error(got.detach(), expected)
    if err > 1e-6:
        raise diagnose(got, [
            Mistake("the signs look swapped: the true word needs log sigma(+score), the noise words log sigma(-score)",
                    _ns(h, pos, neg, pos_sign=-1.0, neg_sign=1.0)),
            Mistake("the noise words must score LOW: their term is log sigma(-u_k . h)", _ns(h, pos, neg, neg_sign=1.0)),
            Mistake("the true word must score HIGH: its term is log sigma(+u_O . h)", _ns(h, pos, neg, pos_sign=-1.0)),
            Mistake("the loss is the NEGATIVE log-likelihood: it is positive, check the overall sign",
                    -_ns(h, pos, neg)),
            Mistake("you averaged the K noise-word terms; the formula sums them", _ns(h, pos, neg, neg_reduce="mean")),
            Mistake("the noise-word term is missing", -F.logsigmoid((h * pos).sum(-1))),
            Mistake("the true word's term is missing",
                    -F.logsigmoid(-torch.bmm(neg, h.unsqueeze(-1)).squeeze(-1)).sum(-1)),
        ], f"ns_loss values differ from the formula (relative error {err:.1e}): -log sigma(u_O . h) - sum_k log "
           "sigma(-u_k . h), per example")
    # gradient w.r.t. h: autograd through the learner's code vs the closed form, and finite differences
    h_req = h.clone().requires_grad_(True)
    total = as_tensor("ns_loss", call("ns_loss", ns_loss, h_req, pos, neg), need_grad=True).sum()
    total.backward()
    if h_req.grad is None:
        raise Fail("no gradient reaches h: build the loss from torch operations only (no .numpy(), .item() or "
                   ".detach() inside ns_loss)")
    s_pos = (h * pos).sum(-1, keepdim=True)
    s_neg = torch.bmm(neg, h[:, :, None])  # (B, K, 1)
    closed = (torch.sigmoid(s_pos) - 1) * pos + (torch.sigmoid(s_neg) * neg).sum(1)
    numeric = numerical_gradient(
        lambda x: float(as_array("ns_loss", call("ns_loss", ns_loss, torch.tensor(x), pos, neg)).sum()), h.numpy())
    err_auto, err_num = rel_error(h_req.grad, closed), rel_error(numeric, closed)
    if err_auto > 1e-6 or err_num > 1e-5:
        raise Fail(f"the gradient of ns_loss is wrong (autograd vs closed form {err_auto:.1e}, finite differences "
                   f"{err_num:.1e}): is every step a torch operation on h?")
    big = as_array("ns_loss", call("ns_loss", ns_loss, *_inputs(scale=30.0)))
    if not np.all(np.isfinite(big)):
        raise Fail("ns_loss gives inf/NaN for large scores: log(sigmoid(x)) underflows to log(0) when x is very "
                   "negative; use the log-sigmoid function torch computes stably")
    # the printed bounds, not the errors themselves, so the message is the same on every machine
    return passed("ns_loss matches the formula; its gradient matches the closed form (relative error < 1e-6 with "
                  "autograd, < 1e-5 with finite differences); stable for large scores.")


@check("noise_probs", expects="a float array with one probability per word id, 0 for <PAD> and <UNK>, summing to 1")
def check_noise_probs(noise_probs):
    """Exercise 2: unigram^0.75 without <PAD> and <UNK>."""
    counts = np.array([0, 7, 16, 1, 0, 81])
    given = counts.copy()
    p = as_array("noise_probs", call("noise_probs", noise_probs, given, 0.75), shape=(6,),
                 what="one probability per word id", shape_hints={
                     (4,): "return one probability per word id, <PAD> and <UNK> included (with probability 0)"})
    if not np.array_equal(given, counts):
        raise Fail("noise_probs changed the counts array it was given: work on a float copy of it")
    expected = np.array([0, 0, 8, 1, 0, 27]) / 36.0  # 16^.75 = 8, 81^.75 = 27
    if not close(p, expected):
        raise diagnose(p, [
            Mistake("you zeroed <PAD> and <UNK> after normalising: zero them first, then normalise",
                    np.r_[0.0, 0.0, (counts ** 0.75 / (counts ** 0.75).sum())[2:]]),
            Mistake("<PAD> (id 0) and <UNK> (id 1) must have probability 0: they are not words",
                    when=lambda v: v[0] != 0 or v[1] != 0),
            Mistake("these are the raw unigram frequencies: raise the counts to ns_exponent first",
                    np.array([0, 0, 16, 1, 0, 81]) / 98.0),
            Mistake("raise the COUNTS to ns_exponent, then normalise (you raised the normalised frequencies)",
                    np.r_[0.0, 0.0, (counts[2:] / counts[2:].sum()) ** 0.75]),
            Mistake(f"the probabilities sum to {p.sum():.4f}, not 1: normalise", when=lambda v: abs(v.sum() - 1) > 1e-9),
            Mistake("ns_exponent is a power of the counts, not a factor", np.r_[0.0, 0.0, counts[2:] * 0.75] /
                    (counts[2:] * 0.75).sum()),
        ], f"expected {np.round(expected, 4).tolist()}, got {np.round(p, 4).tolist()}")
    half = as_array("noise_probs", call("noise_probs", noise_probs, counts.copy(), 0.5), shape=(6,))
    if not close(half, np.r_[0.0, 0.0, counts[2:] ** 0.5] / (counts[2:] ** 0.5).sum()):
        raise Fail("with ns_exponent=0.5 the probabilities are wrong although 0.75 was right: use the ns_exponent "
                   "argument, not a constant")
    return passed(f"noise_probs = {np.round(p, 4).tolist()}")


def _toy_docs(seed=0, n_docs=30, doc_len=20, n_topics=3):
    """Planted corpus: ids 2..7 shared, each topic owns 8 ids; 70% of a document's words are its topic's."""
    rng = np.random.default_rng(seed)
    topics = np.arange(n_docs) % n_topics
    docs = []
    for t in topics:
        own = 8 + t * 8 + rng.integers(0, 8, doc_len)
        docs.append(np.where(rng.random(doc_len) < 0.7, own, 2 + rng.integers(0, 6, doc_len)))
    return docs, topics, 8 + n_topics * 8


def _noise(counts) -> torch.Tensor:
    """word2vec's noise distribution: counts^0.75 without <PAD> and <UNK>, as float64."""
    c = np.asarray(counts, dtype=np.float64).copy()
    c[:2] = 0.0
    return torch.tensor(c ** 0.75 / (c ** 0.75).sum())


def _sgd_train(model, docs, vocab_size, epochs, lr=0.05, negative=5, seed=0):
    """A plain autograd SGD loop over (paragraph, word) pairs; returns the mean loss per epoch."""
    gen = torch.Generator().manual_seed(seed)
    noise = _noise(np.bincount(np.concatenate(docs), minlength=vocab_size))
    doc = torch.tensor(np.repeat(np.arange(len(docs)), [len(d) for d in docs]))
    word = torch.tensor(np.concatenate(docs))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(doc), generator=gen)
        total = 0.0
        for start in range(0, len(order), 64):
            ex = order[start:start + 64]
            neg = torch.multinomial(noise, len(ex) * negative, replacement=True, generator=gen).view(len(ex), negative)
            loss = model(doc[ex], word[ex], neg).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        history.append(total / len(doc))
    return history


_PVDBOW_ERRORS = {IndexError: "an index is out of range: paragraph ids index the paragraph vectors (n_docs rows), "
                              "word ids index the output vectors (vocab_size rows)"}


@check("PVDBOW", expects="forward(doc, target, negatives) -> a tensor (B,) of ns_loss(d_doc, u_target, u_negatives)")
def check_pvdbow(PVDBOW):
    """Exercise 3: the loss at initialisation, against the reference, and learning a planted corpus."""
    m = call("PVDBOW(...)", PVDBOW, n_docs=6, vocab_size=12, dim=4, seed=0)
    doc, target = torch.tensor([0, 1, 5]), torch.tensor([2, 3, 11])
    negatives = torch.tensor([[4, 5], [6, 7], [8, 9]])
    losses = as_tensor("PVDBOW.forward", call("PVDBOW.forward", m, doc, target, negatives, errors=_PVDBOW_ERRORS),
                       shape=(3,), what="one loss per example, shape (3,)",
                       shape_hints={(): "you reduced over the batch: return one loss per example",
                                    (3, 2): "sum the K noise-word terms (your ns_loss does it)"})
    # output vectors start at zero (word2vec), so every score is 0 and each loss is (1 + K) log 2
    at_init = losses.detach().double()
    if not torch.allclose(at_init, torch.full((3,), 3 * np.log(2), dtype=torch.float64), atol=1e-5):
        raise diagnose(at_init, [
            Mistake("the noise-word terms are missing: each example's loss also has the K terms of its noise words",
                    torch.full((3,), np.log(2), dtype=torch.float64)),
            Mistake("each example's loss is its true word's term plus the SUM of its K noise-word terms",
                    torch.full((3,), 2 * np.log(2), dtype=torch.float64)),
        ], f"at initialisation (output vectors zero) every loss should be (1 + K) log 2 = {3 * np.log(2):.4f}, got "
           f"{np.round(at_init.numpy(), 4).tolist()}", atol=1e-5)
    with torch.no_grad():
        m.out_vectors.weight.normal_(generator=torch.Generator().manual_seed(1))
    d, u = m.doc_vectors.weight.detach().double(), m.out_vectors.weight.detach().double()
    expected = _ns(d[doc], u[target], u[negatives])
    again = as_tensor("PVDBOW.forward", call("PVDBOW.forward", m, doc, target, negatives), shape=(3,))
    err = rel_error(again.detach(), expected)
    if err > 1e-5:
        raise diagnose(again, [
            Mistake("you gave ns_loss the output vector of the true word as h: h is the paragraph vector of doc",
                    _ns(u[target], d[doc], u[negatives])),
        ], f"forward differs from ns_loss(d[doc], u[target], u[negatives]) (relative error {err:.1e}): use the "
           "paragraph vector as h and the output vectors of the words", rtol=1e-5)
    if not again.requires_grad:
        raise Fail("the losses carry no gradient: build them from the embeddings with torch operations only (no "
                   ".detach(), .numpy() or .item())")
    docs, topics, vocab_size = _toy_docs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = call("PVDBOW(...)", PVDBOW, n_docs=len(docs), vocab_size=vocab_size, dim=8, seed=0)
        history = call("training PVDBOW", _sgd_train, model, docs, vocab_size, epochs=15)
    vec = model.doc_vectors.weight.detach().numpy()
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    acc = float(np.mean(topics[sims.argmax(1)] == topics))
    if not (history[-1] < 0.9 * history[0] and acc >= 0.8):
        raise Fail(f"training on a planted corpus: loss {history[0]:.3f} -> {history[-1]:.3f}, nearest paragraph of "
                   f"the same topic {acc:.0%} (want a 10% lower loss and >= 80%); check that the output vectors and "
                   "paragraph vectors both receive gradients")
    return passed(f"on a planted corpus the loss fell by more than 10% in 15 epochs and the nearest paragraph shares "
                  f"the planted topic for {acc:.0%} of paragraphs (chance 33%).")


@check("the loss history", expects="a list with the mean loss of each epoch")
def check_loss_history(history):
    """After the training cell: the loss went down."""
    h = as_array("the loss history", history, what="a list of per-epoch losses", returned=False).ravel()
    if len(h) < 2:
        raise Fail("train for at least 2 epochs to see the loss move")
    if not np.all(np.isfinite(h)):
        raise Fail(f"the loss became NaN/inf ({h.tolist()}); lower the learning rate")
    if not h[-1] < 0.95 * h[0]:
        raise Fail(f"the loss did not go down ({h[0]:.3f} -> {h[-1]:.3f}); check the update (sign, learning rate)")
    return passed(f"the loss went down by more than 5% over {len(h)} epochs.")


def _fit_loss(vectors: np.ndarray, words: list, out: torch.Tensor, noise: torch.Tensor) -> float:
    """Mean PV-DBOW loss of paragraph vectors over their own words, with fixed noise words."""
    gen = torch.Generator().manual_seed(123)
    total = 0.0
    for v, w in zip(vectors, words):
        w = torch.as_tensor(w)
        neg = torch.multinomial(noise, len(w) * 5, replacement=True, generator=gen).view(len(w), 5)
        h = torch.as_tensor(v, dtype=torch.float64).expand(len(w), -1)
        total += float(_ns(h, out.double()[w], out.double()[neg]).mean())
    return total / len(words)


_TRAINED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""The weights of each PVDBOW class after training on the planted corpus (deterministic), so that
running the inference check again does not train again; a redefined class is a new key."""


def _trained_pvdbow(PVDBOW, docs, vocab_size):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = call("PVDBOW(...) (Exercise 3)", PVDBOW, n_docs=len(docs), vocab_size=vocab_size, dim=8, seed=0)
        try:
            state = _TRAINED.get(PVDBOW)
        except TypeError:  # not weakly referable: train every time
            state = None
        if state is not None:
            model.load_state_dict(state)
            return model
        call("training PVDBOW (Exercise 3)", _sgd_train, model, docs, vocab_size, epochs=15)
    try:
        _TRAINED[PVDBOW] = {k: v.clone() for k, v in model.state_dict().items()}
    except TypeError:
        pass
    return model


@check("infer_vector", expects="a (dim,) tensor: the paragraph vector fitted to the words with the model frozen")
def check_infer(infer_vector, PVDBOW):
    """Exercise 4: inference with frozen output vectors recovers the topic of unseen paragraphs."""
    docs, topics, vocab_size = _toy_docs(n_docs=45)
    train, held = np.arange(30), np.arange(30, 45)
    model = _trained_pvdbow(PVDBOW, [docs[i] for i in train], vocab_size)
    noise = _noise(np.bincount(np.concatenate([docs[i] for i in train]), minlength=vocab_size))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = [call("infer_vector", infer_vector, model, torch.tensor(docs[i]), noise, epochs=30, seed=int(i))
           for i in held]
    if any(not torch.equal(before[k], v) for k, v in model.state_dict().items()):
        raise Fail("infer_vector changed the model's weights: only the new paragraph vector may be trained (give the "
                   "optimiser that vector alone)")
    arrays = [as_array("infer_vector", v, what="a (dim,) tensor") for v in out]
    if any(a.size != 8 for a in arrays):
        raise Fail(f"infer_vector must return one vector of size dim=8, got {describe(out[0])}")
    vecs = np.stack([a.reshape(-1) for a in arrays])
    if not np.all(np.isfinite(vecs)):
        raise Fail("infer_vector returned NaN/inf values: the optimisation diverged; check the loss and the "
                   "learning rate")
    again = as_array("infer_vector", call("infer_vector", infer_vector, model, torch.tensor(docs[held[0]]), noise,
                                          epochs=30, seed=int(held[0]))).reshape(-1)
    if not close(again, vecs[0]):
        raise Fail("two calls with the same seed gave different vectors: draw the start vector and the noise words "
                   "from a generator seeded with `seed`, not from the global random state")
    out_vectors = model.out_vectors.weight.detach()
    words = [docs[i] for i in held]
    fitted, zero = _fit_loss(vecs, words, out_vectors, noise), _fit_loss(np.zeros_like(vecs), words, out_vectors, noise)
    if fitted > zero + 0.05:
        raise Fail(f"the inferred vectors explain their words WORSE than a zero vector (loss {fitted:.3f} vs "
                   f"{zero:.3f}): the update climbs the loss; step against the gradient")
    if fitted > zero - 0.05:
        raise Fail(f"the inferred vectors barely moved from their start (loss {fitted:.3f} vs {zero:.3f} for a zero "
                   "vector): run the optimiser's steps on the new vector for every epoch")
    trained = model.doc_vectors.weight.detach().double().numpy()
    a = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    b = trained / np.linalg.norm(trained, axis=1, keepdims=True)
    acc = float(np.mean(topics[train][(a @ b.T).argmax(1)] == topics[held]))
    if acc < 0.8:
        raise Fail(f"the nearest trained paragraph has the same topic for only {acc:.0%} of the inferred vectors "
                   "(want >= 80%): minimise ns_loss over the new vector for every word of the paragraph")
    return passed(f"inferred vectors of unseen paragraphs land next to trained paragraphs of the same planted topic "
                  f"for {acc:.0%} of them (chance 33%); the model stayed frozen.")


@check("dm_hidden", expects="a (batch, dim) tensor: (d + sum of the masked word vectors) / (1 + n_context)")
def check_dm_hidden(dm_hidden):
    """Exercise 5: PV-DM's hidden vector, the mean of the paragraph vector and the context words."""
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(3, 4, generator=gen)
    w = torch.randn(3, 4, 4, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.float32)
    h = as_array("dm_hidden", call("dm_hidden", dm_hidden, d, w, mask), shape=(3, 4),
                 what="(batch, dim) = (3, 4)",
                 shape_hints={(3, 4, 4): "average over the context positions (dim=1) too",
                              (3, 5, 4): "do not stack d with the words: add them and divide by the count"})
    words = (w * mask[..., None]).sum(1)
    n = mask.sum(1, keepdim=True)
    expected = (d + words) / (1 + n)
    if close(h, expected, atol=1e-6):
        return passed("dm_hidden averages the paragraph vector with the real context words (the third example, "
                      "with no context word, is its paragraph vector alone).")
    if not np.all(np.isfinite(h)):
        raise Fail("dm_hidden gives inf/NaN for the example without context words: the paragraph vector counts as "
                   "one of the averaged vectors, so divide by 1 + the number of real context words")
    raise diagnose(h, [
        Mistake("dm_hidden returned the paragraph vector alone: add the context words (PV-DM)", d),
        Mistake("the padded context positions were counted: multiply by the mask and divide by 1 + the number of "
                "real context words", (d + w.sum(1)) / 5),
        Mistake("the padded context positions were counted: leave them out of the sum", (d + w.sum(1)) / (1 + n)),
        Mistake("you summed the paragraph vector and the context words: divide by 1 + the number of real context "
                "words to average them", d + words),
        Mistake("you averaged the words first and then with d: every one of the 1 + n vectors weighs the same",
                (d + words / n.clamp(min=1)) / 2),
        Mistake("the paragraph vector is missing: it is averaged together with the context words", words / (1 + n)),
    ], f"dm_hidden differs from (d + sum of masked word vectors) / (1 + n_context) (relative error "
       f"{rel_error(h, expected):.1e})", atol=1e-6)


@check("the retrieval result", expects="a dict with the key 'lift'")
def check_tag_lift(result: dict, min_lift: float = 1.5):
    """After the retrieval cell: nearest papers share tags clearly more often than random papers."""
    if not isinstance(result, dict) or "lift" not in result:
        raise Fail(f"expected the dict returned by the retrieval cell, with the key 'lift'; got {describe(result)}")
    lift = as_scalar("result['lift']", result["lift"], returned=False)
    if not lift >= min_lift:
        raise Fail(f"nearest papers share a tag only {lift:.2f}x as often as random papers (want >= {min_lift}); "
                   "train longer or check the vectors")
    return passed(f"nearest papers share a tag at least {min_lift}x as often as random papers.")


@check("own_rank", expects="an array with the rank of each paper's own trained vector (0 = nearest)")
def check_reinferred(own_rank, min_share: float = 0.8):
    """Re-inferring training papers: their own trained vector should be the nearest one."""
    ranks = as_array("own_rank", own_rank, what="an array of ranks", returned=False).ravel()
    if ranks.size == 0:
        raise Fail("own_rank is empty: re-infer some training papers first")
    share = float(np.mean(ranks == 0))
    if share < min_share:
        raise Fail(f"only {share:.0%} of the re-inferred papers have their own trained vector as the nearest (want >= "
                   f"{min_share:.0%}): inference should use the training objective with more epochs")
    return passed(f"for at least {min_share:.0%} of the re-inferred papers the nearest trained vector is their own.")
