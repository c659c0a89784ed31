"""``python -m course_lib.benchmarks.ctr_cornac``: without cornac it says so and still writes our rows."""
import json
import sys

import pytest

from course_lib.benchmarks import ctr_cornac


def test_an_interpreter_without_cornac_is_named_with_the_fix():
    python, reason = ctr_cornac._cornac_python(ctr_cornac.parse_args(["--cornac-python", sys.executable]))
    if python is not None:
        pytest.skip("cornac is installed in the course environment: there is nothing to refuse")
    assert f"cornac cannot be imported by {sys.executable}" in reason
    assert "pip install cornac" in reason and "--cornac-python" in reason


def test_comparison_runs_without_cornac_and_skips_its_row(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ctr_cornac, "_cornac_python", lambda args: (None, "cornac cannot be imported by X"))
    ctr_cornac.main(["--tier", "tiny", "--k", "4", "--n-iter", "1", "--lda-iter", "2", "--out-dir", str(tmp_path)])
    assert "[ctr_cornac] skipping cornac: cornac cannot be imported by X" in capsys.readouterr().out
    blob = json.loads((tmp_path / "ctr_cornac.json").read_text())
    models = [r["model"] for r in blob["rows"]]
    assert models[0] == "ours, random start, topics updated (as cornac)" and not any("cornac 3" in m for m in models)
    assert all(0.0 <= r["warm R@50"] <= 1.0 and 0.0 <= r["cold R@50"] <= 1.0 for r in blob["rows"])
    assert blob["settings"]["cornac"] == "not run"
