"""Benchmark results that ship with the course, read for display (notebook 04 shows Ask the GRU's).

``course bench NAME`` writes ``NAME.md``, ``NAME.json`` and sometimes figures; the tables the
README quotes are committed in ``benchmarks/results/``. Notebooks read them through
:func:`load_results` and :func:`results_file`, never by a relative path, and get one clear error
(:class:`ResultsMissing`) when a table is not there, saying which command makes it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"

# the command that writes each shipped table, for the message when it is missing
MADE_BY = {"askgru": "course bench askgru --preset reduced", "hybrid": "course bench hybrid",
           "theano": "course bench theano", "gru4rec": "course bench gru4rec"}


class ResultsMissing(FileNotFoundError):
    """A benchmark table or figure that a notebook shows is not on this machine."""


def results_dir() -> Path:
    """``$COURSE_RESULTS_DIR`` when set, else the repository's ``benchmarks/results``."""
    return Path(os.environ.get("COURSE_RESULTS_DIR", RESULTS_DIR))


def results_file(filename: str) -> Path:
    """The path of ``filename`` (e.g. ``"askgru_recall_at_m.png"``) among the results, which must exist."""
    path = results_dir() / filename
    if not path.is_file():
        name = filename.split(".")[0].replace("_recall_at_m", "")
        command = MADE_BY.get(name, f"course bench {name}")
        raise ResultsMissing(f"{path} is not here: run `{command}` to make it (it takes a while; the course "
                             "ships it in benchmarks/results of the repository)")
    return path


def load_results(name: str) -> dict:
    """The table ``NAME.json`` written by ``course bench NAME``: a dict with ``rows`` (a list of dicts,
    one per model) and ``settings`` (the run's settings and machine)."""
    path = results_file(f"{name}.json")
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        command = MADE_BY.get(name, f"course bench {name}")
        raise ValueError(f"{path} is not a valid results table ({exc}); run `{command}` again to rewrite it") from None
    if not isinstance(table, dict) or not {"rows", "settings"} <= set(table):
        raise ValueError(f"{path} has no 'rows' and 'settings': it was not written by `course bench {name}`")
    return table
