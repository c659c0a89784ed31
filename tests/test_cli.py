import numpy as np
import pandas as pd
import pytest

from course_lib import cli, data


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
    with pytest.raises(ValueError, match=r"yoochoose-clicks.dat:2: cannot read the timestamp 'yesterday'"):
        cli.read_yoochoose_clicks(clicks)


def test_full_tier_without_preprocessing_says_how_to_build_it(tmp_path):
    with pytest.raises(data.DataMissingError, match="course preprocess-rsc15"):
        data.load_sessions("full", full_dir=tmp_path / "nothing")


def test_course_check_reports_a_verdict(capsys):
    code = cli.main(["check"])
    out = capsys.readouterr().out
    assert "VERDICT: READY" in out and code == 0
    assert "compile + run" in out and "sum(v**2) = 14" in out


def test_unknown_benchmark_is_an_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "nonsense"])
    assert "course bench needs one of" in capsys.readouterr().err
