"""``emo va``: valence and arousal of each image on the 1-9 scale (Kim et al.)."""

from __future__ import annotations

from typing import Any

import click

from emo.cli.options import input_options, pass_opts, run_options, run_stages
from emo.cli.cmd_classify import head_option


@click.command()
@head_option("va")
@input_options
@run_options
@pass_opts
def va(opts: dict[str, Any]) -> int:
    """Predict valence and arousal (1-9, the SAM scale) of each image.

    Adds "va": {"valence", "arousal"}. A record that carries the features the head needs is not
    recomputed; the network is not even loaded.

    \b
    Examples:
      emo va photo.jpg
      emo features --set deep -r photos | emo va | emo classify
      emo va --root data < test.jsonl | emo score --task va
    """

    def build(settings):
        from emo.cli.cmd_classify import feature_stages
        from emo.errors import UsageError
        from emo.heads import DEFAULT_HEAD
        from emo.models.head_file import load_head
        from emo.stages.head_stages import VAStage

        head = load_head(settings.head or DEFAULT_HEAD["va"])
        if head.task != "va":
            raise UsageError(f"head {head.name} predicts {head.task}; emo va needs a va head (emo classify takes classify heads)")
        return feature_stages([head], settings, opts["verbose"]) + [VAStage(head)]

    return run_stages(opts, build)
