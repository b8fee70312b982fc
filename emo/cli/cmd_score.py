"""``emo score``: score predictions against truth."""

from __future__ import annotations

from typing import Any

import click

from emo.cli.options import FILE, FOLDER, pass_opts
from emo.tasks import HEAD_TASKS


@click.command()
@click.argument("predictions", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--task", type=click.Choice(["auto", *HEAD_TASKS]), default="auto", show_default=True,
              help="What to score; auto scores every kind of prediction the records carry.")
@click.option("--truth", type=FILE, default=None,
              help="Take truth (label, distribution, valence, arousal) from FILE's records, joined on their "
                   "paths resolved against --root.")
@click.option("--root", type=FOLDER, default=None,
              help="Resolve the truth records' relative paths against this folder, as the filters resolve "
                   "their inputs [default: current folder].")
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True,
              help="json: one JSON object on stdout; table: rich tables.")
@click.option("-o", "--output", type=FILE, default=None, help="Write the JSON result to FILE instead of stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr, not even why nothing could be scored.")
@pass_opts
def score(opts: dict[str, Any]) -> int:
    """Score predictions (emo classify / emo va output) against truth.

    Classification: accuracy, per-class true positive rate, macro-F1, confusion matrix,
    2-class accuracy through the sentiment mapping (truth: valence above/below 5 where given,
    else the label's polarity); with a truth distribution, top-1 against its argmax and the mean
    KL divergence. VA: MSE, RMSE and Pearson r for valence and arousal. Records with errors,
    no prediction or no truth are counted and reported. Exit 1 when no record could be scored.

    \b
    Examples:
      emo classify --root data < test.jsonl | emo score
      emo va --root data < test.jsonl | emo score --task va --format table
      emo classify -r data | emo score --truth data/test.jsonl --root data
    """
    from emo.assembly.score_recipe import run_score

    return run_score(opts)
