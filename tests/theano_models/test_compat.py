"""The compatibility layer: backend configuration, compile caches, layers, dropout and Adagrad as an update list."""
import os
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from course_lib.checks import numerical_gradient, rel_error
from course_lib.theano_models import compat
from course_lib.theano_models.compat import T, theano


def test_backend_is_configured_for_fast_compilation():
    assert compat.BACKEND in ("pytensor", "theano")
    # the C linker (not PyTensor's slow-to-compile Numba default), unless the user chose otherwise
    if "linker" not in compat.USER_FLAGS:
        assert theano.config.linker == "cvm"
    if "floatX" not in compat.USER_FLAGS:
        assert theano.config.floatX == "float32"  # the dtype of the PyTorch track
    if "base_compiledir" not in compat.USER_FLAGS:  # the test run's private cache, else the user's
        expected = os.environ.get(compat.PRIVATE_ENV) or compat.cache_dir()
        assert str(theano.config.compiledir).startswith(str(expected))


def _module(folder, name, versioned=True, finished=True, code=None):
    """A compiled module as PyTensor leaves it in its cache (a stand-in for its KeyData)."""
    entry = folder / name
    entry.mkdir(parents=True)
    (entry / "mod.cpp").write_text("// code")
    if finished:
        (entry / f"m{name}.so").write_bytes(b"ELF")
        key = SimpleNamespace(keys={(("v1",) if versioned else (), name)}, module_hash=code or f"hash-{name}")
        (entry / "key.pkl").write_bytes(pickle.dumps(key))
    return entry


def test_a_private_compile_cache_is_seeded_from_the_shared_one_and_merged_back(tmp_path):
    shared, private = tmp_path / "shared", tmp_path / "private"
    plat = "compiledir_Linux-x86_64-3.11"
    _module(shared / plat, "tmpold")
    (shared / plat / ".lock").write_text("")
    assert compat.seed_compiledir(shared, private) == 1
    seeded = private / plat / "tmpold"
    assert (seeded / "key.pkl").read_bytes() == (shared / plat / "tmpold" / "key.pkl").read_bytes()
    assert (seeded / "mtmpold.so").stat().st_ino == (shared / plat / "tmpold" / "mtmpold.so").stat().st_ino
    assert (seeded / "key.pkl").stat().st_ino != (shared / plat / "tmpold" / "key.pkl").stat().st_ino  # copied
    assert not (private / plat / ".lock").exists()

    _module(private / plat, "tmpnew")
    _module(private / plat, "tmpunversioned", versioned=False)
    _module(private / plat, "tmpunfinished", finished=False)
    _module(private / plat, "tmptwin", code="hash-tmpold")  # the same module compiled again elsewhere
    assert compat.merge_compiledir(private, shared) == 1
    assert sorted(p.name for p in (shared / plat).iterdir() if p.is_dir()) == ["tmpnew", "tmpold"]
    assert (shared / plat / "tmpnew" / "mtmpnew.so").read_bytes() == b"ELF"
    assert compat.merge_compiledir(private, shared) == 0  # nothing new the second time


@pytest.fixture(scope="module")
def layer_fns():
    x = T.matrix("x", dtype="float64")
    return compat.function([x], [compat.elu(x), compat.softmax(x), compat.log_softmax(x),
                                 theano.grad(compat.elu(x).sum(), x)])


def test_elu_softmax_log_softmax_against_formulas(layer_fns):
    x = np.array([[-3.0, -0.5, 0.0, 0.7, 800.0]])
    elu, sm, lsm, g = layer_fns(x)
    np.testing.assert_allclose(elu, np.where(x > 0, x, np.exp(np.minimum(x, 0)) - 1), rtol=1e-12)
    # gradient of ELU: 1 above zero, exp(x) below (Clevert et al. 2016); no NaN from exp(800)
    np.testing.assert_allclose(g, np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))), rtol=1e-12)
    z = x - x.max()
    np.testing.assert_allclose(sm, np.exp(z) / np.exp(z).sum(), rtol=1e-12)
    np.testing.assert_allclose(lsm, z - np.log(np.exp(z).sum()), rtol=1e-12)
    assert np.isfinite(lsm).all()


def test_elu_gradient_matches_finite_differences(layer_fns):
    x0 = np.array([[-1.3, -0.2, 0.4, 2.0]])
    num = numerical_gradient(lambda v: float(layer_fns(v)[0].sum()), x0)
    assert rel_error(layer_fns(x0)[3], num) < 1e-7


def test_dropout_masks_are_seeded_fresh_per_call_and_unbiased():
    def build(seed):
        x = T.matrix("x", dtype="float64")
        stream = compat.RandomStream(seed)
        y = compat.dropout(x, 0.3, stream)
        return compat.function([x], y, updates=stream.pop_updates())

    f1, f2 = build(7), build(7)
    ones = np.ones((200, 100))
    a, b, c = f1(ones), f1(ones), f2(ones)
    np.testing.assert_array_equal(a, c)  # same seed, same masks
    assert not np.array_equal(a, b)  # the update list advanced the generator
    assert set(np.unique(a)) == {0.0, 1 / 0.7}  # inverted dropout scaling
    assert abs((a == 0).mean() - 0.3) < 0.02  # 20,000 draws: 3 standard deviations is 0.01
    x = T.matrix("x")
    assert compat.dropout(x, 0.3, None, train=False) is x
    with pytest.raises(ValueError, match="p_drop"):
        compat.dropout(x, 1.0, compat.RandomStream(0))


def test_adagrad_update_list_matches_torch_optim_adagrad():
    rng = np.random.default_rng(0)
    w0, a = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))
    params = compat.Params("float64")
    w = params.add("w", w0)
    x = T.matrix("x", dtype="float64")
    loss = (T.tanh(T.dot(x, w)) ** 2).sum()
    updates, accs = compat.adagrad(loss, params.trainable_vars(), learning_rate=0.1)
    step = compat.function([x], loss, updates=updates)

    wt = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.Adagrad([wt], lr=0.1)
    for _ in range(3):
        lt = (torch.tanh(torch.tensor(a) @ wt) ** 2).sum()
        opt.zero_grad()
        lt.backward()
        opt.step()
        l_theano = step(a)
        assert abs(float(l_theano) - lt.item()) < 1e-10 * abs(lt.item())
    np.testing.assert_allclose(w.get_value(), wt.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(accs[0].get_value(), opt.state[wt]["sum"].numpy(), rtol=1e-10)


def test_params_load_state_dict_checks_names_and_shapes():
    params = compat.Params("float32")
    params.add("a.weight", np.zeros((2, 3)))
    params.load_state_dict({"a.weight": torch.ones(2, 3)})
    assert params["a.weight"].get_value().dtype == np.float32
    assert params.state_dict()["a.weight"].sum() == 6
    with pytest.raises(ValueError, match="shape"):
        params.load_state_dict({"a.weight": np.ones((3, 2))})
    with pytest.raises(ValueError, match="missing"):
        params.load_state_dict({"b": np.ones(1)})


def test_scan_returns_outputs_only():
    v = T.vector("v", dtype="float64")
    out = compat.scan(lambda x_t, s: s + x_t, sequences=[v], outputs_info=[T.zeros((), dtype="float64")])
    np.testing.assert_allclose(compat.function([v], out)(np.arange(5.0)), np.cumsum(np.arange(5.0)))


def test_gradient_of_a_single_row_lookup_works():
    # PyTensor 3.0.x misfires on W[idx] with one index (compat patches the check, see
    # _fix_single_index_updates): a mini-batch of one paper must train like any other
    w = theano.shared(np.arange(12.0).reshape(4, 3))
    idx = T.vector("i", dtype="int64")
    grad = compat.function([idx], theano.grad((w[idx] ** 2).sum(), w))
    np.testing.assert_allclose(grad(np.array([2])), np.where(np.arange(4)[:, None] == 2, 2 * w.get_value(), 0))
    np.testing.assert_allclose(grad(np.array([1, 1]))[1], 4 * w.get_value()[1])  # repeated rows add up


def test_params_save_and_load_round_trip(tmp_path):
    params = compat.Params("float64")
    params.add("a.weight", np.arange(6.0).reshape(2, 3))
    params.add("known", np.ones(2), trainable=False)
    params.save(tmp_path / "w.npz")
    params["a.weight"].set_value(np.zeros((2, 3)))
    params.load(tmp_path / "w.npz")
    np.testing.assert_array_equal(params["a.weight"].get_value(), np.arange(6.0).reshape(2, 3))
