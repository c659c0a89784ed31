"""What every benchmark table carries: the machine, the settings, and a markdown + JSON writer."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

RESULTS_DIR = Path(os.environ.get("COURSE_BENCH_DIR", "benchmarks/results"))


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
    """Write ``NAME.md`` and ``NAME.json`` with the table, the settings and the machine."""
    out = Path(out_dir) if out_dir is not None else RESULTS_DIR
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
    return md_path, json_path
