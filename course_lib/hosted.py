"""Run the notebooks where the course is not installed: Colab, Kaggle, any bare Jupyter kernel.

Every solution notebook starts with the same setup cell (:func:`setup_cell_source`): where
``course_lib`` cannot be imported it runs ``%pip install`` of the course from :data:`REPOSITORY`
(or from ``$COURSE_PIP_SOURCE``: a wheel, a folder or any other pip requirement, which the tests
use) and then :func:`prepare_hosted`, which checks the tiny tier (it ships inside the package) and
downloads the larger tier the notebook needs. Where the course is installed the cell does nothing.

    python -m course_lib.hosted        # insert or refresh the cell in solutions/*.ipynb, the README's
                                       # Colab links, then rebuild notebooks/

:data:`REPOSITORY` is the one place that names the course's public repository.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from importlib.metadata import version
from pathlib import Path

REPOSITORY = "https://github.com/recsys-dl-course/recsys-dl-course"
BRANCH = "main"
PIP_SOURCE_ENV = "COURSE_PIP_SOURCE"
MARKER = "# Course setup for Colab, Kaggle or any Jupyter without the course (does nothing where it is installed)"
CELL_ID = "course-setup"
REPO_ROOT = Path(__file__).resolve().parent.parent
# what each notebook loads beyond the tiny tier; a notebook not listed loads CiteULike
NEEDS = {"00": ("citeulike", "rsc15"), "05": ("rsc15",), "07": ()}
_WATCHED = ("numpy", "scipy", "pandas", "torch", "matplotlib")


def notebook_needs(name: str) -> tuple[str, ...]:
    return NEEDS.get(name[:2], ("citeulike",))


def _tuple_literal(items) -> str:
    inner = ", ".join(f'"{x}"' for x in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def setup_cell_source(needs: tuple[str, ...]) -> str:
    """The first code cell of a notebook that loads the datasets in ``needs``."""
    return "\n".join([
        MARKER,
        "import importlib.util",
        "import os",
        "",
        'if importlib.util.find_spec("course_lib") is None:',
        f'    COURSE_SOURCE = os.environ.get("{PIP_SOURCE_ENV}", "git+{REPOSITORY}@{BRANCH}")',
        "    %pip install --quiet {COURSE_SOURCE}",
        "    from course_lib.hosted import prepare_hosted",
        "",
        f'    prepare_hosted(os.environ.get("COURSE_TIER", "tiny"), needs={_tuple_literal(needs)})',
    ])


def prepare_hosted(tier: str = "tiny", needs: tuple[str, ...] = ("citeulike",)) -> None:
    """After ``%pip install`` in a fresh kernel: say what was installed, check the tiny tier, fetch
    ``tier``'s files for ``needs`` (``"citeulike"``, ``"rsc15"``), and ask for a restart when pip
    replaced a package that this kernel had already imported."""
    from course_lib import data

    importlib.invalidate_caches()
    print(f"course-lib {version('course-lib')} installed; torch {version('torch')}, numpy {version('numpy')}")
    stale = [f"{n} {sys.modules[n].__version__} -> {version(n)}" for n in _WATCHED
             if n in sys.modules and getattr(sys.modules[n], "__version__", version(n)).split("+")[0] != version(n).split("+")[0]]
    if stale:
        print("RESTART NEEDED: pip replaced packages this kernel had already loaded (" + "; ".join(stale) + "). "
              "Restart the kernel (Colab: Runtime > Restart session), then run the notebook from the top.")
        return
    data.verify_tiny()
    if tier == "tiny":
        print("data: the tiny tier ships with the course and is ready")
        return
    if tier == "full" and "rsc15" in needs:
        print("data: the full RSC15 tier needs your own `course preprocess-rsc15` run (README, Data)")
        needs = tuple(n for n in needs if n != "rsc15")
    files = {"citeulike": data.CITEULIKE_FILES, "rsc15": data.RSC15_FILES}
    for need in needs:
        data.fetch_all(files[need])
    print(f"data: {', '.join(needs) or 'nothing more'} downloaded for the {tier} tier")


# --------------------------------------------------------------------------------------------
# Keeping the notebooks and the README in step
# --------------------------------------------------------------------------------------------
def insert_setup_cell(path: Path) -> bool:
    """Insert the setup cell before the first code cell of ``path``, or refresh it where it is
    already the first code cell. Returns True when the file changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    source = setup_cell_source(notebook_needs(path.name))
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    first = code[0] if code else len(nb.cells)
    if code and nb.cells[first].source.startswith(MARKER):
        if nb.cells[first].source == source:
            return False
        nb.cells[first].source = source
    else:
        cell = nbformat.v4.new_code_cell(source)
        cell.id = CELL_ID
        nb.cells.insert(first, cell)
    nbformat.write(nb, path)
    return True


def colab_url(notebook: str) -> str:
    """The Colab address of a notebook of the repository (``notebooks/NN_name.ipynb``)."""
    path = REPOSITORY.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{BRANCH}/{notebook}"


README_BEGIN = "<!-- colab links: generated by python -m course_lib.hosted -->"
README_END = "<!-- end of colab links -->"


def colab_table(solutions: Path) -> str:
    rows = ["| notebook | open in Colab |", "|---|---|"]
    for nb in sorted(solutions.glob("*.ipynb")):
        rows.append(f"| `{nb.stem}` | [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                    f"({colab_url('notebooks/' + nb.name)}) |")
    pip = (f"Without a notebook, `pip install \"course-lib @ git+{REPOSITORY}\"` installs the library with the "
           "tiny tier inside it (on Linux, install torch's CPU build first: `pip install torch --index-url "
           "https://download.pytorch.org/whl/cpu`, unless you want CUDA).")
    return "\n".join([README_BEGIN, *rows, "", pip, README_END])


def refresh_readme(readme: Path, solutions: Path) -> bool:
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme} has no '{README_BEGIN}' ... '{README_END}' block to fill; add the two lines "
                         "where the Colab links belong")
    new = pattern.sub(lambda _: colab_table(solutions), text)
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    from course_lib import notebook_builder

    parser = argparse.ArgumentParser(prog="python -m course_lib.hosted", description=__doc__.split("\n\n")[0])
    parser.add_argument("--solutions", type=Path, default=REPO_ROOT / "solutions")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    args = parser.parse_args(argv)
    changed = [p.name for p in sorted(args.solutions.glob("*.ipynb")) if insert_setup_cell(p)]
    print(f"setup cell inserted or refreshed in {len(changed)} notebook(s): {', '.join(changed) or 'none needed'}")
    if refresh_readme(args.readme, args.solutions):
        print(f"Colab links refreshed in {args.readme}")
    return notebook_builder.main([])


if __name__ == "__main__":
    sys.exit(main())
