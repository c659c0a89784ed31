"""Set the course up on this machine, without bash: ``python -m course_lib.setup``.

What ``bash setup.sh`` does (setup.sh only checks the Python version and calls this), so Windows
without WSL, macOS and Linux follow the same steps:

1. create the virtual environment ``.venv`` (skipped with ``--here``: install into the Python that
   runs this, e.g. an activated conda environment made from ``environment.yml``);
2. install PyTorch if no supported torch is there yet: the CPU build of :data:`DEFAULT_TORCH` on
   Linux without an NVIDIA GPU (from the PyTorch CPU index, because a plain ``pip install torch``
   there downloads a CUDA build of several GB), the ordinary PyPI build elsewhere. A torch that is
   already installed and in the supported range is kept;
3. install the course with its test tools (``pip install -e ".[test]"``);
4. build the student notebooks, run ``course check``, and start JupyterLab (not with ``--no-lab``).

Only the standard library is used here: this module runs before anything is installed.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 10)
DEFAULT_TORCH = "2.13.0"  # the version the README's timings were measured with
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_INDEX_ENV = "COURSE_TORCH_INDEX"  # a package index URL for torch, or "pypi" for the default one


def venv_python(venv: Path, system: str | None = None) -> Path:
    """The interpreter inside a virtual environment (``Scripts\\python.exe`` on Windows)."""
    system = system or platform.system()
    return venv / ("Scripts/python.exe" if system == "Windows" else "bin/python")


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def torch_index(system: str | None = None, nvidia: bool | None = None) -> str | None:
    """The package index to take torch from, or None for pip's default (PyPI).

    Linux without an NVIDIA GPU gets the CPU index; PyPI's macOS and Windows wheels are CPU builds
    already, and a Linux machine with a GPU wants PyPI's CUDA build. ``$COURSE_TORCH_INDEX`` wins."""
    override = os.environ.get(TORCH_INDEX_ENV)
    if override:
        return None if override == "pypi" else override
    system = system or platform.system()
    nvidia = has_nvidia_gpu() if nvidia is None else nvidia
    return TORCH_CPU_INDEX if system == "Linux" and not nvidia else None


def index_reachable(url: str, timeout: float = 10.0) -> bool:
    """One quick request, so an unreachable index costs seconds, not pip's retries per package."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/torch/", timeout=timeout):
            return True
    except Exception:  # any failure means: do not hand this index to pip
        return False


def torch_floor() -> tuple[int, ...]:
    """The lowest torch the course supports, from the ``torch>=X.Y`` line of pyproject.toml."""
    pyproject = REPO_ROOT / "pyproject.toml"
    match = re.search(r'"torch\s*>=\s*([0-9.]+)', pyproject.read_text()) if pyproject.is_file() else None
    return _version_tuple(match.group(1)) if match else (0,)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def installed_torch(python: Path) -> str | None:
    """The torch version installed for ``python``, or None."""
    code = "from importlib.metadata import version\ntry: print(version('torch'))\nexcept Exception: pass"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or None


def plan(create_venv: bool, python: Path, lab: bool = True, system: str | None = None,
         nvidia: bool | None = None, need_torch: bool = True, index_ok: bool = True) -> list[tuple[str, list[str]]]:
    """The steps, as (what, command) pairs; ``main`` runs them, ``--dry-run`` prints them."""
    steps = []
    if create_venv:
        steps.append(("create the virtual environment .venv", [sys.executable, "-m", "venv", str(python.parent.parent)]))
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    steps.append(("update pip", pip + ["--upgrade", "pip"]))
    if need_torch:
        index = torch_index(system, nvidia)
        if index and not index_ok:
            print(f"note: the PyTorch CPU index {index} cannot be reached; torch comes from the default index "
                  f"(on Linux that can be a CUDA build of several GB). Set {TORCH_INDEX_ENV}=pypi to silence this.")
            index = None
        where = f"the CPU build, from {index}" if index else "from the default index"
        steps.append((f"install torch {DEFAULT_TORCH} ({where})",
                      pip + [f"torch=={DEFAULT_TORCH}"] + (["--extra-index-url", index] if index else [])))
    steps.append(("install the course and its dependencies", pip + ["-e", f"{REPO_ROOT}[test]"]))
    cli = [str(python), "-m", "course_lib.cli"]
    steps.append(("build the student notebooks from solutions/", cli + ["build-notebooks"]))
    steps.append(("check this machine", cli + ["check"]))
    if lab:
        steps.append(("start JupyterLab (Ctrl-C to stop)", cli + ["lab"]))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.setup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-lab", action="store_true", help="stop before starting JupyterLab (what CI does)")
    parser.add_argument("--here", action="store_true",
                        help="install into this Python (an activated conda or other environment) instead of .venv")
    parser.add_argument("--dry-run", action="store_true", help="print the steps without running them")
    args = parser.parse_args(argv)
    if not (REPO_ROOT / "pyproject.toml").is_file():
        print(f"python -m course_lib.setup sets up a checkout of the course, but this course_lib is installed in "
              f"{REPO_ROOT}. Run it from the folder you cloned (cd recsys-dl-course; python -m course_lib.setup).")
        return 1
    if sys.version_info < MIN_PYTHON:
        print(f"The course needs Python {'.'.join(map(str, MIN_PYTHON))} or newer (3.11 recommended); this is "
              f"{platform.python_version()} ({sys.executable}). Install a newer Python and run this with it.")
        return 1
    python = Path(sys.executable) if args.here else venv_python(REPO_ROOT / ".venv")
    create_venv = not args.here and not python.exists()
    have = None if create_venv else installed_torch(python)
    need_torch = have is None or _version_tuple(have) < torch_floor()
    if have and need_torch:
        print(f"note: torch {have} is older than the course supports; installing {DEFAULT_TORCH}")
    index = torch_index() if need_torch else None
    index_ok = index is None or args.dry_run or index_reachable(index)
    steps = plan(create_venv, python, lab=not args.no_lab, need_torch=need_torch, index_ok=index_ok)
    for what, cmd in steps:
        print(f"==> {what}")
        if args.dry_run:
            print("    " + " ".join(cmd))
            continue
        if what.startswith("start JupyterLab"):
            try:
                return subprocess.call(cmd, cwd=REPO_ROOT)
            except KeyboardInterrupt:  # Ctrl-C stops JupyterLab; no traceback for that
                return 0
        result = subprocess.run(cmd, cwd=REPO_ROOT)
        if result.returncode != 0:
            if what == "check this machine":
                print("(course check found problems: see above)")
                continue
            print(f"Setup stopped: '{what}' failed (exit code {result.returncode}); see the messages above. "
                  "Fix what they name and run this command again: finished steps are quick the second time.")
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
