"""Generate the student notebooks in ``notebooks/`` from the master notebooks in ``solutions/``.

In every code cell, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (inclusive) are
replaced by ``raise NotImplementedError("Exercise N: title")`` at the same indentation, where
``# Exercise N: title`` is the first line of the cell. Outputs and execution counts are cleared;
everything else is kept. ``course build-notebooks --check`` fails when ``notebooks/`` has drifted.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_EXERCISE = re.compile(r"^#\s*(Exercise\s+\d+[a-z]?\s*:.*?)\s*$")
REPO_ROOT = Path(__file__).resolve().parent.parent


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
    return student


def _render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def build(solutions: Path, notebooks: Path, check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) every student notebook; return the problems found."""
    masters = sorted(solutions.glob("*.ipynb"))
    if not masters:
        raise NotebookBuildError(f"no master notebooks in {solutions}")
    problems = []
    notebooks.mkdir(parents=True, exist_ok=True)
    for master in masters:
        text = _render(student_version(nbformat.read(master, as_version=4), master.name))
        target = notebooks / master.name
        if check:
            if not target.is_file():
                problems.append(f"{target} is missing")
            elif target.read_text() != text:
                problems.append(f"{target} differs from what {master} generates")
        elif not target.is_file() or target.read_text() != text:
            target.write_text(text)
    if check:
        stale = {p.name for p in notebooks.glob("*.ipynb")} - {m.name for m in masters}
        problems += [f"{notebooks / s} has no master in {solutions}" for s in sorted(stale)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course build-notebooks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if notebooks/ has drifted from solutions/")
    parser.add_argument("--solutions", type=Path, default=REPO_ROOT / "solutions")
    parser.add_argument("--notebooks", type=Path, default=REPO_ROOT / "notebooks")
    args = parser.parse_args(argv)
    problems = build(args.solutions, args.notebooks, check=args.check)
    if problems:
        print("Student notebooks are out of date:\n  " + "\n  ".join(problems)
              + "\nFix: run `course build-notebooks` and commit notebooks/.", file=sys.stderr)
        return 1
    n = len(list(args.solutions.glob("*.ipynb")))
    print(f"{n} student notebooks {'are in sync' if args.check else 'written to ' + str(args.notebooks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
