"""The checks core and the checks of notebooks 00 and 06 work where torch cannot be imported
(notebook 06 is the Theano track; the Theano 1.0.5 environment has no torch)."""
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import importlib.abc
    import sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoTorch())

    import course_lib.checks
    import course_lib.metrics
    from course_lib.checks import nb00, nb06
    from course_lib.theano_models.compat import T

    assert nb00.check_recall_at_m(lambda s, t, m: course_lib.metrics.recall_at_m(s, t, ms=(m,))[m])
    assert not nb00.check_popularity_scores(None)
    assert nb06.check_weighted_mse(lambda s, t, a: ((1.0 + (a - 1.0) * t) * (t - s) ** 2).sum(axis=1).mean())
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch got imported"
    print("torch-free: ok")
""")


def test_checks_of_notebooks_00_and_06_import_and_run_without_torch():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "torch-free: ok", done.stdout
