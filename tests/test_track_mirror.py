"""The two tracks read side by side: ``torch_models/X.py`` and ``theano_models/X.py`` define the same
public names in the same order, the trainers return the same types, and the models save the same way.

Public names are read from the source (top-level ``def``, ``class`` and assignments not starting with
``_``), so the test runs without torch or PyTensor and a name imported from elsewhere does not count.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "course_lib"
PAIRS = sorted(p.name for p in (ROOT / "torch_models").glob("*.py")
               if p.name != "__init__.py" and (ROOT / "theano_models" / p.name).exists())


def _definitions(path: Path) -> list[ast.stmt]:
    return ast.parse(path.read_text()).body


def public_names(path: Path) -> list[str]:
    names = []
    for node in _definitions(path):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found = [node.name]
        elif isinstance(node, ast.Assign):
            found = [e.id for t in node.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])
                     if isinstance(e, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found = [node.target.id]
        else:
            found = []
        names += [n for n in found if not n.startswith("_")]
    return names


def _return_annotation(path: Path, name: str) -> str:
    for node in _definitions(path):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.unparse(node.returns) if node.returns is not None else ""
    raise AssertionError(f"{path.name} has no function {name}")


def _methods(path: Path, cls: str) -> set[str]:
    for node in _definitions(path):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    raise AssertionError(f"{path.name} has no class {cls}")


def test_the_mirrored_modules_are_the_expected_ones():
    # gru4rec is included: its two tracks define the same names on this branch
    assert PAIRS == ["askgru.py", "content.py", "e2e_paragraph.py", "gru4rec.py", "hybrid.py"]


@pytest.mark.parametrize("module", PAIRS)
def test_both_tracks_define_the_same_public_names_in_the_same_order(module):
    torch_names = public_names(ROOT / "torch_models" / module)
    theano_names = public_names(ROOT / "theano_models" / module)
    assert torch_names, module
    assert theano_names == torch_names, (
        f"{module}: only in PyTorch {sorted(set(torch_names) - set(theano_names))}, only in Theano "
        f"{sorted(set(theano_names) - set(torch_names))}; order PyTorch {torch_names} vs Theano {theano_names}")


@pytest.mark.parametrize("module,function", [("hybrid.py", "train_hybrid"), ("askgru.py", "fit"),
                                             ("askgru.py", "score"), ("askgru.py", "tag_scores")])
def test_both_tracks_return_the_same_types(module, function):
    torch_type = _return_annotation(ROOT / "torch_models" / module, function)
    assert torch_type and _return_annotation(ROOT / "theano_models" / module, function) == torch_type


@pytest.mark.parametrize("module,cls", [("hybrid.py", "HybridRecommender"), ("askgru.py", "AskGRU")])
def test_both_tracks_save_and_load_the_same_way(module, cls):
    # torch's nn.Module brings state_dict / load_state_dict; the Theano classes define them
    assert {"save", "load"} <= _methods(ROOT / "torch_models" / module, cls)
    assert {"save", "load", "state_dict", "load_state_dict"} <= _methods(ROOT / "theano_models" / module, cls)


def test_the_public_name_reader_sees_definitions_only(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from x import imported\nA, B = 1, 2\n_hidden = 3\nC: int = 4\n\n\ndef f():\n    inner = 1\n\n\n"
                   "class K:\n    pass\n")
    assert public_names(src) == ["A", "B", "C", "f", "K"]
