"""Test-wide settings: headless plots, the tiny tier, and a private PyTensor compile cache per run.

PyTensor compiles into a cache that one process at a time may write (a file lock held for each
gcc run). A test run that shared the user's cache would take turns, module by module, with any
other course process on the machine (a notebook, a second test run). Each pytest run therefore
compiles into its own cache, seeded from the user's at its first PyTensor import and merged back
at the end (:func:`course_lib.theano_models.compat.seed_compiledir` / ``merge_compiledir``); the
notebook kernels that nbval starts inherit it through ``$COURSE_PRIVATE_COMPILEDIR``.
"""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_TIER", "tiny")

PRIVATE_ENV = "COURSE_PRIVATE_COMPILEDIR"  # read by course_lib.theano_models.compat


def _remove_abandoned(prefix: str) -> None:
    """Delete the private caches of earlier runs that were killed before their exit hooks ran."""
    for old in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = old.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        return True
    return True


def pytest_configure(config):
    chosen = os.environ.get("PYTENSOR_FLAGS", "") + os.environ.get("THEANO_FLAGS", "")
    if os.environ.get(PRIVATE_ENV) or "base_compiledir=" in chosen:
        return  # an enclosing run's private cache, or a compile dir the user chose
    _remove_abandoned("course-pytensor-")
    private = tempfile.mkdtemp(prefix=f"course-pytensor-{os.getpid()}-")
    os.environ[PRIVATE_ENV] = private
    config.course_private_compiledir = Path(private)
    # registered before PyTensor is imported, so it runs after PyTensor's own exit hooks (atexit is
    # last in, first out), which still read the cache
    atexit.register(shutil.rmtree, private, ignore_errors=True)


def pytest_unconfigure(config):
    private = getattr(config, "course_private_compiledir", None)
    if private is None or not (private / ".seeded").exists():
        return  # nothing in this run used PyTensor
    from course_lib.theano_models.compat import BACKEND, cache_dir, merge_compiledir

    # original Theano keeps its modules in a folder of its own (compat._import_theano)
    merge_compiledir(private, cache_dir() / "theano" if BACKEND == "theano" else cache_dir())
