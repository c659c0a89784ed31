"""``course bench askgru``: Table 1 of Ask the GRU (Bansal et al. 2016) on our CiteULike-a text.

For one fold (``--fold 0``), a list (``--fold 0,1``) or all five (``--fold all``) this trains Embed,
Embed-MTL, GRU and GRU-MTL (PyTorch), CTR and CTR-MTL (LDA + ALS) and WMF, in warm start and cold
start (section 4.1), and writes warm / cold Recall@50 and @100, tag-prediction Recall@50 (cold
start, per paper), the paper's numbers beside ours, the training time and examples per second of
every model and the settings to ``benchmarks/results/askgru*.md`` and ``.json``, with Recall@M for
M up to 300 in the JSON and drawn as the paper's Figure 3 in ``askgru*_recall_at_m.png``.

Two text settings (``--text``): ``title`` on all 16,980 papers (tier ``full``), and
``title+abstract`` on the 1,929 papers that have an abstract (tier ``small``). The paper read full
abstracts of all papers, so absolute numbers differ.

Settings come in named presets (``--preset``): ``paper`` (the default: the paper's values, about a
day of CPU time per GRU model), ``reduced`` (smaller layers and batches, see :data:`PRESETS`, which
train to early stopping in minutes per model on one CPU thread; its results are ``askgru.md``)
and ``quick`` (``--quick``: the pipeline in minutes). The output name says which: ``askgru`` for
``reduced`` on titles, ``askgru_paper``, ``askgru_quick``, ``askgru_title_abstract_quick``, ...
Folds and models can run as separate processes: ``--include-folds-from X.json`` (repeatable) adds
the folds and models of an earlier run with the same settings (same seed, same numbers; this run's
models win where both have one), and ``--fold none`` with it only rewrites the table, notes and
figure. ``--name`` sets the result file name. ``--speed-updates N`` also times N GRU updates at the paper's sizes and at the run's sizes, for
each thread count of ``--speed-threads``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from course_lib.benchmarks.common import (TIERS, fraction, nonnegative_int, peak_memory_mib, positive_float,
                                          positive_int, write_results)

# Table 1, CiteULike-a, % Recall@50 (warm start, cold start, tag prediction).
PAPER_TABLE1 = {
    "GRU-MTL": (38.33, 49.76, 60.52),
    "GRU": (36.87, 46.16, None),
    "CTR-MTL": (35.51, 39.87, 48.95),
    "CTR": (31.10, 39.00, None),
    "Embed-MTL": (36.64, 41.71, 60.36),
    "Embed": (33.95, 38.53, None),
    "WMF": (None, None, None),
}
NEURAL = {"Embed": ("embed", False), "Embed-MTL": ("embed", True), "GRU": ("gru", False), "GRU-MTL": ("gru", True)}
CURVE_M = (10, 20) + tuple(range(25, 301, 25))  # Figure 3 of the paper: M from 50 to 300
# Named settings; the argparse defaults (``paper``) are the paper's values (section 4.1.2).
PRESETS = {
    "paper": {},
    # Trains on titles within tens of minutes per model on one thread: smaller layers (100 instead
    # of 200 / 400x2 / 200), B = 256 users instead of 512, Adam's step 3e-3 (the paper does not give
    # one), an evaluation every 100 updates on 1,500 validation users with patience 8, and caps of
    # 6,000 (Embed) and 5,000 (GRU) updates instead of 20k. CTR and WMF keep the paper's K = 200.
    # At lr 1e-2 validation recall was noisy and early stopping fired within about one pass over
    # the likes (GRU below Embed); lr 3e-3 with caps of 4,000 / 3,000 (askgru_lr3e-3.md) gave the
    # paper's cold-start order but most runs reached the cap, hence the higher caps here.
    "reduced": {"emb_dim": 100, "hidden1": 100, "hidden2": 100, "batch_users": 256, "lr": 3e-3,
                "max_updates_embed": 6000, "max_updates_gru": 5000, "eval_every": 100, "patience": 8,
                "valid_users": 1500, "cbow_epochs": 5},
    # The pipeline end to end in minutes; the models are far from trained.
    "quick": {"lr": 1e-2, "emb_dim": 64, "hidden1": 64, "hidden2": 64, "max_updates_embed": 300,
              "max_updates_gru": 120, "eval_every": 30, "patience": 3, "ctr_k": 50, "ctr_iter": 4, "lda_iter": 10,
              "valid_users": 1500, "max_len": 100, "cbow_epochs": 5},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="course bench askgru", description=__doc__.split("\n\n")[0])
    p.add_argument("--fold", default="0",
                   help="fold 0-4, a list like 0,1, 'all', or 'none' (with --include-folds-from: only rewrite "
                        "the table, the notes and the figure from that file)")
    p.add_argument("--text", choices=("title", "title+abstract"), default="title")
    p.add_argument("--tier", default=None, choices=TIERS, help="data tier (default: full for title, small for title+abstract)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="paper",
                   help="paper: the paper's settings (default); reduced: smaller layers and batches that train "
                        "to early stopping on one CPU thread; quick: the pipeline in minutes. Options given "
                        "explicitly override the preset.")
    p.add_argument("--quick", action="store_true", help="same as --preset quick")
    p.add_argument("--models", default="Embed,Embed-MTL,GRU,GRU-MTL,CTR,CTR-MTL,WMF")
    p.add_argument("--emb-dim", type=positive_int, default=200, help="K_w = K (paper: 200)")
    p.add_argument("--hidden1", type=positive_int, default=400, help="first GRU layer, per direction (paper: 400)")
    p.add_argument("--hidden2", type=positive_int, default=200, help="second GRU layer = K (paper: 200)")
    p.add_argument("--batch-users", type=positive_int, default=512, help="B (paper: 512)")
    p.add_argument("--max-updates-embed", type=positive_int, default=20_000, help="paper: 20k")
    p.add_argument("--max-updates-gru", type=positive_int, default=20_000, help="paper: 20k")
    p.add_argument("--eval-every", type=positive_int, default=500)
    p.add_argument("--patience", type=positive_int, default=5)
    p.add_argument("--lambda-mtl", type=fraction, default=0.5, help="lambda of C = lambda C_R + (1-lambda) C_T")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--max-len", type=positive_int, default=300,
                   help="tokens kept per paper (the paper gives no cap; titles have at most 35 tokens)")
    p.add_argument("--min-tag-papers", type=positive_int, default=10, help="keep tags on >= this many papers (paper: 10)")
    p.add_argument("--no-pretrain", action="store_true", help="random word embeddings instead of CBOW")
    p.add_argument("--cbow-epochs", type=positive_int, default=20)
    p.add_argument("--ctr-k", type=positive_int, default=200, help="K of CTR and WMF (paper: 200)")
    p.add_argument("--ctr-iter", type=positive_int, default=10, help="ALS iterations")
    p.add_argument("--lda-iter", type=positive_int, default=20, help="LDA (batch variational) iterations")
    p.add_argument("--valid-users", type=nonnegative_int, default=0, help="validate on this many users (0 = all)")
    p.add_argument("--speed-updates", type=nonnegative_int, default=0,
                   help="also time this many GRU updates at the paper's sizes and at the run's sizes")
    p.add_argument("--speed-threads", default="1,2", help="torch thread counts for --speed-updates")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (the machine may be shared)")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--include-folds-from", action="append", default=None, metavar="JSON",
                   help="add the folds and models of an earlier result JSON with the same settings (read after "
                        "training; repeatable), so that folds or models can run as separate processes")
    p.add_argument("--name", default=None, help="result file name (default: askgru[_title_abstract][_PRESET])")
    args = p.parse_args(argv)
    if args.quick:
        args.preset = "quick"
    args.quick = args.preset == "quick"
    for k, v in PRESETS[args.preset].items():  # only the values the user did not set explicitly
        if getattr(args, k) == p.get_default(k):
            setattr(args, k, v)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in PAPER_TABLE1]
    if unknown:
        p.error(f"unknown models {unknown}; choose from {list(PAPER_TABLE1)}")
    return args


def _recall(scores, test, exclude=None, ks=(50, 100)) -> dict:
    from course_lib.evaluation import evaluate_ranking

    res = evaluate_ranking(scores, test, exclude=exclude, ks=ks, metrics=("recall",))
    return {k: v for k, v in res.items() if k.startswith("Recall@")}


def _validation_likes(val, n_users: int, seed: int) -> sp.csr_matrix:
    """The validation likes, restricted to ``n_users`` random users so that evaluating is cheap."""
    test = sp.csr_matrix(val.test)
    if n_users <= 0 or n_users >= test.shape[0]:
        return test
    keep = np.zeros(test.shape[0])
    keep[np.random.default_rng(seed).choice(test.shape[0], n_users, replace=False)] = 1
    return sp.csr_matrix(sp.diags(keep) @ test)


def _neural(name, args, prep, fold, val, kind, tags_train):
    from course_lib.torch_models import askgru as ag

    enc_kind, mtl = NEURAL[name]
    emb = prep["vectors"]
    if enc_kind == "embed":
        encoder = ag.EmbedEncoder(len(prep["vocab"]), args.emb_dim, embeddings=emb, seed=args.seed)
        max_updates = args.max_updates_embed
    else:
        encoder = ag.GRUEncoder(len(prep["vocab"]), args.emb_dim, args.hidden1, args.hidden2, embeddings=emb,
                                seed=args.seed)
        max_updates = args.max_updates_gru
    data = prep["data"]
    model = ag.AskGRU(encoder, data.n_users, data.n_papers, n_tags=prep["tags"].shape[1] if mtl else 0,
                      seed=args.seed)
    cold = kind == "cold"
    hist = ag.fit(
        model, val.train, prep["enc"], tags=tags_train if mtl else None,
        lambda_mtl=args.lambda_mtl if mtl else 1.0,
        valid_likes=_validation_likes(val, args.valid_users, args.seed),
        valid_papers=val.test_papers if cold else None,
        valid_exclude=None if cold else val.train,
        batch_users=args.batch_users, max_updates=max_updates, lr=args.lr, eval_every=args.eval_every,
        patience=args.patience, seed=args.seed, device=args.device, progress=True,
    )
    cand = fold.test_papers if cold else None
    fn = ag.score_fn(model, prep["enc"], papers=cand, device=args.device)
    test = fold.test[:, cand] if cold else fold.test
    out = {"recall": _recall(fn, test, None if cold else fold.train, ks=CURVE_M), "seconds": hist.seconds,
           "updates": f"{hist.best_update}/{hist.n_updates}", "examples_per_s": hist.examples_per_second,
           "early_stopped": hist.n_updates < max_updates}
    if mtl and cold:
        papers = prep["tag_test_papers"]
        out["tag"] = _recall(ag.tag_scores(model, prep["enc"], papers, device=args.device),
                             prep["tags"][papers], ks=(50,))["Recall@50"]
    return out


def _ctr(name, args, prep, fold, kind, tags_train):
    from course_lib.baselines import WMF
    from course_lib.ctr import CTR

    cold = kind == "cold"
    t0 = time.perf_counter()
    if name == "WMF":
        if cold:
            return None  # WMF has no vector for a paper without likes
        model = WMF(k=args.ctr_k, n_iter=args.ctr_iter, seed=args.seed).fit(fold.train)
        score = model.score_users
    else:
        model = CTR(k=args.ctr_k, n_iter=args.ctr_iter)
        model.fit(fold.train, prep["theta"], tags=tags_train if name == "CTR-MTL" else None, counts=prep["counts"],
                  beta=prep["beta"])
        score = model.score_users
    seconds = time.perf_counter() - t0 + (prep["lda_seconds"] if name != "WMF" else 0.0)
    cand = fold.test_papers if cold else np.arange(fold.train.shape[1])

    def fn(rows):
        return score(rows)[:, cand]

    test = fold.test[:, cand]
    out = {"recall": _recall(fn, test, None if cold else fold.train, ks=CURVE_M), "seconds": seconds,
           "updates": f"{args.ctr_iter} ALS it.", "examples_per_s": None}
    if name == "CTR-MTL" and cold:
        papers = prep["tag_test_papers"]
        out["tag"] = _recall(model.tag_scores(papers), prep["tags"][papers], ks=(50,))["Recall@50"]
    return out


def prepare(args) -> dict:
    """Data, text, tags, word vectors and (for CTR) topics, shared by every fold."""
    from course_lib.data import load_citeulike
    from course_lib.text import prepare_text
    from course_lib.torch_models.askgru import frequent_tags

    data = load_citeulike(args.tier or ("full" if args.text == "title" else "small"))
    texts = data.texts(args.text)
    vocab, enc = prepare_text(texts, min_count=5, max_len=args.max_len, allow_empty=True)
    tags, _ = frequent_tags(data.paper_tags, args.min_tag_papers)
    prep = {"data": data, "vocab": vocab, "enc": enc, "tags": tags, "vectors": None, "lda_seconds": 0.0}
    if args.fold == "none":  # nothing is trained: the table needs only the data's sizes
        return prep
    if not args.no_pretrain and any(m in NEURAL for m in args.models):
        from course_lib.text import tokenize
        from course_lib.word_vectors import train_cbow

        # CBOW on all the text we have (the paper used 440k ACM abstracts, which we do not have)
        docs = [tokenize(t) for t in data.texts("title+abstract")]
        prep["vectors"] = train_cbow(docs, vocab, dim=args.emb_dim, epochs=args.cbow_epochs, seed=args.seed).matrix
    if any(m.startswith("CTR") for m in args.models):
        from course_lib.ctr import ctr_counts, lda_topics

        t0 = time.perf_counter()
        prep["counts"], _ = ctr_counts(texts)
        prep["theta"], prep["beta"] = lda_topics(prep["counts"], n_topics=args.ctr_k, max_iter=args.lda_iter,
                                                 seed=args.seed, return_beta=True)
        prep["lda_seconds"] = time.perf_counter() - t0
    return prep


def run_fold(args, prep, f: int) -> dict:
    """Every model in warm and cold start on fold ``f``: ``{model: {"warm": ..., "cold": ...}}``."""
    from course_lib.splits import cold_start_folds, tag_split, validation_split, warm_start_folds

    data, tags = prep["data"], prep["tags"]
    results: dict = {m: {} for m in args.models}
    for kind, make in (("warm", warm_start_folds), ("cold", cold_start_folds)):
        fold = make(data.likes, n_folds=5, seed=args.seed)[f]
        val = validation_split(fold, frac=0.1, seed=args.seed)
        tags_train = tags
        if kind == "cold":
            # tags of test papers are unknown in cold start; validation papers are held out the same way
            hidden = np.concatenate([fold.test_papers, val.test_papers])
            tags_train = sp.csr_matrix(sp.diags(np.isin(np.arange(data.n_papers), hidden, invert=True)
                                                .astype(np.float32)) @ tags)
            _, prep["tag_test_papers"] = tag_split(tags, fold)
        for m in args.models:
            print(f"[askgru] fold {f} {kind:4s} {m} ...", flush=True)
            if m in NEURAL:
                res = _neural(m, args, prep, fold, val, kind, tags_train)
            else:
                res = _ctr(m, args, prep, fold, kind, tags_train)
            results[m][kind] = res
            if res is not None:
                print(f"[askgru]   Recall@50 {res['recall']['Recall@50']:.4f} in {res['seconds']:.0f} s", flush=True)
    return results


def speed_test(args, prep, n_updates: int) -> list[dict]:
    """Examples (user, paper pairs) per second of GRU training, on all the training likes with no
    evaluation, at the paper's sizes and at this run's sizes, for each of ``--speed-threads``."""
    import torch

    from course_lib.torch_models import askgru as ag

    data = prep["data"]
    sizes = {"paper": (ag.EMB_DIM, ag.HIDDEN1, ag.HIDDEN2, ag.BATCH_USERS),
             args.preset: (args.emb_dim, args.hidden1, args.hidden2, args.batch_users)}
    out = []
    for name, (emb, h1, h2, b) in sizes.items():
        for threads in (int(t) for t in str(args.speed_threads).split(",")):
            torch.set_num_threads(threads)
            model = ag.AskGRU(ag.GRUEncoder(len(prep["vocab"]), emb, h1, h2, seed=args.seed), data.n_users,
                              data.n_papers)
            hist = ag.fit(model, data.likes, prep["enc"], batch_users=b, max_updates=n_updates,
                          eval_every=n_updates + 1, seed=args.seed, device=args.device, progress=False)
            out.append({"sizes": name, "emb_dim": emb, "hidden1": h1, "hidden2": h2, "batch_users": b,
                        "threads": threads, "updates": n_updates, "examples_per_s": hist.examples_per_second,
                        "seconds_per_update": hist.seconds / n_updates,
                        "device": str(ag.resolve_device(args.device))})
    torch.set_num_threads(args.threads)
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


# settings that must agree before folds of two runs go into one table
_SAME = ("text", "tier", "preset", "emb_dim", "hidden1", "hidden2", "batch_users", "max_updates_embed",
         "max_updates_gru", "eval_every", "patience", "lambda_mtl", "lr", "max_len", "min_tag_papers", "no_pretrain",
         "cbow_epochs", "ctr_k", "ctr_iter", "lda_iter", "valid_users", "seed")


def _earlier_folds(args, path) -> dict:
    """``{"folds": [...], "per_fold": [...], "speed": ..., "run": ...}`` of an earlier result JSON."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise ValueError(f"--include-folds-from {path}: no such file; run the other folds first")
    blob = json.loads(path.read_text())
    if "per_fold" not in blob:
        raise ValueError(f"{path} has no per-fold results (written by an older version); run its folds again")
    old = blob["settings"]
    mine = {k: (",".join(v) if isinstance(v, list) else v) for k, v in vars(args).items()}
    differ = [f"{k}: {old.get(k)!r} there, {mine[k]!r} here" for k in _SAME if str(old.get(k)) != str(mine[k])]
    if differ:
        raise ValueError(f"{path} was run with other settings ({'; '.join(differ)}); its folds cannot join this table")
    old_folds = [int(f) for f in str(old["folds"]).split(",")]
    run = {k: old[k] for k in ("folds", "total_seconds", "load_average_1min_start", "load_average_1min_end",
                               "included_run") if k in old}
    return {"folds": old_folds, "per_fold": blob["per_fold"], "speed": blob.get("speed"), "run": run}


def result_name(args) -> str:
    """``askgru`` for the reduced preset on titles (the headline run), otherwise suffixed."""
    if args.name:
        return args.name
    name = "askgru" if args.text == "title" else "askgru_title_abstract"
    return name if args.preset == "reduced" else f"{name}_{args.preset}"


def plot_recall_at_m(curves: dict, path, title: str):
    """The paper's Figure 3: Recall@M against M for every model, warm and cold start side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_recall_vs_m

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind in zip(axes, ("warm", "cold")):
        lines = {m: {int(k.split("@")[1]): v for k, v in c[kind].items() if v is not None} for m, c in curves.items()}
        lines = {m: {k: v for k, v in c.items() if k >= 50} for m, c in lines.items()}  # Figure 3's range
        lines = {m: c for m, c in lines.items() if c}
        plot_recall_vs_m(lines, ax=ax, title=f"{kind} start")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    import os

    args = parse_args(argv)  # first: --help and a bad option answer without waiting for torch
    import torch

    torch.set_num_threads(args.threads)
    if args.fold == "none" and not args.include_folds_from:
        raise ValueError("--fold none trains nothing: give --include-folds-from JSON to rewrite its table")
    named = {"all": list(range(5)), "none": []}
    folds = named[args.fold] if args.fold in named else [int(f) for f in str(args.fold).split(",")]
    if any(not 0 <= f < 5 for f in folds):
        raise ValueError(f"--fold must be 0-4, a list like 0,1, 'all' or 'none'; got {args.fold}")
    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    prep = prepare(args)
    by_fold = {f: run_fold(args, prep, f) for f in folds}
    earlier = [_earlier_folds(args, path) for path in args.include_folds_from or []]
    for inc in earlier:  # models run here take precedence over the same models in an earlier file
        for f, res in zip(inc["folds"], inc["per_fold"]):
            by_fold[f] = {**res, **by_fold.get(f, {})}
    order = list(NEURAL) + ["CTR", "CTR-MTL", "WMF"]
    args.models = [m for m in order if m in args.models or any(m in res for res in by_fold.values())]
    folds = sorted(by_fold)
    per_fold = [by_fold[f] for f in folds]

    rows, curves = [], {}
    for m in args.models:
        def get(kind, key, sub=None):
            vals = []
            for res in per_fold:
                r = res.get(m, {}).get(kind)
                if r is None or key not in r:
                    vals.append(None)
                else:
                    vals.append(r[key][sub] if sub else r[key])
            return _mean(vals)

        def updates(kind):
            return " ".join((res.get(m, {}).get(kind) or {}).get("updates") or "-" for res in per_fold)

        pw, pc, pt = PAPER_TABLE1[m]
        rows.append({
            "model": m,
            "warm R@50": get("warm", "recall", "Recall@50"), "warm R@100": get("warm", "recall", "Recall@100"),
            "cold R@50": get("cold", "recall", "Recall@50"), "cold R@100": get("cold", "recall", "Recall@100"),
            "tag R@50": get("cold", "tag"),
            "paper warm R@50": None if pw is None else pw / 100, "paper cold R@50": None if pc is None else pc / 100,
            "paper tag R@50": None if pt is None else pt / 100,
            "train s (warm)": get("warm", "seconds"), "train s (cold)": get("cold", "seconds"),
            "updates best/done warm (per fold)": updates("warm"),
            "updates best/done cold (per fold)": updates("cold"),
            "examples/s (warm)": get("warm", "examples_per_s"), "examples/s (cold)": get("cold", "examples_per_s"),
        })
        curves[m] = {kind: {f"Recall@{k}": get(kind, "recall", f"Recall@{k}") for k in CURVE_M}
                     for kind in ("warm", "cold")}

    speed = speed_test(args, prep, args.speed_updates) if args.speed_updates else None
    if speed is None:
        speed = next((inc["speed"] for inc in earlier if inc["speed"]), None)
    notes = _notes(rows, args, prep, speed, per_fold)
    settings = {k: (v if not isinstance(v, list) else ",".join(v)) for k, v in vars(args).items()}
    settings.update({"folds": ",".join(map(str, folds)), "n_papers": prep["data"].n_papers,
                     "n_users": prep["data"].n_users, "n_tags_kept": prep["tags"].shape[1],
                     "vocab_size": len(prep["vocab"]), "total_seconds": round(time.perf_counter() - t_start),
                     "peak_memory_mib": round(peak_memory_mib()),
                     "load_average_1min_start": round(load_start, 2),
                     "load_average_1min_end": round(os.getloadavg()[0], 2)})
    if earlier:  # the runs that trained the included folds, with their time and load
        settings["included_run"] = [inc["run"] for inc in earlier]
    fold_text = ",".join(map(str, folds))
    title = f"Ask the GRU, Table 1 protocol on CiteULike-a ({args.text}, fold {fold_text}, preset {args.preset})"
    name = result_name(args)
    md, js = write_results(name, rows, settings, title=title, notes=notes, out_dir=args.out_dir)
    import json

    blob = json.loads(js.read_text())
    blob["recall_at_m"] = curves
    blob["per_fold"] = per_fold
    blob["speed"] = speed
    js.write_text(json.dumps(blob, indent=2, default=str))
    png = md.with_name(f"{name}_recall_at_m.png")
    plot_recall_at_m(curves, png, f"Recall@M on CiteULike-a ({args.text}, fold {fold_text}, preset {args.preset}; "
                                  f"the paper's Figure 3)")
    print(md.read_text())
    print(f"[askgru] figure: {png}")
    return 0


def _notes(rows, args, prep, speed, per_fold) -> str:
    by = {r["model"]: r for r in rows}

    def better(a, b, col):
        if a in by and b in by and by[a][col] is not None and by[b][col] is not None:
            return f"{a} {'>' if by[a][col] > by[b][col] else '<='} {b} ({by[a][col]:.4f} vs {by[b][col]:.4f})"
        return None

    checks = [better("GRU-MTL", "GRU", "cold R@50"), better("GRU", "Embed", "cold R@50"),
              better("Embed-MTL", "Embed", "cold R@50"), better("CTR-MTL", "CTR", "cold R@50"),
              better("GRU-MTL", "GRU", "warm R@50"), better("Embed-MTL", "Embed", "warm R@50"),
              better("CTR-MTL", "CTR", "warm R@50")]
    lines = [
        "Recall@M per user averaged over users (the paper's definition); warm start excludes each user's "
        "training papers; cold start ranks only the fold's held-out papers; tag R@50 is per test paper, "
        "cold start. The paper's numbers are % Recall@50 on CiteULike-a with full abstracts, shown as fractions.",
        "Paper's ordering on our data: " + "; ".join(c for c in checks if c) + ".",
    ]
    runs = [(m, kind, r) for res in per_fold for m, by_kind in res.items() for kind, r in by_kind.items()
            if r is not None and "early_stopped" in r]
    if runs:
        capped = [f"{m} {kind}" for m, kind, r in runs if not r["early_stopped"]]
        lines.append(f"Early stopping (patience {args.patience} evaluations, every {args.eval_every} updates) ended "
                     f"{len(runs) - len(capped)} of {len(runs)} neural runs before the update cap"
                     + (f"; these hit the cap: {', '.join(capped)}." if capped else "."))
    done = [int(str(r["updates"]).split("/")[1]) for _, _, r in runs]
    if done:
        n_likes = prep["data"].likes.nnz
        lines.append(f"The neural runs stopped after {min(done)}-{max(done)} updates of {args.batch_users} users "
                     f"(one positive each), i.e. {min(done) * args.batch_users / n_likes:.1f}-"
                     f"{max(done) * args.batch_users / n_likes:.1f} passes over all {n_likes:,} likes (a fold trains on "
                     "fewer), while the "
                     f"paper allows 20k updates of 512 users ({20_000 * 512 / n_likes:.0f} passes). Early stopping "
                     "fires when validation Recall@50 on the sampled users stops rising for "
                     f"{args.patience} evaluations, which at this budget also happens on noise: read these neural "
                     "numbers as under-trained, not as what the models can reach.")
    if args.preset != "paper":
        changed = {k: getattr(args, k) for k in PRESETS[args.preset]}
        lines.append(f"Preset `{args.preset}`: " + ", ".join(f"{k}={v}" for k, v in changed.items())
                     + "; everything else is the paper's setting.")
    if args.quick:
        lines.append("QUICK run: reduced sizes and far fewer updates than the paper (see settings); these "
                     "numbers show the pipeline works, not what the models reach when trained to convergence.")
    for sp_ in speed or []:
        lines.append(f"GRU training speed, {sp_['sizes']} sizes (K_w={sp_['emb_dim']}, {sp_['hidden1']}x2 -> "
                     f"{sp_['hidden2']}, B={sp_['batch_users']}), {sp_['threads']} thread(s) on {sp_['device']}: "
                     f"{sp_['examples_per_s']:.0f} examples/s ({sp_['seconds_per_update']:.2f} s per update of "
                     f"{2 * sp_['batch_users']} pairs, {sp_['updates']} updates).")
    lines.append("Times and examples/s were measured on a machine shared with other jobs (load averages in the "
                 "settings): they are lower bounds. Examples/s counts (user, paper) pairs of training updates, "
                 "without evaluation. WMF has no cold-start score (no vector for a paper without likes). Train s "
                 "for CTR include LDA.")
    return "\n\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
