"""The framework-neutral modules listed here import and work without PyTorch (the Theano 1.0.5
environment has none): they are imported in a fresh interpreter in which ``import torch`` fails."""
import subprocess
import sys

NEUTRAL = ["course_lib.text", "course_lib.widgets", "course_lib.word_vectors", "course_lib.data",
           "course_lib.validation", "course_lib.notebook_builder", "course_lib.cli", "course_lib.benchmarks.common"]

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
