"""``course gru4rec``: train and evaluate GRU4Rec on any CSV/TSV of clicks, as the official code's
``run.py`` does, without writing Python.

    course gru4rec train --data clicks.tsv [--test test.tsv] [--save model.pt]
                         [--session-col SessionId] [--item-col ItemId] [--time-col Time]
                         [--params "loss=bpr-max,n_sample=2048,layers=100,n_epochs=5"]
    course gru4rec evaluate --model model.pt --data test.tsv [--cutoffs 5,10,20] [--ties average]

The same in Python::

    from course_lib.sessions import read_sessions
    from course_lib.torch_models.gru4rec import GRU4Rec
    from course_lib.evaluation import evaluate_sessions

    train = read_sessions("clicks.tsv", session_col="session", item_col="item", time_col="ts")
    model = GRU4Rec(loss="bpr-max", n_sample=2048).fit(train)
    model.save("model.pt")
    evaluate_sessions(GRU4Rec.load("model.pt"), read_sessions("test.tsv", ...), cutoffs=(20,))

``--params`` takes the names of ``GRU4Rec()`` (``layers`` as ``100`` or ``100/100``, ``embedding``
as a number or ``layersize``). Every error is one sentence with the fix, and exit code 2.
"""
from __future__ import annotations

import argparse
import inspect
import sys
import warnings


def _parse_params(text: str) -> dict:
    """``"loss=bpr-max,layers=100/100,n_sample=0"`` -> keyword arguments of ``GRU4Rec()``."""
    from course_lib.torch_models.gru4rec import GRU4Rec

    allowed = [n for n in inspect.signature(GRU4Rec).parameters if n != "self"]
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, val = (s.strip() for s in item.partition("="))
        if not sep or not key:
            raise ValueError(f"--params items look like name=value, got {item!r}")
        if key not in allowed:
            raise ValueError(f"--params: GRU4Rec has no option {key!r}; the options are {', '.join(allowed)}")
        if key == "layers":
            out[key] = [_number(v, key) for v in val.split("/")]
        elif val.lower() in ("true", "false"):
            out[key] = val.lower() == "true"
        elif key in ("loss", "final_act", "optimizer", "dropout_state", "device") or val == "layersize":
            out[key] = val
        else:
            out[key] = _number(val, key)
    return out


def _number(text: str, key: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"--params: {key} must be a number, got {text!r}") from None


def _cutoffs(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ValueError(f"--cutoffs must be positive list lengths such as 5,10,20, got {text!r}")
    return values


def _columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="CSV/TSV file of clicks (one row per click)")
    p.add_argument("--session-col", default="SessionId", help="column of session ids (default SessionId)")
    p.add_argument("--item-col", default="ItemId", help="column of item ids (default ItemId)")
    p.add_argument("--time-col", default="Time",
                   help="column of times, numbers or dates (default Time; 'none': the file's order)")
    p.add_argument("--sep", default=None, help="column separator (default: tab if the header has one, else comma)")


def _read(path, args):
    from course_lib.sessions import read_sessions

    time_col = None if str(args.time_col).lower() == "none" else args.time_col
    return read_sessions(path, args.session_col, args.item_col, time_col, args.sep)


def _report(res: dict, cutoffs) -> None:
    for k in cutoffs:
        print(f"Recall@{k}: {res[f'Recall@{k}']:.4f}  MRR@{k}: {res[f'MRR@{k}']:.4f}")
    print(f"{res['n_events']} test events in {res['n_sessions']} sessions scored against every training item "
          f"({res['n_unknown_dropped']} events of unknown items and {res['n_short_sessions_dropped']} "
          "sessions shorter than 2 dropped)")


def train(args) -> int:
    from course_lib.evaluation import evaluate_sessions
    from course_lib.torch_models.gru4rec import GRU4Rec

    params = _parse_params(args.params)
    cutoffs = _cutoffs(args.cutoffs)
    model = GRU4Rec(**params)  # every option checked before the data is read
    data = _read(args.data, args)
    test = _read(args.test, args) if args.test else None
    print(f"training GRU4Rec on {len(data)} clicks in {data['SessionId'].nunique()} sessions "
          f"({data['ItemId'].nunique()} items)")
    model.fit(data, progress=not args.quiet)
    for h in model.history:
        print(f"epoch {h['epoch']}: loss {h['loss']:.4f}, {h['events_per_s']:.0f} events/s")
    if args.save:
        model.save(args.save)
        print(f"saved to {args.save}; evaluate it with `course gru4rec evaluate --model {args.save} --data TEST`")
    if test is not None:
        _report(evaluate_sessions(model, test, cutoffs=cutoffs, ties=args.ties), cutoffs)
    return 0


def evaluate(args) -> int:
    from pathlib import Path

    from course_lib.evaluation import evaluate_sessions
    from course_lib.torch_models.gru4rec import GRU4Rec

    if not Path(args.model).is_file():
        raise ValueError(f"{args.model} does not exist: train and save a model with "
                         "`course gru4rec train --data FILE --save MODEL`")
    cutoffs = _cutoffs(args.cutoffs)
    model = GRU4Rec.load(args.model, device=args.device)
    _report(evaluate_sessions(model, _read(args.data, args), cutoffs=cutoffs, ties=args.ties), cutoffs)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="course gru4rec", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train GRU4Rec on a click file (and evaluate it on --test)")
    _columns(t)
    t.add_argument("--test", default=None, help="CSV/TSV of test clicks, same columns: evaluate after training")
    t.add_argument("--save", default=None, help="save the trained model to this file")
    t.add_argument("--params", default="", help="GRU4Rec options as name=value,name=value")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    e = sub.add_parser("evaluate", help="evaluate a saved model on a click file")
    _columns(e)
    e.add_argument("--model", required=True, help="a model saved by `course gru4rec train --save`")
    e.add_argument("--device", default="auto")
    for q in (t, e):
        q.add_argument("--cutoffs", default="5,10,20", help="list lengths K of Recall@K and MRR@K")
        q.add_argument("--ties", default="average", choices=("average", "optimistic", "pessimistic"))
    args = p.parse_args(argv)
    from course_lib.validation import AllocationTooLarge

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda msg, *a, **k: print(f"note: {msg}", file=sys.stderr)
            return train(args) if args.action == "train" else evaluate(args)
    except (ValueError, AllocationTooLarge, OSError) as exc:  # TrainingDiverged is a ValueError
        print(f"course gru4rec {args.action}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
