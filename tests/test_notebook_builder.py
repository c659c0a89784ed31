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


def _write_master(sols, name="00_a.ipynb", intro="# intro"):
    sols.mkdir(exist_ok=True)
    nbformat.write(_master([nbformat.v4.new_markdown_cell(intro),
                            nbformat.v4.new_code_cell("# Exercise 1: a\n### BEGIN SOLUTION\n1\n### END SOLUTION")]),
                   sols / name)


def _edit(path, text="my_answer = 42"):
    book = nbformat.read(path, as_version=4)
    book.cells[1].source = f"# Exercise 1: a\n{text}"
    nbformat.write(book, path)


def test_build_and_check_detect_drift(tmp_path):
    sols, books = tmp_path / "solutions", tmp_path / "notebooks"
    _write_master(sols)
    assert nb.check(sols, books) == [f"{books / '00_a.ipynb'} is missing"]
    assert [p.name for p in nb.build(sols, books).written] == ["00_a.ipynb"]
    assert nb.check(sols, books) == []
    assert nb.build(sols, books).unchanged == [books / "00_a.ipynb"]
    (books / "00_a.ipynb").write_text((books / "00_a.ipynb").read_text().replace("Exercise 1", "Exercise 9"))
    (books / "99_old.ipynb").write_text("{}")
    problems = nb.check(sols, books)
    assert any("differs" in p for p in problems) and any("99_old.ipynb has no master" in p for p in problems)
    assert nb.main(["--check", "--solutions", str(sols), "--notebooks", str(books)]) == 1


def test_an_edited_notebook_is_kept_and_force_backs_it_up(tmp_path, capsys):
    sols, books = tmp_path / "solutions", tmp_path / "notebooks"
    _write_master(sols)
    nb.build(sols, books)
    target = books / "00_a.ipynb"
    _edit(target)
    report = nb.build(sols, books)
    assert report.kept == [target] and report.written == [] and report.outdated == []
    assert "my_answer = 42" in target.read_text()
    _write_master(sols, intro="# intro, revised")  # the course changes the master after the student's edit
    report = nb.build(sols, books)
    assert report.kept == [target] and report.outdated == [target]
    assert "my_answer = 42" in target.read_text()
    assert "course build-notebooks --force" in nb.describe(report, books)

    assert nb.main(["--force", "--solutions", str(sols), "--notebooks", str(books)]) == 0
    out = capsys.readouterr().out
    (backup,) = (books / "backups").glob("00_a.*.ipynb")
    assert "my_answer = 42" in backup.read_text() and str(backup) in out
    assert "my_answer = 42" not in target.read_text() and nb.check(sols, books) == []
    assert nb.build(sols, books, force=True).backups == []  # nothing edited: nothing to back up


def test_a_notebook_the_student_only_ran_is_kept_too(tmp_path):
    sols, books = tmp_path / "solutions", tmp_path / "notebooks"
    _write_master(sols)
    nb.build(sols, books)
    target = books / "00_a.ipynb"
    book = nbformat.read(target, as_version=4)
    book.cells[1].outputs = [nbformat.v4.new_output("stream", text="my result\n")]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, target)
    _write_master(sols, intro="# intro, revised")
    assert nb.build(sols, books).kept == [target]
    assert "my result" in target.read_text()


def test_unedited_notebooks_follow_the_master_even_after_jupyter_rewrote_their_metadata(tmp_path):
    sols, books = tmp_path / "solutions", tmp_path / "notebooks"
    _write_master(sols)
    nb.build(sols, books)
    target = books / "00_a.ipynb"
    book = nbformat.read(target, as_version=4)
    book.metadata["language_info"] = {"name": "python", "version": "3.11.7"}  # what a save adds
    nbformat.write(book, target)
    _write_master(sols, intro="# intro, revised")
    assert nb.build(sols, books).written == [target]
    assert nb.check(sols, books) == []


def test_notebooks_without_fingerprint_or_unreadable_are_kept_unless_identical(tmp_path):
    sols, books = tmp_path / "solutions", tmp_path / "notebooks"
    _write_master(sols)
    nb.build(sols, books)
    target = books / "00_a.ipynb"
    book = nbformat.read(target, as_version=4)
    del book.metadata["course"]  # as the builder wrote them before fingerprints
    nbformat.write(book, target)
    assert nb.build(sols, books).written == [target]  # same cells as now generated: safe to rewrite
    book.cells[1].source = "# Exercise 1: a\nmine"
    nbformat.write(book, target)
    assert nb.build(sols, books).kept == [target]
    target.write_text("<<<<<<< HEAD\n{not json")
    assert nb.build(sols, books).kept == [target]
    assert target.read_text().startswith("<<<<<<<")
