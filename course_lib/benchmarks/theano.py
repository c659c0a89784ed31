"""``course bench theano``: the Theano track beside the PyTorch track, per training step and per cold compile.

For every model of the course (the hybrid recommender at content levels (a), (c) and (d), Ask the
GRU's GRU-MTL, GRU4Rec with cross-entropy and with BPR-max) the benchmark measures two things and
writes ``benchmarks/results/theano.md`` / ``.json``. The GRU encoders (level (d), Ask the GRU) run
as the library builds them, with the fused GRU op (``GRUEncoder(recurrence="op")``,
:mod:`course_lib.theano_models.gru_op`), and once more with ``scan`` (``hybrid-d-scan``,
``askgru-scan``: the formulation notebook 06 teaches).

* **Step time.** Both tracks are built with the same settings and weights in one process and run
  the library's training step (the function each track's trainer calls) on the same mini-batches;
  GRU4Rec runs one epoch of ``fit`` on a slice of the sessions in each track (step time = epoch
  time / steps, the loop included). The two tracks alternate, ``--repeats`` times, so a burst of
  load on a shared machine hits both; the table gives the minimum and the median over the repeats
  and the ratio Theano / PyTorch of each. One BLAS / torch thread, CPU.
* **Cold compile.** The Theano training step compiled from an empty compile cache: each
  measurement runs in a fresh Python process whose PyTensor cache is a new temporary directory, so
  every C module of the graph is generated and built by gcc. The clock starts after the data and
  the model are built and PyTensor's own C helpers (built once per cache, for every graph) are in
  place; it stops when the step function exists. Wall-clock and CPU seconds (gcc included) are both
  recorded: on a busy machine the CPU time is what the compile would take alone.

The load average of the machine is recorded beside every row.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Callable

import numpy as np

from course_lib.benchmarks.common import TIERS, apply_preset, comma_list, nonnegative_int, positive_int

CASES = ("hybrid-a", "hybrid-c", "hybrid-d", "hybrid-d-scan", "askgru", "askgru-scan", "gru4rec-xe", "gru4rec-bprmax")
LABELS = {"hybrid-a": "hybrid (a) TF-IDF x word vectors", "hybrid-c": "hybrid (c) end-to-end paragraph vectors",
          "hybrid-d": "hybrid (d) GRU encoder", "hybrid-d-scan": "hybrid (d) GRU encoder, scan",
          "askgru": "Ask the GRU, GRU-MTL", "askgru-scan": "Ask the GRU, GRU-MTL, scan",
          "gru4rec-xe": "GRU4Rec cross-entropy, 100 units, +2048 samples",
          "gru4rec-bprmax": "GRU4Rec BPR-max, 100 units, +2048 samples"}


@dataclass
class Case:
    """One model in both tracks: ``compile()`` builds the Theano step (what the cold compile times);
    ``theano(k)`` / ``torch(k)`` run ``k`` training steps and return the seconds per step;
    ``weights()``: the Theano model's weights now (the speed-up tests compare them)."""

    name: str
    batch: str
    compile: Callable[[], None]
    theano: Callable[[int], float]
    torch: Callable[[int], float]
    weights: Callable[[], dict]


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (gcc), user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed_cycle(step: Callable, batches: list) -> Callable[[int], float]:
    """``run(k)``: ``k`` calls of ``step(batch)`` cycling through ``batches``; seconds per call."""
    position = [0]

    def run(k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(k):
            step(batches[position[0] % len(batches)])
            position[0] += 1
        return (time.perf_counter() - t0) / k

    return run


def _text_data(tier: str, max_len: int, seed: int):
    from course_lib.data import load_citeulike
    from course_lib.splits import flip_protocol
    from course_lib.text import idf_vector, prepare_text

    cul = load_citeulike(tier)
    proto = flip_protocol(cul.likes, seed=seed)
    vocab, corpus = prepare_text(cul.texts("title+abstract"), min_count=5, max_len=max_len)
    return cul, proto, vocab, corpus, idf_vector(corpus, vocab)


def hybrid_case(level: str, tier: str, dim: int, seed: int, n_batches: int = 8, recurrence: str = "op") -> Case:
    """Level (a) (TF-IDF x word vectors, fine-tuned), (c) (paragraph vectors trained with the
    recommender) or (d) (GRU encoder, its ``recurrence`` "op" or "scan"): weighted MSE on 64 papers x
    all users, Adagrad, dropout."""
    import torch

    from course_lib.theano_models import askgru as ta
    from course_lib.theano_models import content as tcon
    from course_lib.theano_models import e2e_paragraph as te
    from course_lib.theano_models import hybrid as th
    from course_lib.torch_models import askgru as pa
    from course_lib.torch_models import content as tc
    from course_lib.torch_models import e2e_paragraph as pe
    from course_lib.torch_models import hybrid as ph

    cul, proto, vocab, corpus, idf = _text_data(tier, 300 if level in "ac" else 100, seed)
    rng = np.random.default_rng(seed)
    wv = rng.normal(0, 0.1, size=(len(vocab), dim))
    if level == "a":
        enc_t, enc_p = tcon.TfidfWordAverage(wv, idf, fine_tune=True), tc.TfidfWordAverage(wv, idf, fine_tune=True)
    elif level == "c":
        enc_t, enc_p = (m.EndToEndParagraphVectors(cul.n_papers, vocab.counts, dim=dim, seed=seed) for m in (te, pe))
    else:
        kw = dict(emb_dim=dim, hidden1=dim, hidden2=dim, dropout=(0.1, 0.3, 0.3), embeddings=wv, seed=seed)
        enc_t, enc_p = ta.GRUEncoder(len(vocab), recurrence=recurrence, **kw), pa.GRUEncoder(len(vocab), **kw)
    kw = dict(item_dim=dim, dropout_item=0.2, dropout_content=0.2, seed=seed)
    theano_model = th.HybridRecommender(cul.n_users, cul.n_papers, enc_t, **kw)
    torch_model = ph.HybridRecommender(cul.n_users, cul.n_papers, enc_p, **kw)
    known = np.diff(proto.train.tocsc().indptr) > 0
    theano_model.set_known_papers(known)
    torch_model.set_known_papers(known)
    theano_model.load_state_dict(torch_model.state_dict())

    texts_t, texts_p = th.PaperTexts.from_corpus(corpus), ph.PaperTexts.from_corpus(corpus, device="cpu")
    by_paper = proto.train.T.tocsr()
    batches = []
    for _ in range(n_batches):
        papers = rng.choice(proto.train_papers, size=min(64, len(proto.train_papers)), replace=False)
        batches.append((papers, by_paper[papers].toarray().astype(np.float32)))
    step = {}

    def compile_theano():
        step["theano"] = th.make_train_step(theano_model, loss="wmse", alpha=50.0, lr=0.05, seed=seed)

    torch_step = ph.make_train_step(torch_model, loss="wmse", alpha=50.0, lr=0.05, seed=seed)
    label = LABELS[f"hybrid-{level}" + ("-scan" if level == "d" and recurrence == "scan" else "")]
    return Case(label, "64 papers x all users", compile_theano,
                _timed_cycle(lambda b: step["theano"](*texts_t.batch(b[0]), b[1]), batches),
                _timed_cycle(lambda b: torch_step(texts_p.batch(b[0]), torch.as_tensor(b[1])), batches),
                theano_model.state_dict)


def askgru_case(tier: str, dim: int, seed: int, n_batches: int = 6, recurrence: str = "op") -> Case:
    """GRU-MTL (Ask the GRU): biGRU -> GRU encoder (``recurrence`` "op" or "scan"), weighted squared
    loss + tag loss, Adam, 64 users."""
    import scipy.sparse as sp

    from course_lib.theano_models import askgru as ta
    from course_lib.theano_models.hybrid import PaperTexts
    from course_lib.torch_models import askgru as pa
    from course_lib.training import PairBatch, sample_user_pairs

    cul, proto, vocab, corpus, _ = _text_data(tier, 100, seed)
    kw = dict(emb_dim=dim, hidden1=dim, hidden2=dim, seed=seed)
    torch_model = pa.AskGRU(pa.GRUEncoder(len(vocab), **kw), cul.n_users, cul.n_papers, n_tags=cul.n_tags, seed=seed)
    theano_model = ta.AskGRU(ta.GRUEncoder(len(vocab), recurrence=recurrence, **kw), cul.n_users, cul.n_papers,
                             n_tags=cul.n_tags)
    theano_model.load_state_dict(torch_model.state_dict())
    likes = sp.csr_matrix(proto.train, dtype=np.float32)
    likes.sort_indices()
    n_likes = np.diff(likes.indptr)
    conf = ta.confidence_weights(n_likes).astype(np.float32)
    tags = sp.csr_matrix(cul.paper_tags, dtype=np.float32)
    texts, rng = PaperTexts.from_corpus(corpus), np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        users, pos, neg = sample_user_pairs(likes, np.flatnonzero(n_likes), proto.train_papers, 64, rng)
        papers, u = np.concatenate([pos, neg]), np.concatenate([users, users])
        target = np.r_[np.ones(users.size), np.zeros(users.size)].astype(np.float32)
        batches.append(PairBatch(u, papers, target, n_likes[u], conf[u], tags[papers].toarray()))
    step = {}

    def compile_theano():
        step["theano"] = ta.make_train_step(theano_model, lambda_mtl=0.5, seed=seed)

    torch_step = pa.make_train_step(torch_model, corpus, lambda_mtl=0.5, device="cpu")
    return Case(LABELS["askgru" + ("-scan" if recurrence == "scan" else "")], "64 users x (1 pos + 1 neg)",
                compile_theano,
                _timed_cycle(lambda b: step["theano"](*texts.batch(b.paper_idx), b.users, b.target, b.conf, b.tags),
                             batches),
                _timed_cycle(torch_step, batches), theano_model.state_dict)


def gru4rec_case(loss: str, tier: str, seed: int, max_events: int | None) -> Case:
    """GRU4Rec, 100 hidden units, batch 32, 2,048 shared negatives: one epoch of ``fit`` per call."""
    from course_lib.data import load_sessions
    from course_lib.sessions import session_parallel_batches
    from course_lib.theano_models import gru4rec as tg
    from course_lib.torch_models import gru4rec as pg

    train = load_sessions(tier).train
    if max_events is not None and len(train) > max_events:
        keep = train["SessionId"].isin(train["SessionId"].unique()[: max(1, max_events // 4)])
        train = train[keep]
    settings = {"xe": dict(loss="cross-entropy"), "bprmax": dict(loss="bpr-max", bpreg=1.0)}[loss]
    kw = dict(layers=[100], batch_size=32, n_epochs=1, learning_rate=0.05, momentum=0.0, seed=seed, n_sample=2048,
              embedding=0, **settings)
    sess = pg.GRU4Rec.prepare(train)[0]["SessionId"].to_numpy()
    offsets = np.r_[0, np.flatnonzero(sess[1:] != sess[:-1]) + 1, len(sess)]
    n_steps = sum(1 for _ in session_parallel_batches(offsets, 32))
    theano_model = tg.GRU4Rec(**kw)

    def compile_theano():  # what fit() compiles before its clock starts
        theano_model.init_weights(train["ItemId"].nunique())
        tg._compiled(theano_model, tg.RowOptimizer.for_model(theano_model))

    def epoch(model) -> float:
        model.fit(train, progress=False)
        return model.history[0]["seconds"] / n_steps

    return Case(LABELS[f"gru4rec-{loss}"], f"32 sessions ({n_steps} steps)", compile_theano,
                lambda k: epoch(theano_model), lambda k: epoch(pg.GRU4Rec(device="cpu", **kw)),
                lambda: theano_model.W.state_dict())


def make_case(name: str, args) -> Case:
    recurrence = "scan" if name.endswith("-scan") else "op"
    if name.startswith("hybrid-"):
        return hybrid_case(name[len("hybrid-")], args.tier, args.dim, args.seed, recurrence=recurrence)
    if name.startswith("askgru"):
        return askgru_case(args.tier, args.dim, args.seed, recurrence=recurrence)
    if name.startswith("gru4rec-"):
        return gru4rec_case(name.split("-", 1)[1], args.tier, args.seed, args.max_events)
    raise ValueError(f"unknown model {name!r}; use one of {', '.join(CASES)}")


def _compiled_modules(compiledir: Path) -> int:
    """How many C modules PyTensor has built in ``compiledir`` (one folder with a shared library each)."""
    return len(glob.glob(str(compiledir / "tmp*" / "*.so")))


def cold_compile_child(name: str, args) -> dict:
    """In a process whose compile cache is empty: set PyTensor up, build the case, time the compile."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    from course_lib.theano_models import compat

    if compat.BACKEND == "pytensor":  # PyTensor's own C helpers: built once per cache, for every graph
        import pytensor.link.c.cutils  # noqa: F401
        import pytensor.link.c.cvm  # noqa: F401
    setup = {"setup_wall_s": time.perf_counter() - t0, "setup_cpu_s": cpu_seconds() - c0}
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)
    case = make_case(name, args)
    compiledir = Path(str(compat.theano.config.compiledir))
    before = _compiled_modules(compiledir)
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), cpu_seconds()
    case.compile()
    return {**setup, "wall_s": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0,
            "modules": _compiled_modules(compiledir) - before, "load": load}


def cold_compile(name: str, args) -> dict:
    """One cold compile of ``name`` in a fresh process with a new, empty compile cache."""
    tmp = tempfile.mkdtemp(prefix="course-cold-compile-")
    try:
        env = {**os.environ, "COURSE_CACHE_DIR": tmp}
        env.pop("COURSE_PRIVATE_COMPILEDIR", None)  # a test run's private cache is seeded, not empty
        for var in ("PYTENSOR_FLAGS", "THEANO_FLAGS"):  # compat wrote this process's cache into them
            flags = [f for f in env.get(var, "").split(",") if f.split("=")[0].strip() not in
                     ("base_compiledir", "compiledir", "compiledir_format")]
            env[var] = ",".join(flags)
        cmd = [sys.executable, "-m", "course_lib.benchmarks.theano", "--cold-compile-child", name, "--tier", args.tier,
               "--dim", str(args.dim), "--seed", str(args.seed)]
        if args.max_events is not None:
            cmd += ["--max-events", str(args.max_events)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the cold compile of {name} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _summary(values: list[float]) -> tuple[float, float]:
    return min(values), median(values)


def measure(name: str, args) -> dict:
    """Cold compiles, then interleaved step times of both tracks, for one model."""
    cold = [cold_compile(name, args) for _ in range(args.compile_repeats)]
    case = make_case(name, args)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    case.compile()  # the same graph again, now from this process's (warm) cache
    warm_s = time.perf_counter() - t0
    if args.warmup:
        case.theano(args.warmup)
        case.torch(args.warmup)
    theano_ms, torch_ms = [], []
    for r in range(args.repeats):  # alternate which track goes first
        for track in ((case.theano, theano_ms), (case.torch, torch_ms))[:: 1 if r % 2 == 0 else -1]:
            track[1].append(track[0](args.steps) * 1000)
    (th_min, th_med), (pt_min, pt_med) = _summary(theano_ms), _summary(torch_ms)
    (cw_min, cw_med), (cc_min, cc_med) = ((_summary([c["wall_s"] for c in cold]), _summary([c["cpu_s"] for c in cold]))
                                          if cold else ((None, None), (None, None)))
    return {"model": case.name, "batch": case.batch,
            "cold_compile_s_min": cw_min, "cold_compile_s_median": cw_med,
            "cold_compile_cpu_s_min": cc_min, "cold_compile_cpu_s_median": cc_med,
            "c_modules_built": cold[0]["modules"] if cold else None,
            "pytensor_setup_s": min((c["setup_wall_s"] for c in cold), default=None),
            "theano_compile_s": warm_s,
            "theano_step_ms_min": th_min, "theano_step_ms_median": th_med,
            "torch_step_ms_min": pt_min, "torch_step_ms_median": pt_med,
            "ratio_min": th_min / pt_min, "ratio_median": th_med / pt_med,
            # the names notebook 06 reads
            "theano_step_ms": th_med, "torch_step_ms": pt_med,
            "load_compile": [round(c["load"], 1) for c in cold],
            "load_steps": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "theano_step_ms_all": theano_ms, "torch_step_ms_all": torch_ms}


GOAL_RATIO, GOAL_COMPILE_S = 2.0, 20.0
"""Issue 15's goal: every Theano step within 2x of PyTorch's, every cold compile within 20 s (2 cores)."""


def parse_args(argv=None) -> argparse.Namespace:
    """The options of ``course bench theano``; ``--quick`` fills in only the options not given."""
    parser = argparse.ArgumentParser(prog="course bench theano", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", default="small", choices=TIERS, help="data tier (small needs COURSE_DATA_DIR or a download)")
    parser.add_argument("--models", type=comma_list(CASES), default=",".join(CASES), help="comma-separated subset")
    parser.add_argument("--repeats", type=positive_int, default=5, help="alternating step-time measurements per track")
    parser.add_argument("--steps", type=positive_int, default=10, help="steps per measurement (GRU4Rec: one epoch)")
    parser.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed steps per track first")
    parser.add_argument("--compile-repeats", type=nonnegative_int, default=2, help="cold compiles per model (0: none)")
    parser.add_argument("--dim", type=positive_int, default=64, help="embedding / hidden size of the text models")
    parser.add_argument("--max-events", type=nonnegative_int, default=20000,
                        help="GRU4Rec: train on the first ~this many events (0: the whole tier)")
    parser.add_argument("--quick", action="store_true", help="tiny tier, dim 32, 2 repeats of 3 steps, 1 cold compile")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--cold-compile-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.max_events = args.max_events or None
    if args.quick:
        apply_preset(parser, args, tier="tiny", dim=32, repeats=2, steps=3, compile_repeats=1)
    args.names = [n.strip() for n in args.models.split(",")]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.cold_compile_child:
        print(json.dumps(cold_compile_child(args.cold_compile_child, args)))
        return
    names = args.names

    import torch
    from threadpoolctl import threadpool_limits

    from course_lib.benchmarks.common import peak_memory_mib, write_results
    from course_lib.theano_models import compat, speedups

    torch.set_num_threads(1)
    threadpool_limits(1)
    load_at_start = round(os.getloadavg()[0], 1)
    rows = []
    for name in names:
        t0 = time.perf_counter()
        row = measure(name, args)
        rows.append(row)
        cold = (f"cold compile {row['cold_compile_s_min']:.1f} s (CPU {row['cold_compile_cpu_s_min']:.1f} s, "
                f"{row['c_modules_built']} C modules)" if args.compile_repeats else "no cold compile")
        print(f"{name}: {cold}; step {row['theano_step_ms_min']:.2f} / "
              f"{row['torch_step_ms_min']:.2f} ms (Theano / PyTorch, min), ratio {row['ratio_min']:.2f} min, "
              f"{row['ratio_median']:.2f} median; load {row['load_steps']} [{time.perf_counter() - t0:.0f} s]",
              flush=True)
    settings = {"tier": args.tier, "models": names, "repeats": args.repeats, "steps": args.steps,
                "compile_repeats": args.compile_repeats, "dim": args.dim, "max_events": args.max_events,
                "backend": compat.BACKEND, "linker": str(compat.theano.config.linker),
                "optimizer": str(compat.theano.config.optimizer), "floatX": compat.floatX(), "threads": 1,
                "speedups": speedups.install(), "gcc_cxxflags": str(compat.theano.config.gcc__cxxflags),
                "peak_memory_mib": round(peak_memory_mib(), 1), "load_average_at_start": load_at_start,
                "load_average_at_end": round(os.getloadavg()[0], 1)}
    notes = (
        "Cold compile: building the Theano-track training step from an empty compile cache (graph rewriting, C code "
        "generation, gcc) in a fresh process, min and median of the repeats, wall-clock and CPU seconds (gcc "
        "included); `c_modules_built`: the C modules gcc built for it; `pytensor_setup_s`: PyTensor's own C helpers, "
        "built once per empty cache before any graph (not included). `theano_compile_s`: the same compile with the "
        "cache warm. Step: wall-clock ms per training step (forward, gradient, update) on the same mini-batches, the "
        "tracks alternating, min and median over the repeats; ratio > 1: the Theano track is slower. GRU4Rec: one "
        "epoch of fit() per repeat (epoch time / steps). One thread each, CPU; `load_*`: the 1-minute load average "
        "(cores: see Machine). PyTorch compiles nothing (eager). No Theano-family backend reaches CUDA today; the "
        "PyTorch track is the GPU path."
    )
    cols = ["model", "batch", "cold_compile_s_min", "cold_compile_s_median", "cold_compile_cpu_s_min",
            "c_modules_built", "theano_step_ms_min", "theano_step_ms_median", "torch_step_ms_min",
            "torch_step_ms_median", "ratio_min", "ratio_median", "load_steps"]
    md, js = write_results("theano", rows, settings, title="Theano track (PyTensor) vs PyTorch track: cold compile "
                           "and step time", notes=notes, columns=cols, out_dir=args.out_dir)
    print(f"wrote {md} and {js}")
    slow = [r["model"] for r in rows if r["ratio_median"] > GOAL_RATIO]
    late = [r["model"] for r in rows if (r["cold_compile_s_median"] or 0) > GOAL_COMPILE_S]
    print(f"goal (medians: Theano step <= {GOAL_RATIO:g}x PyTorch, cold compile <= {GOAL_COMPILE_S:g} s wall): "
          + ("met" if not slow and not late else
             f"slower: {', '.join(slow) or 'none'}; compile longer: {', '.join(late) or 'none'}"))


if __name__ == "__main__":
    main()
