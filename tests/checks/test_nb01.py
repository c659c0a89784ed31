"""Meta-tests of the notebook 01 checks: the notebook's answers pass with its PASS lines, plausible
wrong answers fail with the hint of their mistake, wrong types fail without raising."""
import numpy as np
import pytest
import torch

from course_lib.checks import WRONG_KINDS, nb01
from course_lib.text import SPECIALS, EncodedCorpus, Vocabulary, idf_vector
from course_lib.torch_models.content import TfidfWordAverage
from course_lib.torch_models.hybrid import weighted_mse_loss
from course_lib.torch_models.utils import TextBatch


def _fails_with(capsys, verdict, hint):
    out = capsys.readouterr().out
    assert not verdict, out
    assert out.startswith("FAIL: ") and hint in out, out


# ------------------------------------------------------------------------------------------ idf


def _library_idf(ids, mask, vocab_size):
    """The library's idf_vector, called the way the exercise calls a learner's function."""
    ids, mask = np.asarray(ids), np.asarray(mask, dtype=np.float32)
    vocab = Vocabulary(list(SPECIALS) + [f"w{i}" for i in range(vocab_size - len(SPECIALS))])
    return idf_vector(EncodedCorpus(ids, mask, mask.sum(1).astype(np.int64)), vocab)


def _idf(ids, mask, n_words, *, per_occurrence=False, use_mask=True, log=np.log, smooth=0.0, ratio=False, guard=True):
    """A learner's idf, with one switchable slip."""
    ids, mask = np.asarray(ids), np.asarray(mask) if use_mask else np.ones_like(mask)
    if per_occurrence:
        df = np.bincount(ids[mask > 0], minlength=n_words).astype(float)
    else:
        df = sum(np.bincount(np.unique(r[m > 0]), minlength=n_words) for r, m in zip(ids, mask)).astype(float)
    with np.errstate(divide="ignore"):
        value = np.log(df / len(ids)) if ratio else log(len(ids) / (df + smooth))
    out = np.where(df > 0, value, 0.0) if guard else value
    if use_mask and guard:
        out[0] = 0.0
    return out


def test_idf_passes_the_library_idf(capsys):
    assert nb01.check_idf(_library_idf)
    assert capsys.readouterr().out == \
        "PASS: idf = log(N / df): the word in every paper weighs 0, padding 0, unseen words 0\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda i, m, n: _idf(i, m, n, per_occurrence=True), "df counts PAPERS containing the word"),
    (lambda i, m, n: _idf(i, m, n, use_mask=False), "idf[0] is 0.405; id 0 is padding"),
    (lambda i, m, n: _idf(i, m, n, ratio=True), "you computed log(df / N)"),
    (lambda i, m, n: _idf(i, m, n, log=np.log10), "not log10"),
    (lambda i, m, n: _idf(i, m, n, smooth=1.0), "you smoothed df (+1)"),
    (lambda i, m, n: _idf(i, m, n, guard=False), "idf is inf or NaN for word ids [0, 1]"),
    (lambda i, m, n: _idf(i, m, n)[1:], "one value per word id 0 .. vocab_size - 1"),
], ids=["occurrences", "padding", "ratio", "log10", "smoothing", "unguarded", "shape"])
def test_idf_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb01.check_idf(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_idf_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb01.check_idf(answer), "")


def test_idf_not_implemented_is_raised_again(capsys):
    def not_done(ids, mask, n):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        nb01.check_idf(not_done)
    assert "idf is not implemented yet" in capsys.readouterr().out


# ------------------------------------------------------------------------------ weighted average


def _average(ids, mask, vectors, idf, *, weights=True, normalise="weights", use_mask=True):
    """A learner's weighted average, with one switchable slip."""
    m = mask if use_mask else torch.ones_like(mask)
    w = (idf[ids] if weights else torch.ones(ids.shape)) * m
    total = (w.unsqueeze(-1) * vectors[ids]).sum(1)
    return {"weights": total / w.sum(1, keepdim=True), "none": total, "count": total / m.sum(1, keepdim=True),
            "all": total / idf[ids].sum(1, keepdim=True)}[normalise]


def test_weighted_average_passes_the_notebook_answer_and_the_library_module(capsys):
    assert nb01.check_weighted_average(_average)
    assert capsys.readouterr().out == \
        "PASS: a repeated word counts tf times, each word weighs idf, padding 0, weights sum to 1\n"
    assert nb01.check_weighted_average(lambda ids, mask, vectors, idf: TfidfWordAverage(vectors.numpy(), idf.numpy())(
        TextBatch(ids, mask, torch.arange(len(ids)))))


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _average(*a, weights=False, normalise="count"), "plain mean of the word vectors"),
    (lambda *a: _average(*a, normalise="none"), "did not divide by the sum of the weights"),
    (lambda *a: _average(*a, normalise="count"), "you divided by the number of words"),
    (lambda *a: _average(*a, use_mask=False), "padding positions carry weight"),
    (lambda *a: _average(*a, normalise="all"), "divide by the sum over the real words only"),
    (lambda ids, mask, vectors, idf: vectors[ids], "sum the weighted word vectors over the positions"),
], ids=["plain-mean", "unnormalised", "by-count", "no-mask", "denominator-with-padding", "no-pooling"])
def test_weighted_average_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb01.check_weighted_average(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_weighted_average_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb01.check_weighted_average(answer), "")


# ------------------------------------------------------------------------------------------ merge


def _merge(v, c, how, W):
    return torch.cat([v, c], 1) if how == "concat" else v + c @ W.T


def test_merge_passes(capsys):
    assert nb01.check_merge(_merge)
    assert capsys.readouterr().out == \
        "PASS: concat gives (B, item_dim + content_dim); sum gives (B, item_dim) with the projection W\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda v, c, how, W: torch.cat([c, v], 1) if how == "concat" else _merge(v, c, how, W), "item vector first"),
    (lambda v, c, how, W: _merge(v, c, "concat", W) if how == "concat" else v + c @ W, "by W's transpose"),
    (lambda v, c, how, W: _merge(v, c, "concat", W) if how == "concat" else c @ W.T, "the item vector is missing"),
    (lambda v, c, how, W: _merge(v, c, "concat", W), "for how='sum' you returned the concatenation"),
    (lambda v, c, how, W: _merge(v, c, "sum", W), "for how='concat' you returned (B, item_dim)"),
    (lambda v, c, how, W: torch.cat([v, c], 1) if how == "concat" else v @ W + c, "you projected the item vector"),
], ids=["order", "not-transposed", "no-item", "always-concat", "always-sum", "projects-item"])
def test_merge_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb01.check_merge(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_merge_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb01.check_merge(answer), "")


# ------------------------------------------------------------------------------------ weighted MSE


def test_weighted_mse_passes(capsys):
    assert nb01.check_weighted_mse(weighted_mse_loss)
    assert capsys.readouterr().out == "PASS: weighted MSE = 49.9242 on the test case, as the formula says\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda s, t, a: ((1 + (a - 1) * t) * (t - s) ** 2).mean(), "you averaged over every (paper, user) entry"),
    (lambda s, t, a: ((t + a * (1 - t)) * (t - s) ** 2).sum(1).mean(), "alpha weighs the LIKES"),
    (lambda s, t, a: ((t - s) ** 2).sum(1).mean(), "you forgot the weight alpha"),
    (lambda s, t, a: ((1 + a * t) * (t - s) ** 2).sum(1).mean(), "off by one"),
    (lambda s, t, a: weighted_mse_loss(s, t, 10.0), "use the alpha argument"),
    (lambda s, t, a: weighted_mse_loss(s, t, a).item(), "must return a torch tensor built with torch operations"),
    (lambda s, t, a: ((1 + (a - 1) * t) * (t - s) ** 2).sum(1), "you returned one loss per paper"),
], ids=["entries", "alpha-on-zeros", "no-alpha", "alpha-plus-one", "constant-alpha", "float", "per-paper"])
def test_weighted_mse_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb01.check_weighted_mse(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_weighted_mse_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb01.check_weighted_mse(answer), "")


# ----------------------------------------------------------------------------------- training step


def _step(model, optimizer, batch, targets, alpha, *, train=True, zero=True, backward=True, step=True, after=False):
    """A learner's training step, with one switchable slip."""
    if train:
        model.train()
    if zero:
        optimizer.zero_grad()
    loss = weighted_mse_loss(model(batch), targets, alpha)
    if backward:
        loss.backward()
    if step:
        optimizer.step()
    if after:
        with torch.no_grad():
            return float(weighted_mse_loss(model(batch), targets, alpha))
    return loss.item()


def test_training_step_passes(capsys):
    assert nb01.check_training_step(_step)
    assert capsys.readouterr().out == "PASS: five steps lower the loss on one batch from 8.005 to 0.236\n"


def _own_optimizer(model, optimizer, batch, targets, alpha):
    return _step(model, torch.optim.SGD(model.parameters(), lr=0.1), batch, targets, alpha)


def _ascent(model, optimizer, batch, targets, alpha):
    optimizer.zero_grad()
    loss = weighted_mse_loss(model(batch), targets, alpha)
    (-loss).backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _step(*a, zero=False), "clear the old gradients before computing new ones"),
    (lambda *a: _step(*a, backward=False), "no gradient is left after your step"),
    (lambda *a: _step(*a, step=False), "let the optimizer take its step"),
    (lambda *a: _step(*a, after=True), "you returned the loss AFTER the update"),
    (lambda *a: _step(*a, train=False), "put the model in training mode inside the step"),
    (lambda m, o, b, t, a: _step(m, o, b, t, 10.0), "the returned loss uses alpha = 10"),
    (_own_optimizer, "not through the optimizer the step was given"),
    (lambda *a: torch.tensor(_step(*a)), "return the loss as a Python float"),
    (_ascent, "the loss did not go down over 5 steps (8.005"),
], ids=["no-zero-grad", "no-backward", "no-step", "loss-after", "eval-mode", "constant-alpha", "own-optimizer",
        "tensor", "ascent"])
def test_training_step_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb01.check_training_step(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_training_step_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb01.check_training_step(answer), "")


def test_training_step_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    nb01.check_training_step(_step)
    assert torch.equal(torch.rand(3), expected)


def test_the_results_table_is_checked_by_the_shared_check(capsys):
    results = {"hybrid": {"cold R@50": 0.31}, "popularity": {"cold R@50": 0.12}}
    assert nb01.check_beats(results, "hybrid", "popularity", "cold R@50")
    assert capsys.readouterr().out == "PASS: hybrid beats popularity on cold R@50\n"
    assert not hasattr(nb01, "check_beats_popularity")


# ------------------------------------------------------------------------ the run with your step


@pytest.fixture(scope="module")
def planted_run():
    """train_hybrid on a small planted dataset: the reference run (the library's step) and a
    function that trains the same model from the same start with a learner's step."""
    from course_lib.splits import flip_protocol
    from course_lib.synthetic import planted_citeulike
    from course_lib.text import prepare_text
    from course_lib.torch_models.hybrid import HybridRecommender, PaperTexts, train_hybrid

    cul = planted_citeulike(n_users=60, n_papers=80, n_topics=3, doc_len=12, likes_per_user=6, order_matters=False)
    proto = flip_protocol(cul.likes, test_frac=0.2, valid_frac=0.1, seed=0)
    vocab, corpus = prepare_text(cul.texts("title+abstract"), min_count=1, max_len=20)
    texts = PaperTexts.from_corpus(corpus, "cpu")
    settings = dict(epochs=6, patience=6, batch_size=16, seed=0, progress=False)

    def build():
        vectors = np.random.default_rng(0).normal(size=(len(vocab), 8))
        return HybridRecommender(cul.n_users, cul.n_papers, TfidfWordAverage(vectors, np.ones(len(vocab)),
                                                                             fine_tune=True), item_dim=8, seed=0)

    with torch.random.fork_rng(devices=[]):
        reference = train_hybrid(build(), texts, proto.train, proto.valid, loss="wmse", alpha=20.0, lr=0.1, **settings)

    def run(step=_step, alpha=20.0, optimizer=torch.optim.Adagrad, lr=0.1, stepped="model", optimised="model"):
        """``stepped``/``optimised``: "other" calls the step on, or builds the optimizer over, another model."""
        model, other = build(), build()
        opt = optimizer((other if optimised == "other" else model).parameters(), lr=lr)
        on = other if stepped == "other" else model
        with torch.random.fork_rng(devices=[]):
            return train_hybrid(model, texts, proto.train, proto.valid,
                                step_fn=lambda batch, targets: step(on, opt, batch, targets, alpha), **settings)

    return reference, run


def _ascent_step(model, optimizer, batch, targets, alpha):
    model.train()
    optimizer.zero_grad()
    loss = weighted_mse_loss(model(batch), targets, alpha)
    (-loss).backward()
    optimizer.step()
    return loss.item()


def test_your_training_passes_when_your_step_trains_as_the_library_does(planted_run, capsys):
    reference, run = planted_run
    assert nb01.check_your_training(run(), reference)
    assert capsys.readouterr().out == (
        "PASS: your training step trained the model as the library's step does: from the same start, the same loss in "
        "every epoch (within 1%) and the same best valid_Recall@50 (within 0.02).\n")


@pytest.mark.parametrize("wrong, hint", [
    (dict(alpha=5.0), "give your step the same alpha (ALPHA)"),
    (dict(optimizer=torch.optim.SGD), "later epochs part from it: use the same optimizer"),
    (dict(optimised="other"), "must update the model that train_hybrid trains"),
    (dict(stepped="other", optimised="other"), "the model that train_hybrid scores is not the one your step trains"),
    (dict(step=_ascent_step), "your step climbs the loss"),
], ids=["other-alpha", "sgd", "optimizer-of-another-model", "step-on-another-model", "ascent"])
def test_your_training_names_the_mistake(planted_run, wrong, hint, capsys):
    reference, run = planted_run
    _fails_with(capsys, nb01.check_your_training(run(**wrong), reference), hint)


def test_your_training_names_a_diverged_run_and_a_worse_recall(capsys):
    reference = {"loss": [10.0, 5.0, 4.0], "valid_Recall@50": [0.2, 0.3, 0.3]}
    _fails_with(capsys, nb01.check_your_training({**reference, "loss": [10.0, float("nan"), 4.0]}, reference),
                "became NaN or infinite in epoch 2")
    _fails_with(capsys, nb01.check_your_training({**reference, "valid_Recall@50": [0.1, 0.2, 0.2]}, reference),
                "your run's best valid_Recall@50 is 0.200, the reference's 0.300")


@pytest.mark.parametrize("answer", WRONG_KINDS + [[1.0, 2.0], {"loss": [], "valid_Recall@50": []},
                                                  {"loss": "low", "valid_Recall@50": [0.1]}])
def test_your_training_fails_on_a_wrong_kind_without_raising(answer, capsys):
    reference = {"loss": [10.0, 5.0], "valid_Recall@50": [0.2, 0.3]}
    _fails_with(capsys, nb01.check_your_training(answer, reference), "")
    _fails_with(capsys, nb01.check_your_training(reference, answer), "")
