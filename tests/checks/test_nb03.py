"""Meta-tests of the notebook 03 checks: the notebook's answers pass with its PASS lines, plausible
wrong answers fail with the hint of their mistake, wrong types fail without raising."""
import pytest
import torch
import torch.nn.functional as F

from course_lib.checks import WRONG_KINDS, nb03
from course_lib.torch_models.hybrid import bpr_loss, listwise_loss


def _fails_with(capsys, verdict, hint):
    out = capsys.readouterr().out
    assert not verdict, out
    assert out.startswith("FAIL: ") and hint in out, out


# ------------------------------------------------------------------------------------- PV-DBOW


def _pv(doc, pos, noise, *, pos_sign=1.0, neg_sign=-1.0, over_t="mean", over_k="sum", stable=True):
    """A learner's mini-batch PV-DBOW loss with one switchable slip."""
    logsig = F.logsigmoid if stable else (lambda x: torch.log(torch.sigmoid(x)))
    noise_terms = logsig(neg_sign * torch.einsum("bd,tkd->btk", doc, noise))
    per = -logsig(pos_sign * torch.einsum("bd,btd->bt", doc, pos)) - getattr(noise_terms, over_k)(-1)
    return getattr(per, over_t)(1)


def test_pv_dbow_loss_passes(capsys):
    assert nb03.check_pv_dbow_loss(_pv)
    assert capsys.readouterr().out == \
        "PASS: the PV-DBOW loss matches the formula and its gradient matches finite differences\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda d, p, n: _pv(d, p, n, over_t="sum"), "you summed over the T sampled words"),
    (lambda d, p, n: _pv(d, p, n, neg_sign=1.0), "noise words must score LOW"),
    (lambda d, p, n: _pv(d, p, n, pos_sign=-1.0), "must score HIGH"),
    (lambda d, p, n: _pv(d, p, n, over_k="mean"), "you averaged over the K noise words"),
    (lambda d, p, n: -_pv(d, p, n), "check the overall sign"),
    (lambda d, p, n: _pv(d, p, n).mean(), "you averaged over the papers too"),
    (lambda d, p, n: _pv(d, p, n, stable=False), "log(sigmoid(x)) underflows"),
    (lambda d, p, n: _pv(d, p, n).detach(), "carries no gradient"),
], ids=["sum-over-t", "noise-sign", "pos-sign", "mean-over-k", "negated", "batch-mean", "unstable", "detached"])
def test_pv_dbow_loss_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb03.check_pv_dbow_loss(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS + [lambda d, p, n: _pv(d, p, n).numpy()])
def test_pv_dbow_loss_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb03.check_pv_dbow_loss(answer), "")


# ------------------------------------------------------------------------------ BPR and listwise


def _pairs(s, rows, pos, neg):
    return s[rows, pos].unsqueeze(1), s[rows.unsqueeze(1), neg]


def test_bpr_and_listwise_pass_the_library_losses(capsys):
    assert nb03.check_bpr(bpr_loss)
    assert nb03.check_listwise(listwise_loss)
    assert capsys.readouterr().out == ("PASS: BPR = 1.3380 on the test case; gradient checked\n"
                                       "PASS: listwise cross-entropy = 2.3126 on the test case; gradient checked\n")


@pytest.mark.parametrize("answer, hint", [
    (lambda s, r, p, n: -F.logsigmoid(_pairs(s, r, p, n)[1] - _pairs(s, r, p, n)[0]).mean(), "score ABOVE"),
    (lambda s, r, p, n: -F.logsigmoid(_pairs(s, r, p, n)[0] - _pairs(s, r, p, n)[1]).sum(1).mean(),
     "you summed over the 3 negatives"),
    (lambda s, r, p, n: -F.logsigmoid(s[r, p] - s[r, n]).mean(), "paired with its OWN negatives"),
    (lambda s, r, p, n: F.logsigmoid(_pairs(s, r, p, n)[0] - _pairs(s, r, p, n)[1]).mean(), "check the sign"),
    (lambda s, r, p, n: -torch.sigmoid(_pairs(s, r, p, n)[0] - _pairs(s, r, p, n)[1]).mean(), "take the log"),
    (lambda s, r, p, n: -F.logsigmoid(_pairs(s, r, p, n)[0] - _pairs(s, r, p, n)[1]).mean(1), "one value per like"),
    (lambda s, r, p, n: bpr_loss(s, r, p, n).item(), "must return a torch tensor"),
], ids=["reversed", "sum-negatives", "misaligned", "sign", "no-log", "per-like", "float"])
def test_bpr_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb03.check_bpr(answer), hint)


def _listwise(s, r, p, n, *, dim=1, col=0, reduce="mean"):
    both = torch.cat(_pairs(s, r, p, n), dim=1)
    return getattr(-torch.log_softmax(both, dim=dim)[:, col], reduce)()


@pytest.mark.parametrize("answer, hint", [
    (lambda s, r, p, n: -torch.log_softmax(s[r], 1)[torch.arange(len(r)), p].mean(), "softmax over ALL users"),
    (lambda s, r, p, n: _listwise(s, r, p, n, dim=0), "not over the likes"),
    (lambda s, r, p, n: _listwise(s, r, p, n, col=-1), "the positive sits in column 0"),
    (lambda s, r, p, n: _listwise(s, r, p, n, reduce="sum"), "you summed over the likes"),
    (lambda s, r, p, n: -(s[r, p] - torch.logsumexp(s[r.unsqueeze(1), n], 1)).mean(), "in the softmax's denominator"),
], ids=["all-users", "dim0", "wrong-column", "sum", "no-positive-in-denominator"])
def test_listwise_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb03.check_listwise(answer), hint)


@pytest.mark.parametrize("check", [nb03.check_bpr, nb03.check_listwise])
@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_ranking_checks_fail_on_a_wrong_kind_without_raising(check, answer, capsys):
    _fails_with(capsys, check(answer), "")


# -------------------------------------------------------------------------------------- inference


def _infer(encoder, batch, steps=100, lr=0.1, *, opt=torch.optim.Adagrad, frozen=True, sign=1.0):
    """The notebook's infer_vectors with one switchable slip."""
    gen = torch.Generator().manual_seed(0)
    vecs = torch.zeros(len(batch), encoder.out_dim, requires_grad=True)
    optimizer = opt([vecs], lr=lr)
    words = encoder.word_out.weight.detach() if frozen else encoder.word_out.weight
    for _ in range(steps):
        loss = sign * encoder.p2v_loss(vecs, batch, gen, words).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return vecs.detach()


def _writes_table(encoder, batch, steps, lr):
    vecs = _infer(encoder, batch, steps, lr)
    with torch.no_grad():
        encoder.doc.weight[batch.paper_idx] = vecs
    return vecs


def _trains_words(encoder, batch, steps, lr):
    encoder.word_out.weight.data.add_(0.01)
    return _infer(encoder, batch, steps, lr)


def test_infer_passes(capsys):
    assert nb03.check_infer(_infer)
    assert capsys.readouterr().out == \
        "PASS: PV loss 4.16 -> 0.86, word vectors frozen, cosine 1.00 to the reference\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _infer(*a, opt=torch.optim.SGD), "you took plain SGD steps"),
    (lambda *a: _infer(*a, frozen=False), "gradients reached the encoder's output word vectors"),
    (lambda *a: _infer(*a, sign=-1.0), "the update climbs the loss"),
    (lambda e, b, s, lr: e.doc.weight[b.paper_idx].detach(), "these are the encoder's stored rows"),
    (lambda e, b, s, lr: _infer(e, b, 0, lr), "the inferred vectors do not explain the words"),
    (_writes_table, "the encoder's table changed"),
    (_trains_words, "the output word vectors changed"),
], ids=["sgd", "not-frozen", "ascent", "stored-rows", "no-steps", "writes-table", "trains-words"])
def test_infer_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb03.check_infer(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_infer_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb03.check_infer(answer), "")


def test_balance(capsys):
    results = {0.0: {"cold R@50": 0.129}, 0.1: {"cold R@50": 0.27}, 1.0: {"cold R@50": 0.2}}
    assert nb03.check_balance(results)
    assert capsys.readouterr().out == ("PASS: the paragraph-vector term helps cold papers: a lambda_p2v > 0 beats "
                                       "lambda_p2v = 0 on cold R@50\n")
    _fails_with(capsys, nb03.check_balance({0.0: {"cold R@50": 0.3}, 0.1: {"cold R@50": 0.2}, 1.0: {"cold R@50": 0.1}}),
                "no lambda_p2v > 0 beats lambda_p2v = 0")
    _fails_with(capsys, nb03.check_balance({0.1: {}, 1.0: {}}), "including 0.0")
    _fails_with(capsys, nb03.check_balance([0.1]), "expected a dict")
    _fails_with(capsys, nb03.check_balance({0.0: {"cold R@50": None}, 0.1: {}, 1.0: {}}), "must be one number")


# ------------------------------------------------------------------------------------ the joint loss


def _joint(model, batch, scores, inputs, lam=1.0, rank_loss=listwise_loss, *, rec_w=1.0, aux=None, extra=0.0,
           as_dict=True, aux_key=None):
    """The notebook's joint_loss, with one switchable slip: ``aux(model, batch, lam)`` replaces the
    weighed term, ``rec_w`` weighs the recommendation loss, ``extra`` is added to the total."""
    rec = rec_w * rank_loss(scores, inputs["rows"], inputs["pos"], inputs["neg"])
    term = lam * model.encoder.p2v_term(batch) if aux is None else aux(model, batch, lam)
    total = rec + term + extra
    if not as_dict:
        return total
    return {"loss": total, "rec_loss": rec, "aux_loss": term if aux_key is None else aux_key(model, batch, lam)}


def _p2v_sum(model, batch):
    enc = model.encoder
    return enc.p2v_loss(enc(batch), batch, torch.Generator().manual_seed(0)).sum()


def test_joint_loss_mistakes_are_told_apart():
    rec, p2v, _ = nb03._terms()
    values = [m.signature for m in nb03._mistakes(rec, p2v)] + [rec + nb03._LAM * p2v]
    # the hint follows the first match: signatures of different mistakes (and the right value) must differ
    hints = [m.hint for m in nb03._mistakes(rec, p2v)] + ["right"]
    for i in range(len(values)):
        for j in range(i):
            assert abs(values[i] - values[j]) > 1e-3 or hints[i] == hints[j], (hints[i], hints[j])


def test_joint_loss_passes(capsys):
    assert nb03.check_joint_loss(_joint)
    assert capsys.readouterr().out == ("PASS: L = L_rec + lam L_p2v on the test case, both terms recorded, rank_loss "
                                       "used, gradients reach the paper and word vectors\n")


def _without_loss_key(*a, **k):
    terms = _joint(*a, **k)
    return {"total": terms["loss"], "rec_loss": terms["rec_loss"], "aux_loss": terms["aux_loss"]}


def _listwise_always(model, batch, scores, inputs, lam=1.0, rank_loss=None):
    return _joint(model, batch, scores, inputs, lam, listwise_loss)


@pytest.mark.parametrize("answer, hint", [
    (lambda *a, **k: _joint(*a, **{**k, "rec_w": k["lam"]}, aux=lambda m, b, lam: m.encoder.p2v_term(b)),
     "lam multiplies the paragraph-vector term, not the recommendation loss"),
    (lambda *a, **k: _joint(*a, **{**k, "rec_w": 1 - k["lam"]}), "not a convex mix"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: 0 * m.encoder.p2v_term(b)),
     "the paragraph-vector term is missing"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: m.encoder.p2v_term(b)), "lam is not used"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: m.aux_loss(b)),
     "aux_loss is already weighed by the encoder's own lambda_p2v, not by your lam"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: lam * m.encoder.aux_loss(b)), "weighs the term twice"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: 2 * lam * m.encoder.p2v_term(b)), "counted twice"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: lam * m.encoder.p2v_term(b) + m.aux_loss(b)),
     "counted twice: add it once, weighed by lam (aux_loss already holds it"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: lam * _p2v_sum(m, b)), "you summed the paragraph-vector "
                                                                                  "loss over the papers"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: -lam * m.encoder.p2v_term(b)), "ADD the weighed"),
    (lambda *a, **k: -_joint(*a, **k, as_dict=False), "you returned the negated loss"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: lam * m.encoder.p2v_loss(
        m.encoder(b), b, torch.Generator().manual_seed(0))), "average them over the papers of the batch"),
    (_without_loss_key, "but no 'loss'"),
    (lambda *a, **k: _joint(*a, **k, as_dict=False), "return it in a dict with 'loss'"),
    (lambda *a, **k: {key: v.item() for key, v in _joint(*a, **k).items()}, "return the torch tensor itself"),
    (lambda *a, **k: _joint(*a, **k, aux=lambda m, b, lam: lam * m.encoder.p2v_term(b).detach()),
     "the output word vectors get no gradient"),
    (lambda *a, **k: _joint(*a, **k, aux_key=lambda m, b, lam: m.encoder.p2v_term(b)),
     "record the weighed term, lam * L_p2v"),
    (_listwise_always, "still computed the listwise loss"),
    (lambda m, b, s, i, lam: _joint(m, b, s, i, lam), "keep those parameter names"),
    (lambda m, b, s, i, **k: _joint(m, b, s, i, **k, aux=lambda m, b, lam: lam * m.p2v_term(b)),
     "belongs to the content encoder"),
], ids=["lambda-on-rec", "convex-mix", "aux-left-out", "lam-ignored", "encoder-lambda", "lambda-twice",
        "aux-twice", "aux-plus-aux_loss", "sum-over-papers", "aux-sign", "negated", "per-paper", "no-loss-key",
        "plain-tensor", "floats", "detached", "unweighted-aux-key", "rank_loss-ignored", "signature",
        "p2v-on-model"])
def test_joint_loss_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb03.check_joint_loss(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS + [lambda *a, **k: torch.zeros(3), lambda *a, **k: {"loss": None}])
def test_joint_loss_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb03.check_joint_loss(answer), "")
