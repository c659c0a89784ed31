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
        if line.startswith("-e") or line.startswith("python=") or line in ("pip", "gxx"):
            continue
        req = Requirement(line)
        out[req.name.lower()] = str(req.specifier)
    return out, pip


def test_same_packages_with_the_same_version_specifiers():
    py, (env, _) = _pyproject(), _environment()
    assert py == env, {k: (py.get(k), env.get(k)) for k in set(py) | set(env) if py.get(k) != env.get(k)}


def test_torch_is_pinned_exactly_in_both():
    py, (env, pip) = _pyproject(), _environment()
    assert py["torch"] == env["torch"] == "==2.13.0"
    assert py["pytensor"] == env["pytensor"] == "==3.0.7"
    assert "torch==2.13.0" in pip  # from PyPI, not conda's differently built pytorch
    assert any(p.startswith("-e .") for p in pip)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ".venv/bin/python -m pytest"
    assert command in readme and command in ci
    assert "bash setup.sh" in readme and "bash setup.sh --no-lab" in ci
