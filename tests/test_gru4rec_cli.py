"""``course gru4rec``: train, save and evaluate from any CSV/TSV with named columns; every error is
one sentence with the fix, exit code 2 and no traceback."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from course_lib import gru4rec_cli
from course_lib.sessions import read_sessions
from course_lib.synthetic import planted_sessions


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The planted sessions with the file's own column names, times as dates, as TSV and CSV."""
    d = tmp_path_factory.mktemp("clicks")
    planted = planted_sessions(n_items=30, n_sessions=300, mean_len=6, seed=3)
    out = {}
    for name, frame in (("train", planted.train), ("test", planted.test)):
        f = frame.rename(columns={"SessionId": "visit", "ItemId": "product", "Time": "ts"})
        f["ts"] = pd.to_datetime(f["ts"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        f.to_csv(d / f"{name}.tsv", sep="\t", index=False)
        f.to_csv(d / f"{name}.csv", index=False)
        out[name] = frame
    return d, out, planted


def test_read_sessions_maps_columns_and_dates(files):
    d, frames, _ = files
    got = read_sessions(d / "train.tsv", "visit", "product", "ts")
    want = frames["train"].sort_values(["SessionId", "Time"], kind="stable").reset_index(drop=True)
    assert list(got.columns) == ["SessionId", "ItemId", "Time"]
    assert np.array_equal(got["ItemId"], want["ItemId"]) and np.array_equal(got["SessionId"], want["SessionId"])
    assert np.allclose(got["Time"], want["Time"].round())  # dates back to Unix seconds
    assert got.equals(read_sessions(d / "train.csv", "visit", "product", "ts"))
    in_order = read_sessions(d / "train.csv", "visit", "product", None)  # the file's order as time
    assert np.array_equal(in_order["ItemId"], got["ItemId"])  # the file is in time order already


def test_train_save_evaluate_beats_popularity(files, tmp_path, capsys):
    d, _, planted = files
    cols = ["--session-col", "visit", "--item-col", "product", "--time-col", "ts"]
    rc = gru4rec_cli.main(["train", "--data", str(d / "train.tsv"), "--test", str(d / "test.tsv"), *cols,
                           "--params", "layers=24,n_sample=0,batch_size=16,learning_rate=0.1,n_epochs=2",
                           "--save", str(tmp_path / "m.pt"), "--quiet", "--cutoffs", "5"])
    out = capsys.readouterr().out
    assert rc == 0 and "epoch 2: loss" in out and "saved to" in out
    trained = float(out.split("Recall@5: ")[1].split()[0])
    rc = gru4rec_cli.main(["evaluate", "--model", str(tmp_path / "m.pt"), "--data", str(d / "test.csv"), *cols,
                           "--cutoffs", "5"])
    again = float(capsys.readouterr().out.split("Recall@5: ")[1].split()[0])
    assert rc == 0 and again == trained  # the saved model scores the same
    from course_lib.evaluation import evaluate_sessions
    from course_lib.session_baselines import Pop

    pop = evaluate_sessions(Pop().fit(planted.train), planted.test, cutoffs=(5,))["Recall@5"]
    assert trained > pop + 0.25, (trained, pop)


@pytest.mark.parametrize("argv, says", [
    (["train", "--data", "nowhere.tsv"], "nowhere.tsv does not exist: give the path of a CSV or TSV file"),
    (["train", "--data", "{train}"], "has no column 'SessionId' (the session column)"),
    (["train", "--data", "{train}", "--session-col", "visit", "--item-col", "product", "--time-col", "ts",
      "--params", "learning_rate=-1"], "learning_rate must be a finite number > 0, got -1"),
    (["train", "--data", "{train}", "--params", "hidden=100"], "GRU4Rec has no option 'hidden'"),
    (["train", "--data", "{train}", "--params", "n_epochs"], "--params items look like name=value"),
    (["evaluate", "--model", "missing.pt", "--data", "{train}"], "missing.pt does not exist: train and save a model"),
    (["evaluate", "--model", "{train}", "--data", "{train}"], "is not a saved GRU4Rec"),
    (["train", "--data", "{train}", "--cutoffs", "0"], "--cutoffs must be positive list lengths"),
])
def test_errors_are_one_sentence_without_traceback(files, argv, says, capsys):
    d, _, _ = files
    argv = [a.replace("{train}", str(d / "train.tsv")) for a in argv]
    assert gru4rec_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_course_command_dispatches_and_errors_without_traceback(files):
    d, _, _ = files
    proc = subprocess.run([sys.executable, "-m", "course_lib.cli", "gru4rec", "train", "--data", str(d / "train.tsv"),
                           "--item-col", "sku"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "has no column 'SessionId' (the session column), 'sku' (the item column)" in proc.stderr
