"""The checks of notebook 06 accept the reference answers and reject typical mistakes."""
import numpy as np

from course_lib.checks import nb06
from course_lib.theano_models import askgru, compat, hybrid
from course_lib.theano_models.compat import T


def test_elu_check_accepts_elu_and_rejects_relu(capsys):
    assert nb06.check_elu(lambda x: compat.elu(x))
    assert not nb06.check_elu(lambda x: T.maximum(x, 0))
    assert "ReLU" in capsys.readouterr().out
    assert not nb06.check_elu(lambda x: T.switch(x > 0, x, T.exp(x)))  # forgot the -1


def test_adagrad_check_accepts_the_library_and_rejects_plain_sgd(capsys):
    assert nb06.check_adagrad(lambda loss, params, lr, eps: compat.adagrad(loss, params, lr, eps)[0])
    sgd = lambda loss, params, lr, eps: [(p, p - lr * g) for p, g in zip(params, compat.theano.grad(loss, params))]  # noqa: E731
    assert not nb06.check_adagrad(sgd)
    assert "running sum" in capsys.readouterr().out


def test_weighted_mse_check_names_the_wrong_average(capsys):
    assert nb06.check_weighted_mse(lambda s, t, a: hybrid.weighted_mse_loss(s, t, a))
    assert not nb06.check_weighted_mse(lambda s, t, a: ((1 + (a - 1) * t) * (t - s) ** 2).mean())
    assert "averaged over every" in capsys.readouterr().out


def _classic_gru_step(xp_t, m_t, h_prev, W_hh, b_hh):
    """The classic Theano GRU: the reset gate multiplies h before the recurrent matrix."""
    H = h_prev.shape[1]
    hp = T.dot(h_prev, W_hh.T) + b_hh
    r = compat.sigmoid(xp_t[:, :H] + hp[:, :H])
    z = compat.sigmoid(xp_t[:, H:2 * H] + hp[:, H:2 * H])
    n = T.tanh(xp_t[:, 2 * H:] + T.dot(r * h_prev, W_hh[2 * H:].T) + b_hh[2 * H:])
    m = m_t[:, None]
    return m * ((1 - z) * n + z * h_prev) + (1 - m) * h_prev


def test_gru_step_check_accepts_torch_convention_and_explains_the_classic_one(capsys):
    assert nb06.check_gru_step(askgru.gru_step)
    assert not nb06.check_gru_step(_classic_gru_step)
    assert "reset gate must multiply" in capsys.readouterr().out


def test_scan_encoder_check_rejects_a_mean_over_padding(capsys):
    def encode(x, mask, W_ih, W_hh, b_ih, b_hh, pool_all=False):
        xp = T.dot(x, W_ih.T) + b_ih
        h0 = T.zeros((x.shape[0], W_hh.shape[1]), dtype=x.dtype)
        hs = compat.scan(askgru.gru_step, sequences=[xp.dimshuffle(1, 0, 2), mask.T], outputs_info=[h0],
                         non_sequences=[W_hh, b_hh])
        if pool_all:
            return hs.mean(axis=0)
        return (hs * mask.T[:, :, None]).sum(axis=0) / mask.sum(axis=1)[:, None]

    assert nb06.check_scan_encoder(encode)
    assert not nb06.check_scan_encoder(lambda *a: encode(*a, pool_all=True))
    assert "ALL positions" in capsys.readouterr().out


def test_beats_check():
    assert nb06.check_beats({"m": {"cold R@50": 0.3}, "pop": {"cold R@50": 0.2}}, "m", "pop")
    assert not nb06.check_beats({"m": {"cold R@50": 0.1}, "pop": {"cold R@50": 0.2}}, "m", "pop")
