"""``emo score``: read predictions (and truth), score every task they carry, report.

The metrics are :mod:`emo.metrics`; this module decides what is scored (``--task``), joins truth
from another file (``--truth``, paths resolved against ``--root``), writes the result (JSON on
stdout or ``-o FILE``, or tables) and the exit code: a run that could score nothing says why on
stderr and does not exit 0. Lines of either file that are not JSON objects are counted (as
errors, or as truth without a path) and named on stderr: the first few of each file with their
line numbers, then how many more.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emo.assembly.progress import say
from emo.errors import EXIT_OK, EXIT_SOME_FAILED, UsageError
from emo.tasks import HEAD_TASKS, get_task


# Lines that are not JSON objects named one by one, per file; past these they are only counted.
SHOWN_BAD_LINES = 3
_PREVIEW_CHARS = 80


@dataclass
class BadLines:
    """The lines of one file that are not JSON objects: the first :data:`SHOWN_BAD_LINES` as
    ``(line number, start of the line)``, and how many there are. ``side`` is "predictions" or
    "truth", which decides what such a line counts as."""

    source: str
    side: str
    first: list[tuple[int, str]] = field(default_factory=list)
    count: int = 0

    def add(self, n: int, line: bytes) -> None:
        """Note line ``n`` (its bytes, without the newline)."""
        self.count += 1
        if len(self.first) < SHOWN_BAD_LINES:
            text = line[: _PREVIEW_CHARS * 4].decode("utf-8", "replace")
            # Control characters in a junk line must not steer the terminal that shows it.
            shown = "".join(c if c.isprintable() else "?" for c in text[:_PREVIEW_CHARS])
            self.first.append((n, shown + ("…" if len(line) > len(shown.encode()) else "")))

    def messages(self) -> list[str]:
        """What ``emo score`` says about them on stderr, one line each."""
        name = "stdin" if self.source == "-" else self.source
        out = [f"emo score: {name}:{n}: not a JSON object: {text}" for n, text in self.first]
        rest = self.count - len(self.first)
        one, many = (("an error", "errors") if self.side == "predictions"
                     else ("a truth record without a path", "truth records without a path"))
        if rest:
            more = "1 more line is not a JSON object" if rest == 1 else f"{rest} more lines are not JSON objects"
            out.append(f"emo score: {name}: {more}; all {self.count} count as {many}")
        elif self.count == 1:
            out.append(f"emo score: {name}: that line counts as {one}")
        else:
            out.append(f"emo score: {name}: those {self.count} lines count as {many}")
        return out


def _records(sources: Sequence[str], side: str = "predictions",
             bad: list[BadLines] | None = None) -> Iterator[dict[str, Any]]:
    """The records of ``sources``; a line that is not a record is noted in ``bad`` (one
    :class:`BadLines` per file that has any) and still counts, as an error record."""
    from emo.io.jsonl import iter_jsonl

    per_file: dict[str, BadLines] = {}

    def note(src: str, n: int, line: bytes) -> None:
        if bad is None:
            return
        if src not in per_file:
            per_file[src] = BadLines(src, side)
            bad.append(per_file[src])
        per_file[src].add(n, line)

    for src, n, obj in iter_jsonl(sources, on_bad=note):
        yield obj if obj is not None else {"error": {"kind": "bad_line", "message": f"{src}:{n}"}}


def _scorer(task: str):
    module, _, attr = get_task(task).scorer.partition(":")
    return getattr(importlib.import_module(module), attr)


def score(predictions: Sequence[str], task: str = "auto", truth: Path | None = None,
          root: Path | None = None, join: Any = None, bad: list[BadLines] | None = None) -> dict[str, Any]:
    """Scores of the records in ``predictions`` ('-': stdin) per task: ``{task: result}``.

    ``task`` "auto" scores every task whose predictions the records carry (every task, for their
    counts, when all records are error records or there are none). With ``truth``, truth
    fields come from that file's records, joined on paths resolved against ``root``; ``join`` (a
    :class:`emo.metrics.JoinCounts`) is told how the two sides met. ``bad`` is given a
    :class:`BadLines` for each file that holds lines that are not JSON objects.
    """
    from emo.metrics import join_truth

    records = list(_records(predictions, "predictions", bad))
    if truth is not None:
        records = list(join_truth(records, _records((str(truth),), "truth", bad), root, join))
    tasks = HEAD_TASKS if task == "auto" else (task,)
    result: dict[str, Any] = {}
    for name in tasks:
        key = get_task(name).output_key
        if task != "auto" or any(key in r for r in records):
            result[name] = _scorer(name)(records)
    if not result:
        if any("error" not in r for r in records):
            raise UsageError("no record carries a prediction (emotion or va); pipe emo classify or emo va into emo score")
        # Every input of the filter upstream failed (or there was none): nothing could be scored,
        # which is exit 1 with the counts, not a usage error.
        result = {name: _scorer(name)(records) for name in tasks}
    return result


def run_score(opts: dict[str, Any]) -> int:
    """``emo score`` with the command line's options; the exit code."""
    from emo.io.output import refuse_inputs
    from emo.metrics import JoinCounts, out_of_range, why_nothing_scored

    if opts["fmt"] == "table" and opts.get("output") is not None:
        raise UsageError("-o writes the JSON result; --format table is for a terminal (redirect it instead)")
    # Before anything is read: the result would replace the predictions or truth it came from.
    refuse_inputs(opts.get("output"), [*(opts["predictions"] or ("-",)), *([opts["truth"]] if opts["truth"] else [])],
                  "record files read")
    join = JoinCounts() if opts["truth"] is not None else None
    bad: list[BadLines] = []
    try:
        result = score(opts["predictions"], opts["task"], opts["truth"], opts["root"], join, bad)
    finally:
        # Said even when nothing could be scored: junk lines are often why.
        if not opts["quiet"]:
            for lines in bad:
                for line in lines.messages():
                    say(line)
    if opts["fmt"] == "table":
        _table(result, join.as_dict() if join is not None else None)
    else:
        _write({**result, "join": join.as_dict()} if join is not None else result, opts.get("output"))
    if not opts["quiet"]:
        for name in out_of_range(result):
            say(f"emo score: {name}: the squared error is past float64's range (a value near 1e308?); "
                "the mean squared error is written as null")
    why = why_nothing_scored(result, join, opts["root"])
    if why is not None:
        if not opts["quiet"]:
            say(f"emo score: {why}")
        return EXIT_SOME_FAILED
    return EXIT_OK


def _write(result: dict[str, Any], output: Path | None) -> None:
    """The result as one JSON line on stdout, or in ``output`` (replaced only once it is written)."""
    from emo.assembly.runner import stdout_writer
    from emo.io.output import OutputFile

    if output is None or str(output) == "-":
        stdout_writer().write([result])
        return
    out = OutputFile(output)
    writer = out.open()
    try:
        writer.write([result])
    except BaseException:
        out.abort()
        raise
    out.commit()


def _table(result: dict[str, Any], join: dict[str, int] | None = None) -> None:
    """The result as rich tables: every count the JSON carries, so a reader of the table learns
    as much about what was (not) scored, including how --truth matched and how many predictions
    were uncertain (scored on their best class)."""
    from rich.table import Table

    from emo.io.writer import table_console

    con = table_console(soft_wrap=True)
    if join is not None:
        j = Table(title="emo score: --truth join", box=None, pad_edge=False)
        j.add_column("count")
        j.add_column("value", justify="right")
        for k, v in join.items():
            j.add_row(k, str(v))
        con.print(j)
    for task, res in result.items():
        t = Table(title=f"emo score: {task}", box=None, pad_edge=False)
        t.add_column("metric")
        t.add_column("value", justify="right")
        for k, v in res["counts"].items():
            t.add_row(k, str(v))
        if not get_task(task).regression:
            t.add_row("uncertain (scored on best)", str(res.get("uncertain", 0)))
            for k in ("accuracy", "macro_f1"):
                t.add_row(k, _fmt(res.get(k)))
            if "distribution" in res:
                t.add_row("top1 (truth distribution argmax)", _fmt(res["distribution"]["top1"]))
                t.add_row("mean KL(truth || pred)", _fmt(res["distribution"]["kl"]))
            t.add_row(f"sentiment accuracy (n={res['sentiment']['n']})", _fmt(res["sentiment"]["accuracy"]))
            for c, v in res["per_class_tpr"].items():
                t.add_row(_plain(f"TPR {c}"), _fmt(v))
        else:
            for dim in get_task(task).outputs:
                for k in ("mse", "rmse", "pearson_r"):
                    t.add_row(f"{dim} {k}", _fmt(res[dim][k]))
        con.print(t)
        if not get_task(task).regression and res["labels"]:
            m = Table(title="confusion (rows truth, columns predicted)", box=None, pad_edge=False)
            m.add_column("")
            for c in res["labels"]:
                m.add_column(_plain(c[:8]), justify="right")
            for c, row in zip(res["labels"], res["confusion"]):
                m.add_row(_plain(c), *(str(v) for v in row))
            con.print(m)


def _plain(label: str):
    """A label from the records as literal text: rich must not read ``[red]`` or ``[/x]`` in it as
    markup (a tag that closes nothing raised), and control characters must not steer the terminal."""
    from rich.text import Text

    return Text("".join(c if c.isprintable() else "?" for c in label))


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
