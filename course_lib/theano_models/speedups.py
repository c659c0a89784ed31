"""Where PyTensor 3 is slow for the course's graphs, and what the course changes about it.

:mod:`course_lib.theano_models.compat` calls :func:`install` once, right after it imports
PyTensor. Original Theano 1.0.5 gets none of this (compat never calls it there).
``course bench theano`` measures the effect (README, "course bench theano"); the tests in
``tests/theano_models/test_speedups.py`` train every model of the track with and without it and
find the same weights, bit for bit.

* **Row updates in C.** ``W[idx] += g`` on a matrix (the gradient of every embedding lookup
  ``W[idx]``, and the row-wise optimisers of GRU4Rec) is ``AdvancedIncSubtensor1``, whose C code
  in PyTensor 3.0 handles vectors only: on a matrix it runs ``numpy.add.at`` in Python, about
  half of a GRU4Rec training step. :class:`RowIncSubtensor1` is the same operation with C code
  for matrices, and the rewrite :func:`local_row_inc_in_c` puts it in place of the Python one.
  Rows are added in index order, as ``numpy.add.at`` adds them, so the sums are identical.
* **Bookkeeping in Python.** From an empty compile cache every distinct operation of a graph
  becomes its own C module, and gcc needs half a second or more for each, however trivial the
  operation (most of it parsing Python's and numpy's headers). Operations that only compute or
  check shapes, slice, join, reshape, transpose or copy, gather rows (``W[idx]``: numpy's
  ``take``), and the exact reductions max and min
  (:data:`PYTHON_OPS`; numpy's max is vectorised, several times faster than PyTensor's C loop
  on GRU4Rec's score matrices), ``x[idx] += y`` on a vector ``x`` (``numpy.add.at``, which adds
  in index order as the C code does: :func:`runs_in_python`), elementwise arithmetic
  that numpy rounds exactly as C does (``+ - * /``, max, min, negation of one float dtype, two
  operands at most: :data:`EXACT_ARITHMETIC`) and integer arithmetic on scalars (shapes, step
  counts) run their Python implementation instead: a few microseconds each, and the first
  compile of a graph builds fewer modules. Not inside a ``scan`` loop: there the microseconds
  would be paid at every time step, so the loop's operations keep their C code. Transcendental
  functions and fused (``Composite``) expressions stay in C, where their rounding is PyTensor's.
* **Lighter gcc flags.** :data:`~course_lib.theano_models.compat.GCC_FLAGS` (set by ``compat``
  before PyTensor reads its flags): ``-O1`` with the one ``-O3`` pass that changes rounding
  (multiply-add fusion) kept, and no debug symbols.

This is a global change, made by replacing ``c_code`` on those PyTensor classes (and registering
one rewrite), so it reaches every PyTensor graph of a process from the moment the course's Theano
track is imported, and no process that does not import it. :func:`install` does it once, however
often it is called. ``COURSE_PYTENSOR_SPEEDUPS=0`` in the environment (before the import) leaves
PyTensor as it ships: for comparing, or if a PyTensor release changes the classes underneath.
"""
from __future__ import annotations

import os

from pytensor.compile.ops import DeepCopyOp
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.raise_op import CheckAndRaise
from pytensor.scalar import basic as ps
from pytensor.tensor.basic import ARange, Alloc, AllocEmpty, Join, MakeVector, ScalarFromTensor, Split, TensorFromScalar
from pytensor.tensor.elemwise import DimShuffle, Elemwise
from pytensor.tensor.math import Max, Min
from pytensor.tensor.rewriting.basic import register_specialize
from pytensor.tensor.shape import Reshape, Shape, Shape_i, SpecifyShape
from pytensor.tensor.subtensor import AdvancedIncSubtensor1, AdvancedSubtensor1, IncSubtensor, Subtensor

ENV = "COURSE_PYTENSOR_SPEEDUPS"
PYTHON_OPS = (Shape, Shape_i, SpecifyShape, Reshape, ScalarFromTensor, TensorFromScalar, MakeVector, Alloc,
              AllocEmpty, ARange, Join, Split, Subtensor, IncSubtensor, CheckAndRaise, DimShuffle, DeepCopyOp, AdvancedSubtensor1, Max, Min)
"""Operations that always run in Python (their ``perform``) instead of a compiled C module."""
EXACT_ARITHMETIC = (ps.Add, ps.Sub, ps.Mul, ps.TrueDiv, ps.Maximum, ps.Minimum, ps.Neg)
"""Scalar operations that IEEE 754 rounds the same in numpy and in C (one correctly rounded result)."""


def enabled() -> bool:
    """Whether ``$COURSE_PYTENSOR_SPEEDUPS`` allows the speed-ups (unset or ``1``: yes; ``0``: no)."""
    value = os.environ.get(ENV, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{ENV} must be 1 (use the course's PyTensor speed-ups) or 0 (PyTensor as it ships), "
                         f"got {value!r}")
    return value == "1"


class RowIncSubtensor1(AdvancedIncSubtensor1):
    """``x[idx] += y`` (or ``x[idx] = y``) for a matrix ``x`` ``(n, d)``, row indices ``idx`` ``(k,)``
    (repeats allowed, negative ones count from the end) and rows ``y`` ``(k, d)``, in C."""

    def c_code(self, node, name, inputs, outputs, sub):
        x_var, y_var, idx_var = node.inputs
        if not _rows_of_matrix(x_var, y_var):
            return super().c_code(node, name, inputs, outputs, sub)
        x, y, idx = inputs
        (out,) = outputs
        fail, params = sub["fail"], sub["params"]
        dtype, idx_dtype = x_var.type.dtype_specs()[1], idx_var.type.dtype_specs()[1]
        op = "=" if self.set_instead_of_inc else "+="
        return f"""
        if ({params}->inplace) {{
            if ({x} != {out}) {{
                Py_XDECREF({out});
                Py_INCREF({x});
                {out} = {x};
            }}
        }} else {{
            Py_XDECREF({out});
            {out} = {self.copy_of_x(x)};
            if (!{out}) {{ {fail} }}
        }}
        {{
            const npy_intp n_rows = PyArray_DIMS({out})[0], n_cols = PyArray_DIMS({out})[1];
            const npy_intp k = PyArray_DIMS({idx})[0];
            if (PyArray_DIMS({y})[0] != k || PyArray_DIMS({y})[1] != n_cols) {{
                PyErr_Format(PyExc_ValueError,
                    "RowIncSubtensor1: the rows have shape (%ld, %ld), expected (%ld, %ld) (indices x columns)",
                    (long)PyArray_DIMS({y})[0], (long)PyArray_DIMS({y})[1], (long)k, (long)n_cols);
                {fail}
            }}
            char* out_data = PyArray_BYTES({out});
            const char* y_data = PyArray_BYTES({y});
            const char* idx_data = PyArray_BYTES({idx});
            const npy_intp os0 = PyArray_STRIDES({out})[0], os1 = PyArray_STRIDES({out})[1];
            const npy_intp ys0 = PyArray_STRIDES({y})[0], ys1 = PyArray_STRIDES({y})[1];
            const npy_intp is0 = PyArray_STRIDES({idx})[0];
            const int contiguous = os1 == sizeof({dtype}) && ys1 == sizeof({dtype});
            for (npy_intp i = 0; i < k; ++i) {{
                npy_intp row = (npy_intp) *(const {idx_dtype}*)(idx_data + i * is0);
                if (row < 0) row += n_rows;
                if (row < 0 || row >= n_rows) {{
                    PyErr_Format(PyExc_IndexError, "index %ld is out of bounds for axis 0 with size %ld",
                                 (long)*(const {idx_dtype}*)(idx_data + i * is0), (long)n_rows);
                    {fail}
                }}
                char* o = out_data + row * os0;
                const char* r = y_data + i * ys0;
                if (contiguous) {{
                    {dtype}* od = ({dtype}*)o;
                    const {dtype}* rd = (const {dtype}*)r;
                    for (npy_intp j = 0; j < n_cols; ++j) od[j] {op} rd[j];
                }} else {{
                    for (npy_intp j = 0; j < n_cols; ++j)
                        *({dtype}*)(o + j * os1) {op} *(const {dtype}*)(r + j * ys1);
                }}
            }}
        }}
        """

    def c_code_cache_version(self):
        return (1, *super().c_code_cache_version())


def _rows_of_matrix(x, y) -> bool:
    """``x[idx] += y`` adds whole rows: a matrix ``x``, a matrix ``y`` of its dtype, nothing broadcast."""
    return x.type.ndim == 2 and y.type.ndim == 2 and y.type.dtype == x.type.dtype and not any(y.type.broadcastable)


@node_rewriter([AdvancedIncSubtensor1])
def local_row_inc_in_c(fgraph, node):
    """``AdvancedIncSubtensor1`` adding whole rows to a matrix -> :class:`RowIncSubtensor1`."""
    if type(node.op) is not AdvancedIncSubtensor1 or not _rows_of_matrix(*node.inputs[:2]):
        return None
    op = RowIncSubtensor1(inplace=node.op.inplace, set_instead_of_inc=node.op.set_instead_of_inc)
    return [op(*node.inputs)]


_scan_depth = [0]  # > 0 while a scan's inner function is being compiled


def _python_outside_scan(original):
    """``c_code`` that sends the node to Python, except inside a ``scan`` loop (module docstring)."""

    def c_code(self, node, *args, **kwargs):
        if _scan_depth[0] == 0 and runs_in_python(node):
            raise NotImplementedError("runs in Python (course_lib.theano_models.speedups)")
        return original(self, node, *args, **kwargs)

    return c_code


def _marking_scan_compiles(original: property) -> property:
    def fn(self):
        _scan_depth[0] += 1
        try:
            return original.fget(self)
        finally:
            _scan_depth[0] -= 1

    return property(fn, doc=original.__doc__)


def runs_in_python(node) -> bool:
    """Whether a node of the patched classes runs in Python outside ``scan``: every bookkeeping
    operation, :func:`elemwise_in_python` elementwise ones, and ``x[idx] += y`` on a vector ``x``."""
    if isinstance(node.op, Elemwise):
        return elemwise_in_python(node)
    if isinstance(node.op, AdvancedIncSubtensor1):
        return node.inputs[0].type.ndim == 1
    return True


def elemwise_in_python(node) -> bool:
    """Whether an ``Elemwise`` node runs in Python: exact float arithmetic, or integer scalars."""
    dtypes = {v.type.dtype for v in (*node.inputs, *node.outputs)}
    scalar_op = node.op.scalar_op
    if type(scalar_op) in EXACT_ARITHMETIC and len(dtypes) == 1 and dtypes <= {"float32", "float64"}:
        # numpy runs the ufunc itself only for its own number of operands (else a slow Python loop)
        return len(node.inputs) == scalar_op.nfunc_spec[1]
    return all(v.type.ndim == 0 and v.type.dtype.startswith(("int", "uint", "bool")) for v in node.outputs)


def install() -> bool:
    """Register the row-update rewrite and send the bookkeeping operations to Python, once per
    process; returns whether the speed-ups are on (``$COURSE_PYTENSOR_SPEEDUPS``)."""
    if getattr(install, "done", None) is not None:
        return install.done
    install.done = enabled()
    if not install.done:
        return False
    from pytensor.scan.op import Scan

    register_specialize(local_row_inc_in_c, "fast_compile")
    for cls in (*PYTHON_OPS, Elemwise, AdvancedIncSubtensor1):
        cls.c_code = _python_outside_scan(cls.c_code)
    Scan.fn = _marking_scan_compiles(Scan.fn)
    return True
