"""``emo score``: score predictions against truth."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from emo.cli.options import pass_opts


def iter_jsonl(sources: tuple[str, ...]):
    """``(source, line number, object or None)`` for each non-blank line of JSONL files ('-': stdin)."""
    import orjson

    for src in sources or ("-",):
        f = sys.stdin.buffer if src == "-" else open(src, "rb")
        try:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    obj = None
                yield src, n, obj if isinstance(obj, dict) else None
        finally:
            if f is not sys.stdin.buffer:
                f.close()


def _records(sources: tuple[str, ...]):
    for src, n, obj in iter_jsonl(sources):
        # A line that is not a record still counts, as an error.
        yield obj if obj is not None else {"error": {"kind": "bad_line", "message": f"{src}:{n}"}}


def _table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(soft_wrap=True)
    for task, res in result.items():
        t = Table(title=f"emo score: {task}", box=None, pad_edge=False)
        t.add_column("metric")
        t.add_column("value", justify="right")
        for k, v in res["counts"].items():
            t.add_row(k, str(v))
        if task == "classify":
            for k in ("accuracy", "macro_f1"):
                t.add_row(k, _fmt(res.get(k)))
            if "distribution" in res:
                t.add_row("top1 (truth distribution argmax)", _fmt(res["distribution"]["top1"]))
                t.add_row("mean KL(truth || pred)", _fmt(res["distribution"]["kl"]))
            t.add_row(f"sentiment accuracy (n={res['sentiment']['n']})", _fmt(res["sentiment"]["accuracy"]))
            for c, v in res["per_class_tpr"].items():
                t.add_row(f"TPR {c}", _fmt(v))
        else:
            for dim in ("valence", "arousal"):
                for k in ("mse", "rmse", "pearson_r"):
                    t.add_row(f"{dim} {k}", _fmt(res[dim][k]))
        con.print(t)
        if task == "classify" and res["labels"]:
            m = Table(title="confusion (rows truth, columns predicted)", box=None, pad_edge=False)
            m.add_column("")
            for c in res["labels"]:
                m.add_column(c[:8], justify="right")
            for c, row in zip(res["labels"], res["confusion"]):
                m.add_row(c, *(str(v) for v in row))
            con.print(m)


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


@click.command()
@click.argument("predictions", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--task", type=click.Choice(["auto", "classify", "va"]), default="auto", show_default=True,
              help="What to score; auto scores every kind of prediction the records carry.")
@click.option("--truth", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Take truth (label, distribution, valence, arousal) from FILE's records, joined on path.")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True,
              help="json: one JSON object on stdout; table: rich tables.")
@pass_opts
def score(opts: dict[str, Any]) -> int:
    """Score predictions (emo classify / emo va output) against truth.

    Classification: accuracy, per-class true positive rate, macro-F1, confusion matrix,
    2-class accuracy through the sentiment mapping (truth: valence above/below 5 where given,
    else the label's polarity); with a truth distribution, top-1 against its argmax and the mean
    KL divergence. VA: MSE, RMSE and Pearson r for valence and arousal. Records with errors,
    no prediction or no truth are counted and reported.

    \b
    Examples:
      emo classify --root data < test.jsonl | emo score
      emo va --root data < test.jsonl | emo score --task va --format table
      emo score --truth test.jsonl predictions.jsonl
    """
    import orjson

    from emo.metrics import join_truth, score_classify, score_va

    records = list(_records(opts["predictions"]))
    if opts["truth"] is not None:
        records = list(join_truth(records, _records((str(opts["truth"]),))))
    task = opts["task"]
    result: dict[str, Any] = {}
    if task in ("auto", "classify") and (task == "classify" or any("emotion" in r for r in records)):
        result["classify"] = score_classify(records)
    if task in ("auto", "va") and (task == "va" or any("va" in r for r in records)):
        result["va"] = score_va(records)
    if not result:
        from emo.errors import UsageError

        raise UsageError("no record carries a prediction (emotion or va); pipe emo classify or emo va into emo score")
    if opts["fmt"] == "table":
        _table(result)
    else:
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.flush()
    return 0
