"""``emo features``: compute feature groups for each image."""

from __future__ import annotations

from typing import Any

import click

from emo.cli.options import input_options, pass_opts, run_options
from emo.features import ALL_GROUPS, DEFAULT_GROUPS, groups_help


def _complete_groups(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    done, _, last = incomplete.rpartition(",")
    prefix = done + "," if done else ""
    return [prefix + g for g in ALL_GROUPS if g.startswith(last)]


@click.command(epilog="\b\nFeature groups (dims):\n" + groups_help())
@click.option("--set", "groups", default=None, shell_complete=_complete_groups,
              help=f"Comma-separated feature groups to compute, from {', '.join(ALL_GROUPS)} (each described "
                   f"below) [default: {','.join(DEFAULT_GROUPS)}].")
@click.option("--scene-model", type=click.Path(dir_okay=False), default=None,
              help="Segmentation network for 'scene': an ExportedProgram (.pt2) or TorchScript file, or a registry name.")
@click.option("--scene-labels", type=click.Path(dir_okay=False), default=None,
              help="Text file with the scene model's class names, one per line.")
@input_options
@run_options
@pass_opts
def features(opts: dict[str, Any]) -> int:
    """Compute feature groups for each image and add them under "features".

    A record that already carries a group keeps it; only missing groups are computed. A carried
    group in --set that is not a flat list of finite numbers of the group's size makes that
    record a bad_features error record.

    \b
    Examples:
      emo features photo.jpg
      find photos -name '*.jpg' | emo features --set color,lbp > feats.jsonl
      emo features --set deep -r photos | emo va
    """
    from emo.assembly.runner import run_command

    if opts["groups"] is not None:
        opts["groups"] = tuple(opts["groups"].split(","))
    return run_command("features", opts)
