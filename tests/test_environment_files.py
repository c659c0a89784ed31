"""environment.yml (conda) and pyproject.toml (pip) must describe the same environment."""
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + meta["optional-dependencies"]["test"]
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in reqs}


def _environment():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
        else:
            specs[dep] = "conda"
    out = {}
    for line in list(specs) + pip:
        if line.startswith(("-e", "--", "python=")) or line in ("pip", "gxx"):
            continue
        req = Requirement(line)
        out[req.name.lower()] = str(req.specifier)
    return out, pip


def test_same_packages_with_the_same_version_specifiers():
    py, (env, _) = _pyproject(), _environment()
    assert py == env, {k: (py.get(k), env.get(k)) for k in set(py) | set(env) if py.get(k) != env.get(k)}


def test_torch_is_a_range_from_pypi_and_pytensor_is_pinned_in_both():
    py, (env, pip) = _pyproject(), _environment()
    assert py["torch"] == env["torch"] and py["torch"].startswith(">=")  # a hosted kernel keeps its torch
    assert py["numpy"].startswith(">=")
    assert py["pytensor"] == env["pytensor"] == "==3.0.7"
    assert any(p.startswith("torch") for p in pip)  # from PyPI, not conda's differently built pytorch
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip
    assert any(p.startswith("-e .") for p in pip)


def test_setup_installs_a_torch_inside_the_declared_range():
    from packaging.requirements import Requirement

    from course_lib import setup

    assert Requirement(f"torch{_pyproject()['torch']}").specifier.contains(setup.DEFAULT_TORCH)
    assert setup.torch_floor() == tuple(int(x) for x in _pyproject()["torch"].lstrip(">=").split("."))


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest"
    assert command in readme and command in ci
    assert "bash setup.sh" in readme and "bash setup.sh --no-lab" in ci
