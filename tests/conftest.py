import os
import shutil

import pytest

from course_lib import data


def _small_available() -> bool:
    try:
        for rel in data.REMOTE_FILES:
            data.locate(rel, download=False)
    except (data.DataMissingError, data.ChecksumError):
        return False
    return True


ONE_THREAD_DIRS = {"checks", "torch_models"}


@pytest.fixture(autouse=True, scope="module")
def one_thread(request):
    """Tiny tensors: one thread is faster than two fighting over a busy CPU, and runs repeat exactly.

    Applies to the test modules in tests/checks and tests/torch_models."""
    if request.path.parent.name not in ONE_THREAD_DIRS:
        yield
        return
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def require_small():
    """Skip (with the reason) when the small/full tiers are not on this machine."""
    if not _small_available():
        pytest.skip("the small/full data tiers are not here: set COURSE_DATA_DIR to a local copy or run `course fetch`")


@pytest.fixture
def tiny_copy(tmp_path, monkeypatch):
    """A private copy of data/tiny that a test may damage."""
    target = tmp_path / "tiny"
    shutil.copytree(data.TINY_DIR, target)
    monkeypatch.setattr(data, "TINY_DIR", target)
    return target


@pytest.fixture
def empty_data_env(tmp_path, monkeypatch):
    """No local copy and an empty cache: every larger-tier file must be downloaded."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def pytest_report_header(config):
    return f"course data: COURSE_DATA_DIR={os.environ.get('COURSE_DATA_DIR', '(not set)')}"
