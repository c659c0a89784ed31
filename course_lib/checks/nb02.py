"""Checks of notebook 02 (intermediate): paragraph vectors, PV-DBOW and PV-DM.

Each check runs the learner's code on small inputs whose right answer is known (a formula, a
hand-computed value, a planted corpus) and prints ``PASS: ...`` or says what is wrong.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.checks import Verdict, numerical_gradient, rel_error, report, run_check
from course_lib.torch_models.paragraph2vec import negative_sampling_loss, noise_distribution


def _returned_none(name: str, value) -> bool:
    """True, after a FAIL line, when the learner's function returned None (a missing ``return``)."""
    if value is None:
        report(False, "", f"{name} returned None: end the function with `return ...`")
    return value is None


def _inputs(seed=0, batch=4, k=3, dim=5, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(batch, dim, generator=gen, dtype=torch.float64),
            scale * torch.randn(batch, dim, generator=gen, dtype=torch.float64),
            scale * torch.randn(batch, k, dim, generator=gen, dtype=torch.float64))


def check_ns_loss(ns_loss) -> bool:
    """Exercise 1: value against the formula, autograd and finite-difference gradients, stability."""
    h, pos, neg = _inputs()
    out = {}
    if not run_check("ns_loss", lambda: out.setdefault("v", ns_loss(h, pos, neg))):
        return Verdict(False)
    got = out["v"]
    if _returned_none("ns_loss", got):
        return Verdict(False)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (4,):
        shape = tuple(got.shape) if hasattr(got, "shape") else type(got).__name__
        return report(False, "", f"ns_loss must return a tensor of shape (batch,) = (4,), got {shape}; "
                                 "sum over the K noise words but not over the batch")
    expected = negative_sampling_loss(h, pos, neg)
    err = rel_error(got.detach(), expected)
    if err > 1e-6:
        flipped = -F.logsigmoid(-(h * pos).sum(-1)) - F.logsigmoid(torch.bmm(neg, h[:, :, None])[..., 0]).sum(-1)
        hint = (" The signs look swapped: the true word needs log sigma(+score), the noise words log sigma(-score)."
                if rel_error(got.detach(), flipped) < 1e-6 else
                " Remember: -log sigma(u_O . h) - sum_k log sigma(-u_k . h), per example.")
        return report(False, "", f"ns_loss values differ from the formula (relative error {err:.1e}).{hint}")
    # gradient w.r.t. h: autograd through the learner's code vs the closed form, and finite differences
    h_req = h.clone().requires_grad_(True)
    total = ns_loss(h_req, pos, neg).sum()
    if total.requires_grad:
        total.backward()
    if h_req.grad is None:
        return report(False, "", "no gradient reaches h: build the loss from torch operations only (no .numpy(), "
                                 ".item() or .detach() inside ns_loss)")
    s_pos = (h * pos).sum(-1, keepdim=True)
    s_neg = torch.bmm(neg, h[:, :, None])  # (B, K, 1)
    closed = (torch.sigmoid(s_pos) - 1) * pos + (torch.sigmoid(s_neg) * neg).sum(1)
    numeric = numerical_gradient(lambda x: float(ns_loss(torch.tensor(x), pos, neg).sum()), h.numpy())
    err_auto, err_num = rel_error(h_req.grad, closed), rel_error(numeric, closed)
    if err_auto > 1e-6 or err_num > 1e-5:
        return report(False, "", f"the gradient of ns_loss is wrong (autograd vs closed form {err_auto:.1e}, "
                                 f"finite differences {err_num:.1e})")
    big = ns_loss(*_inputs(scale=30.0))
    if not torch.isfinite(big).all():
        return report(False, "", "ns_loss gives inf/NaN for large scores: use F.logsigmoid(x) instead of "
                                 "torch.log(torch.sigmoid(x)), which underflows to log(0)")
    # the printed bounds, not the errors themselves, so the message is the same on every machine
    return report(True, "ns_loss matches the formula; its gradient matches the closed form (relative error "
                        "< 1e-6 with autograd, < 1e-5 with finite differences); stable for large scores.", "")


def check_noise_probs(noise_probs) -> bool:
    """Exercise 2: unigram^0.75 without <PAD> and <UNK>."""
    counts = np.array([0, 7, 16, 1, 0, 81])
    out = {}
    if not run_check("noise_probs", lambda: out.setdefault("p", noise_probs(counts, 0.75))):
        return Verdict(False)
    if _returned_none("noise_probs", out["p"]):
        return Verdict(False)
    p = np.asarray(out["p"], dtype=np.float64)
    expected = np.array([0, 0, 8, 1, 0, 27]) / 36.0  # 16^.75 = 8, 81^.75 = 27
    if p.shape != expected.shape:
        return report(False, "", f"noise_probs must return one probability per word id, shape {expected.shape}, "
                                 f"got {p.shape}")
    if p[0] != 0 or p[1] != 0:
        return report(False, "", "<PAD> (id 0) and <UNK> (id 1) must have probability 0: they are not words")
    if abs(p.sum() - 1) > 1e-9:
        return report(False, "", f"the probabilities sum to {p.sum():.4f}, not 1: normalise")
    if np.allclose(p, np.array([0, 0, 16, 1, 0, 81]) / 98.0):
        return report(False, "", "these are the raw unigram frequencies: raise the counts to ns_exponent first")
    ok = np.allclose(p, expected)
    return report(ok, f"noise_probs = {np.round(p, 4).tolist()}", f"expected {np.round(expected, 4).tolist()}, "
                  f"got {np.round(p, 4).tolist()}")


def _toy_docs(seed=0, n_docs=30, doc_len=20, n_topics=3):
    """Planted corpus: ids 2..7 shared, each topic owns 8 ids; 70% of a document's words are its topic's."""
    rng = np.random.default_rng(seed)
    topics = np.arange(n_docs) % n_topics
    docs = []
    for t in topics:
        own = 8 + t * 8 + rng.integers(0, 8, doc_len)
        docs.append(np.where(rng.random(doc_len) < 0.7, own, 2 + rng.integers(0, 6, doc_len)))
    return docs, topics, 8 + n_topics * 8


def _sgd_train(model, docs, vocab_size, epochs, lr=0.05, negative=5, seed=0):
    """A plain autograd SGD loop over (paragraph, word) pairs; returns the mean loss per epoch."""
    gen = torch.Generator().manual_seed(seed)
    counts = np.bincount(np.concatenate(docs), minlength=vocab_size)
    noise = torch.tensor(noise_distribution(counts))
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


def check_pvdbow(PVDBOW) -> bool:
    """Exercise 3: the loss at initialisation, against the reference, and learning a planted corpus."""
    out = {}
    if not run_check("PVDBOW(...)", lambda: out.setdefault("m", PVDBOW(n_docs=6, vocab_size=12, dim=4, seed=0))):
        return Verdict(False)
    m = out["m"]
    doc, target = torch.tensor([0, 1, 5]), torch.tensor([2, 3, 11])
    negatives = torch.tensor([[4, 5], [6, 7], [8, 9]])
    if not run_check("PVDBOW.forward", lambda: out.setdefault("l", m(doc, target, negatives))):
        return Verdict(False)
    losses = out["l"]
    if _returned_none("PVDBOW.forward", losses):
        return Verdict(False)
    if tuple(losses.shape) != (3,):
        return report(False, "", f"forward must return one loss per example, shape (3,), got {tuple(losses.shape)}")
    # output vectors start at zero (word2vec), so every score is 0 and each loss is (1 + K) log 2
    if not torch.allclose(losses.detach().double(), torch.full((3,), 3 * np.log(2), dtype=torch.float64), atol=1e-5):
        return report(False, "", f"at initialisation (output vectors zero) every loss should be (1 + K) log 2 = "
                                 f"{3 * np.log(2):.4f}, got {np.round(losses.detach().numpy(), 4).tolist()}")
    with torch.no_grad():
        m.out_vectors.weight.normal_(generator=torch.Generator().manual_seed(1))
    expected = negative_sampling_loss(m.doc_vectors(doc), m.out_vectors(target), m.out_vectors(negatives))
    err = rel_error(m(doc, target, negatives).detach(), expected.detach())
    if err > 1e-5:
        return report(False, "", f"forward differs from ns_loss(d[doc], u[target], u[negatives]) (relative error "
                                 f"{err:.1e}): use the paragraph vector as h and the output vectors of the words")
    docs, topics, vocab_size = _toy_docs()
    torch.manual_seed(0)
    model = PVDBOW(n_docs=len(docs), vocab_size=vocab_size, dim=8, seed=0)
    if not m(doc, target, negatives).requires_grad:
        return report(False, "", "the losses carry no gradient: build them from the embeddings with torch "
                                 "operations only (no .detach(), .numpy() or .item())")
    out = {}
    if not run_check("training PVDBOW", lambda: out.setdefault("h", _sgd_train(model, docs, vocab_size, epochs=15))):
        return Verdict(False)
    history = out["h"]
    vec = model.doc_vectors.weight.detach().numpy()
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    acc = float(np.mean(topics[sims.argmax(1)] == topics))
    ok = history[-1] < 0.9 * history[0] and acc >= 0.8
    return report(ok, f"on a planted corpus the loss fell by more than 10% in 15 epochs and the nearest paragraph "
                      f"shares the planted topic for {acc:.0%} of paragraphs (chance 33%).",
                  f"training on a planted corpus: loss {history[0]:.3f} -> {history[-1]:.3f}, nearest paragraph "
                  f"of the same topic {acc:.0%} (want a 10% lower loss and >= 80%); check that the output "
                  "vectors and paragraph vectors both receive gradients")


def check_loss_history(history) -> bool:
    """After the training cell: the loss went down."""
    h = [float(x) for x in history]
    if len(h) < 2:
        return report(False, "", "train for at least 2 epochs to see the loss move")
    if not np.all(np.isfinite(h)):
        return report(False, "", f"the loss became NaN/inf ({h}); lower the learning rate")
    ok = h[-1] < 0.95 * h[0]
    return report(ok, f"the loss went down by more than 5% over {len(h)} epochs.",
                  f"the loss did not go down ({h[0]:.3f} -> {h[-1]:.3f}); check the update (sign, learning rate)")


def check_infer(infer_vector, PVDBOW) -> bool:
    """Exercise 4: inference with frozen output vectors recovers the topic of unseen paragraphs."""
    docs, topics, vocab_size = _toy_docs(n_docs=45)
    train, held = np.arange(30), np.arange(30, 45)
    torch.manual_seed(0)
    model = PVDBOW(n_docs=30, vocab_size=vocab_size, dim=8, seed=0)
    if not run_check("training PVDBOW (Exercise 3)", lambda: _sgd_train(model, [docs[i] for i in train], vocab_size,
                                                                         epochs=15)):
        return Verdict(False)
    counts = np.bincount(np.concatenate([docs[i] for i in train]), minlength=vocab_size)
    noise = torch.tensor(noise_distribution(counts))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = []
    ok = run_check("infer_vector", lambda: out.extend(
        infer_vector(model, torch.tensor(docs[i]), noise, epochs=30, seed=int(i)) for i in held))
    if not ok:
        return Verdict(False)
    if any(_returned_none("infer_vector", v) for v in out[:1]):
        return Verdict(False)
    if any(not torch.equal(before[k], v) for k, v in model.state_dict().items()):
        return report(False, "", "infer_vector changed the model's weights: only the new paragraph vector may be "
                                 "trained (give the optimiser that vector alone)")
    vecs = torch.stack([torch.as_tensor(v).detach().double().reshape(-1) for v in out]).numpy()
    if vecs.shape != (15, 8):
        return report(False, "", f"infer_vector must return one vector of size dim=8, got shape {vecs.shape[1:]}")
    trained = model.doc_vectors.weight.detach().double().numpy()
    a = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    b = trained / np.linalg.norm(trained, axis=1, keepdims=True)
    acc = float(np.mean(topics[train][(a @ b.T).argmax(1)] == topics[held]))
    return report(acc >= 0.8, f"inferred vectors of unseen paragraphs land next to trained paragraphs of the same "
                              f"planted topic for {acc:.0%} of them (chance 33%); the model stayed frozen.",
                  f"the nearest trained paragraph has the same topic for only {acc:.0%} of the inferred vectors "
                  "(want >= 80%): minimise ns_loss over the new vector for every word of the paragraph")


def check_dm_hidden(dm_hidden) -> bool:
    """Exercise 5: PV-DM's hidden vector, the mean of the paragraph vector and the context words."""
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(3, 4, generator=gen)
    w = torch.randn(3, 4, 4, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.float32)
    out = {}
    if not run_check("dm_hidden", lambda: out.setdefault("h", dm_hidden(d, w, mask))):
        return Verdict(False)
    h = out["h"]
    if _returned_none("dm_hidden", h):
        return Verdict(False)
    expected = (d + (w * mask[..., None]).sum(1)) / (1 + mask.sum(1, keepdim=True))
    if tuple(h.shape) != (3, 4):
        return report(False, "", f"dm_hidden must return (batch, dim) = (3, 4), got {tuple(h.shape)}")
    if torch.allclose(h, d):
        return report(False, "", "dm_hidden returned the paragraph vector alone: add the context words (PV-DM)")
    if torch.allclose(h, (d + w.sum(1)) / 5):
        return report(False, "", "the padded context positions were counted: multiply by the mask and divide by "
                                 "1 + the number of real context words")
    if torch.allclose(h, d + (w * mask[..., None]).sum(1), atol=1e-6):
        return report(False, "", "you summed the paragraph vector and the context words: divide by 1 + the "
                                 "number of real context words to average them")
    ok = torch.allclose(h, expected, atol=1e-6)
    return report(ok, "dm_hidden averages the paragraph vector with the real context words (the third example, "
                      "with no context word, is its paragraph vector alone).",
                  f"dm_hidden differs from (d + sum of masked word vectors) / (1 + n_context) "
                  f"(relative error {rel_error(h, expected):.1e})")


def check_tag_lift(result: dict, min_lift: float = 1.5) -> bool:
    """After the retrieval cell: nearest papers share tags clearly more often than random papers."""
    lift = float(result["lift"])
    return report(lift >= min_lift,
                  f"nearest papers share a tag at least {min_lift}x as often as random papers.",
                  f"nearest papers share a tag only {lift:.2f}x as often as random papers (want >= {min_lift}); "
                  "train longer or check the vectors")


def check_reinferred(own_rank, min_share: float = 0.8) -> bool:
    """Re-inferring training papers: their own trained vector should be the nearest one."""
    own_rank = np.asarray(own_rank)
    share = float(np.mean(own_rank == 0))
    return report(share >= min_share,
                  f"for at least {min_share:.0%} of the re-inferred papers the nearest trained vector is their own.",
                  f"only {share:.0%} of the re-inferred papers have their own trained vector as the nearest "
                  f"(want >= {min_share:.0%}): inference should use the training objective with more epochs")
