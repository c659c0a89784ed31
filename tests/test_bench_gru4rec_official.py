"""Wiring of ``course bench gru4rec-official`` with a stand-in checkout of the official code.

The authors' code is not installed here (and never vendored). ``tests/fixtures/official_gru4rec``
is our own code with the official file names, classes and imports (its ``evaluation.py`` imports
``gru4rec_pytorch`` by name, as the official one does). These tests check the error messages,
that a plain checkout imports, the commit and weight layout named, the translation of our settings
to the official arguments, the numpy 2 / pandas 2 shim, and that a model behind ``OfficialScorer``
is scored by our ``evaluate_sessions``: the stand-in scores items by training popularity, so it
must reproduce our POP baseline exactly, and its own evaluation must agree.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.benchmarks import gru4rec_official as bo

FIXTURE = Path(__file__).parent / "fixtures" / "official_gru4rec"


def _checkout(tmp_path, old_layout=False, git=True) -> Path:
    """A copy of the stand-in checkout (tests/fixtures/official_gru4rec: the official file names and
    imports, our own code), optionally in the July 2023 weight layout and as a git repository."""
    path = tmp_path / ("old" if old_layout else "current")
    shutil.copytree(FIXTURE, path)
    if old_layout:
        src = path / "gru4rec_pytorch.py"
        src.write_text(src.read_text().replace("OLD_LAYOUT = False", "OLD_LAYOUT = True"))
    if git:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t", "GIT_COMMITTER_DATE": "2023-08-24T10:00:00"}
        for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
            subprocess.run(["git", "-C", str(path), *cmd], check=True, env=env, capture_output=True)
    return path


@pytest.fixture()
def fake_dir(tmp_path):
    return _checkout(tmp_path)


def test_missing_folder_says_where_to_get_the_code(tmp_path):
    with pytest.raises(FileNotFoundError, match="git clone https://github.com/hidasib/GRU4Rec_PyTorch_Official"):
        bo.load_official(tmp_path / "nowhere")


def test_folder_without_the_module_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="has no gru4rec_pytorch.py"):
        bo.load_official(tmp_path)


def test_module_without_the_classes_is_rejected(tmp_path):
    (tmp_path / "gru4rec_pytorch.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match=r"does not define \['GRU4Rec', 'GRU4RecModel', 'SessionDataIterator'\]"):
        bo.load_official(tmp_path)


def test_shim_turns_series_and_float64_into_float32_tensors():
    t = bo._TorchCompat.tensor(pd.Series([1.0, 2.0]))
    assert t.dtype == torch.float32 and t.tolist() == [1.0, 2.0]
    assert bo._TorchCompat.tensor(np.zeros(2), dtype=torch.float64).dtype == torch.float64
    assert bo._TorchCompat.tensor(np.arange(3)).dtype == torch.int64


def test_settings_translate_to_the_official_arguments():
    from course_lib.torch_models.gru4rec import GRU4Rec

    bprmax = GRU4Rec(**bo.CONFIGS["GRU4Rec BPR-max-100 +2048 samples"]).params
    kw = bo.official_kwargs(bprmax)
    assert kw["loss"] == "bpr-max" and kw["elu_param"] == 0.5 and kw["bpreg"] == 1.0 and kw["logq"] == 0.0
    assert kw["n_sample"] == 2048 and kw["sample_alpha"] == 0.0 and kw["momentum"] == 0.3
    xe = bo.official_kwargs(GRU4Rec(**bo.CONFIGS["GRU4Rec XE-100 +2048 samples +logQ"]).params)
    assert xe["logq"] == 1.0 and xe["constrained_embedding"] is True and xe["elu_param"] == 0.0 and xe["bpreg"] == 0.0
    assert bo.official_kwargs(GRU4Rec(**bo.CONFIGS["GRU4Rec TOP1-100"]).params) is None  # no TOP1 there


def test_fake_official_model_is_scored_like_our_pop_baseline(fake_dir):
    from course_lib.data import load_sessions
    from course_lib.evaluation import evaluate_sessions
    from course_lib.session_baselines import Pop

    module, batch_eval = bo.load_official(fake_dir)
    assert batch_eval is not None  # its evaluation.py imported gru4rec_pytorch from the checkout
    data = load_sessions("tiny")
    gru, epochs, secs = bo.train_official(module, dict(layers=[4], n_epochs=2), data.train, seed=0)
    assert epochs == [{"epoch": 1, "loss": 1.5, "events_per_s": 1000.0}, {"epoch": 2, "loss": 0.5, "events_per_s": 2000.0}]
    assert secs >= 0
    assert gru.compatibility_mode  # its fixed numpy-seed weights by default
    assert not bo.train_official(module, dict(layers=[4], n_epochs=1), data.train, seed=0, init="seeded")[0].compatibility_mode
    with pytest.raises(ValueError, match="'fixed' or 'seeded'"):
        bo.train_official(module, dict(layers=[4], n_epochs=1), data.train, seed=0, init="random")
    got = evaluate_sessions(bo.OfficialScorer(gru), data.test, cutoffs=(20,))
    want = evaluate_sessions(Pop().fit(data.train), data.test, cutoffs=(20,))
    assert got["Recall@20"] == pytest.approx(want["Recall@20"], abs=1e-12)
    assert got["MRR@20"] == pytest.approx(want["MRR@20"], abs=1e-12)
    # its own evaluation (ties against the target) gives ours with ties="pessimistic", counted events too
    rec, mrr, secs, n = bo.official_eval(batch_eval, gru, data.test, 512)
    ours = evaluate_sessions(bo.OfficialScorer(gru), data.test, cutoffs=(20,), ties="pessimistic")
    assert n == ours["n_events"] and secs > 0
    assert rec[20] == pytest.approx(ours["Recall@20"], abs=1e-12) and mrr[20] == pytest.approx(ours["MRR@20"], rel=1e-6)


def test_main_writes_both_columns(fake_dir, tmp_path):
    out = tmp_path / "out"
    rc = bo.main(["--official-dir", str(fake_dir), "--tier", "tiny", "--epochs", "1", "--models", "GRU4Rec XE-100",
                  "--noise-model", "", "--out-dir", str(out)])
    assert rc == 0
    row = json.loads((out / "gru4rec_official.json").read_text())["rows"][0]
    assert row["model"] == "GRU4Rec XE-100" and row["official train events/s"] == 1000
    assert row["official eval events/s (its eval)"] > 0 and row["ours eval events/s"] > 0
    md = (out / "gru4rec_official.md").read_text()
    commit = subprocess.run(["git", "-C", str(fake_dir), "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    assert f"({commit} (2023-08-24))" in md.splitlines()[0]  # the commit is named in the title
    assert row["diff Recall@20"] == pytest.approx(row["ours Recall@20"] - row["official Recall@20"], abs=1e-4)
    assert 0.0 < row["ours Recall@20"] <= 1.0


@pytest.mark.parametrize("flags", [["--step-check", "5"], ["--ours-init", "official"]])
def test_modes_that_need_the_official_weights_ask_for_its_folder(flags, capsys):
    with pytest.raises(SystemExit):
        bo.parse_args(["--skip-official", *flags])
    assert "need --official-dir" in capsys.readouterr().err


def test_plain_checkout_commit_and_layout_are_named(tmp_path):
    module, _ = bo.load_official(_checkout(tmp_path))
    assert module.COURSE_LAYOUT == "U(r*h)" and not bo.official_reset_after(module)
    assert module.COURSE_COMMIT.endswith("(2023-08-24)") and len(module.COURSE_COMMIT.split()[0]) >= 7
    old, _ = bo.load_official(_checkout(tmp_path, old_layout=True, git=False))
    assert old.COURSE_LAYOUT == "r*(U h)" and bo.official_reset_after(old)
    assert old.COURSE_COMMIT == "unknown (not a git checkout)"
    import sys

    assert str(tmp_path / "old") not in sys.path and "evaluation" not in sys.modules  # nothing left behind


@pytest.mark.parametrize("old_layout", [False, True])
def test_ours_from_either_official_layout_computes_the_official_gru_step(tmp_path, old_layout):
    from course_lib.data import load_sessions

    module, _ = bo.load_official(_checkout(tmp_path, old_layout=old_layout, git=False))
    h, train = 4, load_sessions("tiny").train
    ours = bo.ours_from_official_init(module, train, layers=[h], loss="bpr-max", n_sample=0, n_epochs=1, seed=0,
                                      device="cpu")
    assert ours.reset_after == old_layout
    ours.item_ids = np.unique(train["ItemId"])
    ours.init_weights(len(ours.item_ids))
    first_seen = train["ItemId"].unique()
    ref = module.GRU4RecModel(len(first_seen), [h])
    pos = pd.Series(np.arange(len(first_seen)), index=first_seen)[ours.item_ids].to_numpy().copy()
    H = torch.zeros(3, h)
    ours.reset(3)
    ge = ref.GE
    for x in ([0, 5, 9], [2, 2, 40]):
        vx = ge.Wx0.weight[pos[x]] + ge.Bh0  # gates (candidate, r, z), as the official code orders them
        if old_layout:  # July 2023: r * (U h)
            vh = H @ ge.Wh0
            r, z = torch.sigmoid(vx[:, h:2 * h] + vh[:, h:2 * h]), torch.sigmoid(vx[:, 2 * h:] + vh[:, 2 * h:])
            cand = torch.tanh(r * vh[:, :h] + vx[:, :h])
        else:  # since August 2023: U (r * h)
            vrz = H @ ge.Wrz0
            r, z = torch.sigmoid(vx[:, h:2 * h] + vrz[:, :h]), torch.sigmoid(vx[:, 2 * h:] + vrz[:, h:])
            cand = torch.tanh((r * H) @ ge.Wh0 + vx[:, :h])
        H = ((1 - z) * H + z * cand).detach()
        want = (H @ ref.Wy.weight.T + ref.By.weight.T)[:, pos].detach().numpy()  # columns in our item order
        assert np.allclose(ours.score_next(np.array(x)), want, atol=1e-5)


def test_a_missing_checkout_is_one_line_without_traceback(tmp_path, capsys):
    assert bo.main(["--official-dir", str(tmp_path / "nowhere"), "--tier", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "does not exist: clone it with `git clone" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_official_steps_and_events_are_counted_around_its_iterator():
    # the official loop counts batch_size events per step; the wrapper counts the input rows it trained
    import types

    class SessionDataIterator:
        def __call__(self, enable_neg_samples, reset_hook=None):
            for n in (4, 4, 3, 1):  # the batch shrinks at the end of the epoch
                yield torch.arange(n), torch.arange(n)

    module = types.SimpleNamespace(SessionDataIterator=SessionDataIterator)
    orig = SessionDataIterator.__call__
    with bo._counting_steps(module) as counts:
        for _ in range(2):  # two epochs
            assert [len(x) for x, _ in SessionDataIterator()(False)] == [4, 4, 3, 1]
    assert counts == [[4, 12], [4, 12]]
    assert SessionDataIterator.__call__ is orig  # restored
    with bo._counting_steps(types.SimpleNamespace()) as counts:  # nothing to wrap
        pass
    assert counts == []
