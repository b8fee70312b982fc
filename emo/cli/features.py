"""``emo features``: compute feature groups for each image."""

from __future__ import annotations

from typing import Any

import click

from emo.cli._common import backbone_engine, input_options, pass_opts, run_options, run_stages
from emo.features import ALL_GROUPS, DEFAULT_GROUPS, DESCRIPTIONS, parse_groups

_GROUP_HELP = "\n".join(f"  {g:7s} {DESCRIPTIONS[g]}" for g in ALL_GROUPS)


def _groups(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_groups(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command(
    epilog="\b\nFeature groups (dims):\n" + _GROUP_HELP,
)
@click.option("--set", "groups", default=",".join(DEFAULT_GROUPS), callback=_groups, show_default=True,
              help="Comma-separated feature groups to compute.")
@click.option("--scene-model", type=click.Path(dir_okay=False), default=None,
              help="Segmentation network for 'scene': an ExportedProgram (.pt2) or TorchScript file, or a registry name.")
@click.option("--scene-labels", type=click.Path(dir_okay=False), default=None,
              help="Text file with the scene model's class names, one per line.")
@input_options
@run_options
@pass_opts
def features(opts: dict[str, Any]) -> int:
    """Compute feature groups for each image and add them under "features".

    A record that already carries a group keeps it; only missing groups are computed.

    \b
    Examples:
      emo features photo.jpg
      find photos -name '*.jpg' | emo features --set color,lbp > feats.jsonl
      emo features --set deep -r photos | emo va
    """
    groups: tuple[str, ...] = opts["groups"]

    def build(settings):
        from emo.engine import resolve_device
        from emo.stages.features import EmitFeatures, HandcraftedStage

        stages: list[Any] = []
        if any(g in ("color", "lbp", "gist") for g in groups):
            stages.append(HandcraftedStage(groups, resolve_device(settings.device)))
        if any(g in ("object", "deep") for g in groups):
            from emo.models import imagenet_labels
            from emo.stages.backbone import BackboneStage

            entry, _, engine = backbone_engine(settings, opts["verbose"])
            # A network without ImageNet's 1000 names reports its classes by index.
            imagenet = entry.labels == "imagenet1k" and entry.num_classes == 1000
            labels = imagenet_labels() if imagenet else [str(i) for i in range(entry.num_classes)]
            stages.append(BackboneStage(engine, entry, groups, labels))
        if "scene" in groups:
            from emo.stages.scene import scene_stage

            stages.append(scene_stage(settings, opts["scene_model"], opts["scene_labels"]))
        stages.append(EmitFeatures(groups))
        return stages

    return run_stages(opts, build)
