"""One import for the Theano track: ``from course_lib.theano_models.compat import theano, T``.

The hands-on sheet of 2017 said "implement it in Theano". Theano 1.0.5 (the last release) needs
numpy < 1.24, so the course runs the same programming model on PyTensor, Theano's maintained
successor. This module picks the backend once:

* original Theano when it imports (the optional ``environment-theano1.yml``), else
* PyTensor (the main environment).

``COURSE_THEANO_BACKEND=theano|pytensor`` forces one of them (``auto`` is the default).

It also configures the backend for a laptop, before the first graph is built:

* the C virtual machine linker (``linker=cvm``): PyTensor's default Numba linker needs tens of
  seconds to compile a graph, the C linker a few seconds the first time and a fraction of a
  second when the compiled C modules are already in the cache;
* the compile cache in the user's cache directory (``$COURSE_CACHE_DIR/pytensor``, else
  ``$XDG_CACHE_HOME/course_lib/pytensor``, else ``~/.cache/course_lib/pytensor``);
* ``floatX=float32``, the dtype of the PyTorch track;
* the course's PyTensor speed-ups (:mod:`course_lib.theano_models.speedups`, installed right after
  the import; ``COURSE_PYTENSOR_SPEEDUPS=0`` leaves PyTensor as it ships): row updates in C,
  bookkeeping operations in Python, gcc flags :data:`GCC_FLAGS`. Same numbers, shorter compiles.

Flags the user sets in ``PYTENSOR_FLAGS`` / ``THEANO_FLAGS`` win over these defaults.

PyTensor lets one process at a time compile into a cache (a file lock), and a process holds that
lock for the whole of each gcc run and while it re-reads the cache index. Two course processes
on one cache (the test suite and a notebook, or two suites) therefore take turns for every module
either compiles. ``$COURSE_PRIVATE_COMPILEDIR`` names a private cache for one run instead: it is
filled once from the shared cache (:func:`seed_compiledir`), nobody else waits for its lock, and
what the run compiled goes back into the shared cache at the end (:func:`merge_compiledir`). The
test suite's ``conftest.py`` does this for every pytest run, notebooks under nbval included.

The API differences between Theano and PyTensor that the course meets are wrapped here, so the
model code reads like the Theano of the original sheet: :func:`sigmoid`, :func:`softmax` (over
the last axis), :func:`elu`, :func:`scan` (returns outputs only), :class:`RandomStream` (uniform
draws whose state updates go into the update list), :func:`dropout`, :func:`adagrad` and
:func:`adam` (update lists that match ``torch.optim``), :func:`function` (``theano.function`` with
the course defaults) and :class:`Params` (shared variables named like a PyTorch ``state_dict``);
``Op``, ``Apply``, ``DisconnectedType`` and ``grad_not_implemented`` for an operation of one's own
(GRU4Rec's losses with a hand-written gradient, the fused GRU of
:mod:`course_lib.theano_models.gru_op`).

Known problems of the backends are worked around here, each where it is needed and explained
there: PyTensor 3.0.x's misfiring broadcast check for single-row updates
(:func:`_fix_single_index_updates`), and Theano 1.0.5's BLAS detection and C ``scan`` on
numpy 1.23 / Python 3.11 (:func:`_import_theano`).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np

_DEFAULTS = {"linker": "cvm", "floatX": "float32"}
GCC_FLAGS = "-O1 -fexpensive-optimizations -g0"
"""gcc flags added after PyTensor's ``-O3 -g`` with the speed-ups on: gcc builds a large module
about three times faster. ``-fexpensive-optimizations`` is what lets gcc fuse ``a * b + c`` into
one rounding (FMA) as it does at ``-O3``; without it the weights differ in the last bit. With it
every model trains to the same bits (tests/theano_models/test_speedups.py)."""
USER_FLAGS: dict[str, str] = {}
"""The flags the user set in ``PYTENSOR_FLAGS`` / ``THEANO_FLAGS``; they win over our defaults."""


def cache_dir() -> Path:
    """Where compiled C modules are kept between sessions (created on first use)."""
    if os.environ.get("COURSE_CACHE_DIR"):
        base = Path(os.environ["COURSE_CACHE_DIR"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "course_lib"
    return base / "pytensor"


PRIVATE_ENV = "COURSE_PRIVATE_COMPILEDIR"
_SEEDED = ".seeded"


def _compiledirs(base: Path) -> list[Path]:
    """The per-platform compile dirs PyTensor keeps under a base dir (``compiledir_Linux-...``)."""
    return sorted(d for d in base.glob("compiledir_*") if d.is_dir()) if base.is_dir() else []


def _link_or_copy(src: Path, dst: Path) -> None:
    # compiled modules are never rewritten in place, so a hard link is safe and instant; everything
    # else (key.pkl is rewritten when a module gains a key) is copied
    if src.suffix in (".so", ".pyd", ".dylib"):
        try:
            os.link(src, dst)
            return
        except OSError:  # another filesystem, or links not allowed
            pass
    shutil.copy2(src, dst)


def _copy_entry(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            _link_or_copy(f, dst / f.name)


def seed_compiledir(shared: Path, private: Path) -> int:
    """Fill the private compile cache ``private`` with the modules of ``shared``; returns how many.

    Holds each shared compile dir's lock while copying, so no half-written module is copied."""
    from filelock import FileLock  # noqa: PLC0415  (a dependency of PyTensor)

    n = 0
    for src in _compiledirs(shared):
        dst = private / src.name
        dst.mkdir(parents=True, exist_ok=True)
        with FileLock(src / ".lock"):
            for entry in src.iterdir():
                if entry.name in (".lock", "lock_dir") or (dst / entry.name).exists():
                    continue
                if entry.is_dir():
                    _copy_entry(entry, dst / entry.name)
                    n += 1
                else:
                    shutil.copy2(entry, dst / entry.name)
    return n


def _key_data(entry: Path):
    """The ``KeyData`` PyTensor pickled for a compiled module, or None if there is none to read."""
    import pickle  # noqa: PLC0415

    try:
        with open(entry / "key.pkl", "rb") as fh:
            return pickle.load(fh)
    except Exception:  # missing (unfinished) or unreadable: not a module to share
        return None


def merge_compiledir(private: Path, shared: Path) -> int:
    """Move the modules compiled in ``private`` that ``shared`` lacks into ``shared``; returns how many.

    A module is shared when it is finished and all its keys are versioned (PyTensor drops the
    others), and ``shared`` has no module with the same code hash (another process may have
    compiled it meanwhile). Each is copied under a hidden name and then renamed, under the shared
    dir's lock, so another process never sees half a module."""
    from filelock import FileLock  # noqa: PLC0415

    n = 0
    for src in _compiledirs(private):
        dst = shared / src.name
        dst.mkdir(parents=True, exist_ok=True)
        with FileLock(dst / ".lock"):
            known = {getattr(_key_data(e), "module_hash", None) for e in dst.iterdir() if e.is_dir()}
            for entry in src.iterdir():
                if not entry.is_dir() or entry.name == "lock_dir" or (dst / entry.name).exists():
                    continue
                if entry.name.endswith("_ext"):  # cutils_ext, lazylinker_ext: helper modules, no key
                    if not any(entry.glob("*.so")):
                        continue
                else:
                    data = _key_data(entry)
                    keys = getattr(data, "keys", None)
                    if not keys or not all(key[0] for key in keys) or data.module_hash in known:
                        continue
                    known.add(data.module_hash)
                incoming = dst / f".incoming-{entry.name}"
                shutil.rmtree(incoming, ignore_errors=True)
                _copy_entry(entry, incoming)
                os.rename(incoming, dst / entry.name)
                n += 1
    return n


def _private_compiledir(shared: Path) -> Path | None:
    """``$COURSE_PRIVATE_COMPILEDIR``, seeded from ``shared`` by the first process of the run."""
    private = os.environ.get(PRIVATE_ENV)
    if not private:
        return None
    from filelock import FileLock  # noqa: PLC0415

    private = Path(private)
    private.mkdir(parents=True, exist_ok=True)
    with FileLock(private / ".seed.lock"):  # the test process and a notebook kernel may start together
        if not (private / _SEEDED).exists():
            seed_compiledir(shared, private)
            (private / _SEEDED).touch()
    return private


def _merge_flags(var: str, defaults: dict[str, str]) -> dict[str, str]:
    """Add our defaults to the flags in ``$var`` without overriding any the user set."""
    user = {}
    for item in os.environ.get(var, "").split(","):
        if "=" in item:
            key, value = item.split("=", 1)
            user[key.strip()] = value.strip()
    merged = {**defaults, **user}
    os.environ[var] = ",".join(f"{k}={v}" for k, v in merged.items())
    return user


def _import_theano():
    # Theano 1.0.5 looks for BLAS through numpy.distutils attributes that recent numpy 1.x wheels no
    # longer have (its import fails); an empty ldflags makes it call numpy's BLAS via the C API.
    base = cache_dir() / "theano"
    if "base_compiledir=" not in os.environ.get("THEANO_FLAGS", ""):  # a dir the user chose wins
        base = _private_compiledir(base) or base  # a test run's private cache, as on PyTensor
    defaults = {**_DEFAULTS, "base_compiledir": str(base), "blas.ldflags": ""}
    if sys.version_info >= (3, 11):
        # Theano's C implementation of scan is C code generated by a 2020 Cython that does not
        # compile against Python 3.11's C API. Blocking that one module makes Theano fall back to
        # its Python scan loop (slower per step, the same numbers).
        sys.modules.setdefault("theano.scan_module.scan_perform_ext", None)
    USER_FLAGS.update(_merge_flags("THEANO_FLAGS", defaults))
    logging.getLogger("theano.tensor.blas").setLevel(logging.ERROR)
    import theano as th  # noqa: PLC0415  (only present in the legacy environment)
    import theano.tensor as tt  # noqa: PLC0415

    return th, tt


def _import_pytensor():
    already = "pytensor" in sys.modules
    base = cache_dir()
    if "base_compiledir=" not in os.environ.get("PYTENSOR_FLAGS", ""):  # a dir the user chose wins
        base = _private_compiledir(base) or base
    defaults = {**_DEFAULTS, "base_compiledir": str(base)}
    speedups_on = os.environ.get("COURSE_PYTENSOR_SPEEDUPS", "1").strip() != "0"  # validated by speedups
    if speedups_on:
        defaults["gcc__cxxflags"] = GCC_FLAGS
    user = _merge_flags("PYTENSOR_FLAGS", defaults)
    USER_FLAGS.update(user)
    # Without a system BLAS, PyTensor warns once and then calls numpy's own BLAS through the C
    # API, which is fine for the course sizes; the warning would only alarm learners.
    logging.getLogger("pytensor.tensor.blas").setLevel(logging.ERROR)
    import pytensor as pyt  # noqa: PLC0415
    import pytensor.tensor as pt  # noqa: PLC0415

    with warnings.catch_warnings():  # the BLAS search runs once, on first access; keep it quiet
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        pyt.config.blas__ldflags  # noqa: B018

    _fix_single_index_updates()
    from course_lib.theano_models import speedups  # noqa: PLC0415

    speedups.install()  # faster graphs and compiles, the same numbers (its docstring)
    if already:  # imported before us: the environment flags were read already, set what we can
        for key, value in _DEFAULTS.items():
            if key not in user:
                setattr(pyt.config, key, value)
    return pyt, pt


def _fix_single_index_updates() -> None:
    """Work around a PyTensor 3.0.x bug that every embedding model meets.

    ``AdvancedIncSubtensor1`` (``W[idx] = v``, ``W[idx] += v``, and the gradient of ``W[idx]``)
    checks for forbidden runtime broadcasting by comparing the update with the *whole* buffer
    ``W`` instead of with ``W[idx]``: with a single index, ``v`` has one row, ``W`` has many, and
    the check raises "Runtime broadcasting not allowed" although nothing is broadcast (a
    mini-batch of one paper, a step that touches one item row). We probe the check once and, only
    if it misfires, replace it with the same test against the shape of ``W[idx]``.
    """
    from types import SimpleNamespace

    from pytensor.tensor.subtensor import AdvancedIncSubtensor1

    original = getattr(AdvancedIncSubtensor1, "_check_runtime_broadcasting", None)
    if original is None:
        return
    node = SimpleNamespace(inputs=[None, SimpleNamespace(broadcastable=(False, False)),
                                   SimpleNamespace(type=SimpleNamespace(dtype="int64"))])
    try:
        original(SimpleNamespace(_runtime_broadcast_error_msg="probe"), node, np.zeros((3, 2)), np.zeros((1, 2)),
                 np.array([0]))
        return  # the check is right in this version
    except ValueError:
        pass
    except Exception:  # a different implementation: leave it alone
        return

    def check(self, node, x, y, idx):
        if y.ndim == 0:
            return
        n = int(idx.sum()) if idx.dtype == bool else idx.shape[0]
        target = (n, *x.shape[1:])  # the shape of x[idx]
        bcast = node.inputs[1].broadcastable
        if any(not b and yd == 1 and yd != td
               for b, yd, td in zip(reversed(bcast), reversed(y.shape), reversed(target))):
            raise ValueError(self._runtime_broadcast_error_msg)

    AdvancedIncSubtensor1._check_runtime_broadcasting = check


def _load():
    choice = os.environ.get("COURSE_THEANO_BACKEND", "auto").lower()
    if choice not in ("auto", "theano", "pytensor"):
        raise ValueError(f"COURSE_THEANO_BACKEND must be auto, theano or pytensor, got {choice!r}")
    if choice in ("auto", "theano"):
        try:
            return (*_import_theano(), "theano")
        except Exception as exc:  # numpy >= 1.24 breaks Theano's import in several ways
            if choice == "theano":
                raise ImportError(
                    f"COURSE_THEANO_BACKEND=theano but Theano does not import ({exc!r}); "
                    "create the legacy environment from environment-theano1.yml"
                ) from exc
    return (*_import_pytensor(), "pytensor")


theano, T, BACKEND = _load()
"""``theano``: the backend module (``function``, ``shared``, ``grad``, ``config``);
``T``: its tensor module; ``BACKEND``: ``"theano"`` or ``"pytensor"``."""

_graph = theano.gof if BACKEND == "theano" else theano.graph
Op, Apply = _graph.Op, _graph.Apply
DisconnectedType, grad_not_implemented = theano.gradient.DisconnectedType, theano.gradient.grad_not_implemented
"""For writing an operation of one's own (an ``Op`` with ``make_node``, ``perform`` and a gradient), the
same on both backends: the node class ``Apply``, the type of the gradient of an output that does not
reach the cost (``DisconnectedType``) and ``grad_not_implemented``."""


def floatX() -> str:
    return theano.config.floatX


def shared(value, name: str, dtype: str | None = None):
    """A shared variable holding a copy of ``value`` cast to ``dtype`` (default floatX)."""
    return theano.shared(np.array(value, dtype=dtype or floatX()), name=name)


def sigmoid(x):
    return T.nnet.sigmoid(x) if BACKEND == "theano" else T.sigmoid(x)


def softmax(x):
    """Softmax over the last axis (Theano's ``T.nnet.softmax`` of a matrix normalises rows;
    PyTensor's ``softmax`` needs ``axis=-1`` or it normalises over all entries)."""
    if BACKEND == "theano":
        e = T.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return T.special.softmax(x, axis=-1)


def softplus(x):
    """``log(1 + exp(x))``, stable for large ``|x|``."""
    return T.nnet.softplus(x) if BACKEND == "theano" else T.softplus(x)


def log_sigmoid(x):
    """``log sigmoid(x) = -softplus(-x)``, finite where ``sigmoid`` would underflow to 0."""
    return -softplus(-x)


def log_softmax(x):
    """Log-softmax over the last axis, computed as ``x - logsumexp(x)`` so it never overflows."""
    m = x.max(axis=-1, keepdims=True)
    return x - m - T.log(T.exp(x - m).sum(axis=-1, keepdims=True))


def elu(x, alpha: float = 1.0):
    """ELU (Clevert et al., 2016): ``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    The exponential is taken of ``min(x, 0)`` so a large positive ``x`` never produces an
    ``inf`` that ``switch`` would hide in the forward pass but not in the gradient.
    """
    return T.switch(x > 0, x, alpha * T.expm1(T.minimum(x, 0)))


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, go_backwards=False, name=None):
    """``scan`` returning only its outputs, the same on both backends.

    Theano returns ``(outputs, updates)``; PyTensor 3 returns outputs only when asked to. The
    course never draws random numbers inside a scan (dropout masks are drawn outside and passed
    in as sequences), so there are no updates to return and a non-empty update dict is a bug.
    """
    kwargs = dict(sequences=sequences, outputs_info=outputs_info, non_sequences=non_sequences,
                  go_backwards=go_backwards, name=name)
    if BACKEND == "theano":
        outputs, updates = theano.scan(fn, **kwargs)
        if updates:
            raise ValueError("scan produced updates; draw random numbers outside the scan")
        return outputs
    return theano.scan(fn, return_updates=False, **kwargs)


class RandomStream:
    """Uniform random draws with explicit state updates, the same on Theano and PyTensor.

    Every draw advances a generator state; :meth:`pop_updates` hands the pending state updates
    to the ``updates=`` list of the function that uses the draws (then the next call of that
    function draws fresh numbers). On PyTensor each draw gets its own shared generator, seeded
    from ``seed`` in draw order, so the same seed gives the same numbers; on Theano the MRG
    generator advances its own state (a default update) and there is nothing to hand over.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._seeds = np.random.SeedSequence(self.seed)
        self._updates: list = []
        if BACKEND == "theano":
            from theano.sandbox.rng_mrg import MRG_RandomStreams  # noqa: PLC0415

            # MRG rejects seed 0; derive a valid seed from ours (deterministic, different per seed)
            self._mrg = MRG_RandomStreams(seed=1 + int(self._seeds.generate_state(1)[0]) % 2147483646)

    def uniform(self, size, dtype: str | None = None):
        """A tensor of ``U[0, 1)`` draws of shape ``size`` (symbolic shapes are fine)."""
        dtype = dtype or floatX()
        if BACKEND == "theano":
            return self._mrg.uniform(size=size, dtype=dtype)
        child = int(self._seeds.spawn(1)[0].generate_state(1)[0])
        rng = T.random.shared_rng(seed=child)
        next_rng, sample = rng.uniform(size=size)
        self._updates.append((rng, next_rng))
        return T.cast(sample, dtype)

    def pop_updates(self) -> list:
        """The state updates of the draws made since the last call, as ``(shared, new)`` pairs."""
        out, self._updates = self._updates, []
        return out


def dropout(x, p_drop: float, stream: RandomStream | None, train: bool = True):
    """Inverted dropout: zero each entry with probability ``p_drop`` and scale the rest by
    ``1 / (1 - p_drop)`` so the expectation is unchanged (the convention of ``torch.nn.Dropout``).

    At test time (``train=False``) or with ``p_drop == 0`` it is the identity and draws nothing.
    Built as one :class:`InvertedDropout` node on ``stream``'s draws: numpy, no C module to compile.
    """
    if not 0.0 <= p_drop < 1.0:
        raise ValueError(f"p_drop must be in [0, 1), got {p_drop}")
    if not train or p_drop == 0.0:
        return x
    if stream is None:
        raise ValueError("dropout with p_drop > 0 in training needs a RandomStream; pass stream=")
    return InvertedDropout(p_drop)(x, stream.uniform(x.shape, dtype=x.dtype))


class InvertedDropout(Op):
    """``y = x * keep / (1 - p_drop)`` with ``keep = (u >= p_drop)``, for draws ``u`` ``U[0, 1)`` of
    ``x``'s shape, computed with numpy (:func:`dropout` builds it).

    Why an operation of its own instead of the elementwise expression: from an empty compile cache
    PyTensor fuses ``x * cast(u >= p) / (1 - p)`` with its neighbours into a C module whose code holds
    ``p`` and ``1 / (1 - p)`` as constants, so every dropout rate of a model, forward and gradient,
    cost a gcc run of its own (six of Ask the GRU's 25 modules). This operation has no C code at all,
    and its gradient is the same operation on the output gradient with the same draws
    (``dy/dx = keep / (1 - p_drop)``; the draws get none), so a dropout site compiles nothing.

    The same draws give the same zeros as the expression compiled with PyTensor's rewrites: ``u``
    is compared with ``p_drop`` in double precision, as the fused C code did (a draw equal to
    ``p_drop`` rounded down to float32 is dropped). The kept entries are ``x * s`` rounded once to the dtype, ``s``
    being ``1 / (1 - p_drop)`` in the dtype: what ``torch.nn.functional.dropout`` computes. (The
    fused C code of the expression multiplied by ``s`` written as a short decimal, a double, so it
    could differ in the last place, as it differed with the graph around it, e.g. under
    ``fast_compile``; tests/theano_models/test_numpy_ops.py.)
    """

    __props__ = ("p_drop",)

    def __init__(self, p_drop: float):
        if not 0.0 <= p_drop < 1.0:
            raise ValueError(f"p_drop must be in [0, 1), got {p_drop}")
        self.p_drop = float(p_drop)

    def make_node(self, x, u):
        x, u = T.as_tensor_variable(x), T.as_tensor_variable(u)
        if x.type.dtype not in ("float32", "float64") or u.type.dtype != x.type.dtype or u.type.ndim != x.type.ndim:
            raise TypeError(f"InvertedDropout needs a float tensor x and draws u of its dtype and rank, got "
                            f"x {x.type} and u {u.type}")
        return Apply(self, [x, u], [x.type()])

    def perform(self, node, inputs, output_storage):
        x, u = inputs
        if u.shape != x.shape:
            raise ValueError(f"InvertedDropout: the draws have shape {u.shape}, the input {x.shape}; draw them "
                             "with the input's shape")
        dtype = x.dtype.type
        keep = u >= _threshold(self.p_drop, x.dtype)
        output_storage[0][0] = np.multiply(x, dtype(1.0 / (1.0 - self.p_drop))) * keep

    def pullback(self, inputs, outputs, cotangents):
        """The gradient of ``x``: the same dropout of the output gradient (PyTensor 3 calls this
        ``pullback``, Theano 1.0 ``L_op``: the same method under both names); the draws get none."""
        return [self(cotangents[0], inputs[1]), DisconnectedType()()]

    L_op = pullback

    def connection_pattern(self, node):
        return [[True], [False]]

    def infer_shape(self, *args):  # (fgraph, node, shapes) on PyTensor, (node, shapes) on Theano 1.0
        return [args[-1][0]]


def _flat(x):
    """``x`` as a vector. The optimisers update every parameter as a vector (the reshapes are views,
    run in numpy), so their fused update expression has one shape whatever the parameter's, and a
    cold compile builds one C module for it instead of one per rank and per way the gradient's last
    operation fused into it; the arithmetic, element by element, is the same."""
    return x.flatten() if x.ndim != 1 else x


def _unflat(x, like):
    """The vector ``x`` back in the shape of ``like`` (the inverse of :func:`_flat`)."""
    return x.reshape(like.shape, ndim=like.ndim) if like.ndim != 1 else x


def _threshold(p: float, dtype) -> np.generic:
    """The least number of ``dtype`` at or above ``p``: for a draw ``u`` of ``dtype``, ``u >= p``
    in double precision (as the fused C code compared them) is ``u >= _threshold(p, dtype)``,
    without converting the draws to double."""
    t = np.asarray(p, dtype=dtype)[()]
    return np.nextafter(t, np.asarray(np.inf, dtype=dtype)) if float(t) < p else t


def adagrad(loss, params, learning_rate: float, epsilon: float = 1e-10, weight_decay: float = 0.0):
    """Adagrad (Duchi et al., 2011) written as an update list, as ``torch.optim.Adagrad`` does it::

        g   <- g + weight_decay * p
        acc <- acc + g^2
        p   <- p - learning_rate * g / (sqrt(acc) + epsilon)

    Returns ``(updates, accumulators)``; the accumulators are shared variables a model can save or
    inspect. Rows of an embedding that a batch does not touch have ``g = 0`` (without weight
    decay) and keep both their value and their accumulator, exactly as in PyTorch.
    """
    grads = theano.grad(loss, params, disconnected_inputs="ignore")
    updates, accs = [], []
    for p, g in zip(params, grads):
        value = p.get_value(borrow=True)
        c = lambda v: np.asarray(v, dtype=value.dtype)  # noqa: E731  (keep float32 graphs float32)
        if weight_decay:
            g = g + c(weight_decay) * p
        acc = theano.shared(np.zeros_like(value), name=f"acc_{p.name}")
        p_, g_, acc_ = _flat(p), _flat(g), _flat(acc)
        new_acc = acc_ + g_**2
        updates += [(acc, _unflat(new_acc, acc)), (p, _unflat(p_ - c(learning_rate) * g_ / (T.sqrt(new_acc) + c(epsilon)), p))]
        accs.append(acc)
    return updates, accs


def adam(loss, params, learning_rate: float = 1e-3, betas=(0.9, 0.999), epsilon: float = 1e-8,
         weight_decay: float = 0.0):
    """Adam (Kingma & Ba, 2015) as an update list, as ``torch.optim.Adam`` computes it::

        t <- t + 1;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + epsilon)

    Returns ``(updates, state)`` with the moment shared variables and the step counter.
    """
    grads = theano.grad(loss, params, disconnected_inputs="ignore")
    b1, b2 = betas
    dtype = params[0].get_value(borrow=True).dtype
    c = lambda v: np.asarray(v, dtype=dtype)  # noqa: E731
    t = theano.shared(c(0.0), name="adam_t")
    t_new = t + c(1.0)
    updates, state = [(t, t_new)], [t]
    corr1, corr2 = c(1.0) - c(b1) ** t_new, c(1.0) - c(b2) ** t_new
    for p, g in zip(params, grads):
        value = p.get_value(borrow=True)
        if weight_decay:
            g = g + c(weight_decay) * p
        m = theano.shared(np.zeros_like(value), name=f"m_{p.name}")
        v = theano.shared(np.zeros_like(value), name=f"v_{p.name}")
        p_, g_, m_, v_ = _flat(p), _flat(g), _flat(m), _flat(v)
        m_new = c(b1) * m_ + c(1 - b1) * g_
        v_new = c(b2) * v_ + c(1 - b2) * g_**2
        step = c(learning_rate) * (m_new / corr1) / (T.sqrt(v_new / corr2) + c(epsilon))
        updates += [(m, _unflat(m_new, m)), (v, _unflat(v_new, v)), (p, _unflat(p_ - step, p))]
        state += [m, v]
    return updates, state


def function(inputs, outputs, updates=None, name=None):
    """``theano.function`` with the course defaults: ``allow_input_downcast`` so float64 numpy
    arrays feed float32 graphs, and no error for inputs a particular output does not use."""
    return theano.function(inputs, outputs, updates=updates or [], name=name,
                           allow_input_downcast=True, on_unused_input="ignore")


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor: the parity tests load PyTorch weights
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class Params:
    """The trainable shared variables of a model, by name.

    Names and shapes follow the ``state_dict`` of the PyTorch module of the same name (a linear
    layer's weight is ``(out, in)`` and is applied as ``x W^T``), so the weights of one track load
    into the other with ``load_state_dict(torch_model.state_dict())``.
    """

    def __init__(self, dtype: str | None = None):
        self.dtype = dtype or floatX()
        self.shared: dict[str, object] = {}
        self.trainable: list[str] = []

    def add(self, name: str, value, trainable: bool = True):
        var = shared(value, name=name, dtype=self.dtype)
        self.shared[name] = var
        if trainable:
            self.trainable.append(name)
        return var

    def include(self, prefix: str, other: "Params") -> None:
        """Take over a sub-module's parameters under ``prefix.`` (as torch names them)."""
        for name, var in other.shared.items():
            self.shared[f"{prefix}.{name}"] = var
        self.trainable += [f"{prefix}.{n}" for n in other.trainable]

    def __getitem__(self, name: str):
        return self.shared[name]

    def trainable_vars(self) -> list:
        return [self.shared[n] for n in self.trainable]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {n: v.get_value() for n, v in self.shared.items()}

    def save(self, path) -> None:
        """All values in one ``.npz`` file (names as keys)."""
        np.savez(path, **self.state_dict())

    def load(self, path) -> None:
        """Values saved by :meth:`save` (or any ``.npz`` with the same names and shapes)."""
        with np.load(path) as data:
            self.load_state_dict({k: data[k] for k in data.files})

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays (numpy or torch) into the shared variables, checking names and shapes."""
        state = {k: _to_numpy(v) for k, v in state.items()}
        missing = [n for n in self.shared if n not in state]
        unexpected = [n for n in state if n not in self.shared]
        if strict and (missing or unexpected):
            raise ValueError(f"state does not match the model: missing {missing}, unexpected {unexpected}")
        for name, var in self.shared.items():
            if name not in state:
                continue
            old = var.get_value(borrow=True)
            if state[name].shape != old.shape:
                raise ValueError(f"{name} has shape {state[name].shape} in the state but {old.shape} in the model")
            var.set_value(state[name].astype(old.dtype))
