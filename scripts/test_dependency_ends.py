"""Run the library tests at both ends of the supported dependency ranges, each in a fresh venv.

    python scripts/test_dependency_ends.py lowest   # every direct dependency at the floor pyproject.toml declares
    python scripts/test_dependency_ends.py latest   # the newest release of everything, torch and numpy included
    python scripts/test_dependency_ends.py pip      # what a plain `pip install` of the repository gives (no setup.sh)

``lowest`` pins each ``name>=X`` of pyproject.toml (dependencies and the ``test`` extra) to ``name==X``
through a constraints file; ``latest`` installs with ``--upgrade --upgrade-strategy eager``; ``pip``
installs torch as the README says, then the repository as a plain (not editable) package, and runs
the tests with the ``pytest`` command so that ``course_lib`` and its data come from the installed
wheel, not from the checkout. torch
comes from the PyTorch CPU index when it can be reached (else from the default index, which on
Linux is a CUDA build of several GB). The venvs are ``.venv-lowest`` / ``.venv-latest`` in the
repository; the outcome (versions, pass counts, time) is written to ``docs/TESTED_VERSIONS.md``.
Extra arguments after ``--`` go to pytest (default: the library tests, ``tests``).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from course_lib.setup import DEFAULT_TORCH, index_reachable, torch_index, venv_python  # noqa: E402

REPORT = ROOT / "docs" / "TESTED_VERSIONS.md"
SHOWN = ["torch", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "gensim", "pytensor", "numba",
         "jupyterlab", "ipywidgets", "ipykernel", "nbval", "pytest", "selenium"]


def direct_requirements() -> list[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return meta["dependencies"] + meta["optional-dependencies"]["test"]


def floor_constraints(requirements: list[str]) -> list[str]:
    """``name==X`` for every ``name>=X`` (and ``name==X`` kept); a requirement without a floor is an error."""
    out = []
    for req in requirements:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(>=|==)\s*([0-9][0-9A-Za-z.]*)\s*", req)
        if not m:
            raise SystemExit(f"pyproject.toml: {req!r} has no lower bound to test; write it as name>=X")
        out.append(f"{m.group(1)}=={m.group(3)}")
    return out


def run(cmd: list[str], cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess:
    print("$", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=cwd, **kw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("end", choices=["lowest", "latest", "pip"])
    parser.add_argument("pytest_args", nargs="*", default=["tests"])
    args = parser.parse_args(argv)
    venv = ROOT / f".venv-{args.end}"
    python = venv_python(venv)
    t0 = time.perf_counter()
    if venv.exists():
        shutil.rmtree(venv)
    run([sys.executable, "-m", "venv", venv], check=True)
    pip = [python, "-m", "pip", "install", "--quiet"]
    run(pip + ["--upgrade", "pip"], check=True)

    reqs = direct_requirements()
    index = torch_index()
    index_args = ["--extra-index-url", index] if index and index_reachable(index) else []
    if args.end == "lowest":
        constraints = floor_constraints(reqs)
        cfile = venv / "constraints.txt"
        cfile.write_text("\n".join(constraints) + "\n")
        torch_pin = next(c for c in constraints if c.startswith("torch=="))
        run(pip + [torch_pin] + index_args, check=True)
        run(pip + ["-c", cfile, "-e", f"{ROOT}[test]"], check=True)
    elif args.end == "latest":
        run(pip + ["--upgrade", "torch"] + index_args, check=True)
        run(pip + ["--upgrade", "--upgrade-strategy", "eager", "-e", f"{ROOT}[test]"], check=True)
    else:
        run(pip + [f"torch=={DEFAULT_TORCH}"] + index_args, check=True)
        run(pip + [f"{ROOT}[test]"], check=True)
    install_s = time.perf_counter() - t0
    where = run([python, "-c", "import course_lib.data as d; print(d.__file__); print(d.TINY_DIR)"], cwd=venv,
                capture_output=True, text=True, check=True).stdout.split()
    print("course_lib from", where)
    if args.end == "pip" and not all(w.startswith(str(venv)) for w in where):
        raise SystemExit(f"course_lib or its data did not come from the installed package: {where}")

    code = ("from importlib.metadata import version\nfor n in %r:\n    print(n, version(n))" % SHOWN)
    versions = dict(line.split() for line in run([python, "-c", code], capture_output=True, text=True,
                                                 check=True).stdout.splitlines())
    t1 = time.perf_counter()
    # `pytest`, not `python -m pytest`: the latter would put the checkout first on sys.path
    tester = [python.parent / "pytest"] if args.end == "pip" else [python, "-m", "pytest"]
    res = run([*tester, "-q", "-p", "no:cacheprovider", *args.pytest_args], capture_output=True, text=True)
    test_s = time.perf_counter() - t1
    print(res.stdout[-3000:], res.stderr[-2000:])
    summary = next((line.strip("= ") for line in reversed(res.stdout.splitlines()) if " in " in line and
                    re.search(r"\d+ (passed|failed|error)", line)), f"pytest exited {res.returncode}")
    failures = [line for line in res.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]

    section = [f"## {args.end}", "",
               f"`python scripts/test_dependency_ends.py {args.end}` on {datetime.date.today()}, Python "
               f"{platform.python_version()}, {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores "
               "(machine shared with other jobs: times are rough).", "",
               "| package | version |", "|---|---|"]
    section += [f"| {n} | {versions.get(n, '?')} |" for n in SHOWN]
    section += ["", f"course_lib imported from `{where[0].replace(str(ROOT), '.')}`."] if args.end == "pip" else []
    section += ["", f"pytest {' '.join(args.pytest_args)}: **{summary}**; install {install_s:.0f} s, tests {test_s:.0f} s."]
    section += [f"- {f}" for f in failures[:20]] + [""]
    write_section(args.end, "\n".join(section))
    print(f"\n{args.end}: {summary} (install {install_s:.0f} s, tests {test_s:.0f} s) -> {REPORT.relative_to(ROOT)}")
    return res.returncode


def write_section(end: str, text: str) -> None:
    head = ("# Tested dependency versions\n\nThe library tests at both ends of the ranges in pyproject.toml, "
            "each in a fresh venv, written by `scripts/test_dependency_ends.py`.\n\n")
    old = REPORT.read_text() if REPORT.exists() else head
    parts = dict(re.findall(r"(?ms)^## (lowest|latest|pip)\n(.*?)(?=^## |\Z)", old))
    parts[end] = text.split("\n", 1)[1]
    REPORT.write_text(head + "".join(f"## {k}\n{parts[k]}" for k in ("lowest", "latest", "pip") if k in parts))


if __name__ == "__main__":
    sys.exit(main())
