"""What every benchmark shares: checked command-line options, the machine, the settings, and a
markdown + JSON writer.

Where tables go: the course's own tables live in ``benchmarks/results/`` (:data:`RESULTS_DIR`,
tracked in git). A run writes into ``./benchmark-results/`` (or ``$COURSE_BENCH_DIR``) unless it
is given ``--out-dir``, so a learner's run never overwrites the course's tables by accident.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
"""The course's own tables (tracked in git); read by benchmarks that cite an earlier run."""
OUT_DIR_ENV = "COURSE_BENCH_DIR"


def default_out_dir() -> Path:
    """Where a run writes without ``--out-dir``: ``$COURSE_BENCH_DIR`` or ``./benchmark-results``."""
    return Path(os.environ.get(OUT_DIR_ENV) or Path.cwd() / "benchmark-results")


# --------------------------------------------------------------------------------------------
# argparse types: a bad option is refused by the parser, naming the allowed values
# --------------------------------------------------------------------------------------------
def _number(kind: type, minimum: float, strict: bool) -> Callable[[str], Any]:
    word = "an integer" if kind is int else "a number"
    allowed = f"{'>' if strict else '>='} {minimum:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {word} {allowed}, got {text!r}") from None
        if (kind is float and not math.isfinite(value)) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {word} {allowed}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} {allowed}"
    return parse


positive_int = _number(int, 0, strict=True)
"""``type=positive_int``: an integer >= 1 (epochs, sizes, steps)."""
nonnegative_int = _number(int, 0, strict=False)
"""``type=nonnegative_int``: an integer >= 0 (counts where 0 switches something off, seeds)."""
positive_float = _number(float, 0.0, strict=True)
"""``type=positive_float``: a finite number > 0 (learning rates, weights)."""
nonnegative_float = _number(float, 0.0, strict=False)
"""``type=nonnegative_float``: a finite number >= 0 (weights that 0 switches off)."""
TIERS = ("tiny", "small", "full")
"""``choices=TIERS`` for ``--tier``."""


def fraction(text: str) -> float:
    """``type=fraction``: a number in [0, 1] (``lambda_mtl``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def comma_list(allowed: Iterable[str]) -> Callable[[str], str]:
    """``type=comma_list(["a", "b", "c"])``: a comma-separated subset of ``allowed``, returned as
    given (the benchmark splits it); an unknown or empty entry is refused with the allowed values."""
    allowed = list(allowed)

    def parse(text: str) -> str:
        items = [t.strip() for t in text.split(",")]
        unknown = [t for t in items if t not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(repr(u) for u in unknown)}; choose from "
                                             f"{', '.join(allowed)} (comma-separated)")
        return text

    parse.__name__ = "list"
    return parse


def apply_preset(parser: argparse.ArgumentParser, args: argparse.Namespace, **values) -> None:
    """Set the options of a preset (``--quick``) that the user did not give explicitly: an option
    given on the command line always wins over the preset."""
    for name, value in values.items():
        if getattr(args, name) == parser.get_default(name):
            setattr(args, name, value)


def machine_info() -> dict[str, Any]:
    """CPU, core count, memory, Python and library versions, and the torch device."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        info["memory_gib"] = round(kib / 2**20, 1)
    except OSError:
        pass
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux / macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if platform.system() != "Darwin" else peak / 2**20


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Render rows of dicts as a markdown table; floats are shown with 4 significant digits."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(
    name: str,
    rows: Sequence[dict[str, Any]],
    settings: dict[str, Any],
    *,
    title: str,
    notes: str = "",
    columns: Sequence[str] | None = None,
    out_dir: Path | str | None = None,
) -> tuple[Path, Path]:
    """Write ``NAME.md`` and ``NAME.json`` with the table, the settings and the machine, into
    ``out_dir`` or, by default, :func:`default_out_dir` (never the tracked tables unless asked)."""
    out = Path(out_dir) if out_dir is not None else default_out_dir()
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    md = [f"# {title}", "", markdown_table(rows, columns)]
    if notes:
        md += [notes.strip(), ""]
    md += ["Settings: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()), ""]
    md += ["Machine: " + ", ".join(f"{k}: {v}" for k, v in machine.items()), ""]
    md_path, json_path = out / f"{name}.md", out / f"{name}.json"
    md_path.write_text("\n".join(md))
    json_path.write_text(
        json.dumps({"title": title, "rows": list(rows), "settings": settings, "machine": machine,
                    "notes": notes}, indent=2, default=str)
    )
    if out_dir is None:
        print(f"results written to {md_path} and {json_path.name} (the course's tables in {RESULTS_DIR} are "
              f"unchanged; --out-dir {RESULTS_DIR} writes there)")
    return md_path, json_path
