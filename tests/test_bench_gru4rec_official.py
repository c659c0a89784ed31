"""Wiring of ``course bench gru4rec-official`` with a tiny fake "official" module on a temp path.

The authors' code is not installed here (and never vendored), so these tests check the error
messages, the translation of our settings to the official arguments, the numpy 2 / pandas 2 shim,
and that a model behind ``OfficialScorer`` is scored by our ``evaluate_sessions``: the fake scores
items by training popularity, so it must reproduce our POP baseline exactly.
"""
import json
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.benchmarks import gru4rec_official as bo

FAKE = textwrap.dedent('''
    import numpy as np
    import pandas as pd
    import torch

    class SessionDataIterator:
        def __init__(self, data):
            itemids = data["ItemId"].unique()
            self.itemidmap = pd.Series(data=np.arange(len(itemids)), index=itemids)

    class GRU4RecModel:
        def __init__(self, counts):
            self.log_pop = torch.tensor(np.log(counts))  # goes through the shim: float64 -> float32

        def forward(self, X, H, Y, training=False):
            H[0] = H[0] + 1.0  # the state is carried by the caller's list
            return self.log_pop.expand(len(X), -1)

    class GRU4Rec:
        def __init__(self, layers=[100], n_epochs=2, device=None, **kwargs):
            self.layers, self.n_epochs, self.kwargs = layers, n_epochs, kwargs

        def fit(self, data, compatibility_mode=True):
            self.compatibility_mode = compatibility_mode
            self.data_iterator = SessionDataIterator(data)
            counts = data.groupby("ItemId").size()[self.data_iterator.itemidmap.index.values]
            self.model = GRU4RecModel(counts.to_numpy().astype(np.float64))
            self.error_during_train = False
            for e in range(self.n_epochs):
                print("Epoch{} --> loss: {:.6f} \\t(0.50s) \\t[12.00 mb/s | {:.0f} e/s]".format(e + 1, 1.5 - e, 1000 * (e + 1)))
''')


@pytest.fixture()
def fake_dir(tmp_path):
    (tmp_path / "gru4rec_pytorch.py").write_text(FAKE)
    return tmp_path


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
    assert batch_eval is None  # no evaluation.py in the fake checkout
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


def test_main_writes_both_columns(fake_dir, tmp_path):
    out = tmp_path / "out"
    rc = bo.main(["--official-dir", str(fake_dir), "--tier", "tiny", "--epochs", "1", "--models", "GRU4Rec XE-100",
                  "--noise-model", "", "--out-dir", str(out)])
    assert rc == 0
    row = json.loads((out / "gru4rec_official.json").read_text())["rows"][0]
    assert row["model"] == "GRU4Rec XE-100" and row["official train events/s"] == 1000
    assert row["diff Recall@20"] == pytest.approx(row["ours Recall@20"] - row["official Recall@20"], abs=1e-4)
    assert 0.0 < row["ours Recall@20"] <= 1.0


def _official_layout_module(h: int, first_seen: np.ndarray):
    """A stand-in with the official classes' layout: GRU gates in the order (candidate, r, z), one
    input-side bias, output weights and bias, items numbered by first appearance."""
    from types import SimpleNamespace

    n = len(first_seen)

    class SessionDataIterator:
        def __init__(self, data, batch_size, n_sample=0, device=None):
            self.itemidmap, self.n_items = pd.Series(np.arange(n), index=first_seen), n

    class GRU4RecModel:
        def __init__(self, n_items, layers, *args):
            g = torch.Generator().manual_seed(7)  # the same "fixed" weights every time
            self.GE = SimpleNamespace(Wx0=torch.nn.Embedding(n_items, 3 * h), Wh0=torch.randn(h, 3 * h, generator=g),
                                      Bh0=torch.randn(3 * h, generator=g))
            self.GE.Wx0.weight.data = torch.randn(n_items, 3 * h, generator=g)
            self.Wy, self.By = torch.nn.Embedding(n_items, h), torch.nn.Embedding(n_items, 1)
            self.Wy.weight.data, self.By.weight.data = torch.randn(n_items, h, generator=g), torch.randn(n_items, 1, generator=g)

        def _reset_weights_to_compatibility_mode(self):
            pass

    return SimpleNamespace(SessionDataIterator=SessionDataIterator, GRU4RecModel=GRU4RecModel)


def test_ours_from_official_initial_weights_computes_the_official_gru_step():
    from course_lib.data import load_sessions

    h, train = 4, load_sessions("tiny").train
    first_seen = train["ItemId"].unique()
    module = _official_layout_module(h, first_seen)
    ours = bo.ours_from_official_init(module, train, layers=[h], loss="bpr-max", n_sample=0, reset_after=True,
                                      n_epochs=1, seed=0, device="cpu")
    ours.item_ids = np.unique(train["ItemId"])
    ours._init_weights(len(ours.item_ids))
    ref = module.GRU4RecModel(len(first_seen), [h])
    pos = pd.Series(np.arange(len(first_seen)), index=first_seen)[ours.item_ids].to_numpy().copy()  # official row of our item j
    H = torch.zeros(3, h)
    ours.reset(3)
    for x in ([0, 5, 9], [2, 2, 40]):
        vx = ref.GE.Wx0.weight[pos[x]] + ref.GE.Bh0
        vh = H @ ref.GE.Wh0
        r = torch.sigmoid(vx[:, h:2 * h] + vh[:, h:2 * h])
        z = torch.sigmoid(vx[:, 2 * h:] + vh[:, 2 * h:])
        H = (1 - z) * H + z * torch.tanh(r * vh[:, :h] + vx[:, :h])
        want = (H @ ref.Wy.weight.T + ref.By.weight.T)[:, pos]  # columns in our item order
        assert torch.allclose(ours.score_next(np.array(x)), want, atol=1e-5)
    with pytest.raises(ValueError, match="one-layer model with one-hot input"):
        bo.official_initial_weights(module, train, dict(layers=[h, h], embedding=0, constrained_embedding=False,
                                                        batch_size=32), ours.item_ids)


@pytest.mark.parametrize("flags", [["--step-check", "5"], ["--ours-init", "official"]])
def test_modes_that_need_the_official_weights_ask_for_its_folder(flags, capsys):
    with pytest.raises(SystemExit):
        bo.parse_args(["--skip-official", *flags])
    assert "need --official-dir" in capsys.readouterr().err
