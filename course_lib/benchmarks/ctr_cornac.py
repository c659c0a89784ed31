"""Our CTR beside cornac's CTR on the same CiteULike-a split, text and settings.

``python -m course_lib.benchmarks.ctr_cornac --cornac-python VENV/bin/python`` builds warm- and
cold-start fold ``--fold`` (the Ask-the-GRU protocol), the bag of words of :func:`course_lib.ctr.ctr_counts`,
and trains with ``K``, ``lambda_u``, ``lambda_v``, ``a``, ``b`` and the number of iterations the same:

* cornac's ``CTR`` (it starts from random topic proportions and topics and updates them), run by
  the interpreter of ``--cornac-python`` (or this one, if cornac is importable here) on the same
  training matrix and the same word counts; cornac is never a dependency of the course;
* ours started the same way (``CTR(...).fit(R, counts=counts)``): the like-for-like comparison;
* ours started from LDA (the paper), with the topics updated and kept fixed, and with
  scikit-learn's default Dirichlet prior ``1/K`` (the CTR of the project before this comparison).

Every model is scored by the course's evaluation: ``u_i . v_j`` in warm start (training papers
excluded), ``u_i . theta_j`` for the cold papers (out-of-matrix, Wang and Blei section 4.3; cornac
itself scores them with its ``v_j``, also reported). Without cornac the cornac row is skipped with a
message. The table goes to ``benchmarks/results/ctr_cornac.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KS = (50, 100)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="course bench ctr-cornac", description=__doc__.split("\n\n")[0])
    p.add_argument("--text", choices=("title", "title+abstract"), default="title+abstract")
    p.add_argument("--tier", default=None, help="data tier (default: full for title, small for title+abstract)")
    p.add_argument("--fold", type=int, default=0, choices=range(5))
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--lambda-u", type=float, default=0.01)
    p.add_argument("--lambda-v", type=float, default=100.0)
    p.add_argument("--a", type=float, default=1.0)
    p.add_argument("--b", type=float, default=0.01)
    p.add_argument("--n-iter", type=int, default=10)
    p.add_argument("--lda-iter", type=int, default=20)
    p.add_argument("--curve", default="",
                   help="also train ours from a random start for these numbers of iterations, e.g. 20,40")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cornac-python", default=None,
                   help="a Python interpreter that can import cornac (e.g. a separate venv); default: this one")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--name", default="ctr_cornac")
    return p.parse_args(argv)


def _cornac_python(args) -> tuple[str | None, str]:
    """The interpreter to run cornac with and its version, or ``(None, reason)``."""
    python = args.cornac_python or sys.executable
    probe = subprocess.run([python, "-c", "import cornac; print(cornac.__version__)"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None, (f"cornac cannot be imported by {python}; install it outside the course environment "
                      "(python -m venv cornac-venv && cornac-venv/bin/pip install cornac) and pass "
                      "--cornac-python cornac-venv/bin/python")
    return python, probe.stdout.strip()


def run_cornac_worker(in_path: str, out_path: str) -> None:
    """Train cornac's CTR on the matrices in ``in_path`` (runs inside the cornac interpreter)."""
    from collections import OrderedDict

    import cornac
    import scipy.sparse as sp
    from cornac.data import Dataset, TextModality
    from cornac.data.text import BaseTokenizer

    z = np.load(in_path)
    s = json.loads(str(z["settings"]))
    train = sp.csr_matrix((z["train_data"], z["train_indices"], z["train_indptr"]), shape=tuple(z["train_shape"])).tocoo()
    counts = sp.csr_matrix((z["counts_data"], z["counts_indices"], z["counts_indptr"]), shape=tuple(z["counts_shape"]))
    n_users, n_items = train.shape

    class WordIds(BaseTokenizer):
        """Our documents are already word ids separated by spaces: no lower-casing or filtering."""

        def tokenize(self, t):
            return t.split()

    # every paper is an item, with or without training likes, so cold papers get a vector too
    docs = [" ".join(f"w{w}" for w, c in zip(counts[j].indices, counts[j].data) for _ in range(int(c)))
            for j in range(n_items)]
    uid = OrderedDict((i, i) for i in range(n_users))
    iid = OrderedDict((j, j) for j in range(n_items))
    data = Dataset(n_users, n_items, uid, iid, (train.row.astype(int), train.col.astype(int), np.ones(train.nnz)),
                   seed=s["seed"])
    text = TextModality(corpus=docs, ids=list(range(n_items)), tokenizer=WordIds(), max_vocab=None, max_doc_freq=1.0)
    text.build(id_map=iid)
    if int(text.count_matrix.sum()) != int(counts.sum()):
        raise SystemExit("cornac's bag of words differs from ours; the comparison would not be like for like")
    data.add_modalities(item_text=text)
    model = cornac.models.CTR(k=s["k"], lambda_u=s["lambda_u"], lambda_v=s["lambda_v"], a=s["a"], b=s["b"],
                              max_iter=s["n_iter"], seed=s["seed"], verbose=False)
    t0 = time.perf_counter()
    model.fit(data)
    np.savez(out_path, U=model.U, V=model.V, theta=model.model.theta, seconds=time.perf_counter() - t0)


def _run_cornac(python: str, train, counts, settings: dict) -> dict:
    import scipy.sparse as sp

    train, counts = sp.csr_matrix(train), sp.csr_matrix(counts)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, settings=json.dumps(settings), train_data=train.data, train_indices=train.indices,
                 train_indptr=train.indptr, train_shape=train.shape, counts_data=counts.data,
                 counts_indices=counts.indices, counts_indptr=counts.indptr, counts_shape=counts.shape)
        done = subprocess.run([python, __file__, "--worker", str(src), str(dst)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"cornac's CTR failed:\n{done.stderr[-2000:]}")
        z = np.load(dst)
        return {"U": z["U"], "V": z["V"], "theta": z["theta"], "seconds": float(z["seconds"])}


def _recall(scores, test, exclude=None) -> dict:
    from course_lib.evaluation import evaluate_ranking

    res = evaluate_ranking(scores, test, exclude=exclude, ks=KS, metrics=("recall",))
    return {k: float(v) for k, v in res.items() if k.startswith("Recall@")}


def _score(kind: str, fold, U, V, theta) -> tuple[dict, dict | None]:
    """Recall with ``V`` for warm start; with ``theta`` (and, for cornac, also ``V``) on cold papers."""
    if kind == "warm":
        return _recall(U @ V.T, fold.test, fold.train), None
    cand = fold.test_papers
    by_theta = _recall(U @ theta[cand].T, fold.test[:, cand])
    return by_theta, _recall(U @ V[cand].T, fold.test[:, cand])


def main(argv=None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--worker":
        run_cornac_worker(sys.argv[2], sys.argv[3])
        return 0
    args = parse_args(argv)
    from threadpoolctl import threadpool_limits

    from course_lib.benchmarks.common import write_results
    from course_lib.ctr import CTR, ctr_counts, lda_topics
    from course_lib.data import load_citeulike
    from course_lib.splits import cold_start_folds, warm_start_folds

    t_start = time.perf_counter()
    data = load_citeulike(args.tier or ("full" if args.text == "title" else "small"))
    counts, words = ctr_counts(data.texts(args.text))
    python, cornac_version = _cornac_python(args)
    if python is None:
        print(f"[ctr_cornac] skipping cornac: {cornac_version}", flush=True)
    settings = {"k": args.k, "lambda_u": args.lambda_u, "lambda_v": args.lambda_v, "a": args.a, "b": args.b,
                "n_iter": args.n_iter, "seed": args.seed}
    t0 = time.perf_counter()
    lda = {prior: lda_topics(counts, n_topics=args.k, max_iter=args.lda_iter, seed=args.seed, doc_topic_prior=prior,
                             return_beta=True) for prior in (1.0, 1.0 / args.k)}
    lda_seconds = (time.perf_counter() - t0) / 2
    ours = {
        "ours, random start, topics updated (as cornac)": lambda R: CTR(**settings).fit(R, counts=counts),
        "ours, LDA start (prior 1), topics updated": lambda R: CTR(**settings).fit(R, lda[1.0][0], counts=counts,
                                                                                  beta=lda[1.0][1]),
        "ours, LDA start (prior 1), topics fixed": lambda R: CTR(**settings).fit(R, lda[1.0][0]),
        "ours, LDA prior 1/K, topics fixed (the project's CTR before)": lambda R: CTR(**settings).fit(
            R, lda[1.0 / args.k][0]),
    }
    for n in (int(n) for n in args.curve.split(",") if n.strip()):
        ours[f"ours, random start, topics updated, {n} iterations"] = (
            lambda R, n=n: CTR(**{**settings, "n_iter": n}).fit(R, counts=counts))
    results: dict = {}
    for kind, make in (("warm", warm_start_folds), ("cold", cold_start_folds)):
        fold = make(data.likes, n_folds=5, seed=args.seed)[args.fold]
        if python is not None:
            print(f"[ctr_cornac] {kind}: cornac {cornac_version} ...", flush=True)
            c = _run_cornac(python, fold.train, counts, settings)
            rec, by_v = _score(kind, fold, c["U"], c["V"], c["theta"])
            results.setdefault(f"cornac {cornac_version} CTR", {})[kind] = {
                "recall": rec, "recall_by_v": by_v, "seconds": c["seconds"], "max_theta": _max_theta(c["theta"])}
        for name, fit in ours.items():
            print(f"[ctr_cornac] {kind}: {name} ...", flush=True)
            t0 = time.perf_counter()
            with threadpool_limits(limits=1, user_api="blas"):
                model = fit(fold.train)
            seconds = time.perf_counter() - t0 + (0.0 if name.startswith("ours, random") else lda_seconds)
            rec, _ = _score(kind, fold, model.U, model.V, model.theta)
            results.setdefault(name, {})[kind] = {"recall": rec, "seconds": seconds, "max_theta": _max_theta(model.theta)}
            print(f"[ctr_cornac]   Recall@50 {rec['Recall@50']:.4f} in {seconds:.0f} s", flush=True)

    rows = []
    for name, r in results.items():
        rows.append({"model": name, **{f"{kind} R@{k}": r[kind]["recall"][f"Recall@{k}"]
                                       for kind in ("warm", "cold") for k in KS},
                     "cold R@50 scored by v_j": (r["cold"].get("recall_by_v") or {}).get("Recall@50"),
                     "mean largest theta_jk (warm)": r["warm"]["max_theta"],
                     "train s (warm)": r["warm"]["seconds"], "train s (cold)": r["cold"]["seconds"]})
    notes = _notes(rows, args, cornac_version if python else None, lda_seconds)
    run = {**vars(args), "n_papers": data.n_papers, "n_users": data.n_users, "n_words": len(words),
           "cornac": cornac_version if python else "not run", "total_seconds": round(time.perf_counter() - t_start)}
    title = f"CTR: ours and cornac's on CiteULike-a ({args.text}, fold {args.fold}, K={args.k}, {args.n_iter} iterations)"
    md, _ = write_results(args.name, rows, run, title=title, notes=notes, out_dir=args.out_dir)
    print(md.read_text())
    return 0


def _max_theta(theta) -> float:
    """How peaked the topic proportions are: the largest proportion of a paper, averaged."""
    return float(np.mean(np.max(theta, axis=1)))


def _notes(rows, args, cornac_version, lda_seconds) -> str:
    by = {r["model"]: r for r in rows}
    lines = [
        f"Same split (fold {args.fold}, warm and cold start), same bag of words (ctr_counts: "
        f"8,000 words by TF-IDF), K={args.k}, lambda_u={args.lambda_u}, lambda_v={args.lambda_v}, a={args.a}, "
        f"b={args.b}, {args.n_iter} iterations, seed {args.seed}. Cold papers are scored with theta_j "
        "(Wang and Blei's out-of-matrix rule); the column 'scored by v_j' is what cornac's own score() ranks.",
    ]
    twin = "ours, random start, topics updated (as cornac)"
    if cornac_version is not None:
        c = by[f"cornac {cornac_version} CTR"]
        gap = abs(by[twin]["warm R@50"] - c["warm R@50"])
        lines.append(f"Warm Recall@50: ours {by[twin]['warm R@50']:.4f}, cornac {c['warm R@50']:.4f}, difference "
                     f"{gap:.4f} ({'within' if gap <= 0.02 else 'NOT within'} 0.02).")
    lines.append(
        "Both start from random topic proportions theta and topics beta (cornac has no way to start from a topic "
        "model) and take one projected gradient step on each theta_j per iteration, so after a few iterations "
        "theta is still nearly uniform (column 'mean largest theta_jk'; 1/K = "
        f"{1 / args.k:.4f}): theta_j hardly constrains v_j and warm start behaves like WMF. The rows with more "
        "iterations (--curve) show what happens as theta sharpens. The LDA rows start from a topic model, as "
        "the paper does; with scikit-learn's default Dirichlet prior 1/K theta is nearly one-hot and pins v_j.")
    lines.append(f"Train seconds include LDA ({lda_seconds:.0f} s per prior) for the LDA starts; one BLAS thread for "
                 "ours; cornac's loops run in Python. The machine was shared with other jobs: times are rough.")
    return "\n\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
