"""The course command: check a laptop, build notebooks, fetch data, preprocess RSC15, benchmarks.

    course check                 is this machine ready for the session?
    course lab                   build the missing student notebooks and open JupyterLab on 00_start_here
    course build-notebooks       generate notebooks/ from solutions/, keeping the ones you edited
                                 (--force: regenerate them too, with a backup; --check: fail on drift)
    course fetch                 download (or verify) the small/full data tiers
    course preprocess-rsc15 F    turn yoochoose-clicks.dat into the GRU4Rec train/test split
    course bench NAME            run a benchmark (hybrid, askgru, gru4rec, gru4rec-official, theano)
    course gru4rec train|evaluate  GRU4Rec on any CSV/TSV of clicks (see course gru4rec --help)

Every error is one message that names the problem and the fix (exit code 1; 2 for a bad option);
COURSE_DEBUG=1 shows the Python traceback behind it.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import sys
import time
from pathlib import Path

BENCHMARKS = {
    "hybrid": "the hands-on task: the hybrid recommender at every content level, loss and merge (flip scenario)",
    "askgru": "Ask the GRU: Embed, GRU and CTR with and without multi-task learning (the paper's Table 1)",
    "gru4rec": "GRU4Rec with its losses beside the session baselines on RSC15",
    "gru4rec-official": "GRU4Rec beside the authors' official PyTorch code (needs your checkout of it)",
    "theano": "compile and step time of the Theano track beside the PyTorch track",
    "ctr-cornac": "our CTR beside cornac's on the same CiteULike-a split (cornac runs in its own venv)",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
DEBUG_ENV = "COURSE_DEBUG"


# --------------------------------------------------------------------------------------------
# course check
# --------------------------------------------------------------------------------------------
def _check_packages() -> list[tuple[str, str, bool]]:
    from importlib.metadata import PackageNotFoundError, requires, version

    from packaging.requirements import Requirement

    rows = []
    for line in requires("course-lib") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            got = version(req.name)
            ok = req.specifier.contains(got.split("+")[0], prereleases=True)
        except PackageNotFoundError:
            got, ok = "not installed", False
        rows.append((f"{req.name}{req.specifier}", got, ok))
    return rows


def run_check() -> int:
    """Print the readiness report; return 0 when the machine is ready."""
    problems: list[str] = []

    def line(label: str, value: str, ok: bool = True, fix: str = "") -> None:
        print(f"  [{'ok' if ok else '!!'}] {label:<28} {value}")
        if not ok:
            problems.append(fix or f"{label}: {value}")

    print("Course environment check\n")
    py_ok = sys.version_info >= (3, 10)
    line("python", f"{platform.python_version()} ({sys.executable})", py_ok,
         "Python 3.10 or newer is needed (3.11 recommended): install it and rerun setup.sh")
    print("\nPackages")
    for name, got, ok in _check_packages():
        line(name, got, ok, f"{name} is {got}: rerun `bash setup.sh` (or pip install -e '.[test]')")

    print("\nPyTorch")
    try:
        import torch

        from course_lib.torch_models.utils import resolve_device

        dev = resolve_device("auto")
        x = torch.randn(64, 64, device=dev)
        float((x @ x).sum())
        where = torch.cuda.get_device_name(0) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        line("device", f"{dev} ({where})")
        if dev.type == "cpu":
            print("       no GPU: every notebook runs on the CPU at the tiny and small tiers")
    except Exception as exc:  # report, do not crash: this is a diagnostic
        line("torch", f"{type(exc).__name__}: {exc}", False)

    print("\nTheano track")
    try:
        from course_lib.theano_models.compat import BACKEND, T, theano

        t0 = time.perf_counter()
        v = T.dvector("v")
        f = theano.function([v], (v ** 2).sum())
        compile_s = time.perf_counter() - t0
        value = float(f([1.0, 2.0, 3.0]))
        linker = getattr(theano.config, "linker", "?")
        line("backend", f"{BACKEND}, linker={linker}")
        line("compile + run", f"sum(v**2) = {value:g} (expected 14), compiled in {compile_s:.2f} s", abs(value - 14) < 1e-12,
             "the Theano-track function gave a wrong result: reinstall pytensor==3.0.7")
        if linker not in ("cvm", "c|py", "c"):
            print("       the C linker is not in use: compilation will be slow (is gcc installed?)")
        elif not shutil.which("gcc") and not shutil.which("cc"):
            line("C compiler", "not found", False, "install gcc (or Xcode command line tools) for the fast PyTensor linker")
    except Exception as exc:
        line("pytensor", f"{type(exc).__name__}: {exc}", False,
             "the Theano track cannot compile a function: install gcc and rerun setup.sh")

    print("\nData tiers")
    from course_lib import data

    local_problem = data.local_data_problem()
    if data.local_data_dir() is not None:
        line(data.DATA_DIR_ENV, str(data.local_data_dir()), local_problem is None, local_problem or "")
    for tier, status in data.tier_status().items():
        ok = status == "present" or (tier != "tiny" and not status.startswith("CORRUPT"))
        line(tier, status, ok, "the tiny tier ships with the repository: run `git checkout data/`"
             if tier == "tiny" else f"{tier}: {status}")
    print("       small/full tiers are optional: `course fetch` downloads them, or set COURSE_DATA_DIR"
          " to a local copy")
    try:
        data.verify_tiny()
    except (data.DataMissingError, data.ChecksumError) as exc:
        line("tiny checksums", str(exc), False)

    print()
    if problems:
        print("VERDICT: NOT READY. Fix these, then run `course check` again:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("VERDICT: READY for the session.")
    return 0


# --------------------------------------------------------------------------------------------
# course preprocess-rsc15
# --------------------------------------------------------------------------------------------
CLICKS_FORMAT = "lines like 1,2014-04-07T10:51:09.277Z,214536502,0 (SessionId,Timestamp,ItemId,Category)"


class ClicksFileError(ValueError):
    """``yoochoose-clicks.dat`` cannot be read, or holds too little to split as the paper does."""


def _first_bad_click_line(path: Path) -> tuple[int, str] | None:
    """The first non-blank line that is not ``int,text,int[,...]``, with its number."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split(",")
            try:
                int(parts[0]), int(parts[2])
            except (ValueError, IndexError):
                return lineno, line.rstrip("\r\n")
    return None


def read_yoochoose_clicks(path: Path):
    """Read ``yoochoose-clicks.dat`` (SessionId,ISO timestamp,ItemId,Category; no header).

    A file that is empty, or has a line in another format, raises :class:`ClicksFileError`
    naming the file, the line and the expected format."""
    import pandas as pd

    path = Path(path)
    with open(path, "rb") as fh:
        if not fh.read(4096).strip():
            raise ClicksFileError(f"{path} is empty: expected {CLICKS_FORMAT}")
    try:
        df = pd.read_csv(path, header=None, names=["SessionId", "TimeStr", "ItemId", "Category"],
                         usecols=[0, 1, 2], dtype={"SessionId": "int64", "TimeStr": "str", "ItemId": "int64"})
    except (ValueError, pd.errors.ParserError) as exc:  # UnicodeDecodeError is a ValueError too
        bad = _first_bad_click_line(path)
        if bad is None:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ClicksFileError(f"{path} cannot be read as clicks ({first}); expected {CLICKS_FORMAT}") from None
        lineno, text = bad
        hint = ""
        if lineno == 1 and "session" in text.lower():
            hint = " (a header line? yoochoose-clicks.dat has none: delete that line)"
        elif any(not (ch.isprintable() or ch == "\t") for ch in text):
            hint = " (a binary file? yoochoose-clicks.dat is text)"
        raise ClicksFileError(f"{path}:{lineno}: expected {CLICKS_FORMAT}; got {text[:40]!r}{hint}") from None
    times = pd.to_datetime(df["TimeStr"], format="ISO8601", utc=True, errors="coerce")
    bad = times.isna()
    if bad.any():
        first = int(bad.to_numpy().nonzero()[0][0])
        raise ClicksFileError(f"{path}:{first + 1}: cannot read the timestamp {df['TimeStr'].iloc[first]!r}; "
                              f"expected {CLICKS_FORMAT}")
    df["Time"] = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return df[["SessionId", "ItemId", "Time"]]


def _span(df) -> str:
    import pandas as pd

    lo, hi = (pd.Timestamp(t, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M") for t in (df["Time"].min(), df["Time"].max()))
    return f"{(df['Time'].max() - df['Time'].min()) / 86400:.1f} days, {lo} to {hi} UTC"


def preprocess_rsc15(clicks: Path, out: Path) -> dict:
    """GRU4Rec preprocessing (Hidasi et al. 2016, Sec. 4): clean, the last day as test, then the
    training data's last day as validation. Returns every count, so nothing is dropped unseen.

    Data too small or too short to split this way raises :class:`ClicksFileError` saying why."""
    from course_lib import splits
    from course_lib.clicks import preprocess_clicks

    df = read_yoochoose_clicks(clicks)
    try:
        clean, counts_clean = preprocess_clicks(df, min_session_len=2, min_item_support=5)
    except ValueError:
        raise ClicksFileError(
            f"{clicks}: no click is left after cleaning ({len(df)} clicks read): the paper keeps only sessions "
            "of at least 2 clicks on items clicked at least 5 times; use the whole yoochoose-clicks.dat") from None
    too_short = (f"{clicks}: the cleaned clicks span {_span(clean)}; the split needs sessions that end before "
                 "the last day (test) and before the day before it (validation); use the whole yoochoose-clicks.dat")
    try:
        train, test, counts_test = splits.session_split_by_time(clean, days=1)
        train_tr, valid, counts_valid = splits.session_split_by_time(train, days=1)
    except ValueError:
        raise ClicksFileError(too_short) from None
    for name, part in (("test", test), ("validation", valid)):
        if len(part) == 0:
            raise ClicksFileError(f"{clicks}: no {name} session is left once the clicks on items never seen before "
                                  f"its day are removed ({_span(clean)}); use the whole yoochoose-clicks.dat")
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in [("train_full", train), ("test", test), ("train_tr", train_tr), ("train_valid", valid)]:
        frame.to_csv(out / f"rsc15_{name}.txt", sep="\t", index=False)
    return {"cleaning": counts_clean, "train/test": counts_test, "train_tr/valid": counts_valid}


# --------------------------------------------------------------------------------------------
# course lab
# --------------------------------------------------------------------------------------------
def lab_command(extra: list[str]) -> list[str]:
    """The ``jupyter lab`` command line: headless machines get a URL, root gets ``--allow-root``."""
    start = REPO_ROOT / "notebooks" / "00_start_here.ipynb"
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={REPO_ROOT}"]
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "--no-browser" not in extra:
        cmd += ["--no-browser", "--ip=127.0.0.1"]
        print("No display found: JupyterLab will print a URL; open it in a browser "
              "(over ssh: ssh -L 8888:127.0.0.1:8888 this-machine).")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        # JupyterLab refuses to start as root; containers and cloud notebooks often run as root
        cmd.append("--allow-root")
        print("Running as root (usual in containers): starting JupyterLab with --allow-root.")
    return [*cmd, *extra, str(start.relative_to(REPO_ROOT))]


def run_lab(argv: list[str]) -> int:
    from course_lib import notebook_builder

    parser = argparse.ArgumentParser(
        prog="course lab", description="Generate the student notebooks that are missing or out of date (the ones "
        "you edited are kept) and start JupyterLab on notebooks/00_start_here.ipynb.",
        epilog="Other options go to `jupyter lab`, e.g. `course lab --port 8890`.")
    parser.add_argument("--force", action="store_true",
                        help="also regenerate the notebooks you edited (each is backed up first)")
    args, extra = parser.parse_known_args(argv)
    code = notebook_builder.main(["--force"] if args.force else [])
    if code:
        return code
    cmd = lab_command(extra)
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, cmd)
    return 0  # not reached


# --------------------------------------------------------------------------------------------
# course bench
# --------------------------------------------------------------------------------------------
def bench_help() -> str:
    names = "\n".join(f"  {name:<18} {what}" for name, what in BENCHMARKS.items())
    return ("usage: course bench NAME [options]\n\nRun a benchmark; it writes a markdown and a JSON table "
            "(results, settings, machine) into ./benchmark-results/, or into --out-dir DIR "
            "(--out-dir benchmarks/results updates the course's own tables).\n\n"
            f"benchmarks:\n{names}\n\n`course bench NAME --help` lists the options of one benchmark.")


def run_bench(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(bench_help())
        return 0
    if not argv or argv[0] not in BENCHMARKS:
        got = f"unknown benchmark {argv[0]!r}" if argv else "name a benchmark"
        print(f"{bench_help()}\n\ncourse bench: error: {got}; choose one of {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"course_lib.benchmarks.{argv[0].replace('-', '_')}")
    return int(module.main(argv[1:]) or 0)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="is this machine ready for the session?")
    sub.add_parser("lab", help="build missing notebooks and start JupyterLab on 00_start_here", add_help=False)
    sub.add_parser("build-notebooks", help="generate notebooks/ from solutions/", add_help=False)
    fetch = sub.add_parser("fetch", help="download or verify the small/full tiers")
    fetch.add_argument("--what", choices=["all", "citeulike", "rsc15"], default="all")
    pre = sub.add_parser("preprocess-rsc15", help="GRU4Rec preprocessing of yoochoose-clicks.dat")
    pre.add_argument("clicks", type=Path, help="path to yoochoose-clicks.dat")
    pre.add_argument("--out", type=Path, default=None, help="output folder (default: the cache's rsc15-full)")
    sub.add_parser("bench", help="run a benchmark (course bench --help lists them)", add_help=False)
    return parser


def _run(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "build-notebooks":
        from course_lib import notebook_builder

        return notebook_builder.main(argv[1:])
    if command == "lab":
        return run_lab(argv[1:])
    if command == "bench":
        return run_bench(argv[1:])
    if command == "gru4rec":
        from course_lib import gru4rec_cli

        return gru4rec_cli.main(argv[1:])

    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return run_check()
    if args.command == "fetch":
        from course_lib import data

        rels = {"all": None, "citeulike": data.CITEULIKE_FILES, "rsc15": data.RSC15_FILES}[args.what]
        for path in data.fetch_all(rels):
            print(f"ok  {path}")
        return 0
    if args.command == "preprocess-rsc15":
        from course_lib import data

        if not args.clicks.is_file():
            raise ClicksFileError(f"{args.clicks} does not exist; download yoochoose-clicks.dat from the RecSys "
                                  "Challenge 2015 and give its path")
        out = args.out or data.cache_dir() / "rsc15-full"
        counts = preprocess_rsc15(args.clicks, out)
        for k, v in counts.items():
            print(f"{k}: {v}")
        print(f"written to {out}; load it with load_sessions('full', full_dir='{out}')")
        return 0
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except BrokenPipeError:  # `course ... | head`: the reader has gone, nothing to tell it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, OSError, MemoryError) as exc:
        # the library's errors name the problem and the fix; a traceback would only bury that
        if os.environ.get(DEBUG_ENV):
            raise
        command = " ".join(argv[:2] if argv[:1] == ["bench"] else argv[:1])
        print(f"course {command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
