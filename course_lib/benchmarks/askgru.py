"""``course bench askgru``: Table 1 of Ask the GRU (Bansal et al. 2016) on our CiteULike-a text.

For one fold (``--fold 0``) or all five (``--fold all``) this trains Embed, Embed-MTL, GRU and GRU-MTL
(PyTorch), CTR and CTR-MTL (LDA + ALS) and WMF, in warm start and cold start (section 4.1), and
writes warm / cold Recall@50 and @100, tag-prediction Recall@50 (cold start, per paper), the
paper's numbers beside ours, the training time of every model and the settings to
``benchmarks/results/askgru.md`` and ``.json`` (``askgru_title_abstract.*`` for ``--text title+abstract``),
with Recall@M for M up to 300 (the paper's Figure 3) in the JSON.

Two text settings (``--text``): ``title`` on all 16,980 papers (tier ``full``), and
``title+abstract`` on the 1,929 papers that have an abstract (tier ``small``). The paper read full
abstracts of all papers, so absolute numbers differ.

The paper's settings are the defaults; ``--quick`` shrinks dimensions, updates and ALS iterations
so that one fold runs in minutes on a shared 2-core CPU (the table says which settings were used).
``--speed-updates N`` also times N updates of the GRU at the paper's sizes (examples per second).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import torch

from course_lib.benchmarks.common import peak_memory_mib, write_results

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
CURVE_M = (10, 20, 50, 100, 150, 200, 250, 300)
QUICK = {"lr": 1e-2, "emb_dim": 64, "hidden1": 64, "hidden2": 64, "max_updates_embed": 300, "max_updates_gru": 120,
         "eval_every": 30, "patience": 3, "ctr_k": 50, "ctr_iter": 4, "lda_iter": 10, "valid_users": 1500,
         "max_len": 100, "cbow_epochs": 5}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="course bench askgru", description=__doc__.split("\n\n")[0])
    p.add_argument("--fold", default="0", help="fold 0-4, or 'all' (default 0)")
    p.add_argument("--text", choices=("title", "title+abstract"), default="title")
    p.add_argument("--tier", default=None, help="data tier (default: full for title, small for title+abstract)")
    p.add_argument("--quick", action="store_true", help="reduced sizes: one fold in minutes on a small CPU")
    p.add_argument("--models", default="Embed,Embed-MTL,GRU,GRU-MTL,CTR,CTR-MTL,WMF")
    p.add_argument("--emb-dim", type=int, default=200, help="K_w = K (paper: 200)")
    p.add_argument("--hidden1", type=int, default=400, help="first GRU layer, per direction (paper: 400)")
    p.add_argument("--hidden2", type=int, default=200, help="second GRU layer = K (paper: 200)")
    p.add_argument("--batch-users", type=int, default=512, help="B (paper: 512)")
    p.add_argument("--max-updates-embed", type=int, default=20_000, help="paper: 20k")
    p.add_argument("--max-updates-gru", type=int, default=20_000, help="paper: 20k")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--lambda-mtl", type=float, default=0.5, help="lambda of C = lambda C_R + (1-lambda) C_T")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-len", type=int, default=300, help="tokens kept per paper")
    p.add_argument("--min-tag-papers", type=int, default=10, help="keep tags on >= this many papers (paper: 10)")
    p.add_argument("--no-pretrain", action="store_true", help="random word embeddings instead of CBOW")
    p.add_argument("--cbow-epochs", type=int, default=20)
    p.add_argument("--ctr-k", type=int, default=200, help="K of CTR and WMF (paper: 200)")
    p.add_argument("--ctr-iter", type=int, default=10, help="ALS iterations")
    p.add_argument("--lda-iter", type=int, default=20, help="LDA (batch variational) iterations")
    p.add_argument("--valid-users", type=int, default=0, help="validate on this many users (0 = all)")
    p.add_argument("--speed-updates", type=int, default=0, help="time this many GRU updates at paper sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    p.add_argument("--out-dir", default=None)
    args = p.parse_args(argv)
    if args.quick:  # only the values the user did not set explicitly
        for k, v in QUICK.items():
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
           "updates": f"{hist.best_update}/{hist.n_updates}", "examples_per_s": hist.examples_per_second}
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
        model.fit(fold.train, prep["theta"], tags=tags_train if name == "CTR-MTL" else None)
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
    if not args.no_pretrain and any(m in NEURAL for m in args.models):
        from course_lib.text import tokenize
        from course_lib.word_vectors import train_cbow

        # CBOW on all the text we have (the paper used 440k ACM abstracts, which we do not have)
        docs = [tokenize(t) for t in data.texts("title+abstract")]
        prep["vectors"] = train_cbow(docs, vocab, dim=args.emb_dim, epochs=args.cbow_epochs, seed=args.seed).matrix
    if any(m.startswith("CTR") for m in args.models):
        from course_lib.ctr import ctr_counts, lda_topics

        t0 = time.perf_counter()
        counts, _ = ctr_counts(texts)
        prep["theta"] = lda_topics(counts, n_topics=args.ctr_k, max_iter=args.lda_iter, seed=args.seed)
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


def speed_test(args, prep, n_updates: int) -> dict:
    """Examples (user, paper pairs) per second of GRU training at the paper's sizes."""
    from course_lib.torch_models import askgru as ag

    data = prep["data"]
    model = ag.AskGRU(ag.GRUEncoder(len(prep["vocab"]), seed=args.seed), data.n_users, data.n_papers)
    hist = ag.fit(model, data.likes, prep["enc"], max_updates=n_updates, eval_every=n_updates + 1,
                  seed=args.seed, device=args.device, progress=False)
    return {"updates": n_updates, "examples_per_s": hist.examples_per_second,
            "seconds_per_update": hist.seconds / n_updates, "device": str(ag.resolve_device(args.device))}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    folds = list(range(5)) if args.fold == "all" else [int(args.fold)]
    if any(not 0 <= f < 5 for f in folds):
        raise ValueError(f"--fold must be 0-4 or 'all', got {args.fold}")
    t_start = time.perf_counter()
    prep = prepare(args)
    per_fold = [run_fold(args, prep, f) for f in folds]

    rows, curves = [], {}
    for m in args.models:
        def get(kind, key, sub=None):
            vals = []
            for res in per_fold:
                r = res[m].get(kind)
                if r is None or key not in r:
                    vals.append(None)
                else:
                    vals.append(r[key][sub] if sub else r[key])
            return _mean(vals)

        pw, pc, pt = PAPER_TABLE1[m]
        rows.append({
            "model": m,
            "warm R@50": get("warm", "recall", "Recall@50"), "warm R@100": get("warm", "recall", "Recall@100"),
            "cold R@50": get("cold", "recall", "Recall@50"), "cold R@100": get("cold", "recall", "Recall@100"),
            "tag R@50": get("cold", "tag"),
            "paper warm R@50": None if pw is None else pw / 100, "paper cold R@50": None if pc is None else pc / 100,
            "paper tag R@50": None if pt is None else pt / 100,
            "train s (warm)": get("warm", "seconds"), "train s (cold)": get("cold", "seconds"),
            "updates best/done (cold, last fold)": (per_fold[-1][m].get("cold") or {}).get("updates"),
            "examples/s": get("cold", "examples_per_s"),
        })
        curves[m] = {kind: {f"Recall@{k}": get(kind, "recall", f"Recall@{k}") for k in CURVE_M}
                     for kind in ("warm", "cold")}

    speed = speed_test(args, prep, args.speed_updates) if args.speed_updates else None
    notes = _notes(rows, args, prep, speed)
    settings = {k: (v if not isinstance(v, list) else ",".join(v)) for k, v in vars(args).items()}
    settings.update({"folds": ",".join(map(str, folds)), "n_papers": prep["data"].n_papers,
                     "n_users": prep["data"].n_users, "n_tags_kept": prep["tags"].shape[1],
                     "vocab_size": len(prep["vocab"]), "total_seconds": round(time.perf_counter() - t_start),
                     "peak_memory_mib": round(peak_memory_mib())})
    title = f"Ask the GRU, Table 1 protocol on CiteULike-a ({args.text}, fold {args.fold}{', quick' if args.quick else ''})"
    # one file per text setting, so that both can sit side by side
    name = "askgru" if args.text == "title" else "askgru_title_abstract"
    md, js = write_results(name, rows, settings, title=title, notes=notes, out_dir=args.out_dir)
    import json

    blob = json.loads(js.read_text())
    blob["recall_at_m"] = curves
    blob["speed_paper_sizes"] = speed
    js.write_text(json.dumps(blob, indent=2, default=str))
    print(md.read_text())
    return 0


def _notes(rows, args, prep, speed) -> str:
    by = {r["model"]: r for r in rows}

    def better(a, b, col):
        if a in by and b in by and by[a][col] is not None and by[b][col] is not None:
            return f"{a} {'>' if by[a][col] > by[b][col] else '<='} {b} ({by[a][col]:.4f} vs {by[b][col]:.4f})"
        return None

    checks = [better("GRU-MTL", "GRU", "cold R@50"), better("GRU", "Embed", "cold R@50"),
              better("Embed-MTL", "Embed", "cold R@50"), better("CTR-MTL", "CTR", "cold R@50"),
              better("GRU-MTL", "GRU", "warm R@50"), better("Embed-MTL", "Embed", "warm R@50")]
    lines = [
        "Recall@M per user averaged over users (the paper's definition); warm start excludes each user's "
        "training papers; cold start ranks only the fold's held-out papers; tag R@50 is per test paper, "
        "cold start. The paper's numbers are % Recall@50 on CiteULike-a with full abstracts, shown as fractions.",
        "Paper's ordering on our data: " + "; ".join(c for c in checks if c) + ".",
    ]
    if args.quick:
        lines.append("QUICK run: reduced sizes and far fewer updates than the paper (see settings); these "
                     "numbers show the pipeline works, not what the models reach when trained to convergence.")
    if speed:
        lines.append(f"GRU training speed at the paper's sizes (K_w=200, 400x2 -> 200, B=512) on "
                     f"{speed['device']}: {speed['examples_per_s']:.0f} examples/s "
                     f"({speed['seconds_per_update']:.1f} s per update of {2 * args.batch_users} pairs).")
    lines.append("WMF has no cold-start score (no vector for a paper without likes). Train s for CTR include LDA.")
    return "\n\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
