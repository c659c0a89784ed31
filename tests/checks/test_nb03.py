"""The notebook 03 checks accept right answers and name typical wrong ones."""
import pytest
import torch

from course_lib.checks import nb03
from course_lib.torch_models.e2e_paragraph import negative_sampling_loss
from course_lib.torch_models.hybrid import bpr_loss, listwise_loss

logsig = torch.nn.functional.logsigmoid



def _out(capsys) -> str:
    return capsys.readouterr().out


# ------------------------------------------------------------------------------- PV-DBOW loss


def _pv_dbow(doc, pos, noise):
    """The library's loss on the exercise's inputs: doc (B, D), pos (B, T, D), noise (T, K, D)."""
    return negative_sampling_loss(torch.einsum("bd,btd->bt", doc, pos), torch.einsum("bd,tkd->btk", doc, noise))


def test_pv_dbow_loss_check(capsys):
    assert nb03.check_pv_dbow_loss(_pv_dbow)
    assert _out(capsys).startswith("PASS: the PV-DBOW loss matches the formula")

    def noise_high(doc, pos, noise):  # wrong sign on the noise words
        return (-logsig(torch.einsum("bd,btd->bt", doc, pos))
                - logsig(torch.einsum("bd,tkd->btk", doc, noise)).sum(-1)).mean(1)

    assert not nb03.check_pv_dbow_loss(lambda d, p, n: _pv_dbow(d, p, n) * p.shape[1])
    assert "you summed over the T sampled words; average over them instead" in _out(capsys)
    assert not nb03.check_pv_dbow_loss(noise_high)
    assert "noise words must score LOW" in _out(capsys)
    assert not nb03.check_pv_dbow_loss(lambda d, p, n: _pv_dbow(d, p, n).mean())
    assert "the loss (one value per paper) has shape (), expected (3,)" in _out(capsys)
    assert not nb03.check_pv_dbow_loss(lambda d, p, n: _pv_dbow(d, p, n).detach())
    assert "must return a torch tensor built from its inputs" in _out(capsys)
    assert not nb03.check_pv_dbow_loss(lambda d, p, n: None)
    assert "pv_dbow_loss returned None" in _out(capsys)

    def not_done(doc, pos, noise):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        nb03.check_pv_dbow_loss(not_done)
    assert "pv_dbow_loss is not implemented yet" in _out(capsys)


# ---------------------------------------------------------------------------- ranking losses


def test_bpr_check(capsys):
    assert nb03.check_bpr(bpr_loss)
    assert _out(capsys) == "PASS: BPR = 1.3380 on the test case; gradient checked\n"

    def reversed_difference(s, rows, pos, neg):
        return -logsig(s[rows.unsqueeze(1), neg] - s[rows, pos].unsqueeze(1)).mean()

    def summed_negatives(s, rows, pos, neg):
        return -logsig(s[rows, pos].unsqueeze(1) - s[rows.unsqueeze(1), neg]).sum(1).mean()

    def no_mean(s, rows, pos, neg):
        return -logsig(s[rows, pos].unsqueeze(1) - s[rows.unsqueeze(1), neg])

    assert not nb03.check_bpr(reversed_difference)
    assert "the positive must score ABOVE the negatives" in _out(capsys)
    assert not nb03.check_bpr(summed_negatives)
    assert "you summed over the 3 negatives" in _out(capsys)
    assert not nb03.check_bpr(no_mean)
    assert "bpr must return one number (the mean over the pairs and their negatives), got shape (3, 3)" \
        in _out(capsys)
    assert not nb03.check_bpr(lambda *args: torch.tensor(bpr_loss(*args).item(), dtype=torch.float64))
    assert "so that backward() can flow through it" in _out(capsys)
    assert not nb03.check_bpr(lambda *args: None)
    assert "bpr returned None" in _out(capsys)


def test_listwise_check(capsys):
    assert nb03.check_listwise(listwise_loss)
    assert _out(capsys) == "PASS: listwise cross-entropy = 2.3126 on the test case; gradient checked\n"

    def all_users(s, rows, pos, neg):
        return -torch.log_softmax(s[rows], 1)[torch.arange(len(rows)), pos].mean()

    assert not nb03.check_listwise(all_users)
    assert "softmax over the positive and its sampled negatives only" in _out(capsys)
    assert not nb03.check_listwise(lambda *args: -listwise_loss(*args))  # wrong sign
    assert "expected 2.3126, got -2.3126" in _out(capsys)
    assert not nb03.check_listwise(lambda s, rows, pos, neg: torch.stack([listwise_loss(s, rows, pos, neg)] * 2))
    assert "listwise must return one number" in _out(capsys)


# ------------------------------------------------------------------------------------ inference


def _infer(encoder, batch, steps, lr):
    return encoder.infer_vectors(batch, steps=steps, lr=lr)


def test_infer_check(capsys):
    assert nb03.check_infer(_infer)
    out = _out(capsys)
    assert out.startswith("PASS: PV loss") and "word vectors frozen, cosine 1.00 to the reference" in out


def test_infer_check_names_mistakes(capsys):
    def trains_the_words(encoder, batch, steps, lr):
        vecs = torch.zeros(len(batch), encoder.out_dim, requires_grad=True)
        opt = torch.optim.Adagrad([vecs, *encoder.parameters()], lr=lr)
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            loss = encoder.p2v_loss(vecs, batch, gen).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return vecs.detach()

    def writes_the_table(encoder, batch, steps, lr):
        vecs = encoder.infer_vectors(batch, steps=steps, lr=lr)
        with torch.no_grad():
            encoder.doc.weight[batch.paper_idx] = vecs
        return vecs

    assert not nb03.check_infer(trains_the_words)
    assert "the output word vectors changed" in _out(capsys)
    assert not nb03.check_infer(writes_the_table)
    assert "the encoder's table changed" in _out(capsys)
    assert not nb03.check_infer(lambda encoder, batch, steps, lr: torch.zeros(len(batch), encoder.out_dim))
    assert "the inferred vectors do not explain the words" in _out(capsys)
    assert not nb03.check_infer(lambda encoder, batch, steps, lr: _infer(encoder, batch, steps, lr).T)
    assert "the inferred vectors has shape (5, 6), expected (6, 5)" in _out(capsys)
    assert not nb03.check_infer(lambda encoder, batch, steps, lr: None)
    assert "infer_vectors returned None" in _out(capsys)


def test_balance_check(capsys):
    good = {0.0: {"cold R@50": 0.13}, 0.1: {"cold R@50": 0.27}, 1.0: {"cold R@50": 0.2}}
    assert nb03.check_balance(good)
    assert "cold R@50 0.130 at lambda_p2v=0 -> 0.270 at lambda_p2v=0.1" in _out(capsys)
    assert not nb03.check_balance({0.0: {"cold R@50": 0.3}, 0.1: {"cold R@50": 0.2}, 1.0: {"cold R@50": 0.1}})
    assert "no lambda_p2v > 0 beats lambda_p2v = 0 on cold R@50 (0.300)" in _out(capsys)
    assert not nb03.check_balance({0.1: {"cold R@50": 0.2}, 1.0: {"cold R@50": 0.1}, 2.0: {"cold R@50": 0.1}})
    assert "including 0.0" in _out(capsys)
