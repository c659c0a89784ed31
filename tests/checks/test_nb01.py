"""The notebook 01 checks accept right answers and name typical wrong ones."""
import numpy as np
import pytest
import torch

from course_lib.checks import nb01
from course_lib.text import SPECIALS, EncodedCorpus, Vocabulary, idf_vector
from course_lib.torch_models.content import TfidfWordAverage
from course_lib.torch_models.hybrid import weighted_mse_loss
from course_lib.torch_models.utils import TextBatch



def _out(capsys) -> str:
    return capsys.readouterr().out


# ------------------------------------------------------------------------------------- idf


def _idf(ids, mask, vocab_size):
    """The library's idf_vector, called the way the exercise calls a learner's function."""
    ids, mask = np.asarray(ids), np.asarray(mask, dtype=np.float32)
    vocab = Vocabulary(list(SPECIALS) + [f"w{i}" for i in range(vocab_size - len(SPECIALS))])
    return idf_vector(EncodedCorpus(ids, mask, mask.sum(1).astype(np.int64)), vocab)


def _df(ids, mask, vocab_size, per_occurrence=False):
    ids, mask = np.asarray(ids), np.asarray(mask)
    if per_occurrence:
        return np.bincount(ids[mask > 0], minlength=vocab_size).astype(float)
    return sum(np.bincount(np.unique(r[m > 0]), minlength=vocab_size) for r, m in zip(ids, mask)).astype(float)


def test_idf_check_passes_the_library_idf(capsys):
    assert nb01.check_idf(_idf)
    assert _out(capsys).startswith("PASS: idf = log(N / df)")


def test_idf_check_names_occurrence_counts(capsys):
    def per_occurrence(ids, mask, n):
        df = _df(ids, mask, n, per_occurrence=True)
        return np.where(df > 0, np.log(len(ids) / np.maximum(df, 1)), 0.0)

    assert not nb01.check_idf(per_occurrence)
    assert "df counts PAPERS containing the word" in _out(capsys)


def test_idf_check_names_the_inverted_ratio(capsys):
    def inverted(ids, mask, n):
        df = _df(ids, mask, n)
        return np.where(df > 0, np.log(np.maximum(df, 1) / len(ids)), 0.0)

    assert not nb01.check_idf(inverted)
    assert "you computed log(df / N)" in _out(capsys)


def test_idf_check_names_padding(capsys):
    def counts_padding(ids, mask, n):
        df = _df(ids, np.ones_like(mask), n)  # forgot the mask: padding id 0 counted as a word
        return np.where(df > 0, np.log(len(ids) / np.maximum(df, 1)), 0.0)

    assert not nb01.check_idf(counts_padding)
    assert "idf[0] is 0.405; id 0 is padding" in _out(capsys)


def test_idf_check_names_division_by_zero(capsys):
    def unguarded(ids, mask, n):
        with np.errstate(divide="ignore"):
            out = np.log(len(ids) / _df(ids, mask, n))
        out[0] = 0.0
        return out

    assert not nb01.check_idf(unguarded)
    assert "idf is inf or NaN for word ids [1]: padding (id 0) and words that occur in no paper" in _out(capsys)


def test_idf_check_names_shape_none_and_unfinished(capsys):
    assert not nb01.check_idf(lambda ids, mask, n: _idf(ids, mask, n)[1:])
    assert "the idf vector has shape (4,), expected (5,)" in _out(capsys)
    assert not nb01.check_idf(lambda ids, mask, n: None)
    assert "idf returned None" in _out(capsys)

    def not_done(ids, mask, n):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        nb01.check_idf(not_done)
    assert "idf is not implemented yet" in _out(capsys)


# ---------------------------------------------------------------------------- weighted average


def _average(ids, mask, vectors, idf):
    return TfidfWordAverage(vectors.numpy(), idf.numpy())(TextBatch(ids, mask, torch.arange(len(ids))))


def test_weighted_average_check(capsys):
    assert nb01.check_weighted_average(_average)
    assert _out(capsys).startswith("PASS")

    def plain_mean(ids, mask, vectors, idf):
        return (vectors[ids] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    def not_normalised(ids, mask, vectors, idf):
        return (vectors[ids] * (idf[ids] * mask)[..., None]).sum(1)

    def per_word_count(ids, mask, vectors, idf):  # wrong normalisation: by the number of words
        return not_normalised(ids, mask, vectors, idf) / mask.sum(1, keepdim=True)

    assert not nb01.check_weighted_average(plain_mean)
    assert "plain mean" in _out(capsys)
    assert not nb01.check_weighted_average(not_normalised)
    assert "did not divide by the sum of the weights" in _out(capsys)
    assert not nb01.check_weighted_average(per_word_count)
    assert "divided by the number of words" in _out(capsys)
    assert not nb01.check_weighted_average(lambda ids, mask, vectors, idf: vectors[ids])  # no pooling
    assert "the paper vectors has shape (2, 5, 4), expected (2, 4)" in _out(capsys)


# ---------------------------------------------------------------------------------------- merge


def _merge(v, c, how, W):
    return torch.cat([v, c], 1) if how == "concat" else v + c @ W.T


def test_merge_check(capsys):
    assert nb01.check_merge(_merge)
    assert _out(capsys).startswith("PASS")
    assert not nb01.check_merge(lambda v, c, how, W: _merge(c, v, how, W.T) if how == "concat" else _merge(v, c, how, W))
    assert "item vector first" in _out(capsys)
    assert not nb01.check_merge(lambda v, c, how, W: torch.cat([v, c], 1) if how == "concat" else v + c @ W)
    assert "merge(..., 'sum', ...) raised RuntimeError" in _out(capsys)  # W not transposed
    assert not nb01.check_merge(lambda v, c, how, W: torch.cat([v, c], 1) if how == "concat" else c @ W.T)
    assert "add it to the item vector" in _out(capsys)
    assert not nb01.check_merge(lambda v, c, how, W: v)  # forgot the content
    assert "the concatenation has shape (3, 4), expected (3, 10)" in _out(capsys)


# ---------------------------------------------------------------------------------- weighted MSE


def test_weighted_mse_check(capsys):
    assert nb01.check_weighted_mse(weighted_mse_loss)
    assert "weighted MSE = 49.9242" in _out(capsys)

    def mean_over_entries(s, t, alpha):
        return ((1 + (alpha - 1) * t) * (t - s) ** 2).mean()

    def alpha_on_non_likes(s, t, alpha):
        return ((t + alpha * (1 - t)) * (t - s) ** 2).sum(1).mean()

    assert not nb01.check_weighted_mse(mean_over_entries)
    assert "sum over the users of a paper, then average over the papers" in _out(capsys)
    assert not nb01.check_weighted_mse(alpha_on_non_likes)
    assert "alpha weighs the LIKES" in _out(capsys)
    assert not nb01.check_weighted_mse(lambda s, t, alpha: ((t - s) ** 2).sum(1).mean())
    assert "forgot the weight alpha" in _out(capsys)
    assert not nb01.check_weighted_mse(lambda s, t, alpha: -weighted_mse_loss(s, t, alpha))  # wrong sign
    assert "expected 49.9242, got -49.9242" in _out(capsys)
    assert not nb01.check_weighted_mse(lambda s, t, alpha: ((1 + (alpha - 1) * t) * (t - s) ** 2).sum(1))
    assert "weighted_mse must return one number (the mean over the papers of the batch), got shape (4,)" \
        in _out(capsys)


# ---------------------------------------------------------------------------------- training step


def _step(model, optimizer, batch, targets, alpha):
    model.train()
    optimizer.zero_grad()
    loss = weighted_mse_loss(model(batch), targets, alpha)
    loss.backward()
    optimizer.step()
    return loss.item()


def test_training_step_check(capsys):
    assert nb01.check_training_step(_step)
    assert "five steps lower the loss on one batch from 8.005 to 0.236" in _out(capsys)


def test_training_step_check_names_missing_zero_grad(capsys):
    def no_zero_grad(model, optimizer, batch, targets, alpha):
        loss = weighted_mse_loss(model(batch), targets, alpha)
        loss.backward()
        optimizer.step()
        return loss.item()

    assert not nb01.check_training_step(no_zero_grad)
    assert "call optimizer.zero_grad() before loss.backward()" in _out(capsys)


def test_training_step_check_names_other_mistakes(capsys):
    def no_step(model, optimizer, batch, targets, alpha):
        optimizer.zero_grad()
        loss = weighted_mse_loss(model(batch), targets, alpha)
        loss.backward()
        return loss.item()

    def loss_after_update(model, optimizer, batch, targets, alpha):
        _step(model, optimizer, batch, targets, alpha)
        with torch.no_grad():
            return float(weighted_mse_loss(model(batch), targets, alpha))

    def gradient_ascent(model, optimizer, batch, targets, alpha):
        optimizer.zero_grad()
        loss = weighted_mse_loss(model(batch), targets, alpha)
        (-loss).backward()
        optimizer.step()
        return loss.item()

    assert not nb01.check_training_step(no_step)
    assert "no weight changed" in _out(capsys)
    assert not nb01.check_training_step(loss_after_update)
    assert "is not the loss before the update (8.0052)" in _out(capsys)
    assert not nb01.check_training_step(lambda *args: torch.tensor(_step(*args)))
    assert "return the loss as a Python float" in _out(capsys)
    assert not nb01.check_training_step(gradient_ascent)
    assert "the loss did not go down over 5 steps (8.005" in _out(capsys)


def test_beats_popularity_check(capsys):
    results = {"hybrid": {"cold R@50": 0.31}, "popularity": {"cold R@50": 0.12}}
    assert nb01.check_beats_popularity(results)
    assert _out(capsys) == "PASS: hybrid beats popularity on cold R@50\n"
    results["hybrid"]["cold R@50"] = 0.10
    assert not nb01.check_beats_popularity(results)
    assert "hybrid (0.100) does not beat popularity (0.120)" in _out(capsys)
    assert not nb01.check_beats_popularity({"hybrid": {"cold R@50": 0.3}})
    assert "results needs the rows 'hybrid' and 'popularity'; it has ['hybrid']" in _out(capsys)
