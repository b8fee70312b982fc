"""``emo va``: valence and arousal of each image on the 1-9 scale (Kim et al.)."""

from __future__ import annotations

from typing import Any

import click

from emo.cli.options import head_option, input_options, pass_opts, run_options


@click.command()
@head_option("va", "va")
@input_options
@run_options
@pass_opts
def va(opts: dict[str, Any]) -> int:
    """Predict valence and arousal (1-9, the SAM scale) of each image.

    Adds "va": {"valence", "arousal"}. A record that carries the features the head needs is not
    recomputed; the network is not even loaded. A carried group the head needs that is malformed
    makes that record a bad_features error record.

    \b
    Examples:
      emo va photo.jpg
      emo features --set deep -r photos | emo va | emo classify
      emo va --root data < test.jsonl | emo score --task va
    """
    from emo.assembly.runner import run_command

    return run_command("va", opts)
