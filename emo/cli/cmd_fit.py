"""``emo fit``: train a head on labelled records and write a head file."""

from __future__ import annotations

from typing import Any

import click

from emo.tasks import HEAD_TASKS, TASKS
from emo.cli.options import FILE, FOLDER, backbone_option, cache_options, decode_options, engine_options, pass_opts

_LOSS_HELP = ("ce: cross-entropy on the label (Rao et al. eq. 7); multi: (1-lambda) CE + lambda KL to the "
              "record's distribution, else eq. 4's over Mikels' wheel (eq. 6); prob: the label weighted by its "
              "probability (eq. 10-11). va heads train with squared error (mse).")


def _complete_label_sets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.emotions import LABEL_SETS

    return [n for n in LABEL_SETS if n.startswith(incomplete)]


def _complete_groups(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.features import ALL_GROUPS

    done, _, last = incomplete.rpartition(",")
    return [(done + "," if done else "") + g for g in (*ALL_GROUPS, "regions") if g.startswith(last)]


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value.strip().lower() in ("", "none", "linear"):
        return ()
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("give layer sizes like 3000,1000,500 (or 'none' for a linear head)") from None
    if any(v < 1 or v > 1 << 16 for v in out):
        raise click.BadParameter("layer sizes must be between 1 and 65536")
    return out


# Training runs in float32: a rate or decay past its range overflows inside the optimizer.
_FLOAT32_MAX = 3.4028234663852886e38


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # inf or nan trained a head of NaNs that emo fit then wrote as if it were fine.
    if value is None:
        return None
    if param.name == "lr" and not 0 < value <= _FLOAT32_MAX:
        raise click.BadParameter(f"{value} is not a number above 0 in float32's range")
    if not 0 <= value <= _FLOAT32_MAX:
        raise click.BadParameter(f"{value} is not a number of 0 or more in float32's range")
    return value


@click.command()
@click.argument("records", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", type=FILE, required=True,
              help="Head file to write (safetensors; a readable FILE.json is written beside it).")
@click.option("--task", type=click.Choice(list(TASKS)), default="classify", show_default=True,
              help="classify: a label set; va: valence and arousal on 1-9; regions: the emotional-region "
                   "head (p_emo for emo regions --region-head) from ground-truth boxes, records with "
                   "\"regions\": [{\"box\": [x0, y0, x1, y1]}] (EmotionROI format).")
@click.option("--regions", "with_regions", is_flag=True,
              help="classify: also read the K best emotional regions' local features (X = [X_global, "
                   "X_local 1..K], Rao et al. eq. 5), found as emo regions does; use with emo classify --regions.")
@click.option("--regions-k", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="K, the number of regions --regions reads (zero-padded with a mask when fewer are found).")
@click.option("--labels", "label_spec", default="emotion6", show_default=True, shell_complete=_complete_label_sets,
              help="Label set: mikels8, emotion6, five, sentiment, or a,b,c (classify).")
@click.option("--features", "groups", default="deep", show_default=True, shell_complete=_complete_groups,
              help="Comma-separated feature groups the head reads (deep, object, color, lbp, gist, scene).")
@click.option("--loss", type=click.Choice([loss for t in HEAD_TASKS for loss in TASKS[t].losses]), default=None, help=_LOSS_HELP + " [default: multi; mse for va]")
@click.option("--lambda", "lam", type=click.FloatRange(0, 1), default=None,
              help="Weight of the distribution term in --loss multi [default: 0.4, Rao et al. 5.4.4].")
@click.option("--label-prob", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="p* of eq. 4 and eq. 10-11 for records with a bare label [default: 0.7].")
@click.option("--label-smoothing", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Smooth the one-hot label of the classification term.")
@click.option("--hidden", callback=_ints, default=None,
              help="Hidden layer sizes, e.g. 512 or 3000,1000,500; 'none' for a linear head "
                   "[default: 512; 3000,1000,500 for va, Kim et al.].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="Dropout after each hidden layer.")
@click.option("--input-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout on the standardised input features.")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=None, help="Passes over the data [default: 60; 5 with --finetune].")
@click.option("--lr", type=float, default=None, callback=_finite,
              help="Peak learning rate [default: 5e-4; 1e-4 for the backbone with --finetune, 10x for its new layer].")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.05, show_default=True, callback=_finite,
              help="AdamW's decoupled weight decay (L2 with sgd).")
@click.option("--batch-size", "train_batch_size", type=click.IntRange(1, 1 << 20), default=None,
              help="Training batch size [default: 64; 32 with --finetune]. The engine that computes missing features "
                   "takes --engine-batch-size.")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True,
              help="sgd with --lr 1e-4 --batch-size 1000 --schedule constant is Kim et al.'s setting (momentum 0.9).")
@click.option("--schedule", type=click.Choice(["onecycle", "constant"]), default="onecycle", show_default=True,
              help="onecycle: warm up then anneal the learning rate; constant: keep it.")
@click.option("--members", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Train this many networks (seeds seed, seed+1, ...) and average them.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Same data, options and seed: the same head.")
@click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Hold out this share (stratified) for validation metrics and early stopping.")
@click.option("--patience", type=click.IntRange(0, 100_000), default=10, show_default=True,
              help="With --val-split: stop after this many epochs without a better validation loss (0: never).")
@click.option("--folds", type=click.IntRange(2, 1000), default=None,
              help="K-fold cross-validation first: prints each metric's mean and spread, stores them in the header; "
                   "the head is then trained on all records.")
@click.option("--finetune", is_flag=True,
              help="Train the backbone end to end with mirroring and random crops (You et al.); needs image paths.")
@click.option("--name", default=None, help="Name stored in the header [default: the output file's stem].")
@click.option("--data-description", default=None, help="What the training data is (stored in the header).")
@click.option("--root", type=FOLDER, default=None,
              help="Resolve the records' relative image paths against this folder [default: current folder].")
@engine_options("--engine-batch-size")
@decode_options
@cache_options
@backbone_option
@click.option("--threads", type=click.IntRange(0, 1024), default=0, show_default=True, help="Torch threads while training (0: torch's default).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Per-epoch metrics on stderr.")
@pass_opts
def fit(opts: dict[str, Any]) -> int:
    """Train a head on labelled records (JSONL files or stdin) and write a head file.

    Each record has "path" and/or precomputed "features", and a target: "label" or
    "distribution" (class -> probability) for --task classify, "valence" and "arousal" (1-9)
    for --task va. Records without a target, whose image fails, or whose carried features are
    malformed (not a flat list of finite numbers of the group's size) are skipped and counted.

    \b
    Examples:
      emo fit --labels emotion6 --loss multi --folds 5 --root data train.jsonl -o my.head
      emo features --set deep --root data < train.jsonl > feats.jsonl
      emo fit --task va --folds 5 feats.jsonl -o my_va.head
      emo classify --head my.head --root data < test.jsonl | emo score
    """
    from emo.assembly.fit_recipe import fit as run_fit

    return run_fit(opts)
