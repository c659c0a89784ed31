"""The course's PyTensor speed-ups (course_lib.theano_models.speedups) change speed, never numbers."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from course_lib.benchmarks.theano import CASES
from course_lib.theano_models import compat
from course_lib.theano_models.compat import T, theano

pytestmark = pytest.mark.skipif(compat.BACKEND != "pytensor", reason="the speed-ups are for PyTensor only")


def _row_update(dtype="float32", set_instead_of_inc=False):
    from course_lib.theano_models.speedups import RowIncSubtensor1

    x, y, idx = T.matrix("x", dtype=dtype), T.matrix("y", dtype=dtype), T.vector("idx", dtype="int64")
    out = RowIncSubtensor1(set_instead_of_inc=set_instead_of_inc)(x, y, idx)
    return theano.function([x, y, idx], out, mode=theano.compile.mode.Mode(linker="cvm", optimizer=None))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_updates_in_c_equal_numpy_add_at_with_repeated_and_negative_indices(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5)).astype(dtype)
    idx = np.array([2, -1, 2, 0, 5, -6, 2])  # 2 three times; -1 is row 5, -6 is row 0
    y = rng.normal(size=(7, 5)).astype(dtype)
    expected = x.copy()
    np.add.at(expected, idx, y)
    got = _row_update(dtype)(x, y, idx)
    assert got.tobytes() == expected.tobytes()  # the same additions in the same order: bit for bit
    y_columns = np.asfortranarray(y)  # strided rows take the general loop
    assert _row_update(dtype)(x, y_columns, idx).tobytes() == expected.tobytes()
    assert np.array_equal(x, _row_update(dtype)(x, y[:0], idx[:0]))  # no indices: x unchanged


def test_row_set_in_c_keeps_the_last_row_written():
    x, y = np.zeros((4, 2), np.float32), np.arange(6, dtype=np.float32).reshape(3, 2)
    got = _row_update(set_instead_of_inc=True)(x, y, np.array([1, 3, 1]))
    assert got.tolist() == [[0, 0], [4, 5], [0, 0], [2, 3]]


def test_an_index_out_of_bounds_is_named():
    update = _row_update()
    x, y = np.zeros((4, 2), np.float32), np.ones((2, 2), np.float32)
    with pytest.raises(IndexError, match="index 4 is out of bounds for axis 0 with size 4"):
        update(x, y, np.array([0, 4]))
    with pytest.raises(IndexError, match="index -5 is out of bounds for axis 0 with size 4"):
        update(x, y, np.array([-5, 0]))
    with pytest.raises(ValueError, match=r"rows have shape \(2, 2\), expected \(3, 2\)"):
        update(x, y, np.array([0, 1, 2]))


def test_the_gradient_of_a_lookup_uses_the_c_row_update_and_matches_numpy():
    from course_lib.theano_models.speedups import RowIncSubtensor1

    W = compat.shared(np.zeros((5, 3)), "W")
    idx, c = T.vector("idx", dtype="int64"), T.matrix("c")
    g = theano.grad((W[idx] * c).sum(), W)  # dW = add.at(zeros, idx, c)
    # fast_run, as in the course's functions (the fast_compile of these tests keeps the general op)
    fn = theano.function([idx, c], g, mode=theano.compile.mode.Mode(linker="cvm", optimizer="fast_run"))
    assert any(isinstance(n.op, RowIncSubtensor1) for n in fn.maker.fgraph.apply_nodes)
    ids, rows = np.array([4, 1, 4, -2]), np.arange(12, dtype=np.float32).reshape(4, 3)
    expected = np.zeros((5, 3), np.float32)
    np.add.at(expected, ids, rows)
    assert fn(ids, rows).tobytes() == expected.tobytes()


def test_install_is_idempotent_and_a_wrong_switch_is_named(monkeypatch):
    from pytensor.tensor.elemwise import Elemwise

    from course_lib.theano_models import speedups

    patched = Elemwise.c_code
    assert speedups.install() is True and speedups.install() is True
    assert Elemwise.c_code is patched  # not wrapped twice
    monkeypatch.setenv(speedups.ENV, "yes")
    with pytest.raises(ValueError, match=r"COURSE_PYTENSOR_SPEEDUPS must be 1 .* or 0 .*, got 'yes'"):
        speedups.enabled()


def test_bookkeeping_and_exact_arithmetic_run_in_python_the_rest_in_c():
    from course_lib.theano_models.speedups import elemwise_in_python

    x, y, z = T.matrix("x"), T.matrix("y"), T.matrix("z")
    n = T.scalar("n", dtype="int64")
    assert elemwise_in_python((x + y).owner) and elemwise_in_python((x * y).owner)
    assert not elemwise_in_python(T.add(x, y, z).owner)  # numpy would loop in Python
    assert not elemwise_in_python(T.exp(x).owner)  # rounding of exp is the C library's
    assert not elemwise_in_python((x + T.matrix("w", dtype="float64")).owner)  # mixed dtypes: casts
    assert elemwise_in_python((n * 2).owner)  # a shape computation
    with pytest.raises(NotImplementedError, match="runs in Python"):
        x.T.owner.op.c_code(x.T.owner, "n", ["a"], ["b"], {})


def test_lookups_and_vector_row_updates_run_in_python_and_match_numpy():
    from pytensor.tensor.subtensor import AdvancedIncSubtensor1, AdvancedSubtensor1

    from course_lib.theano_models.speedups import RowIncSubtensor1, runs_in_python

    W, b = compat.shared(np.zeros((5, 3)), "W"), compat.shared(np.zeros(5), "b")
    idx, c, d = T.vector("idx", dtype="int64"), T.matrix("c"), T.vector("d")
    loss = (W[idx] * c).sum() + (b[idx] * d).sum()
    fn = theano.function([idx, c, d], [W[idx], *theano.grad(loss, [W, b])],
                         mode=theano.compile.mode.Mode(linker="cvm", optimizer="fast_run"))
    # (a compile cache that already holds a module for a node loads it without asking for C code,
    # so what runs in Python is asked of the nodes, not of the thunks)
    kinds = {(type(n.op), runs_in_python(n)) for n in fn.maker.fgraph.apply_nodes}
    assert (AdvancedSubtensor1, True) in kinds  # W[idx]: numpy's take
    assert (AdvancedIncSubtensor1, True) in kinds  # db = add.at(zeros, idx, d): numpy
    assert (RowIncSubtensor1, False) in kinds  # dW: rows of a matrix, C
    node = next(n for n in fn.maker.fgraph.apply_nodes if type(n.op) is AdvancedSubtensor1)
    with pytest.raises(NotImplementedError, match="runs in Python"):
        node.op.c_code(node, "n", ["a", "b"], ["c"], {})
    W.set_value(np.arange(15, dtype=np.float32).reshape(5, 3))
    ids, rows = np.array([4, 1, 4, -2]), np.arange(12, dtype=np.float32).reshape(4, 3)
    d0 = np.array([0.1, 1e8, 0.2, -3.0], dtype=np.float32)  # repeated index 4: 0.1 + 0.2 in index order
    looked_up, dW, db = fn(ids, rows, d0)
    expected_W, expected_b = np.zeros((5, 3), np.float32), np.zeros(5, np.float32)
    np.add.at(expected_W, ids, rows)
    np.add.at(expected_b, ids, d0)
    assert looked_up.tobytes() == W.get_value()[ids].tobytes()
    assert dW.tobytes() == expected_W.tobytes() and db.tobytes() == expected_b.tobytes()


def test_inside_a_scan_loop_every_operation_keeps_its_c_code():
    from pytensor.scan.op import Scan

    h0, seq = T.matrix("h0"), T.tensor3("seq")
    hs = compat.scan(lambda x_t, h: T.tanh(h.T + x_t), sequences=[seq], outputs_info=[h0])
    fn = theano.function([seq, h0], hs[-1].T)
    inner = next(n.op for n in fn.maker.fgraph.apply_nodes if isinstance(n.op, Scan)).fn

    def kinds(f):  # a compiled C thunk carries its module's function as .cthunk
        return {(type(n.op).__name__, hasattr(t, "cthunk")) for n, t in zip(f.maker.fgraph.toposort(), f.vm.thunks)}

    assert ("DimShuffle", True) in kinds(inner)  # h.T at every time step: C
    assert ("DimShuffle", False) in kinds(fn)  # the final .T, once per call: Python
    h = np.ones((2, 2), np.float32)
    x = np.arange(12, dtype=np.float32).reshape(3, 2, 2) / 10
    expected = h
    for x_t in x:
        expected = np.tanh(expected.T + x_t)
    np.testing.assert_allclose(fn(x, h), expected.T, rtol=1e-6)


CHILD = """
import hashlib, json, argparse
from course_lib.benchmarks import theano as bench
from course_lib.theano_models import compat, speedups
args = argparse.Namespace(tier="tiny", dim=16, seed=0, max_events=600)
out = {"speedups": speedups.install(), "flags": str(compat.theano.config.gcc__cxxflags)}
for name in MODELS:
    case = bench.make_case(name, args)
    case.compile()
    case.theano(2)
    out[name] = {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in sorted(case.weights().items())}
print(json.dumps(out))
"""


# one model per kind of graph the speed-ups touch: embedding lookups and the hybrid's updates (a),
# the GRU encoder with scan and its gradient (d-scan: Ask the GRU has the same encoder; the
# library's default GRU op runs numpy and leaves around it only the kinds of operation that (a)
# has), GRU4Rec's row optimiser and sampled scores (BPR-max: cross-entropy uses the same ops); the
# others cost minutes of cold compiles more
MODELS = ("hybrid-a", "hybrid-d-scan", "gru4rec-bprmax")


def _trained_weights(speedups: str) -> dict:
    env = dict(os.environ, COURSE_PYTENSOR_SPEEDUPS=speedups)
    # the benchmark's graph rewrites (fusion, in-place updates), not the fast_compile of these tests
    env["PYTENSOR_FLAGS"] = ",".join(f for f in env.get("PYTENSOR_FLAGS", "").split(",")
                                     if f and not f.startswith(("optimizer=", "gcc__cxxflags=")))
    done = subprocess.run([sys.executable, "-c", f"MODELS = {MODELS!r}" + CHILD], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_each_kind_of_model_trains_to_the_same_weights_bit_for_bit_with_and_without_the_speedups():
    on, off = _trained_weights("1"), _trained_weights("0")
    assert (on.pop("speedups"), off.pop("speedups")) == (True, False)
    assert (on.pop("flags"), off.pop("flags")) == (compat.GCC_FLAGS, "")
    assert set(on) == set(MODELS) and set(MODELS) <= set(CASES)
    for model in on:
        changed = [name for name in on[model] if on[model][name] != off[model][name]]
        assert not changed, f"{model}: {changed} differ with the speed-ups"
