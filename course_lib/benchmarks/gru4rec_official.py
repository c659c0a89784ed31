"""``course bench gru4rec-official --official-dir PATH``: our GRU4Rec beside the authors' PyTorch code.

Trains the authors' official PyTorch implementation (https://github.com/hidasib/GRU4Rec_PyTorch_Official,
module ``gru4rec_pytorch``) and ``course_lib.torch_models.gru4rec.GRU4Rec`` on the same RSC15
slice with the same settings and seed, for the configurations of ``course bench gru4rec``, and
scores both with **our** ``evaluate_sessions`` (all training items ranked, ties averaged) and the
official model also with its own ``evaluation.batch_eval`` (ties counted against the target,
its default "conservative" mode). Writes ``benchmarks/results/gru4rec_official.md`` and ``.json``.

The official code is never part of this repository: clone it yourself and pass the folder.
It supports only the cross-entropy and BPR-max losses, so the TOP1 and BPR rows have no official
column. Two small shims let its 2023 code run on numpy 2 / pandas 2 without editing it: a
pandas Series given to ``torch.tensor`` is turned into an array first, and a float64 numpy array
given to ``torch.tensor`` without a dtype becomes float32 (numpy 1 kept its float32 weights
float32; numpy 2 promotes them, which breaks its ``Tensor.set_``). Nothing else is changed.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from course_lib.benchmarks.common import TIERS, nonnegative_int, positive_int, write_results
from course_lib.benchmarks.gru4rec import CONFIGS

if TYPE_CHECKING:  # torch is imported where it is used, so that --help answers at once
    import torch

OFFICIAL_URL = "https://github.com/hidasib/GRU4Rec_PyTorch_Official"
OFFICIAL_MODULE = "gru4rec_pytorch"
_HOW = f"clone it with `git clone {OFFICIAL_URL}` and pass that folder as --official-dir"


# What differs between our defaults and the official PyTorch code (read line by line); the switches
# named here let ours reproduce the official behaviour, and --ours-options measures each of them.
DIFFERENCES = """\
Differences from the official PyTorch code that can change accuracy or speed (ours -> official):
1. GRU candidate state of the one-hot input layer: ours `tanh(W x + U (r * h))` (paper eq. 4, the authors' Theano code, and the official PyTorch code since commit bf9179a of August 2023); the official first commit (4e7d236/b862a63, July 2023) computed `tanh(W x + r * (U h))`, as `torch.nn.GRUCell` does; `reset_after=True` switches ours to that. Deeper layers and embedding inputs use `torch.nn.GRUCell` (`r * (U h)`) in every official commit.
2. Hidden dropout: both now carry the dropped-out hidden state to the next step (`dropout_state="dropped"`, ours' default since this comparison; "kept" is the old behaviour).
3. One-hot input: official applies `dropout_p_embed` to the first GRU layer's output and ignores `dropout_p_hidden` in a one-layer one-hot model; ours drops whole one-hot input rows with `dropout_p_embed` and the hidden layer with `dropout_p_hidden` (the one-hot configurations compared here use no dropout).
4. logQ: official subtracts log of raw counts (targets `n_j`, samples `n_j ** sample_alpha`), ours log-probabilities; they differ by a constant shift of the sampled columns; `logq_counts=True` switches ours.
5. Initialisation: both uniform in +-sqrt(6 / (fan_in + fan_out)) per gate block, output bias 0; official weights always from numpy seed 42 and items numbered in order of first appearance, ours from `seed` with items sorted by id, so the same seed gives different draws.
6. Biases: official `GRUCell` layers have an input and a hidden bias; ours one bias per gate (the same model except inside the candidate with reset_after).
7. Optimiser: the same Adagrad with momentum (eps 1e-6; duplicate rows' gradients summed; only the rows in the mini-batch get an update and their momentum).
8. Negative samples: both draw from popularity ** sample_alpha via a cumulative table into a precomputed store; official 10M items (redrawn when used up) from torch's global generator, ours only as many as training uses from a numpy generator seeded with `seed + 2`.
9. BPR-max: official applies ELU(elu_param) inside the loss only; ours `final_act="elu-0.5"` also when scoring (monotone: the same ranking). The loss formulas give the same value.
10. Cross-entropy: official `log(softmax + 1e-24)`, ours `log_softmax` (the same to float precision). Official has only cross-entropy and BPR-max; TOP1, BPR, TOP1-max are only in its Theano code.
11. Session order: both by session start; ties broken by an unstable argsort (official) or by SessionId (ours). Both reset only the finished slot's hidden state and shrink the batch at the end instead of dropping sessions; without extra samples the official stops when one session is left (no ranking signal there in either).
12. Evaluation: official counts ties against the target over all items; ours averages ties over all items (float scores rarely tie: both give the same numbers for the official model here). For a model trained without extra samples (`n_sample=0`) the official evaluation stops once a single session is left (it reuses the training loop's `_adjust_hidden`), so the last events of the longest session are not scored; ours scores every test event.
13. Speed: official builds sparse gradients (`nn.Embedding(sparse=True)`), runs autograd through the whole step and converts indices to tensors every step; ours gathers the touched rows once per step, differentiates the GRU and the output layer by hand (cross-entropy without samples on each distinct target once), and builds every step's index tensors once per fit. The official training events/s counts every step as `batch_size` events, also the shrinking last steps of an epoch (`--speed` also gives the events it trained).
"""


class _TorchCompat:
    """``torch`` as the official module sees it: the same, except the two ``torch.tensor`` shims
    described in the module docstring."""

    def __init__(self):
        import torch

        self._torch = torch  # bound once: every torch.* of the official code passes through __getattr__

    def __getattr__(self, name):
        return getattr(self._torch, name)

    @staticmethod
    def tensor(data, *args, **kwargs):
        import torch

        if isinstance(data, (pd.Series, pd.Index)):
            data = data.to_numpy()
        if isinstance(data, np.ndarray) and data.dtype == np.float64 and "dtype" not in kwargs:
            data = data.astype(np.float32)
        return torch.tensor(data, *args, **kwargs)


def load_official(official_dir) -> tuple[object, object | None]:
    """Import the official ``gru4rec_pytorch`` (and ``evaluation`` if present) from ``official_dir``.

    The folder goes on ``sys.path`` while they are imported, under their own names, so the official
    ``evaluation.py`` (``from gru4rec_pytorch import SessionDataIterator``) gets the same module.
    Returns ``(module, batch_eval or None)``; ``module.COURSE_COMMIT`` is the checkout's commit and
    ``module.COURSE_LAYOUT`` its one-hot GRU ("U(r*h)" since August 2023, "r*(U h)" before).
    Raises ``FileNotFoundError`` / ``ValueError`` that say what is missing and where to get the code.
    """
    path = Path(official_dir).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"--official-dir {path} does not exist: {_HOW}")
    src = path / f"{OFFICIAL_MODULE}.py"
    if not src.is_file():
        raise ValueError(f"{path} has no {OFFICIAL_MODULE}.py, so it is not a checkout of the official "
                         f"GRU4Rec PyTorch code: {_HOW}")
    for name in (OFFICIAL_MODULE, "evaluation"):  # a previous checkout's modules must not be reused
        sys.modules.pop(name, None)
    sys.path.insert(0, str(path))
    try:
        module = importlib.import_module(OFFICIAL_MODULE)
        missing = [n for n in ("GRU4Rec", "GRU4RecModel", "SessionDataIterator") if not hasattr(module, n)]
        if missing:
            raise ValueError(f"{src} does not define {missing}; it does not look like the official GRU4Rec "
                             f"PyTorch code (or is a version this benchmark does not know): {_HOW}")
        module.torch = _TorchCompat()
        batch_eval = None
        if (path / "evaluation.py").is_file():
            batch_eval = getattr(importlib.import_module("evaluation"), "batch_eval", None)
    finally:
        sys.path.remove(str(path))
        sys.modules.pop("evaluation", None)  # a generic name: keep it out of the import cache
    module.COURSE_COMMIT = official_commit(path)
    module.COURSE_LAYOUT = official_layout(module)
    return module, batch_eval


def official_commit(path: Path) -> str:
    """``<short hash> (<date>)`` of the checkout at ``path``, or why it cannot be told."""
    try:
        out = subprocess.run(["git", "-C", str(path), "log", "-1", "--format=%h (%cs)"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown (not a git checkout)"


def official_layout(module) -> str:
    """The candidate state of the official one-hot GRU: ``"U(r*h)"`` (a separate ``Wrz0`` and an
    (h, h) ``Wh0``, since commit bf9179a of August 2023: our ``reset_after=False``) or ``"r*(U h)"``
    (one (h, 3h) ``Wh0``, the first commit of July 2023: our ``reset_after=True``)."""
    with contextlib.redirect_stdout(io.StringIO()):
        ge = module.GRUEmbedding(3, 2) if hasattr(module, "GRUEmbedding") else None
    return "U(r*h)" if ge is not None and hasattr(ge, "Wrz0") else "r*(U h)"


def official_reset_after(module) -> bool:
    """Our ``reset_after`` that computes the same GRU step as the official one-hot GRU of ``module``."""
    return getattr(module, "COURSE_LAYOUT", "U(r*h)") == "r*(U h)"


def official_kwargs(params: dict) -> dict | None:
    """The official ``GRU4Rec(...)`` arguments for our model's ``params``; None when the official
    code lacks the loss (it has cross-entropy and BPR-max only) or the final activation."""
    if params["loss"] not in ("cross-entropy", "bpr-max"):
        return None
    act = params["final_act"]
    if act in ("linear", "softmax"):
        elu = 0.0
    elif act.startswith("elu-") and params["loss"] == "bpr-max":
        elu = float(act.split("-", 1)[1])  # the official code applies elu only inside BPR-max
    else:
        return None
    return dict(layers=list(params["layers"]), loss=params["loss"], batch_size=params["batch_size"],
                dropout_p_embed=params["dropout_p_embed"], dropout_p_hidden=params["dropout_p_hidden"],
                learning_rate=params["learning_rate"], momentum=params["momentum"],
                sample_alpha=params["sample_alpha"], n_sample=params["n_sample"], embedding=params["embedding"],
                constrained_embedding=params["constrained_embedding"], n_epochs=params["n_epochs"],
                bpreg=params["bpreg"] if params["loss"] == "bpr-max" else 0.0, elu_param=elu,
                logq=params["logq"] if params["loss"] == "cross-entropy" else 0.0)


class OfficialScorer:
    """The official model behind our session scorer protocol, so ``evaluate_sessions`` ranks its
    scores exactly as it ranks ours (score column ``j`` = the official item index ``j``)."""

    def __init__(self, gru):
        self.gru = gru
        self.item_ids = gru.data_iterator.itemidmap.index.to_numpy()
        self._H = None

    def reset(self, n_slots: int) -> None:
        import torch

        self._H = [torch.zeros(int(n_slots), h) for h in self.gru.layers]

    def reset_slots(self, mask) -> None:
        import torch

        m = torch.as_tensor(np.asarray(mask, dtype=bool)).unsqueeze(1)
        self._H = [h.masked_fill(m, 0.0) for h in self._H]

    def keep_slots(self, mask) -> None:
        import torch

        m = torch.as_tensor(np.asarray(mask, dtype=bool))
        self._H = [h[m] for h in self._H]

    def _scores(self, item_idx) -> torch.Tensor:
        import torch

        x = torch.as_tensor(np.asarray(item_idx, dtype=np.int64))
        with torch.no_grad():
            return self.gru.model.forward(x, self._H, None, training=False)  # updates self._H in place

    def score_next(self, item_idx) -> np.ndarray:
        return self._scores(item_idx).numpy()

    def rank_next(self, item_idx, targets, ties: str = "average") -> np.ndarray:
        from course_lib.torch_models.ranking import rank_of_targets

        return rank_of_targets(self._scores(item_idx), targets, ties)


_EPOCH_LINE = re.compile(r"Epoch(\d+) --> loss: ([0-9.naeif+-]+).*\[([0-9.]+) mb/s \| ([0-9.]+) e/s\]")


def train_official(module, kwargs: dict, train: pd.DataFrame, seed: int,
                   init: str = "fixed") -> tuple[object, list[dict], float]:
    """Fit the official model (its sample store and dropout draw from torch's global generator,
    seeded here). ``init="fixed"``: its weights come from its own fixed numpy seed 42 (its default
    "compatibility mode"); ``init="seeded"``: from torch's generator, so they change with ``seed``
    as ours do. Returns the model, one dict per epoch parsed from what it prints (loss, events/s),
    and the wall time of ``fit`` in seconds."""
    import torch

    if init not in ("fixed", "seeded"):
        raise ValueError(f"init must be 'fixed' or 'seeded', got {init!r}")
    torch.manual_seed(seed)
    gru = module.GRU4Rec(device=torch.device("cpu"), **kwargs)
    out = io.StringIO()
    with _counting_steps(module) as counts:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out):
            gru.fit(train.copy(), compatibility_mode=init == "fixed")  # it sorts the frame in place
        secs = time.perf_counter() - t0
    if getattr(gru, "error_during_train", False):
        raise RuntimeError(f"the official GRU4Rec stopped with a NaN loss for {kwargs}:\n{out.getvalue()[-2000:]}")
    epochs = [{"epoch": int(m[1]), "loss": float(m[2]), "events_per_s": float(m[4])}
              for m in _EPOCH_LINE.finditer(out.getvalue())]
    if len(counts) == len(epochs):
        for ep, (steps, events) in zip(epochs, counts):
            # it prints batch_size * steps / seconds (every step counted as a full batch); the same
            # seconds with the events it trained on
            ep["events_trained_per_s"] = ep["events_per_s"] * events / (steps * kwargs.get("batch_size", 64))
    return gru, epochs, secs


@contextlib.contextmanager
def _counting_steps(module):
    """While inside, every epoch of the official ``SessionDataIterator`` appends ``[steps, events]``
    to the list it yields: the mini-batches it trained and their input rows. The official loop
    counts every step as ``batch_size`` events, also the steps at the end of an epoch where fewer
    sessions are left; these counts give the events it really trained on. A generator around its
    own (about a microsecond per step); a module without ``SessionDataIterator.__call__`` is left alone."""
    cls = getattr(module, "SessionDataIterator", None)
    orig = vars(cls).get("__call__") if isinstance(cls, type) else None
    counts: list[list[int]] = []
    if orig is None:
        yield counts
        return

    def counting_call(self, *args, **kwargs):
        rec = [0, 0]
        counts.append(rec)
        for item in orig(self, *args, **kwargs):
            rec[0] += 1
            rec[1] += len(item[0])
            yield item

    cls.__call__ = counting_call
    try:
        yield counts
    finally:
        cls.__call__ = orig


def _official_start(module, train: pd.DataFrame, layers: list[int], batch_size: int, item_ids: np.ndarray):
    """The official model with its fixed initial weights (numpy seed 42, "compatibility mode") for
    ``train``, and ``pos``: the official row of each of our items (ours sorted by id, theirs
    numbered by first appearance)."""
    import torch

    with contextlib.redirect_stdout(io.StringIO()):  # it prints whether it had to sort the frame
        it = module.SessionDataIterator(train.copy(), batch_size, n_sample=0, device=torch.device("cpu"))
    model = module.GRU4RecModel(it.n_items, list(layers), 0.0, 0.0, 0, False)
    model._reset_weights_to_compatibility_mode()
    pos = torch.as_tensor(np.array(it.itemidmap[item_ids].to_numpy()))
    if len(pos) != it.n_items:
        raise ValueError(f"the official model has {it.n_items} items, ours {len(pos)}: not the same training data")
    return model, pos


def _in_our_layout(model, pos: torch.Tensor, h: int) -> dict:
    """The weights of a one-layer one-hot official model, in our layout (see
    :func:`official_initial_weights`), as new tensors; both official weight layouts."""
    import torch

    wx = model.GE.Wx0.weight.detach()[pos]  # (n_items, 3h): candidate, r, z
    b = model.GE.Bh0.detach()
    c, r, z = slice(0, h), slice(h, 2 * h), slice(2 * h, 3 * h)
    if hasattr(model.GE, "Wrz0"):  # since August 2023: Wrz0 (h, 2h) in order (r, z), Wh0 (h, h)
        wrz, wh = model.GE.Wrz0.detach().clone(), model.GE.Wh0.detach().clone()
    else:  # July 2023: one Wh0 (h, 3h) in order (candidate, r, z)
        full = model.GE.Wh0.detach()
        wrz, wh = torch.cat([full[:, r], full[:, z]], 1), full[:, c].clone()
    return {"Wx0": torch.cat([wx[:, r], wx[:, z], wx[:, c]], 1), "Wrz0": wrz, "Wh0": wh,
            "b0": torch.cat([b[r], b[z], b[c]]),
            "Wy": torch.cat([model.Wy.weight.detach()[pos], model.By.weight.detach()[pos]], 1)}


def official_initial_weights(module, train: pd.DataFrame, params: dict, item_ids: np.ndarray) -> dict:
    """The official model's initial weights (its fixed numpy seed 42, "compatibility mode") in our
    layout, for a one-layer model with one-hot input (the BPR-max configuration).

    Official: ``Wx0`` (n_items, 3h) in gate order (candidate, r, z), one bias ``Bh0`` on the input
    side, ``Wy`` (n_items, h) and ``By``, items numbered by first appearance; the recurrent weights
    are ``Wrz0`` (h, 2h) and ``Wh0`` (h, h) since August 2023 (candidate ``U (r * h)``: ours with
    ``reset_after=False``), one ``Wh0`` (h, 3h) before (candidate ``r * (U h)``: ``reset_after=True``,
    see :func:`official_reset_after`). Ours: ``Wx0`` (n_items, 3h) in order (r, z, candidate),
    ``Wrz0`` (h, 2h), ``Wh0`` (h, h), ``b0``, ``Wy`` with the bias as its last column, items sorted
    by id (``item_ids``)."""
    L = list(params["layers"])
    if len(L) != 1 or params["embedding"] or params["constrained_embedding"]:
        raise ValueError("official_initial_weights maps only a one-layer model with one-hot input "
                         f"(embedding=0, constrained_embedding=False), got layers={L}, embedding="
                         f"{params['embedding']}, constrained_embedding={params['constrained_embedding']}")
    model, pos = _official_start(module, train, L, params["batch_size"], item_ids)
    return _in_our_layout(model, pos, L[0])


def ours_from_official_init(module, train: pd.DataFrame, **kwargs):
    """Our ``GRU4Rec`` whose ``fit`` starts from the official model's initial weights
    (:func:`official_initial_weights`) instead of drawing its own, with the official GRU step of
    that checkout (``reset_after`` from :func:`official_reset_after` unless given); everything else
    (negatives, dropout) still comes from ``seed``."""
    from course_lib.torch_models.gru4rec import GRU4Rec

    class _FromOfficial(GRU4Rec):
        def init_weights(self, n_items: int):
            super().init_weights(n_items)
            weights = official_initial_weights(module, train, self.params, self.item_ids)
            self.load_weights({**{k: v for k, v in self.W.items()}, **weights})  # strict: names and shapes

    kwargs.setdefault("reset_after", official_reset_after(module))
    return _FromOfficial(**kwargs)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="course bench gru4rec-official", description=__doc__.split("\n\n")[0])
    p.add_argument("--official-dir", default=None,
                   help=f"folder of your checkout of {OFFICIAL_URL} (never copied into this repository)")
    p.add_argument("--tier", default="small", choices=TIERS, help="session data tier: tiny, small (default) or full")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--sampled-epochs", type=positive_int, default=5, help="epochs of the configurations with extra samples")
    p.add_argument("--models", default=",".join(CONFIGS), help="comma-separated subset of the GRU4Rec rows")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; every model is trained once per seed")
    p.add_argument("--noise-model", default="GRU4Rec XE-100 +2048 samples +logQ,GRU4Rec BPR-max-100 +2048 samples",
                   help="comma-separated rows also trained with --noise-seed, to measure run-to-run noise; '' for none")
    p.add_argument("--noise-seed", type=nonnegative_int, default=1)
    p.add_argument("--ours-options", default="",
                   help="extra GRU4Rec options for our model, e.g. 'reset_after=True,dropout_state=kept'; "
                        "several sets separated by ';' give one row each (the official model is trained once)")
    p.add_argument("--official-init", choices=("fixed", "seeded"), default="fixed",
                   help="fixed: the official weights start from its numpy seed 42 whatever --seeds says (its "
                        "default); seeded: from torch's generator seeded with each seed, as ours do")
    p.add_argument("--ours-init", choices=("seeded", "official"), default="seeded",
                   help="seeded: our weights are drawn from the seed (default); official: ours start from the "
                        "official model's fixed initial weights (one-layer one-hot models only)")
    p.add_argument("--skip-official", action="store_true", help="train only ours (for ablations of --ours-options)")
    p.add_argument("--speed-repeats", type=nonnegative_int, default=0,
                   help="instead of the accuracy table: train one epoch of each model this many times, ours and "
                        "official alternately, and time both evaluations of the official model (events/s, best "
                        "and median); --speed is the same with 5 repeats")
    p.add_argument("--speed", action="store_true", help="the speed table: --speed-repeats 5")
    p.add_argument("--step-check", type=nonnegative_int, default=0,
                   help="instead of the accuracy table: train ours and the official model side by side from the "
                        "same weights on the same steps and samples for this many steps, and record how far they "
                        "drift apart (first model of --models, first seed; one-layer one-hot models)")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--eval-batch", type=positive_int, default=512)
    p.add_argument("--out-dir", default=None)
    p.add_argument("--name", default="gru4rec_official", help="results file name (without extension)")
    args = p.parse_args(argv)
    if args.speed and not args.speed_repeats:
        args.speed_repeats = 5
    for name in ("epochs", "sampled_epochs", "threads", "eval_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.speed_repeats < 0 or args.step_check < 0:
        p.error("--speed-repeats and --step-check must be >= 0")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in CONFIGS]
    if unknown:
        p.error(f"unknown models {unknown}; choose from {list(CONFIGS)}")
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.noise_model = [m.strip() for m in args.noise_model.split(",") if m.strip()]
    if (args.ours_init == "official" or args.step_check > 0) and args.official_dir is None:
        p.error("--ours-init official and --step-check need --official-dir (the initial weights come from the official code)")
    if args.official_dir is None and not args.skip_official:
        p.error(f"--official-dir is required: {_HOW}")
    args.ours_option_sets = [_parse_options(t, p) for t in args.ours_options.split(";")]
    args.ours_options = args.ours_option_sets[0]
    return args


def _parse_options(text: str, parser) -> dict:
    """``'reset_after=True,dropout_state=dropped'`` -> ``{"reset_after": True, "dropout_state": "dropped"}``."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep:
            parser.error(f"--ours-options items look like name=value, got {item!r}")
        low = val.strip().lower()
        if low in ("true", "false"):
            out[key.strip()] = low == "true"
        else:
            try:
                out[key.strip()] = float(val) if "." in val else int(val)
            except ValueError:
                out[key.strip()] = val.strip()
    return out


def run(args, module, batch_eval, data) -> list[dict]:
    from course_lib.evaluation import evaluate_sessions
    from course_lib.torch_models.gru4rec import GRU4Rec

    jobs = [(name, seed, opts) for name in args.models for seed in args.seeds for opts in args.ours_option_sets]
    for name in args.noise_model:
        if name in args.models and args.noise_seed not in args.seeds:
            jobs += [(name, args.noise_seed, opts) for opts in args.ours_option_sets]
    rows, official_rows = [], {}
    for name, seed, opts in jobs:
        cfg = CONFIGS[name]
        epochs = args.sampled_epochs if cfg.get("n_sample") else args.epochs
        kw_ours = dict(layers=[100], n_epochs=epochs, seed=seed, device="cpu", **{**cfg, **opts})
        ours = (ours_from_official_init(module, data.train, **kw_ours) if args.ours_init == "official"
                else GRU4Rec(**kw_ours))
        t0 = time.perf_counter()
        ours.fit(data.train, progress=False)
        ours_s = time.perf_counter() - t0
        res = evaluate_sessions(ours, data.test, cutoffs=(20,), ties="average", batch_size=args.eval_batch)
        row = {"model": name, "seed": seed, "epochs": epochs,
               "ours options": ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults",
               "ours Recall@20": round(res["Recall@20"], 4), "ours MRR@20": round(res["MRR@20"], 4),
               "ours train events/s": round(ours.history[-1]["events_per_s"]),
               "ours eval events/s": round(res["events_per_second"]), "ours fit s": round(ours_s, 1),
               "ours final loss": round(ours.history[-1]["loss"], 4)}
        kw = official_kwargs(ours.params)
        if args.skip_official:
            row["official"] = "not run (--skip-official)"
        elif kw is None:
            row["official"] = f"loss {ours.loss!r} / final_act {ours.final_act!r} not in the official PyTorch code"
        else:
            if (name, seed) not in official_rows:
                official_rows[name, seed] = _official_row(module, batch_eval, kw, data, seed, args.eval_batch,
                                                          args.official_init)
            row.update(official_rows[name, seed])
            row["diff Recall@20"] = round(row["ours Recall@20"] - row["official Recall@20"], 4)
            row["diff MRR@20"] = round(row["ours MRR@20"] - row["official MRR@20"], 4)
        rows.append(row)
        print({k: v for k, v in row.items() if k != "official"}, flush=True)
    return rows


def _official_row(module, batch_eval, kw: dict, data, seed: int, eval_batch: int, init: str = "fixed") -> dict:
    """Train the official model once and score it with our evaluation (and its own, if given)."""
    from course_lib.evaluation import evaluate_sessions

    gru, hist, off_s = train_official(module, kw, data.train, seed, init)
    res = evaluate_sessions(OfficialScorer(gru), data.test, cutoffs=(20,), ties="average", batch_size=eval_batch)
    row = {"official Recall@20": round(res["Recall@20"], 4), "official MRR@20": round(res["MRR@20"], 4),
           "official train events/s": round(hist[-1]["events_per_s"]) if hist else None,
           "official fit s": round(off_s, 1), "official final loss": round(hist[-1]["loss"], 4) if hist else None}
    if batch_eval is not None:
        rec, mrr, secs, n_ev = official_eval(batch_eval, gru, data.test, eval_batch)
        row["official Recall@20 (its eval)"] = round(float(rec[20]), 4)
        row["official MRR@20 (its eval)"] = round(float(mrr[20]), 4)
        row["official eval events/s (its eval)"] = round(n_ev / secs)
    row["official"] = ", ".join(f"{k}={v}" for k, v in kw.items() if k not in ("layers", "n_epochs"))
    return row


def official_eval(batch_eval, gru, test: pd.DataFrame, eval_batch: int, cutoff=(20,)):
    """The official ``batch_eval`` (ties counted against the target) on the test events of known
    items: ``(recall, mrr, seconds, events it scored)``. It scores fewer events than ours when the
    model was trained without extra samples: then it stops once a single session is left."""
    item_ids = gru.data_iterator.itemidmap.index.to_numpy()
    test = test[test["ItemId"].isin(item_ids)].copy()
    n_eval = min(eval_batch, int(test["SessionId"].nunique()))  # its iterator needs >= batch_size sessions
    forward, n_events = gru.model.forward, []

    def counting_forward(*args, **kwargs):  # it calls model.forward directly: count the rows it scores
        out = forward(*args, **kwargs)
        n_events.append(out.shape[0])
        return out

    gru.model.forward = counting_forward
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            rec, mrr = batch_eval(gru, test, cutoff=list(cutoff), batch_size=n_eval)
            secs = time.perf_counter() - t0
    finally:
        del gru.model.forward
    return rec, mrr, secs, int(sum(n_events))


def speed_rows(args, module, batch_eval, data) -> list[dict]:
    """Training and evaluation speed, ours and the official code side by side in one process.

    Each repeat trains one epoch of ours and of the official model (alternately, so the load of a
    shared machine falls on both alike), then evaluates the official model twice: with the official
    ``batch_eval`` and with our ``evaluate_sessions`` (``ties="pessimistic"``, its "conservative"
    mode), and checks that both give the same Recall@20 / MRR@20. Events/s: best and median."""
    from course_lib.evaluation import evaluate_sessions
    from course_lib.torch_models.gru4rec import GRU4Rec

    def best_median(values):
        return round(max(values)), round(float(np.median(values)))

    rows = []
    for name in args.models:
        cfg = {**CONFIGS[name], **args.ours_options}
        tr_ours, tr_off, tr_off_real, ev_ours, ev_off, ev_ours_own, diffs, counts = [], [], [], [], [], [], [], None
        for rep in range(args.speed_repeats):
            ours = GRU4Rec(layers=[100], n_epochs=1, seed=rep, device="cpu", **cfg).fit(data.train, progress=False)
            tr_ours.append(ours.history[-1]["events_per_s"])
            ev_ours_own.append(evaluate_sessions(ours, data.test, cutoffs=(20,), batch_size=args.eval_batch)[
                "events_per_second"])
            kw = official_kwargs(ours.params)
            if kw is None or args.skip_official:
                continue
            gru, hist, _ = train_official(module, kw, data.train, rep)
            tr_off.append(hist[-1]["events_per_s"])
            if "events_trained_per_s" in hist[-1]:
                tr_off_real.append(hist[-1]["events_trained_per_s"])
            if batch_eval is None:
                continue
            rec, mrr, secs, n_off = official_eval(batch_eval, gru, data.test, args.eval_batch)
            ev_off.append(n_off / secs)
            res = evaluate_sessions(OfficialScorer(gru), data.test, cutoffs=(20,), ties="pessimistic",
                                    batch_size=args.eval_batch)
            ev_ours.append(res["events_per_second"])
            diffs.append(max(abs(res["Recall@20"] - float(rec[20])), abs(res["MRR@20"] - float(mrr[20]))))
            counts = (res["n_events"], n_off)
        row = {"model": name, "repeats": args.speed_repeats,
               "ours options": ", ".join(f"{k}={v}" for k, v in args.ours_options.items()) or "defaults"}
        row["ours train events/s (best, median)"] = best_median(tr_ours)
        if tr_off:
            row["official train events/s (best, median)"] = best_median(tr_off)
            row["train ours / official (best, median)"] = (round(max(tr_ours) / max(tr_off), 2),
                                                           round(float(np.median(tr_ours) / np.median(tr_off)), 2))
        if tr_off_real and len(tr_off_real) == len(tr_off):
            row["official train events/s, events it trained (best, median)"] = best_median(tr_off_real)
            row["train ours / official, events trained (best, median)"] = (
                round(max(tr_ours) / max(tr_off_real), 2), round(float(np.median(tr_ours) / np.median(tr_off_real)), 2))
        row["ours eval events/s, own model (best, median)"] = best_median(ev_ours_own)
        if ev_off:
            row["ours eval events/s, official model (best, median)"] = best_median(ev_ours)
            row["official eval events/s (best, median)"] = best_median(ev_off)
            row["eval ours / official (best, median)"] = (round(max(ev_ours) / max(ev_off), 2),
                                                          round(float(np.median(ev_ours) / np.median(ev_off)), 2))
            row["eval max abs diff Recall/MRR@20"] = float(f"{max(diffs):.2g}")
            row["test events scored: ours, official"] = counts
        rows.append(row)
        print(row, flush=True)
    return rows


STEP_MARKS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)


def step_rows(args, module, data) -> list[dict]:
    """Train ours and the official model side by side from the same initial weights (the
    official's fixed ones), on the same session-parallel steps with the same negative samples,
    for ``--step-check`` steps of the first epoch (while every slot is busy), and record how far
    they drift apart: both losses, the largest difference of any output weight and of any hidden
    state. Equal step functions drift only by float rounding (which chaotic training amplifies)."""
    import torch

    from course_lib.sessions import Batch, SampleStore, training_arrays
    from course_lib.torch_models.gru4rec import GRU4Rec, RowOptimizer, _step_tensors, train_step

    name = args.models[0]
    opts = {"reset_after": official_reset_after(module), **args.ours_options}  # the official step of this checkout
    ours = GRU4Rec(layers=[100], n_epochs=1, seed=args.seeds[0], device="cpu", **{**CONFIGS[name], **opts})
    if ours.logq or ours.dropout_p_embed or ours.dropout_p_hidden:
        raise ValueError(f"--step-check compares deterministic steps: {name!r} uses logq or dropout")
    kw = official_kwargs(ours.params)
    if kw is None:
        raise ValueError(f"{name!r} has no official counterpart (loss {ours.loss!r})")
    _, item_ids, item_idx, offsets, pop = training_arrays(data.train)
    start = official_initial_weights(module, data.train, ours.params, item_ids)  # checks the configuration
    off, pos = _official_start(module, data.train, ours.layers, ours.batch_size, item_ids)
    # ours, and the control: ours again with every initial weight moved by about one float32 rounding step
    twin = GRU4Rec(**ours.params, device="cpu")
    g = torch.Generator().manual_seed(0)
    for model, noise in ((ours, 0.0), (twin, 1e-7)):
        model.item_ids = item_ids
        model.init_weights(len(item_ids))
        model.load_weights({k: v * (1 + noise * torch.randn(v.shape, generator=g)) if noise else v
                            for k, v in start.items()})
    with contextlib.redirect_stdout(io.StringIO()):
        gru = module.GRU4Rec(device=torch.device("cpu"), **kw)
    opt_off = module.IndexedAdagradM(off.parameters(), kw["learning_rate"], kw["momentum"])
    opt, opt_twin = RowOptimizer.for_model(ours), RowOptimizer.for_model(twin)
    p = pop**ours.sample_alpha
    store = SampleStore(p / p.sum(), ours.n_sample, ours.sample_store_size, ours.seed + 2, max_chunks=args.step_check)
    steps = _step_tensors(offsets, ours.batch_size, torch.as_tensor(item_idx))
    H_off, h_ours, h_twin = ([torch.zeros(ours.batch_size, ours.layers[0])] for _ in range(3))
    rows = []
    for k, (slots, x, y, reset) in enumerate(steps[: args.step_check]):
        if slots is not None:
            break  # the batch starts to shrink: the comparison stops here
        if reset is not None:
            H_off = [h.detach().masked_fill(reset, 0.0) for h in H_off]
        sample = store.next()
        sample = None if sample is None else torch.as_tensor(sample)
        H_off = [h.detach() for h in H_off]
        off.zero_grad()
        Y = pos[y] if sample is None else torch.cat([pos[y], pos[sample]])
        R = off.forward(pos[x], H_off, Y, training=True)
        loss_off = gru.loss_function(R, Y, len(x)) / ours.batch_size
        loss_off.backward()
        opt_off.step()
        batch = Batch(x, y, sample, reset, None, 1.0)  # the same steps and samples for ours and its twin
        loss_ours, h_ours = train_step(ours, batch, h_ours, opt)
        _, h_twin = train_step(twin, batch, h_twin, opt_twin)
        h_ours, h_twin = [h.detach() for h in h_ours], [h.detach() for h in h_twin]
        if k + 1 in STEP_MARKS or k + 1 == args.step_check:
            d_wy = float((ours.W["Wy"].detach()[:, :-1] - off.Wy.weight.detach()[pos]).abs().max())
            rows.append({"model": name, "step": k + 1, "official loss": round(loss_off.item(), 6),
                         "ours loss": round(loss_ours, 6), "max abs diff Wy": float(f"{d_wy:.3g}"),
                         "max abs Wy": round(float(off.Wy.weight.detach().abs().max()), 4),
                         "max abs diff H": float(f"{float((h_ours[0] - H_off[0].detach()).abs().max()):.3g}"),
                         "control: max abs diff Wy, ours vs ours perturbed by 1e-7":
                             float(f"{float((ours.W['Wy'].detach() - twin.W['Wy'].detach()).abs().max()):.3g}")})
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from course_lib.data import load_sessions

    need = not args.skip_official or args.ours_init == "official" or args.step_check > 0
    try:
        module, batch_eval = load_official(args.official_dir) if need else (None, None)
    except (FileNotFoundError, ValueError) as exc:
        print(f"course bench gru4rec-official: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    data = load_sessions(args.tier)
    if args.speed_repeats > 0:
        return _write_speed(args, speed_rows(args, module, batch_eval, data), load_start, module)
    if args.step_check > 0:
        return _write_steps(args, step_rows(args, module, data), module)
    rows = run(args, module, batch_eval, data)
    load_end = os.getloadavg()[0]
    summary = data.summary()
    notes = (
        f"Data: tier `{args.tier}` ({int(summary.loc['train', 'events'])} training events, "
        f"{int(summary.loc['train', 'items'])} items; {int(summary.loc['test', 'events'])} test events). "
        "Both models are trained on the same frame with the same settings (100 GRU units, adagrad); "
        "`Recall@20`/`MRR@20` come from our `evaluate_sessions` for both (next item ranked against all "
        "training items, ties averaged); `(its eval)` is the official `batch_eval` (ties counted against "
        "the target). `train events/s` is the last epoch, as each code measures it; `fit s` is the whole "
        "`fit` call (the official one includes drawing its 10M-item sample store). "
        + ("The official weights always start from its fixed numpy seed 42 (compatibility mode, its default); "
           if args.official_init == "fixed" else
           "The official weights are drawn from torch's generator seeded with `seed` (`--official-init seeded`, "
           "its compatibility mode off), so they change with the seed as ours do; ")
        + "`seed` drives its "
        "sampling and dropout through torch's global generator, and everything in ours. The official "
        f"code is {OFFICIAL_URL} at commit {_commit(module)}, run unmodified except the numpy 2 / pandas 2 shims of "
        "`course_lib/benchmarks/gru4rec_official.py`. One torch thread each; load average (1 min) at "
        f"the start and the end: {load_start:.1f} and {load_end:.1f} on {os.cpu_count()} cores, so "
        "the speeds are lower bounds.\n\n" + DIFFERENCES
    )
    settings = {"tier": args.tier, "epochs": args.epochs, "sampled_epochs": args.sampled_epochs,
                "seeds": args.seeds, "noise_model": args.noise_model, "noise_seed": args.noise_seed,
                "ours_options": args.ours_options, "official_init": args.official_init, "ours_init": args.ours_init,
                "threads": args.threads, "eval_batch": args.eval_batch, "device": "cpu", "ties": "average",
                "official_commit": _commit(module)}
    columns = ["model", "seed", "epochs", "ours options", "ours Recall@20", "official Recall@20", "diff Recall@20",
               "ours MRR@20", "official MRR@20", "diff MRR@20", "official Recall@20 (its eval)",
               "official MRR@20 (its eval)", "ours train events/s", "official train events/s",
               "ours eval events/s", "official eval events/s (its eval)",
               "ours fit s", "official fit s", "ours final loss", "official final loss", "official"]
    md, js = write_results(args.name, rows, settings,
                           title=f"GRU4Rec: ours beside the authors' official PyTorch code ({_commit(module)})",
                           notes=notes, columns=columns, out_dir=args.out_dir)
    print(f"wrote {md} and {js}")
    return 0


def _commit(module) -> str:
    return getattr(module, "COURSE_COMMIT", "not run") if module is not None else "not run"


def _write_speed(args, rows, load_start, module) -> int:
    notes = (
        f"Official code: {OFFICIAL_URL} at commit {_commit(module)}. Each configuration, {args.speed_repeats} "
        "times: one training epoch of ours and of the official model on the same data, alternately (events = "
        "(input, target) pairs per second, as each code counts them: the official loop counts every step as "
        "`batch_size` events, also the last steps of an epoch where fewer sessions are left, so its figure "
        "is above the events it trained on when there are no extra samples; `events it trained` divides the "
        "input rows of its steps, counted around its `SessionDataIterator`, by the same seconds); then the official model is evaluated "
        "by its own `batch_eval` and by our `evaluate_sessions` (ties counted against the target in both, "
        "its 'conservative' mode), and `ours eval events/s, own model` is our evaluation of our model "
        "(ties averaged). `best` is the fastest repeat, `median` the median; on a shared machine every "
        "slower repeat was slowed by other jobs. Both evaluations score every test event of a model "
        "trained with extra samples; for one trained without, the official evaluation stops when one "
        "session is left and scores fewer events (`test events scored`). One torch thread each; load "
        f"average (1 min) at the start and the end: {load_start:.1f} and {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores."
    )
    settings = {"tier": args.tier, "speed_repeats": args.speed_repeats, "ours_options": args.ours_options,
                "threads": args.threads, "eval_batch": args.eval_batch, "device": "cpu",
                "official_commit": _commit(module)}
    columns = list(dict.fromkeys(k for row in rows for k in row))  # rows without an official run have fewer
    md, js = write_results(args.name, rows, settings,
                           title=f"GRU4Rec speed: ours beside the official PyTorch code ({_commit(module)})",
                           notes=notes, columns=columns, out_dir=args.out_dir)
    print(f"wrote {md} and {js}")
    return 0


def _write_steps(args, rows, module) -> int:
    notes = (
        f"Official code: {OFFICIAL_URL} at commit {_commit(module)} (one-hot GRU candidate "
        f"{getattr(module, 'COURSE_LAYOUT', '?')}; ours with reset_after={official_reset_after(module)}). "
        "Ours and the official model start from the same weights (the official fixed initial weights, "
        "mapped to our gate and item order), see the same session-parallel steps and the same negative "
        "samples, and each takes its own training step (forward, loss, backward, Adagrad with momentum). "
        "`max abs diff Wy` is the largest difference of any output weight after that step, `max abs diff H` of any "
        "hidden state. The control trains ours twice, the second time with every initial weight "
        "multiplied by 1 + 1e-7 * N(0, 1) (about one float32 rounding step). Equal step functions differ only by float rounding at first; training then "
        "amplifies it (Adagrad's first update of a weight is about +-lr whatever the gradient's size, so a "
        "gradient near zero whose sign differs by rounding moves the weight by up to 2 lr), which is why "
        "two runs that differ only in their random draws end at different accuracies. Ours runs with "
        f"{args.ours_options or 'its defaults'}."
    )
    settings = {"tier": args.tier, "step_check": args.step_check, "seed": args.seeds[0], "ours_options": args.ours_options,
                "threads": args.threads, "device": "cpu", "official_commit": _commit(module)}
    md, js = write_results(args.name, rows, settings,
                           title=f"GRU4Rec: one training step at a time, ours beside the official code ({_commit(module)})",
                           notes=notes, out_dir=args.out_dir)
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
