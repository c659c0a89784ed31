"""python -m course_lib.setup: the steps it plans on each kind of machine (nothing is installed here;
the whole path runs in CI through setup.sh, which calls it)."""
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib import setup

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv(setup.TORCH_INDEX_ENV, raising=False)


def _commands(steps):
    return {what.split(" (")[0]: cmd for what, cmd in steps}


def test_torch_index_by_machine(monkeypatch):
    assert setup.torch_index("Linux", nvidia=False) == setup.TORCH_CPU_INDEX
    assert setup.torch_index("Linux", nvidia=True) is None  # PyPI's CUDA build is what a GPU wants
    assert setup.torch_index("Darwin", nvidia=False) is None  # PyPI's macOS and Windows wheels are CPU builds
    assert setup.torch_index("Windows", nvidia=False) is None
    monkeypatch.setenv(setup.TORCH_INDEX_ENV, "pypi")
    assert setup.torch_index("Linux", nvidia=False) is None
    monkeypatch.setenv(setup.TORCH_INDEX_ENV, "https://example.invalid/simple")
    assert setup.torch_index("Darwin", nvidia=False) == "https://example.invalid/simple"


def test_venv_python_on_windows_and_elsewhere():
    assert setup.venv_python(Path("v"), "Windows") == Path("v/Scripts/python.exe")
    assert setup.venv_python(Path("v"), "Linux") == Path("v/bin/python")


def test_plan_linux_without_gpu_takes_the_cpu_wheel():
    py = setup.venv_python(setup.REPO_ROOT / ".venv", "Linux")
    steps = setup.plan(True, py, lab=True, system="Linux", nvidia=False)
    whats = [w for w, _ in steps]
    assert whats[0] == "create the virtual environment .venv" and whats[-1].startswith("start JupyterLab")
    torch = next(cmd for w, cmd in steps if w.startswith("install torch"))
    assert torch[-3:] == [f"torch=={setup.DEFAULT_TORCH}", "--extra-index-url", setup.TORCH_CPU_INDEX]
    course = next(cmd for w, cmd in steps if w.startswith("install the course"))
    assert course[-2:] == ["-e", f"{setup.REPO_ROOT}[test]"]
    # torch comes first, so the course's range is already met and pip keeps the CPU build
    assert whats.index(next(w for w in whats if w.startswith("install torch"))) < whats.index("install the course and its dependencies")


def test_plan_without_lab_with_torch_present_or_index_unreachable(capsys):
    py = Path(sys.executable)
    steps = setup.plan(False, py, lab=False, system="Linux", nvidia=False, need_torch=False)
    assert [w for w, _ in steps] == ["update pip", "install the course and its dependencies",
                                     "build the student notebooks from solutions/", "check this machine"]
    steps = setup.plan(False, py, lab=False, system="Linux", nvidia=False, index_ok=False)
    torch = next(cmd for w, cmd in steps if w.startswith("install torch"))
    assert "--extra-index-url" not in torch
    assert "cannot be reached" in capsys.readouterr().out


@pytest.mark.skipif(not (setup.REPO_ROOT / "pyproject.toml").is_file(), reason="course_lib is installed, not a checkout")
def test_dry_run_prints_the_steps_for_this_environment():
    out = subprocess.run([sys.executable, "-m", "course_lib.setup", "--dry-run", "--no-lab", "--here"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "==> install the course and its dependencies" in out
    assert "==> start JupyterLab" not in out and "==> create the virtual environment" not in out
    assert "install torch" not in out  # this environment's torch is in range already


def test_version_tuple_and_floor():
    assert setup._version_tuple("2.13.0+cpu") == (2, 13, 0)
    from_checkout = (setup.REPO_ROOT / "pyproject.toml").is_file()
    assert setup.torch_floor() >= (2, 0) if from_checkout else setup.torch_floor() == (0,)


def test_refuses_to_run_outside_a_checkout(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(setup, "REPO_ROOT", tmp_path)
    assert setup.main(["--dry-run"]) == 1
    assert "sets up a checkout" in capsys.readouterr().out
