"""The ``course`` command: check a laptop, build notebooks, fetch data, preprocess RSC15, benchmarks.

    course check                 is this machine ready for the session?
    course lab                   build the student notebooks and open JupyterLab on 00_start_here
    course build-notebooks       regenerate notebooks/ from solutions/ (--check: fail on drift)
    course fetch                 download (or verify) the small/full data tiers
    course preprocess-rsc15 F    turn yoochoose-clicks.dat into the GRU4Rec train/test split
    course bench NAME            run a benchmark (hybrid, askgru, gru4rec, gru4rec-official, theano)
    course gru4rec train|evaluate  GRU4Rec on any CSV/TSV of clicks (see course gru4rec --help)
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

BENCHMARKS = ("hybrid", "askgru", "gru4rec", "gru4rec-official", "theano")
REPO_ROOT = Path(__file__).resolve().parent.parent


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

    for tier, status in data.tier_status().items():
        ok = status == "present" or (tier != "tiny" and not status.startswith("CORRUPT"))
        line(tier, status, ok, "the tiny tier ships with the repository: run `git checkout data/`"
             if tier == "tiny" else f"{tier}: {status}")
    print("       small/full tiers are optional: `course fetch` downloads them, or set COURSE_DATA_DIR"
          " to a local copy")
    try:
        data.verify_tiny()
    except Exception as exc:
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
def read_yoochoose_clicks(path: Path):
    """Read ``yoochoose-clicks.dat`` (SessionId,ISO timestamp,ItemId,Category; no header)."""
    import pandas as pd

    df = pd.read_csv(path, header=None, names=["SessionId", "TimeStr", "ItemId", "Category"],
                     usecols=[0, 1, 2], dtype={"SessionId": "int64", "TimeStr": "str", "ItemId": "int64"})
    times = pd.to_datetime(df["TimeStr"], format="ISO8601", utc=True, errors="coerce")
    bad = times.isna()
    if bad.any():
        first = int(bad.to_numpy().nonzero()[0][0])
        raise ValueError(f"{path}:{first + 1}: cannot read the timestamp {df['TimeStr'].iloc[first]!r}")
    df["Time"] = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return df[["SessionId", "ItemId", "Time"]]


def preprocess_rsc15(clicks: Path, out: Path) -> dict:
    """GRU4Rec preprocessing (Hidasi et al. 2016, Sec. 4): clean, the last day as test, then the
    training data's last day as validation. Returns every count, so nothing is dropped unseen."""
    from course_lib import splits
    from course_lib.clicks import preprocess_clicks

    df = read_yoochoose_clicks(clicks)
    clean, counts_clean = preprocess_clicks(df, min_session_len=2, min_item_support=5)
    train, test, counts_test = splits.session_split_by_time(clean, days=1)
    train_tr, valid, counts_valid = splits.session_split_by_time(train, days=1)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in [("train_full", train), ("test", test), ("train_tr", train_tr), ("train_valid", valid)]:
        frame.to_csv(out / f"rsc15_{name}.txt", sep="\t", index=False)
    return {"cleaning": counts_clean, "train/test": counts_test, "train_tr/valid": counts_valid}


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def run_lab(argv: list[str]) -> int:
    from course_lib import notebook_builder

    notebook_builder.main([])
    start = REPO_ROOT / "notebooks" / "00_start_here.ipynb"
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={REPO_ROOT}"]
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless:
        cmd += ["--no-browser", "--ip=127.0.0.1"]
        print("No display found: JupyterLab will print a URL; open it in a browser "
              "(over ssh: ssh -L 8888:127.0.0.1:8888 this-machine).")
    cmd += [*argv, str(start.relative_to(REPO_ROOT))]
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, cmd)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="course", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="is this machine ready for the session?")
    sub.add_parser("lab", help="build notebooks/ and start JupyterLab on 00_start_here", add_help=False)
    sub.add_parser("build-notebooks", help="regenerate notebooks/ from solutions/", add_help=False)
    fetch = sub.add_parser("fetch", help="download or verify the small/full tiers")
    fetch.add_argument("--what", choices=["all", "citeulike", "rsc15"], default="all")
    pre = sub.add_parser("preprocess-rsc15", help="GRU4Rec preprocessing of yoochoose-clicks.dat")
    pre.add_argument("clicks", type=Path, help="path to yoochoose-clicks.dat")
    pre.add_argument("--out", type=Path, default=None, help="output folder (default: the cache's rsc15-full)")
    bench = sub.add_parser("bench", help="run a benchmark", add_help=False)
    bench.add_argument("name", choices=BENCHMARKS)

    if argv and argv[0] == "gru4rec":
        from course_lib import gru4rec_cli

        return gru4rec_cli.main(argv[1:])
    if argv and argv[0] in ("build-notebooks", "lab", "bench"):
        if argv[0] == "build-notebooks":
            from course_lib import notebook_builder

            return notebook_builder.main(argv[1:])
        if argv[0] == "lab":
            return run_lab(argv[1:])
        if len(argv) < 2 or argv[1] not in BENCHMARKS:
            parser.error(f"course bench needs one of {', '.join(BENCHMARKS)}")
        module = importlib.import_module(f"course_lib.benchmarks.{argv[1].replace('-', '_')}")
        return int(module.main(argv[2:]) or 0)

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
            parser.error(f"{args.clicks} does not exist; download yoochoose-clicks.dat from the RecSys Challenge 2015")
        out = args.out or data.cache_dir() / "rsc15-full"
        counts = preprocess_rsc15(args.clicks, out)
        for k, v in counts.items():
            print(f"{k}: {v}")
        print(f"written to {out}; load it with load_sessions('full', full_dir='{out}')")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
