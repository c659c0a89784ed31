"""``course bench theano``: compile time and training-step time of the Theano track beside PyTorch.

For every model of the course (hybrid recommender level (a) and level (d), Ask-the-GRU GRU-MTL,
GRU4Rec with cross-entropy and with BPR-max) the benchmark builds the Theano-track model
(PyTensor, C linker) and the PyTorch-track model with the same settings, compiles the Theano
training step (timed), then times training steps of both on the same mini-batches in the same
process, and writes ``benchmarks/results/theano.md`` / ``.json`` with the ratio
Theano step time / PyTorch step time.

The compile time depends on PyTensor's on-disk cache of compiled C modules: the first compile of a
graph on a machine builds C code with gcc, later ones mostly reuse it. The table says which case
was measured; ``--cold-cache`` uses an empty temporary cache so every compile starts from scratch.
Both tracks run on the CPU with one BLAS / torch thread (the machine is shared).
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from course_lib.benchmarks.common import TIERS, apply_preset, nonnegative_int, positive_int


def _time_calls(fn, batches, warmup: int = 2) -> float:
    """Milliseconds per call of ``fn(batch)`` over ``batches`` after ``warmup`` untimed calls."""
    for b in batches[:warmup]:
        fn(b)
    t0 = time.perf_counter()
    for b in batches[warmup:]:
        fn(b)
    return (time.perf_counter() - t0) / max(1, len(batches) - warmup) * 1000


def _text_data(tier: str, max_len: int, seed: int):
    from course_lib.splits import flip_protocol
    from course_lib.data import load_citeulike
    from course_lib.text import idf_vector, prepare_text

    cul = load_citeulike(tier)
    proto = flip_protocol(cul.likes, seed=seed)
    vocab, corpus = prepare_text(cul.texts("title+abstract"), min_count=5, max_len=max_len)
    return cul, proto, vocab, corpus, idf_vector(corpus, vocab)


def bench_hybrid(level: str, tier: str, n_steps: int, seed: int, dim: int) -> dict:
    """Level (a) (TF-IDF x word vectors, fine-tuned) or (d) (GRU encoder), weighted MSE, Adagrad."""
    import torch

    from course_lib.theano_models import askgru as ta
    from course_lib.theano_models import content as tcon
    from course_lib.theano_models import hybrid as th
    from course_lib.torch_models import askgru as pa
    from course_lib.torch_models import content as tc
    from course_lib.torch_models import hybrid as ph
    from course_lib.torch_models.utils import TextBatch

    cul, proto, vocab, corpus, idf = _text_data(tier, 300 if level == "a" else 100, seed)
    rng = np.random.default_rng(seed)
    wv = rng.normal(0, 0.1, size=(len(vocab), dim))
    if level == "a":
        enc_t, enc_p = tcon.TfidfWordAverage(wv, idf, fine_tune=True), tc.TfidfWordAverage(wv, idf, fine_tune=True)
    else:
        kw = dict(emb_dim=dim, hidden1=dim, hidden2=dim, dropout=(0.1, 0.3, 0.3), embeddings=wv, seed=seed)
        enc_t, enc_p = ta.GRUEncoder(len(vocab), **kw), pa.GRUEncoder(len(vocab), **kw)
    kw = dict(item_dim=dim, dropout_item=0.2, dropout_content=0.2, seed=seed)
    theano_model = th.HybridRecommender(cul.n_users, cul.n_papers, enc_t, **kw)
    torch_model = ph.HybridRecommender(cul.n_users, cul.n_papers, enc_p, **kw)
    known = np.diff(proto.train.tocsc().indptr) > 0
    theano_model.set_known_papers(known)
    torch_model.set_known_papers(known)
    theano_model.load_state_dict(torch_model.state_dict())

    t0 = time.perf_counter()
    step = th.make_train_step(theano_model, loss="wmse", alpha=50.0, lr=0.05)
    compile_s = time.perf_counter() - t0
    texts = th.PaperTexts.from_corpus(corpus)
    by_paper = proto.train.T.tocsr()
    batches = []
    for _ in range(n_steps + 2):
        papers = rng.choice(proto.train_papers, size=min(64, len(proto.train_papers)), replace=False)
        ids, mask, idx = texts.batch(papers)
        batches.append((ids, mask, idx, by_paper[idx].toarray().astype(np.float32)))

    theano_ms = _time_calls(lambda b: step(*b), batches)
    opt = torch.optim.Adagrad(torch_model.parameters(), lr=0.05)
    torch_model.train()

    def torch_step(b):
        opt.zero_grad()
        loss = ph.weighted_mse_loss(torch_model(TextBatch.from_arrays(*b[:3])), torch.as_tensor(b[3]), 50.0)
        loss.backward()
        opt.step()

    torch_ms = _time_calls(torch_step, batches)
    name = "hybrid (a) TF-IDF x word vectors" if level == "a" else "hybrid (d) GRU encoder"
    return {"model": name, "batch": "64 papers x all users", "theano_compile_s": compile_s,
            "theano_step_ms": theano_ms, "torch_step_ms": torch_ms}


def bench_askgru(tier: str, n_steps: int, seed: int, dim: int) -> dict:
    """GRU-MTL (Ask the GRU): biGRU -> GRU encoder, weighted squared loss + tag loss, Adam."""
    import scipy.sparse as sp
    import torch

    from course_lib.theano_models import askgru as ta
    from course_lib.training import sample_user_pairs
    from course_lib.theano_models.hybrid import PaperTexts
    from course_lib.torch_models import askgru as pa
    from course_lib.torch_models.utils import TextBatch

    cul, proto, vocab, corpus, _ = _text_data(tier, 100, seed)
    kw = dict(emb_dim=dim, hidden1=dim, hidden2=dim, seed=seed)
    torch_model = pa.AskGRU(pa.GRUEncoder(len(vocab), **kw), cul.n_users, cul.n_papers, n_tags=cul.n_tags, seed=seed)
    theano_model = ta.AskGRU(ta.GRUEncoder(len(vocab), **kw), cul.n_users, cul.n_papers, n_tags=cul.n_tags)
    theano_model.load_state_dict(torch_model.state_dict())
    t0 = time.perf_counter()
    step = ta.make_train_step(theano_model, lambda_mtl=0.5, seed=seed)
    compile_s = time.perf_counter() - t0

    likes = sp.csr_matrix(proto.train, dtype=np.float32)
    likes.sort_indices()
    n_likes = np.diff(likes.indptr)
    users_pool, papers_pool = np.flatnonzero(n_likes), proto.train_papers
    conf = ta.confidence_weights(n_likes).astype(np.float32)
    tags = sp.csr_matrix(cul.paper_tags, dtype=np.float32)
    texts, rng = PaperTexts.from_corpus(corpus), np.random.default_rng(seed)
    batches = []
    for _ in range(n_steps + 2):
        users, pos, neg = sample_user_pairs(likes, users_pool, papers_pool, 64, rng)
        papers, u = np.concatenate([pos, neg]), np.concatenate([users, users])
        target = np.r_[np.ones(users.size), np.zeros(users.size)].astype(np.float32)
        batches.append((*texts.batch(papers), u, target, conf[u], tags[papers].toarray()))
    theano_ms = _time_calls(lambda b: step(*b), batches)

    opt = torch.optim.Adam(torch_model.parameters(), lr=1e-3)
    torch_model.train()

    def torch_step(b):
        ids, mask, papers, u, target, c, t = b
        batch = TextBatch.from_arrays(ids, mask, papers)
        ut = torch.as_tensor(u)
        f = torch_model.item_repr(batch)
        rec = pa.weighted_squared_loss(torch_model.score_pairs(ut, f, batch.paper_idx), torch.as_tensor(target),
                                       torch.as_tensor(c))
        rec = rec + pa.REG_USER * torch_model.user_emb[ut].pow(2).sum(-1).mean()
        loss = pa.multitask_loss(rec, pa.tag_loss(torch_model.tag_logits(f), torch.as_tensor(t), 0.01), 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()

    torch_ms = _time_calls(torch_step, batches)
    return {"model": "Ask the GRU, GRU-MTL", "batch": "64 users x (1 pos + 1 neg)", "theano_compile_s": compile_s,
            "theano_step_ms": theano_ms, "torch_step_ms": torch_ms}


def bench_gru4rec(loss: str, tier: str, seed: int, max_events: int | None) -> dict:
    """GRU4Rec, 100 hidden units, batch 32, one epoch (or ``max_events``) in each track."""
    from course_lib.data import load_sessions
    from course_lib.theano_models import gru4rec as tg
    from course_lib.torch_models import gru4rec as pg

    train = load_sessions(tier).train
    if max_events is not None and len(train) > max_events:
        keep = train["SessionId"].isin(train["SessionId"].unique()[: max(1, max_events // 4)])
        train = train[keep]
    settings = {"cross-entropy": dict(loss="cross-entropy", n_sample=2048, embedding=0),
                "bpr-max": dict(loss="bpr-max", n_sample=2048, embedding=0, bpreg=1.0)}[loss]
    kw = dict(layers=[100], batch_size=32, n_epochs=1, learning_rate=0.05, momentum=0.0, seed=seed, **settings)
    torch_model = pg.GRU4Rec(device="cpu", **kw).fit(train, progress=False)
    theano_model = tg.GRU4Rec(**kw).fit(train, progress=False)
    th_hist, pt_hist = theano_model.history[0], torch_model.history[0]
    sess = pg.GRU4Rec.prepare(train)[0]["SessionId"].to_numpy()
    offsets = np.r_[0, np.flatnonzero(sess[1:] != sess[:-1]) + 1, len(sess)]
    n_steps = sum(1 for _ in pg.session_parallel_batches(offsets, 32))
    return {"model": f"GRU4Rec {loss}, 100 units, +2048 samples", "batch": "32 sessions",
            "theano_compile_s": theano_model.compile_seconds["train_step"],
            "theano_step_ms": th_hist["seconds"] / n_steps * 1000, "torch_step_ms": pt_hist["seconds"] / n_steps * 1000,
            "theano_events_per_s": th_hist["events_per_s"], "torch_events_per_s": pt_hist["events_per_s"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="course bench theano", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", default="small", choices=TIERS, help="data tier (small needs COURSE_DATA_DIR or a download)")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed training steps per text model")
    parser.add_argument("--dim", type=positive_int, default=64, help="embedding / hidden size of the text models")
    parser.add_argument("--max-events", type=positive_int, default=None, help="cut the GRU4Rec training data to ~this size")
    parser.add_argument("--cold-cache", action="store_true", help="compile into an empty temporary cache")
    parser.add_argument("--quick", action="store_true", help="tiny tier, 5 steps, dim 32")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        apply_preset(parser, args, tier="tiny", steps=5, dim=32)

    if args.cold_cache:
        tmp = tempfile.mkdtemp(prefix="pytensor-cold-")
        # registered before PyTensor is imported, so it runs after PyTensor's own exit hooks
        # (atexit is last in, first out), which still read the cache
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        os.environ["COURSE_CACHE_DIR"] = tmp
    import torch
    from threadpoolctl import threadpool_limits

    from course_lib.benchmarks.common import peak_memory_mib, write_results
    from course_lib.theano_models import compat

    torch.set_num_threads(1)
    threadpool_limits(1)
    cache = Path(str(compat.theano.config.compiledir))
    warm = "warm" if not args.cold_cache and cache.exists() and any(cache.iterdir()) else "empty (cold)"

    load_at_start = round(os.getloadavg()[0], 1)  # the machine may be shared: say how busy it was
    rows = []
    jobs = [("hybrid (a)", lambda: bench_hybrid("a", args.tier, args.steps, args.seed, args.dim)),
            ("hybrid (d)", lambda: bench_hybrid("d", args.tier, max(3, args.steps // 4), args.seed, args.dim)),
            ("askgru", lambda: bench_askgru(args.tier, max(3, args.steps // 4), args.seed, args.dim)),
            ("gru4rec xe", lambda: bench_gru4rec("cross-entropy", args.tier, args.seed, args.max_events)),
            ("gru4rec bpr-max", lambda: bench_gru4rec("bpr-max", args.tier, args.seed, args.max_events))]
    for name, job in jobs:
        t0 = time.perf_counter()
        row = job()
        row["ratio_theano_over_torch"] = row["theano_step_ms"] / row["torch_step_ms"]
        rows.append(row)
        print(f"{name}: compile {row['theano_compile_s']:.1f} s, step {row['theano_step_ms']:.1f} ms (Theano) vs "
              f"{row['torch_step_ms']:.1f} ms (PyTorch), ratio {row['ratio_theano_over_torch']:.2f} "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    settings = {"tier": args.tier, "steps": args.steps, "dim": args.dim, "max_events": args.max_events,
                "backend": compat.BACKEND, "linker": str(compat.theano.config.linker),
                "optimizer": str(compat.theano.config.optimizer), "floatX": compat.floatX(),
                "compile_cache": warm, "threads": 1, "peak_memory_mib": round(peak_memory_mib(), 1),
                "load_average_at_start": load_at_start}
    notes = (
        "Compile time: building and compiling the Theano-track training step (graph rewriting, C code "
        f"generation, gcc) with the compile cache {warm}; PyTorch compiles nothing (eager). Step time: mean "
        "wall-clock time of one training step (forward, gradient, optimiser update) on the same mini-batches in "
        "the same process, one thread each, CPU. Ratio > 1: the Theano track is slower per step. GRU4Rec rows: "
        "one epoch of fit() in each track (events/s from its history). No Theano-family backend reaches CUDA "
        "today; the PyTorch track is the GPU path."
    )
    cols = ["model", "batch", "theano_compile_s", "theano_step_ms", "torch_step_ms", "ratio_theano_over_torch"]
    md, js = write_results("theano", rows, settings, title="Theano track (PyTensor) vs PyTorch track: compile and "
                           "step time", notes=notes, columns=cols, out_dir=args.out_dir)
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
