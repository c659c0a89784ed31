"""Student notebooks: in sync with solutions/, and each runs in a fresh kernel up to its first
exercise, where it stops with NotImplementedError and nothing else.

The master notebooks themselves run under nbval (``pytest`` collects ``solutions/`` with
``--nbval-lax``; cells marked ``# NBVAL_CHECK_OUTPUT`` are compared with their stored outputs).
"""
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course_lib import notebook_builder

ROOT = Path(__file__).resolve().parents[2]
STUDENT = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_student_notebooks_are_in_sync_with_solutions():
    problems = notebook_builder.check(ROOT / "solutions", ROOT / "notebooks")
    assert problems == [], "run `course build-notebooks`:\n" + "\n".join(problems)


def test_no_solution_leaks_into_student_notebooks():
    for path in STUDENT:
        text = path.read_text()
        assert notebook_builder.BEGIN not in text and notebook_builder.END not in text, path.name


def _first_exercise(book) -> tuple[int, str] | None:
    for i, cell in enumerate(book.cells):
        if cell.cell_type == "code":
            match = re.search(r'raise NotImplementedError\("(Exercise [^:]+):', cell.source)
            if match:
                return i, match.group(1)
    return None


@pytest.mark.parametrize("path", STUDENT, ids=[p.stem for p in STUDENT])
def test_student_notebook_stops_at_its_first_exercise(path):
    """The first error is the first exercise's NotImplementedError, raised by the exercise cell
    itself or by the check cell that calls it; no cell before it fails."""
    book = nbformat.read(path, as_version=4)
    first = _first_exercise(book)
    assert first is not None, f"{path.name} has no exercise"
    cell_index, label = first
    client = NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with pytest.raises(CellExecutionError) as err:
        client.execute()
    assert err.value.ename == "NotImplementedError", f"{path.name} failed before its first exercise: {err.value}"
    assert f"{label}:" in err.value.evalue, f"{path.name} stopped at {err.value.evalue!r}, expected {label}"
    executed = [i for i, c in enumerate(book.cells) if c.cell_type == "code" and c.get("execution_count")]
    stopped = max(executed)
    assert stopped >= cell_index
    code_between = [i for i in range(cell_index + 1, stopped) if book.cells[i].cell_type == "code"]
    assert not code_between, f"{path.name} ran code cells {code_between} past its first exercise (cell {cell_index})"
    for i in executed[:-1]:
        errors = [o for o in book.cells[i].outputs if o.output_type == "error"]
        assert not errors, f"{path.name} cell {i} raised {errors[0].ename} before the first exercise"
