"""Every framework-neutral module imports and works without PyTorch (the Theano 1.0.5 environment has
none): every top-level module of course_lib, the whole Theano track, the diagrams, the checks of the
Theano and the data notebooks and the benchmarks' common part are imported in a fresh interpreter in
which ``import torch`` fails. The modules are found by walking the packages, so a new module is
covered the day it is added."""
import subprocess
import sys

import pkgutil

import course_lib
import course_lib.diagrams
import course_lib.theano_models


def _modules(package, prefix: str, packages: bool = False) -> list[str]:
    return [prefix + m.name for m in pkgutil.iter_modules(package.__path__) if packages or not m.ispkg]


NEUTRAL = (_modules(course_lib, "course_lib.") + _modules(course_lib.theano_models, "course_lib.theano_models.")
           + _modules(course_lib.diagrams, "course_lib.diagrams.")
           + ["course_lib.checks", "course_lib.checks.nb00", "course_lib.checks.nb06", "course_lib.checks.nb07",
              "course_lib.benchmarks.common"])

PROBE = """
import importlib, sys
sys.modules["torch"] = None  # `import torch` now raises ImportError
import numpy as np
failed = []
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed.append(f"{{name}}: {{exc}}")
assert not failed, failed
from course_lib.text import prepare_text
from course_lib.widgets import saliency_explorer
vocab, corpus = prepare_text(["deep learning for recommendation", "topic models of text"], min_count=1)
box = saliency_explorer(lambda paper, user: (np.ones(corpus.lengths[paper]), np.array([0])), corpus, vocab,
                        ["Deep learning", "Topic models"])
assert "learning" in box.children[-1].value
print("ok without torch")
"""


def test_neutral_modules_import_and_run_without_torch():
    out = subprocess.run([sys.executable, "-c", PROBE.format(modules=NEUTRAL)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "ok without torch" in out.stdout, out.stderr[-2000:]


def test_the_walk_finds_the_modules_it_must_cover():
    for name in ["course_lib.metrics", "course_lib.evaluation", "course_lib.sessions", "course_lib.training",
                 "course_lib.theano_models.gru4rec", "course_lib.theano_models.hybrid", "course_lib.diagrams.gru4rec"]:
        assert name in NEUTRAL
    assert not any(n.startswith("course_lib.torch_models") for n in NEUTRAL)
