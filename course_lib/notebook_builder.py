"""Generate the student notebooks in ``notebooks/`` from the master notebooks in ``solutions/``.

In every code cell, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (inclusive) are
replaced by ``raise NotImplementedError("Exercise N: title")`` at the same indentation, where
``# Exercise N: title`` is the first line of the cell. Outputs and execution counts are cleared;
everything else is kept.

A student's notebook is never overwritten. Each generated notebook records a fingerprint of its
cells (sources and outputs) in its metadata (``metadata.course.generated``). A notebook is
(re)generated only when it is missing or its cells still match that fingerprint, i.e. nobody has
edited or run it since it was generated; an edited one is kept and reported. ``--force``
regenerates edited notebooks too, after copying each to ``notebooks/backups/NAME.YYYYmmdd-HHMMSS.ipynb``.
``course build-notebooks --check`` fails when ``notebooks/`` differs from what ``solutions/`` generates.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_EXERCISE = re.compile(r"^#\s*(Exercise\s+\d+[a-z]?\s*:.*?)\s*$")
REPO_ROOT = Path(__file__).resolve().parent.parent
BACKUP_DIR = "backups"


class NotebookBuildError(ValueError):
    """A master notebook breaks the exercise conventions."""


def strip_solutions(source: str, where: str) -> str:
    """Replace every solution block of one cell's source by a NotImplementedError line."""
    lines = source.split("\n")
    if not any(line.strip() == BEGIN for line in lines):
        if any(line.strip() == END for line in lines):
            raise NotebookBuildError(f"{where}: '{END}' without a '{BEGIN}' before it")
        return source
    first = _EXERCISE.match(lines[0].strip())
    if not first:
        raise NotebookBuildError(
            f"{where}: a cell with a solution block must start with '# Exercise N: title', "
            f"found {lines[0][:60]!r}")
    label = first.group(1).replace('"', "'")
    out, inside = [], False
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise NotebookBuildError(f"{where}, line {lineno}: '{BEGIN}' inside another solution block")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f'{indent}raise NotImplementedError("{label} (your code here)")')
        elif stripped == END:
            if not inside:
                raise NotebookBuildError(f"{where}, line {lineno}: '{END}' without a '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise NotebookBuildError(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "\n".join(out)


def fingerprint(nb: nbformat.NotebookNode) -> str:
    """sha256 of what a learner changes by working in a notebook: each cell's type, source and
    outputs (not the metadata JupyterLab rewrites on every save)."""
    cells = [[c.cell_type, c.source, c.get("outputs", [])] for c in nb.cells]
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode("utf-8")).hexdigest()


def student_version(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student notebook of one master notebook (a new object; the master is untouched)."""
    student = nbformat.from_dict(nb)
    for i, cell in enumerate(student.cells):
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type != "code":
            continue
        cell.source = strip_solutions(cell.source, f"{name}, cell {i}")
        cell.outputs = []
        cell.execution_count = None
    student.metadata.pop("widgets", None)
    student.metadata["course"] = {"master": f"solutions/{name}", "generated": fingerprint(student)}
    return student


def _render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def edited(path: Path, expected: str | None = None) -> bool:
    """True when the student notebook at ``path`` has been changed (edited or run) since it was generated.

    A notebook without a fingerprint (generated before fingerprints existed) counts as unedited
    only if its cells match ``expected``, the fingerprint of what would be generated now. One that
    cannot be read at all counts as edited: whatever it is, it is not ours to drop."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # half-written, a merge conflict, not JSON
        return True
    current = fingerprint(nb)
    recorded = nb.metadata.get("course", {}).get("generated")
    return current != (recorded if recorded is not None else expected)


@dataclass
class BuildReport:
    """What :func:`build` did to each student notebook."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)        # edited by the student, left alone
    outdated: list[Path] = field(default_factory=list)    # kept ones whose master has changed since
    backups: list[Path] = field(default_factory=list)     # with force: copies of the edited ones
    unchanged: list[Path] = field(default_factory=list)


def _backup(target: Path, stamp: str) -> Path:
    folder = target.parent / BACKUP_DIR
    folder.mkdir(exist_ok=True)
    dest = folder / f"{target.stem}.{stamp}{target.suffix}"
    n = 1
    while dest.exists():  # two forced builds within one second
        dest, n = folder / f"{target.stem}.{stamp}-{n}{target.suffix}", n + 1
    shutil.copy2(target, dest)
    return dest


def _masters(solutions: Path) -> list[Path]:
    masters = sorted(solutions.glob("*.ipynb"))
    if not masters:
        raise NotebookBuildError(f"no master notebooks in {solutions}")
    return masters


def build(solutions: Path, notebooks: Path, force: bool = False) -> BuildReport:
    """Write every student notebook that is missing or unedited; keep (or, with ``force``, back up
    and regenerate) the edited ones."""
    report = BuildReport()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    notebooks.mkdir(parents=True, exist_ok=True)
    for master in _masters(solutions):
        student = student_version(nbformat.read(master, as_version=4), master.name)
        text = _render(student)
        target = notebooks / master.name
        if target.is_file() and target.read_text(encoding="utf-8", errors="replace") == text:
            report.unchanged.append(target)
            continue
        if target.is_file() and edited(target, expected=student.metadata["course"]["generated"]):
            if not force:
                report.kept.append(target)
                if _generated_from(target) != student.metadata["course"]["generated"]:
                    report.outdated.append(target)
                continue
            report.backups.append(_backup(target, stamp))
        target.write_text(text, encoding="utf-8")
        report.written.append(target)
    return report


def _generated_from(path: Path) -> str | None:
    try:
        return nbformat.read(path, as_version=4).metadata.get("course", {}).get("generated")
    except Exception:
        return None


def check(solutions: Path, notebooks: Path) -> list[str]:
    """The differences between ``notebooks/`` and what ``solutions/`` generates (for CI)."""
    masters = _masters(solutions)
    problems = []
    for master in masters:
        text = _render(student_version(nbformat.read(master, as_version=4), master.name))
        target = notebooks / master.name
        if not target.is_file():
            problems.append(f"{target} is missing")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"{target} differs from what {master} generates")
    stale = {p.name for p in notebooks.glob("*.ipynb")} - {m.name for m in masters}
    problems += [f"{notebooks / s} has no master in {solutions}" for s in sorted(stale)]
    return problems


def describe(report: BuildReport, notebooks: Path) -> str:
    """What happened, in a few lines a learner can act on."""
    lines = []
    if report.written:
        lines.append(f"wrote {len(report.written)} student notebook(s) to {notebooks}: "
                     + ", ".join(p.name for p in report.written))
    if report.backups:
        lines.append(f"your edited versions were saved first: {', '.join(str(p) for p in report.backups)}")
    if report.kept:
        lines.append(f"kept {len(report.kept)} notebook(s) you edited or ran: " + ", ".join(p.name for p in report.kept))
        if report.outdated:
            lines.append("  the course has a newer version of " + ", ".join(p.name for p in report.outdated)
                         + "; to get it, run `course build-notebooks --force` (your version is backed up in "
                         f"{notebooks / BACKUP_DIR} first)")
    if not lines:
        lines.append(f"all {len(report.unchanged)} student notebooks in {notebooks} are up to date")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="course build-notebooks", description="Generate the student notebooks in notebooks/ from solutions/. "
        "A notebook you edited (or ran) is kept; --force regenerates it after a backup in notebooks/backups/.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; fail if notebooks/ has drifted from solutions/")
    mode.add_argument("--force", action="store_true", help="also regenerate edited notebooks, backing each up first")
    parser.add_argument("--solutions", type=Path, default=None, help="master notebooks (default: solutions/)")
    parser.add_argument("--notebooks", type=Path, default=None, help="student notebooks (default: notebooks/)")
    args = parser.parse_args(argv)
    solutions = args.solutions or REPO_ROOT / "solutions"
    notebooks = args.notebooks or REPO_ROOT / "notebooks"
    if args.check:
        problems = check(solutions, notebooks)
        if problems:
            print("Student notebooks are out of date:\n  " + "\n  ".join(problems)
                  + "\nFix: run `course build-notebooks --force` and commit notebooks/.", file=sys.stderr)
            return 1
        print(f"{len(_masters(solutions))} student notebooks are in sync")
        return 0
    print(describe(build(solutions, notebooks, force=args.force), notebooks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
