"""The notebooks' setup cell: generated from one place, a no-op where the course is installed, and
in a kernel without the course it installs it (here from a wheel built from this repository) and
the notebook's data loads from the installed package."""
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_lib import hosted

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def _first_code_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def test_the_repository_address_is_written_in_one_place():
    sources = [p for p in (ROOT / "course_lib").rglob("*.py") if hosted.REPOSITORY in p.read_text()]
    assert sources == [ROOT / "course_lib" / "hosted.py"]
    assert hosted.setup_cell_source(("citeulike",)).count(hosted.REPOSITORY) == 1


@pytest.mark.parametrize("path", SOLUTIONS + sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.parent.name + "/" + p.name)
def test_every_notebook_starts_with_the_current_setup_cell(path):
    assert _first_code_cell(path) == hosted.setup_cell_source(hosted.notebook_needs(path.name)), (
        f"{path.name}: run `python -m course_lib.hosted` to insert or refresh the setup cell")


def test_readme_links_every_notebook_in_colab():
    readme = (ROOT / "README.md").read_text()
    assert hosted.colab_table(ROOT / "solutions") in readme, "run `python -m course_lib.hosted`"
    for p in SOLUTIONS:
        assert hosted.colab_url(f"notebooks/{p.name}") in readme


def test_insert_is_idempotent_and_refreshes_an_old_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 05 title"), nbformat.v4.new_code_cell("TIER = 'tiny'")]
    path = tmp_path / "05_x.ipynb"
    nbformat.write(nb, path)
    assert hosted.insert_setup_cell(path) is True
    after = nbformat.read(path, as_version=4)
    assert [c.cell_type for c in after.cells] == ["markdown", "code", "code"]
    assert after.cells[1].source == hosted.setup_cell_source(("rsc15",))
    assert after.cells[2].source == "TIER = 'tiny'"
    assert hosted.insert_setup_cell(path) is False  # a second run changes nothing
    after.cells[1].source = hosted.MARKER + "\nprint('an older version of the cell')"
    nbformat.write(after, path)
    assert hosted.insert_setup_cell(path) is True
    again = nbformat.read(path, as_version=4)
    assert len(again.cells) == 3 and again.cells[1].source == hosted.setup_cell_source(("rsc15",))


def _run(cells: list[str], kernel: str = "python3", cwd: Path | None = None, timeout: int = 600):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, kernel_name=kernel, timeout=timeout,
                   resources={"metadata": {"path": str(cwd or ROOT)}}).execute()
    return nb


def _text(cell) -> str:
    return "".join(o.get("text", "") + "".join(o.get("data", {}).get("text/plain", ""))
                   for o in cell.outputs)


def test_the_setup_cell_does_nothing_where_the_course_is_installed(monkeypatch, tmp_path):
    # a pip source that cannot exist: if the cell tried to install, it would fail loudly
    monkeypatch.setenv(hosted.PIP_SOURCE_ENV, str(tmp_path / "no-such-wheel.whl"))
    nb = _run([hosted.setup_cell_source(("citeulike", "rsc15"))])
    assert nb.cells[0].outputs == []


def _kernel_without_the_course(base: Path) -> str:
    """A venv whose Python sees every package of this one but course-lib (as a hosted kernel sees
    its preinstalled torch and numpy), registered as the Jupyter kernel "bare-course-test"."""
    env = base / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    shown = base / "site-without-course"
    shown.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("course_lib", "course-lib", "__editable__")):
            (shown / entry.name).symlink_to(entry)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "zz_host_packages.pth").write_text(str(shown) + "\n")
    spec = base / "jupyter" / "kernels" / "bare-course-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bare kernel", "language": "python"}))
    return "bare-course-test"


@pytest.mark.skipif(sys.platform == "win32", reason="the simulated kernel uses a POSIX venv layout")
def test_first_cell_installs_the_course_in_a_bare_kernel(tmp_path, monkeypatch):
    """Each notebook's first cell, in a kernel where course_lib cannot be imported, installs it from
    a wheel of this repository; then the notebook's tiny-tier data loads from the installed package."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(ROOT), "-w", str(wheels)]
    # with this environment's setuptools when it is new enough (fast, offline), else in pip's build env
    if subprocess.run(build + ["--no-build-isolation"], capture_output=True).returncode != 0:
        built = subprocess.run(build, capture_output=True, text=True)
        assert built.returncode == 0, f"could not build a wheel of the repository:\n{built.stderr[-2000:]}"
    wheel = next(wheels.glob("course_lib-*.whl"))
    kernel = _kernel_without_the_course(tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv(hosted.PIP_SOURCE_ENV, str(wheel))
    monkeypatch.setenv("COURSE_TIER", "tiny")
    workdir = tmp_path / "work"  # not the repository: there `import course_lib` would find the source
    workdir.mkdir()
    probe = ("import course_lib, course_lib.data as d\n"
             "print('from', course_lib.__file__)\n"
             "print('tiny', d.TINY_DIR)\n"
             "print(d.load_citeulike('tiny').summary() if 'rsc15' not in NEEDS else d.load_sessions('tiny').summary())")
    uninstall = "import subprocess, sys\nsubprocess.run([sys.executable, '-m', 'pip', 'uninstall', '-y', '-q', 'course-lib'])"
    notebooks = [(p, hosted.notebook_needs(p.name)) for p in SOLUTIONS]
    assert notebooks, "no solution notebooks found"
    for path, needs in notebooks:
        cells = [uninstall, "import importlib.util\nprint(importlib.util.find_spec('course_lib'))",
                 _first_code_cell(path), f"NEEDS = {needs!r}\n" + probe]
        nb = _run(cells, kernel=kernel, cwd=workdir)
        assert _text(nb.cells[1]).strip() == "None", f"{path.name}: the kernel already had course_lib"
        setup_out = _text(nb.cells[2])
        assert "course-lib 0.1.0 installed" in setup_out and "tiny tier ships with the course" in setup_out, setup_out
        probe_out = _text(nb.cells[3])
        site = str(tmp_path / "env")
        assert f"from {site}" in probe_out, f"{path.name}: course_lib did not come from the installed wheel: {probe_out}"
        assert "_data/tiny" in probe_out
        expected = ["'users': 933", "'likes': 6734"] if "rsc15" not in needs else ["10529", "2669"]
        assert all(e in probe_out for e in expected), f"{path.name}: {probe_out}"
