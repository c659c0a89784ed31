"""The ``course`` command: what it computes, and that every error is one message naming the
problem, with a non-zero exit code and no traceback."""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from course_lib import cli, data, notebook_builder
from course_lib.benchmarks import common

REPO = Path(__file__).resolve().parents[1]


def _write_clicks(path, rows):
    lines = [f"{s},{pd.Timestamp(t, unit='s', tz='UTC').strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z,{i},0"
             for s, t, i in rows]
    path.write_text("\n".join(lines) + "\n")


def test_preprocess_rsc15_follows_the_paper(tmp_path):
    day = 86400.0
    rows = []
    # day 0-1: training sessions over items 1..3 (5+ events each), one single-click session,
    # and item 99 clicked only twice (too rare)
    for s in range(1, 7):
        start = s * 100.0 + (1.5 * day if s > 3 else 0.0)  # sessions 4-6 become the validation day
        rows += [(s, start, 1), (s, start + 5, 2), (s, start + 9, 3)]
    rows += [(50, 3000.0, 1)]                     # length 1: dropped
    rows += [(51, 4000.0, 99), (51, 4001.0, 1), (52, 4100.0, 99), (52, 4101.0, 2)]
    # last day: test sessions; item 7 is unseen in training (5 clicks, all in test)
    rows += [(60, 3 * day + 10, 1), (60, 3 * day + 20, 3)]
    for k in range(5):                           # sessions 61-65 = [7, 1]: item 7 never seen in training
        rows += [(61 + k, 3 * day + 100 + k, 7), (61 + k, 3 * day + 150 + k, 1)]
    clicks = tmp_path / "yoochoose-clicks.dat"
    _write_clicks(clicks, rows)
    counts = cli.preprocess_rsc15(clicks, tmp_path / "out")
    sessions = data.load_sessions("full", full_dir=tmp_path / "out")
    assert 50 not in set(sessions.train["SessionId"])          # length-1 session gone
    assert 99 not in set(sessions.train["ItemId"])             # rare item gone
    assert set(sessions.test["SessionId"]) == {60}             # 61-65 shrank to one event and left
    assert list(sessions.test["ItemId"]) == [1, 3]
    assert counts["train/test"]["test events with items not in train"] == 5
    assert counts["train/test"]["test sessions too short"] == 5
    assert set(sessions.train_tr["SessionId"]) == {1, 2, 3} and set(sessions.valid["SessionId"]) == {4, 5, 6}


def test_preprocess_rsc15_names_a_bad_timestamp(tmp_path):
    clicks = tmp_path / "yoochoose-clicks.dat"
    clicks.write_text("1,2014-04-07T10:51:09.277Z,214536502,0\n1,yesterday,214536500,0\n")
    with pytest.raises(cli.ClicksFileError, match=r"yoochoose-clicks.dat:2: cannot read the timestamp 'yesterday'"):
        cli.read_yoochoose_clicks(clicks)


def test_full_tier_without_preprocessing_says_how_to_build_it(tmp_path):
    with pytest.raises(data.DataMissingError, match="course preprocess-rsc15"):
        data.load_sessions("full", full_dir=tmp_path / "nothing")


def _course(capsys, *argv):
    """Run ``course ARGV`` in this process: (exit code, stdout + stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a bad option (2)
        code = exc.code
    out = capsys.readouterr()
    return code, out.out + out.err


def _assert_one_clear_error(code, out, *needles):
    assert code not in (0, None), out
    assert "Traceback" not in out, out
    for needle in needles:
        assert re.search(needle, out), f"{needle!r} not in:\n{out}"


# -------------------------------------------------------------------------------- course check
def test_course_check_reports_a_verdict(capsys, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    code, out = _course(capsys, "check")
    assert "VERDICT: READY" in out and code == 0
    assert "compile + run" in out and "sum(v**2) = 14" in out


def test_course_check_is_not_ready_when_the_data_dir_does_not_exist(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "no-such-folder"))
    code, out = _course(capsys, "check")
    _assert_one_clear_error(code, out, "VERDICT: NOT READY", r"COURSE_DATA_DIR=\S*no-such-folder does not exist")
    assert "VERDICT: READY" not in out


@pytest.mark.parametrize("make, problem", [
    (lambda d: (d / "stuff.txt").write_text("x") and d, "has neither citeulike-a/ nor yoochoose-rsc15-100k/"),
    (lambda d: (d / "a-file").write_text("x") and d / "a-file", "is a file, not a folder"),
])
def test_a_data_dir_without_the_layout_is_named(tmp_path, monkeypatch, make, problem):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(make(tmp_path)))
    assert problem in data.local_data_problem()


# -------------------------------------------------------------------------------- course fetch
def test_fetch_offline_lists_every_missing_file_once(capsys, monkeypatch, empty_data_env):
    # every request goes to a proxy that refuses the connection: what "no network" looks like
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    code, out = _course(capsys, "fetch")
    _assert_one_clear_error(code, out, r"course fetch: error: These data files are missing", "no network",
                            "COURSE_DATA_DIR=/path/to/copy", "connect to the internet and run `course fetch`")
    for rel in data.REMOTE_FILES:
        assert out.count(f"  - {rel}  <-  ") == 1, rel
    assert len(out.splitlines()) <= len(data.REMOTE_FILES) + 4


def test_fetch_names_a_corrupt_local_file(capsys, monkeypatch, tmp_path, empty_data_env):
    local = tmp_path / "copy"
    for rel in data.RSC15_FILES:
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_text("SessionId\tItemId\tTime\n")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(local))
    code, out = _course(capsys, "fetch", "--what", "rsc15")
    _assert_one_clear_error(code, out, "yoochoose-clicks-100k_test.txt is corrupt", "expected [0-9a-f]{64}",
                            "course fetch")


# -------------------------------------------------------------------------------- course preprocess-rsc15
def _one_day_clicks(path):
    rows = [(s, 1_396_800_000.0 + 60 * s + k, item) for s in range(1, 40) for k, item in enumerate((1, 2, 3))]
    _write_clicks(path, rows)


@pytest.mark.parametrize("content, problem", [
    (None, r"does not exist; download yoochoose-clicks.dat"),
    (b"", r"is empty: expected lines like 1,2014-04-07T10:51:09.277Z,214536502,0 \(SessionId,Timestamp,ItemId,Category\)"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\xff\xfe,,\n\x00\x01", r"clicks.dat:1: expected lines like .*\(a binary file\? yoochoose-clicks.dat is text\)"),
    (b"SessionId,Timestamp,ItemId,Category\n", r"clicks.dat:1: .*got 'SessionId,Timestamp,ItemId,Category' "
                                              r"\(a header line\? yoochoose-clicks.dat has none"),
    (b"1,2014-04-07T10:51:09.277Z,214536502,0\n2,2014-04-07T10:52:09.277Z,,0\n", r"clicks.dat:2: expected"),
    ("one day", r"clicks span 0.0 days, 2014-04-06 .*the split needs sessions that end before the last day"),
    (b"1,2014-04-07T10:51:09.277Z,214536502,0\n2,2014-04-08T10:51:09.277Z,214536502,0\n",
     r"no click is left after cleaning \(2 clicks read\)"),
])
def test_preprocess_rsc15_errors_name_the_file_and_the_problem(capsys, tmp_path, content, problem):
    clicks = tmp_path / "clicks.dat"
    if content == "one day":
        _one_day_clicks(clicks)
    elif content is not None:
        clicks.write_bytes(content)
    code, out = _course(capsys, "preprocess-rsc15", str(clicks), "--out", str(tmp_path / "out"))
    _assert_one_clear_error(code, out, r"course preprocess-rsc15: error: \S*clicks.dat", problem)
    assert len(out.strip().splitlines()) == 1, out
    for option in ("`days`", "threshold", "min_item_support", "min_session_len"):  # options the CLI lacks
        assert option not in out
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------- course bench
def test_bench_help_lists_the_benchmarks(capsys):
    code, out = _course(capsys, "bench", "--help")
    assert code == 0 and "usage: course bench NAME" in out
    for name in cli.BENCHMARKS:
        assert f"  {name} " in out


@pytest.mark.parametrize("argv, problem", [
    ([], r"name a benchmark; choose one of hybrid, askgru, gru4rec, gru4rec-official, theano"),
    (["nonsense"], r"unknown benchmark 'nonsense'; choose one of hybrid, askgru"),
    (["gru4rec", "--quick", "--epochs", "-3"], r"argument --epochs: must be an integer > 0, got '-3'"),
    (["gru4rec", "--tier", "huge"], r"argument --tier: invalid choice: 'huge' \(choose from '?tiny'?, '?small'?, '?full'?\)"),
    (["hybrid", "--levels", "a,x"], r"argument --levels: unknown 'x'; choose from a, b, c, d"),
    (["hybrid", "--lr", "nan"], r"argument --lr: must be a number > 0, got 'nan'"),
    (["askgru", "--lambda-mtl", "1.5"], r"argument --lambda-mtl: must be a number in \[0, 1\], got '1.5'"),
    (["theano", "--quick", "--steps", "0"], r"argument --steps: must be an integer > 0, got '0'"),
])
def test_bad_bench_options_are_refused_with_the_allowed_values(capsys, argv, problem):
    code, out = _course(capsys, "bench", *argv)
    _assert_one_clear_error(code, out, problem)
    assert code == 2


def test_quick_fills_in_only_the_options_not_given():
    from course_lib.benchmarks import gru4rec

    assert (gru4rec.parse_args(["--quick"]).epochs, gru4rec.parse_args(["--quick"]).sampled_epochs) == (1, 1)
    args = gru4rec.parse_args(["--quick", "--epochs", "3"])
    assert (args.epochs, args.sampled_epochs) == (3, 1)


@pytest.mark.parametrize("name", list(cli.BENCHMARKS))
def test_bench_help_does_not_wait_for_torch(name):
    probe = ("import sys\nfrom course_lib import cli\ntry:\n    cli.main(['bench', %r, '--help'])\n"
             "except SystemExit as exc:\n    assert exc.code == 0\nprint('torch loaded:', 'torch._C' in sys.modules)" % name)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"course bench {name}" in out.stdout and "torch loaded: False" in out.stdout


def test_bench_results_go_to_a_user_folder_unless_told(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(common.OUT_DIR_ENV, raising=False)
    before = {p: p.stat().st_mtime for p in common.RESULTS_DIR.glob("*")}
    md, js = common.write_results("probe", [{"model": "x", "recall": 0.5}], {"seed": 0}, title="probe")
    assert md == tmp_path / "benchmark-results" / "probe.md" and js.is_file()
    out = capsys.readouterr().out
    assert str(md) in out and f"--out-dir {common.RESULTS_DIR}" in out
    assert {p: p.stat().st_mtime for p in common.RESULTS_DIR.glob("*")} == before
    md, _ = common.write_results("probe", [{"model": "x"}], {}, title="probe", out_dir=tmp_path / "mine")
    assert md == tmp_path / "mine" / "probe.md" and capsys.readouterr().out == ""


def test_a_bench_error_is_one_message(capsys, monkeypatch, empty_data_env):
    monkeypatch.setattr(data, "_download", lambda spec, target: (_ for _ in ()).throw(
        data.DataMissingError(data._missing_message([spec.relpath]))))
    code, out = _course(capsys, "bench", "gru4rec", "--tier", "small", "--models", "POP")
    _assert_one_clear_error(code, out, r"course bench gru4rec: error: These data files are missing", "course fetch")


def test_the_real_command_prints_no_traceback(tmp_path):
    """The same through the installed entry point, in a fresh process."""
    out = subprocess.run([sys.executable, "-m", "course_lib.cli", "preprocess-rsc15", str(tmp_path / "none.dat")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("course preprocess-rsc15: error: ") and "none.dat does not exist" in out.stderr


# -------------------------------------------------------------------------------- course lab
def test_lab_as_root_passes_allow_root(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0, raising=False)
    cmd = cli.lab_command(["--port", "8890"])
    assert cmd.count("--allow-root") == 1 and "--port" in cmd and cmd[-1].endswith("00_start_here.ipynb")
    assert "--allow-root" in capsys.readouterr().out
    assert cli.lab_command(["--allow-root"]).count("--allow-root") == 1
    monkeypatch.setattr(os, "geteuid", lambda: 1000, raising=False)
    assert "--allow-root" not in cli.lab_command([])


# -------------------------------------------------------------------------------- a student's notebooks
@pytest.fixture
def course_repo(tmp_path, monkeypatch):
    """A repository with one master and its generated student notebook; JupyterLab is not started."""
    sols = tmp_path / "solutions"
    sols.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Start here"),
        nbformat.v4.new_code_cell("# Exercise 1: recall\n### BEGIN SOLUTION\nanswer = 1\n### END SOLUTION")]),
        sols / "00_start_here.ipynb")
    monkeypatch.setattr(notebook_builder, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)
    started = []
    monkeypatch.setattr(os, "execv", lambda exe, cmd: started.append(cmd))
    monkeypatch.chdir(tmp_path)
    notebook_builder.build(sols, tmp_path / "notebooks")
    return tmp_path, started


def _setup_sh_commands() -> list[list[str]]:
    """The ``course`` commands setup.sh runs: setup.sh hands over to ``python -m course_lib.setup``,
    whose plan lists them (a fresh setup, then the JupyterLab start)."""
    from course_lib import setup

    assert "-m course_lib.setup" in (REPO / "setup.sh").read_text()
    steps = setup.plan(create_venv=True, python=Path(".venv/bin/python"), lab=True, need_torch=False)
    return [cmd[3:] for _, cmd in steps if cmd[1:3] == ["-m", "course_lib.cli"]]


def test_a_students_edit_survives_every_command(course_repo, capsys):
    root, started = course_repo
    target = root / "notebooks" / "00_start_here.ipynb"
    book = nbformat.read(target, as_version=4)
    book.cells[1].source = "# Exercise 1: recall\nanswer = 'mine'"
    nbformat.write(book, target)
    # and the course moves on: the master changes after the student's edit
    master = nbformat.read(root / "solutions" / "00_start_here.ipynb", as_version=4)
    master.cells[0].source = "# Start here (revised)"
    nbformat.write(master, root / "solutions" / "00_start_here.ipynb")

    commands = [["build-notebooks"], ["lab"], ["lab", "--help"], *_setup_sh_commands()]
    assert ["build-notebooks"] in commands[3:] and ["lab"] in commands[3:], "setup.sh changed: update this test"
    for argv in commands:
        code, out = _course(capsys, *argv)
        assert code in (0, 1), (argv, out)  # `course check` may find this test repository lacking
        assert "answer = 'mine'" in target.read_text(), argv
        if argv[0] in ("build-notebooks", "lab") and "--help" not in argv:
            assert "kept 1 notebook(s) you edited or ran: 00_start_here.ipynb" in out
            assert "course build-notebooks --force" in out
    assert len(started) == 2 and not (root / "notebooks" / "backups").exists()

    code, out = _course(capsys, "lab", "--force")
    assert code == 0 and "Start here (revised)" in target.read_text()
    (backup,) = (root / "notebooks" / "backups").glob("00_start_here.*.ipynb")
    assert "answer = 'mine'" in backup.read_text() and str(backup) in out


def test_lab_help_builds_nothing(course_repo, capsys):
    root, started = course_repo
    (root / "notebooks" / "00_start_here.ipynb").unlink()
    code, out = _course(capsys, "lab", "--help")
    assert code == 0 and "usage: course lab" in out and "--force" in out
    assert not (root / "notebooks" / "00_start_here.ipynb").exists() and started == []


def test_a_broken_master_is_one_message(course_repo, capsys):
    root, _ = course_repo
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\n")]),
                   root / "solutions" / "01_broken.ipynb")
    code, out = _course(capsys, "build-notebooks")
    _assert_one_clear_error(code, out, r"course build-notebooks: error: 01_broken.ipynb, cell 0: a cell with a "
                                       r"solution block must start with '# Exercise N: title'")
