"""Compile the test graphs with PyTensor's cheapest rewrites.

The parity tests compile a dozen small graphs (scan gradients among them); graph rewriting, not
running, dominates their time. ``optimizer=fast_compile`` halves it and ``traceback__limit=0``
skips recording where each variable was built. Numbers are unaffected (the course code is written
stably by hand, without relying on the stabilising rewrites). Flags the user set win, and if
PyTensor was imported before this file the defaults of ``compat`` stay.
"""
import os
import sys

if "pytensor" not in sys.modules:
    _flags = os.environ.get("PYTENSOR_FLAGS", "")
    _extra = [f for f in ("optimizer=fast_compile", "traceback__limit=0") if f.split("=")[0] + "=" not in _flags]
    os.environ["PYTENSOR_FLAGS"] = ",".join(filter(None, [*_extra, _flags]))

import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """PyTensor calls numpy's BLAS; on a busy 2-core machine its threads mostly wait for each
    other (a 64 x 2250 x 100 product: 1 ms on one thread, 40-150 ms on two). Only these tests."""
    with threadpool_limits(1):
        yield
