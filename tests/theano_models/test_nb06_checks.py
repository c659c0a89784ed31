"""Meta-tests of the notebook 06 checks: the notebook's answers pass with its PASS lines, plausible
wrong answers fail with the hint of their mistake, wrong types fail without raising. The checks'
numpy references are compared with torch where torch is installed (their PASS lines name it)."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_lib.checks import WRONG_KINDS, nb06
from course_lib.theano_models import askgru, compat
from course_lib.theano_models.compat import T, theano

SEED = 0


def _fails_with(capsys, verdict, hint):
    out = capsys.readouterr().out
    assert not verdict, out
    assert out.startswith("FAIL: ") and hint in out, out


# ------------------------------------------------------------------------------------------- ELU


def test_elu_passes(capsys):
    assert nb06.check_elu(lambda x: T.switch(x > 0, x, T.expm1(T.minimum(x, 0))))
    assert nb06.check_elu(compat.elu)
    assert capsys.readouterr().out == ("PASS: ELU matches its formula, and theano.grad gives exp(x) below 0 and 1 "
                                       "above, finite even at x = 1000\n") * 2


@pytest.mark.parametrize("answer, hint", [
    (lambda x: T.maximum(x, 0), "that is ReLU"),
    (lambda x: T.switch(x > 0, x, T.exp(T.minimum(x, 0))), "the - 1 is missing"),
    (lambda x: T.switch(x > 0, T.expm1(x), x), "the branches are swapped"),
    (lambda x: compat.elu(x).sum(), "ELU acts elementwise"),
    (lambda x: compat.elu(x).eval({x: np.zeros((1, 1))}), "it must return a symbolic expression"),
], ids=["relu", "no-minus-one", "swapped", "summed", "evaluated"])
def test_elu_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb06.check_elu(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_elu_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb06.check_elu(answer), "")


# --------------------------------------------------------------------------------------- Adagrad


def _adagrad(loss, params, learning_rate, epsilon=1e-10, *, old_acc=False, eps_inside=False, keep_acc=False,
             lr=None, eps=None):
    """The notebook's update list with one switchable slip (``lr``/``eps`` replace the arguments)."""
    lr = learning_rate if lr is None else lr
    eps = epsilon if eps is None else eps
    updates = []
    for p, g in zip(params, theano.grad(loss, params)):
        acc = theano.shared(np.zeros_like(p.get_value()), name=f"acc_{p.name}")
        acc_new = acc + g ** 2
        used = acc if old_acc else acc_new
        denominator = T.sqrt(used + eps) if eps_inside else T.sqrt(used) + eps
        updates += [(acc, acc if keep_acc else acc_new), (p, p - lr * g / denominator)]
    return updates


def test_adagrad_passes(capsys):
    assert nb06.check_adagrad(_adagrad)
    assert nb06.check_adagrad(lambda loss, params, lr, eps: compat.adagrad(loss, params, lr, eps)[0])
    assert capsys.readouterr().out == \
        "PASS: three steps of your update list give exactly torch.optim.Adagrad's weights\n" * 2


def _sgd(loss, params, lr, eps):
    return [(p, p - lr * g) for p, g in zip(params, theano.grad(loss, params))]


@pytest.mark.parametrize("answer, hint", [
    (_sgd, "only the parameter is updated"),
    (lambda *a: _adagrad(*a, old_acc=True), "INCLUDES this step's squared gradient"),
    (lambda *a: _adagrad(*a, keep_acc=True), "the accumulator must itself be updated"),
    (lambda *a: _adagrad(*a, eps_inside=True), "epsilon goes outside the square root"),
    (lambda *a: _adagrad(*a, eps=1e-10), "epsilon=0.1 is not used"),
    (lambda *a: _adagrad(*a, lr=0.1), "learning_rate=0.05 is not used"),
    (lambda loss, params, lr, eps: _adagrad(loss, params, lr, eps)[1:], "only the parameter is updated"),
    (lambda loss, params, lr, eps: [(p.get_value(), p) for p in params], "must be the shared variable to update"),
], ids=["sgd", "old-accumulator", "accumulator-not-updated", "eps-inside", "eps-constant", "lr-constant",
        "no-accumulator-update", "pairs-reversed"])
def test_adagrad_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb06.check_adagrad(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_adagrad_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb06.check_adagrad(answer), "")


def test_the_adagrad_formula_of_the_check_is_torch_adagrad():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0, a = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))
    for lr, eps in ((0.1, 1e-10), (0.05, 0.1)):
        w = torch.tensor(w0, requires_grad=True)
        opt = torch.optim.Adagrad([w], lr=lr, eps=eps)
        path = []
        for _ in range(3):
            opt.zero_grad()
            (torch.tanh(torch.tensor(a) @ w) ** 2).sum().backward()
            opt.step()
            path.append(w.detach().numpy().copy())
        np.testing.assert_allclose(nb06._adagrad_path(a, w0, lr, eps), np.stack(path), rtol=1e-12)


# ---------------------------------------------------------------------------------- weighted MSE


def _wmse(s, t, alpha):
    return ((1.0 + (alpha - 1.0) * t) * (t - s) ** 2).sum(axis=1).mean()


def test_weighted_mse_passes(capsys):
    assert nb06.check_weighted_mse(_wmse)
    assert capsys.readouterr().out == "PASS: weighted MSE = 11.1900 on the hand example, as the formula says\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda s, t, a: ((1 + (a - 1) * t) * (t - s) ** 2).mean(), "you averaged over every (paper, user) entry"),
    (lambda s, t, a: ((t + a * (1 - t)) * (t - s) ** 2).sum(axis=1).mean(), "alpha weighs the LIKES"),
    (lambda s, t, a: ((1 + a * t) * (t - s) ** 2).sum(axis=1).mean(), "off by one"),
    (lambda s, t, a: _wmse(s, t, 5.0), "use the alpha argument"),
    (lambda s, t, a: ((1 + (a - 1) * t) * (t - s) ** 2).sum(axis=1), "you returned one loss per paper"),
], ids=["entries", "alpha-on-zeros", "alpha-plus-one", "constant-alpha", "per-paper"])
def test_weighted_mse_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb06.check_weighted_mse(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_weighted_mse_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb06.check_weighted_mse(answer), "")


# ------------------------------------------------------------------------------- training step


def _compile(model, alpha, lr, *, train=True, pop=True, sgd=False, some=False, alpha_used=None, lr_used=None,
             seed=None):
    """The notebook's compile_training_step with one switchable slip (``seed``: the stream's seed)."""
    targets = T.matrix("targets", dtype=model.dtype)
    stream = compat.RandomStream(model.seed if seed is None else seed)
    loss = _wmse(model.scores(train=train, stream=stream), targets, alpha if alpha_used is None else alpha_used)
    params = model.params.trainable_vars()[:1] if some else model.params.trainable_vars()
    lr = lr if lr_used is None else lr_used
    updates = _sgd(loss, params, lr, 0.0) if sgd else _adagrad(loss, params, lr)
    return compat.function(model.inputs() + [targets], loss, updates=updates + (stream.pop_updates() if pop else []))


def test_training_step_passes(capsys):
    assert nb06.check_training_step(_compile)
    assert capsys.readouterr().out == "PASS: five compiled steps lower the loss from 40.074 to 10.465\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _compile(*a, train=False), "your step's loss is the loss without dropout"),
    (lambda *a: _compile(*a, sgd=True), "the update is plain gradient descent"),
    (lambda *a: _compile(*a, some=True), "some parameters were not updated (user_emb.weight, user_bias)"),
    (lambda *a: _compile(*a, alpha_used=10.0), "use the alpha argument"),
    (lambda *a: _compile(*a, lr_used=0.1), "with lr=0 the parameters still moved"),
    (lambda *a: _compile(*a, alpha_used=1.0), "does not weigh the likes by alpha"),
    (lambda *a: _compile(*a, seed=SEED), "seed the random stream with the model's own seed"),
] + ([(lambda *a: _compile(*a, pop=False), "two calls drew the same dropout masks")]
     if compat.BACKEND == "pytensor" else []))
def test_training_step_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb06.check_training_step(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS + [lambda *a: 5])
def test_training_step_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb06.check_training_step(answer), "")


# ------------------------------------------------------------ the hybrid trained by your step


@pytest.fixture(scope="module")
def runs():
    """train_hybrid histories on planted data (users like the papers of their topic, papers 20-23
    held out for validation): the library's step, and the notebook's step right and with slips."""
    import scipy.sparse as sp

    from course_lib.theano_models import hybrid as th

    rng = np.random.default_rng(0)
    topic, user_topic = np.arange(24) % 3, np.arange(150) % 3  # more users than Recall@50 looks at
    likes = sp.lil_matrix(((user_topic[:, None] == topic[None]) & (rng.random((150, 24)) < 0.3)).astype(np.float32))
    train, valid = likes.copy(), sp.lil_matrix(likes.shape, dtype=np.float32)
    train[:, 20:], valid[:, 20:] = 0, likes[:, 20:]
    train, valid = sp.csr_matrix(train), sp.csr_matrix(valid)
    texts = th.PaperTexts(np.ones((24, 1), dtype=np.int64), np.ones((24, 1)))

    def model():
        return th.HybridRecommender(150, 24, None, item_dim=4, dropout_item=0.3, seed=3, dtype="float64")

    def run(make_step=None, **kw):
        m = model()
        step = None if make_step is None else make_step(m)
        return th.train_hybrid(m, texts, train, valid, alpha=kw.get("alpha", 10.0), lr=0.1, batch_size=8, epochs=4,
                               patience=4, seed=1, progress=False, step_fn=step)

    return {"library": run(),
            "yours": run(lambda m: _compile(m, 10.0, 0.1)),
            "other model": run(lambda m: _compile(model(), 10.0, 0.1)),
            "constant seed": run(lambda m: _compile(m, 10.0, 0.1, seed=SEED)),
            "other alpha": run(lambda m: _compile(m, 50.0, 0.1))}


def test_same_training_passes(runs, capsys):
    assert nb06.check_same_training(runs["yours"], runs["library"])
    assert capsys.readouterr().out == ("PASS: your step trained the hybrid as the library's did: the same loss and "
                                       "validation Recall@50 at every epoch, and the same best epoch\n")


@pytest.mark.parametrize("slip, hint", [
    ("other model", "the step updates the weights of ANOTHER model"),
    ("constant seed", "seed your random stream with model.seed"),
    ("other alpha", "give your step the alpha of the library's run"),
])
def test_same_training_names_the_mistake(runs, slip, hint, capsys):
    _fails_with(capsys, nb06.check_same_training(runs[slip], runs["library"]), hint)


def test_same_training_names_a_diverged_run_and_a_history_without_validation(runs, capsys):
    diverged = dict(runs["yours"], loss=[3.0, float("nan"), 1.0, 1.0])
    _fails_with(capsys, nb06.check_same_training(diverged, runs["library"]), "your run's loss became NaN")
    no_valid = {k: v for k, v in runs["yours"].items() if not k.startswith("valid_")}
    _fails_with(capsys, nb06.check_same_training(no_valid, runs["library"]), "valid_likes=proto.valid")


@pytest.mark.parametrize("answer", WRONG_KINDS + ["text", [1, 2], 3.0, {"loss": None, "valid_Recall@50": [0.1],
                                                                       "best_epoch": [1]}])
def test_same_training_fails_on_a_wrong_kind_without_raising(answer, runs, capsys):
    _fails_with(capsys, nb06.check_same_training(answer, runs["library"]), "")
    _fails_with(capsys, nb06.check_same_training(runs["yours"], answer), "")


# ------------------------------------------------------------------------------------- GRU step


def _step(xp_t, m_t, h_prev, W_hh, b_hh, *, classic=False, z_flip=False, use_mask=True):
    """The notebook's gru_step with one switchable slip."""
    H = h_prev.shape[1]
    hp = T.dot(h_prev, W_hh.T) + b_hh
    r = compat.sigmoid(xp_t[:, :H] + hp[:, :H])
    z = compat.sigmoid(xp_t[:, H:2 * H] + hp[:, H:2 * H])
    recurrent = T.dot(r * h_prev, W_hh[2 * H:].T) + b_hh[2 * H:] if classic else r * hp[:, 2 * H:]
    n = T.tanh(xp_t[:, 2 * H:] + recurrent)
    h_new = z * n + (1 - z) * h_prev if z_flip else (1 - z) * n + z * h_prev
    if not use_mask:
        return h_new
    m = m_t[:, None]
    return m * h_new + (1 - m) * h_prev


def test_gru_step_passes_the_notebook_answer_and_the_library(capsys):
    assert nb06.check_gru_step(_step) and nb06.check_gru_step(askgru.gru_step)
    assert capsys.readouterr().out == \
        "PASS: your step equals torch.nn.GRUCell on every unmasked row and keeps the masked one\n" * 2


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _step(*a, classic=True), "the reset gate must multiply (W_hn h + b_hn)"),
    (lambda *a: _step(*a, z_flip=True), "the update gate is used the other way round"),
    (lambda *a: _step(*a, use_mask=False), "row 2 has mask 0"),
    (lambda xp, m, h, W, b: _step(xp, 1 - m, h, W, b), "the mask is 1 on real tokens"),
], ids=["classic", "z-flipped", "no-mask", "inverted-mask"])
def test_gru_step_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb06.check_gru_step(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_gru_step_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb06.check_gru_step(answer), "")


def test_the_gru_step_of_the_check_is_torch_grucell():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    W_ih, W_hh, b_ih, b_hh = nb06._gru_weights(rng, 3, 5)
    cell = torch.nn.GRUCell(3, 5).double()
    with torch.no_grad():
        for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (W_ih, W_hh, b_ih, b_hh)):
            getattr(cell, name).copy_(torch.tensor(value))
    x, h = rng.normal(size=(4, 3)), rng.normal(size=(4, 5))
    want = cell(torch.tensor(x), torch.tensor(h)).detach().numpy()
    np.testing.assert_allclose(nb06._gru_step_np(x @ W_ih.T + b_ih, np.ones(4), h, W_hh, b_hh), want, rtol=1e-12)


# -------------------------------------------------------------------------------- scan encoder


def _encode(x, mask, W_ih, W_hh, b_ih, b_hh, *, pool="real"):
    """The notebook's gru_encode with one switchable slip."""
    xp = T.dot(x, W_ih.T) + b_ih
    h0 = T.zeros((x.shape[0], W_hh.shape[1]), dtype=x.dtype)
    hs = compat.scan(askgru.gru_step, sequences=[xp.dimshuffle(1, 0, 2), mask.T], outputs_info=[h0],
                     non_sequences=[W_hh, b_hh])  # (L, B, H)
    total = (hs * mask.T[:, :, None]).sum(axis=0)
    return {"real": total / mask.sum(axis=1)[:, None], "all": hs.mean(axis=0), "width": total / x.shape[1],
            "last": hs[-1], "time": hs}[pool]


def test_scan_encoder_passes(capsys):
    assert nb06.check_scan_encoder(_encode)
    assert capsys.readouterr().out == \
        "PASS: your scan encoder equals a torch GRU with the same weights, and padding changes nothing\n"


@pytest.mark.parametrize("answer, hint", [
    (lambda *a: _encode(*a, pool="all"), "you averaged over ALL positions"),
    (lambda *a: _encode(*a, pool="width"), "not by the width"),
    (lambda *a: _encode(*a, pool="last"), "not the last state"),
    (lambda *a: _encode(*a, pool="time"), "scan runs over the first axis"),
], ids=["all", "width", "last", "no-pooling"])
def test_scan_encoder_names_the_mistake(answer, hint, capsys):
    _fails_with(capsys, nb06.check_scan_encoder(answer), hint)


@pytest.mark.parametrize("answer", WRONG_KINDS)
def test_scan_encoder_fails_on_a_wrong_kind_without_raising(answer, capsys):
    _fails_with(capsys, nb06.check_scan_encoder(answer), "")


def test_beats_is_the_shared_check(capsys):
    assert nb06.check_beats({"m": {"cold R@50": 0.3}, "pop": {"cold R@50": 0.2}}, "m", "pop")
    assert not nb06.check_beats({"m": {"cold R@50": 0.1}, "pop": {"cold R@50": 0.2}}, "m", "pop")
    assert "m (0.100) does not beat pop (0.200)" in capsys.readouterr().out


# --------------------------------------------------------------------------- no torch in notebook 06

_NO_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

sys.meta_path.insert(0, NoTorch())
"""


def _python_only(source: str) -> str:
    """A cell without its IPython magics (``%pip install`` in the hosted setup cell), which ast cannot read."""
    return "\n".join(line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def test_notebook_06_imports_nothing_that_needs_torch():
    """The Theano track runs where torch is missing (the Theano 1.0.5 environment): every import
    of the master notebook's code cells works with torch blocked."""
    book = json.loads((Path(__file__).resolve().parents[2] / "solutions" / "06_theano_track.ipynb").read_text())
    imports = [ast.unparse(node) for cell in book["cells"] if cell["cell_type"] == "code"
               for node in ast.walk(ast.parse(_python_only("".join(cell["source"]))))
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert any("course_lib.theano_models" in line for line in imports), imports
    script = _NO_TORCH + "\n".join(imports) + "\nassert 'torch' not in sys.modules\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
