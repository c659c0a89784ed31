"""The library's layers, read from its imports (every `import` in every module, also those inside
functions): a module imports only from layers below its own or from its own package, the two tracks
never import each other, nothing below the top imports `course_lib.benchmarks`, and
docs/ARCHITECTURE.md and the README name every module."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "course_lib"

# the layers of docs/ARCHITECTURE.md ("Layers"), bottom to top
LAYERS = {
    0: ["course_lib", "data", "text", "clicks", "metrics", "validation", "results", "widgets", "notebook_builder",
        "setup", "diagrams"],
    1: ["splits", "evaluation", "baselines", "session_baselines", "word_vectors"],
    2: ["sessions", "training", "ctr", "plots", "synthetic", "own_data"],
    3: ["torch_models", "theano_models", "diagrams.askgru", "diagrams.e2e", "diagrams.gru4rec", "diagrams.hybrid",
        "diagrams.theano"],
    4: ["checks", "benchmarks", "gru4rec_cli", "hosted"],
    5: ["cli"],
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _short(name: str) -> str:
    return name.removeprefix("course_lib.") if name != "course_lib" else name


def layer_of(name: str) -> int:
    """The layer of a module: its own entry, else its package's (torch_models.hybrid -> torch_models)."""
    short = _short(name)
    for part in (short, short.split(".")[0]):
        for layer, names in LAYERS.items():
            if part in names:
                return layer
    raise AssertionError(f"{name} is in no layer: add it to LAYERS here and to docs/ARCHITECTURE.md")


def imports_of(name: str) -> set[str]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def _top_package(name: str) -> str:
    return _short(name).split(".")[0]


def upward_imports(name: str, deps) -> list[str]:
    """The imports of ``name`` that point to its own layer or above, outside its own package."""
    bad = []
    for dep in deps:
        if _top_package(dep) == _top_package(name) and _top_package(name) != "course_lib":
            continue  # inside one package (a track, the checks, the benchmarks, the diagrams)
        if layer_of(dep) >= layer_of(name):
            bad.append(f"{name} (layer {layer_of(name)}) imports {dep} (layer {layer_of(dep)})")
    return bad


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_or_stay_in_the_package(name):
    assert not upward_imports(name, imports_of(name))


def test_an_upward_or_sideways_import_is_caught():
    assert upward_imports("course_lib.data", ["course_lib.training"]) == [
        "course_lib.data (layer 0) imports course_lib.training (layer 2)"]
    assert upward_imports("course_lib.splits", ["course_lib.evaluation"])  # the same layer: sideways
    assert not upward_imports("course_lib.torch_models.hybrid", ["course_lib.torch_models.utils", "course_lib.data"])


def test_the_tracks_never_import_each_other_and_nothing_below_imports_benchmarks():
    for name in MODULES:
        deps = {_top_package(d) for d in imports_of(name)}
        if _top_package(name) == "torch_models":
            assert "theano_models" not in deps, name
        if _top_package(name) == "theano_models":
            assert "torch_models" not in deps, name
        if _top_package(name) != "benchmarks":
            assert "benchmarks" not in deps, name


def _named_in_layouts(name: str, doc: str) -> bool:
    """Which modules a layout map must name: the README's every top-level and track module;
    ARCHITECTURE.md every module but the per-notebook checks ("nb00.py, nb01.py, ...")."""
    parts = _short(name).split(".")
    if doc == "README.md":
        return len(parts) == 1 or parts[0] in ("torch_models", "theano_models")
    return not (parts[0] == "checks" and len(parts) == 2)


@pytest.mark.parametrize("doc", ["docs/ARCHITECTURE.md", "README.md"])
def test_the_layout_maps_name_every_module(doc):
    text = (ROOT / doc).read_text()
    missing = [name for name, path in MODULES.items()
               if path.name != "__init__.py" and _named_in_layouts(name, doc) and path.name not in text]
    assert not missing, f"{doc} does not name {missing}"
