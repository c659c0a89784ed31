import nbformat
import pytest

from course_lib import notebook_builder as nb


def _master(cells):
    book = nbformat.v4.new_notebook()
    book.cells = cells
    return book


def test_solution_block_becomes_not_implemented_at_the_same_indent():
    src = ("# Exercise 2: recall at M\n"
           "def recall(x):\n"
           "    \"\"\"doc\"\"\"\n"
           "    ### BEGIN SOLUTION\n"
           "    return x + 1\n"
           "    ### END SOLUTION\n"
           "\n"
           "print('kept')")
    out = nb.strip_solutions(src, "t")
    assert out == ("# Exercise 2: recall at M\n"
                   "def recall(x):\n"
                   "    \"\"\"doc\"\"\"\n"
                   "    raise NotImplementedError(\"Exercise 2: recall at M (your code here)\")\n"
                   "\n"
                   "print('kept')")


@pytest.mark.parametrize("src, message", [
    ("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION", "must start with '# Exercise N: title'"),
    ("# Exercise 1: a\n### BEGIN SOLUTION\nx = 2", "never closed"),
    ("# Exercise 1: a\n### END SOLUTION", "without a"),
    ("# Exercise 1: a\n### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_broken_markers_are_reported(src, message):
    with pytest.raises(nb.NotebookBuildError, match=message):
        nb.strip_solutions(src, "master.ipynb, cell 3")


def test_student_version_clears_outputs_and_keeps_other_cells():
    code = nbformat.v4.new_code_cell("# Exercise 1: add\n### BEGIN SOLUTION\ny = 1 + 1\n### END SOLUTION")
    code.outputs = [nbformat.v4.new_output("stream", text="2\n")]
    code.execution_count = 4
    md = nbformat.v4.new_markdown_cell("### BEGIN SOLUTION in markdown stays")
    master = _master([md, code, nbformat.v4.new_code_cell("print(3)")])
    student = nb.student_version(master, "m")
    assert student.cells[0].source == md.source
    assert student.cells[1].source == '# Exercise 1: add\nraise NotImplementedError("Exercise 1: add (your code here)")'
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert master.cells[1].outputs  # the master is untouched


def test_build_and_check_detect_drift(tmp_path):
    sols, books = tmp_path / "solutions", tmp_path / "notebooks"
    sols.mkdir()
    nbformat.write(_master([nbformat.v4.new_code_cell("# Exercise 1: a\n### BEGIN SOLUTION\n1\n### END SOLUTION")]),
                   sols / "00_a.ipynb")
    assert nb.build(sols, books, check=True) == [f"{books / '00_a.ipynb'} is missing"]
    assert nb.build(sols, books) == []
    assert nb.build(sols, books, check=True) == []
    (books / "00_a.ipynb").write_text((books / "00_a.ipynb").read_text().replace("Exercise 1", "Exercise 9"))
    (books / "99_old.ipynb").write_text("{}")
    problems = nb.build(sols, books, check=True)
    assert any("differs" in p for p in problems) and any("99_old.ipynb has no master" in p for p in problems)
    assert nb.main(["--check", "--solutions", str(sols), "--notebooks", str(books)]) == 1
