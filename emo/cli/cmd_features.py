"""``emo features``: compute feature groups for each image."""

from __future__ import annotations

from typing import Any

import click

from emo.cli.options import backbone_engine, input_options, pass_opts, run_options, run_stages
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
        from emo.features import HANDCRAFTED_DIMS, HANDCRAFTED_SIZE
        from emo.io.decode import View
        from emo.models.registry import get
        from emo.stages.handcrafted_stage import EmitFeatures
        from emo.stages.head_stages import LazyStage

        # Networks are built on the first batch that needs them (LazyStage), so the decode
        # workers start before torch loads; views and groups are known from the registry.
        stages: list[Any] = []
        hand = tuple(g for g in groups if g in HANDCRAFTED_DIMS)
        if hand:
            def handcrafted():
                from emo.engine import resolve_device
                from emo.stages.handcrafted_stage import HandcraftedStage

                return HandcraftedStage(groups, resolve_device(settings.device))

            stages.append(LazyStage(handcrafted, (View(HANDCRAFTED_SIZE, mode="squash"),), hand))
        net = tuple(g for g in groups if g in ("object", "deep"))
        if net:
            def backbone():
                from emo.models import imagenet_labels
                from emo.stages.backbone_stage import BackboneStage

                entry, _, engine = backbone_engine(settings, opts["verbose"])
                # A network without ImageNet's 1000 names reports its classes by index.
                imagenet = entry.labels == "imagenet1k" and entry.num_classes == 1000
                labels = imagenet_labels() if imagenet else [str(i) for i in range(entry.num_classes)]
                return BackboneStage(engine, entry, groups, labels)

            pp = get(settings.backbone).preprocess
            stages.append(LazyStage(backbone, (View(pp.crop, pp.resize, "crop"),), net))
        if "scene" in groups:
            from emo.stages.scene_stage import scene_stage

            stages.append(scene_stage(settings, opts["scene_model"], opts["scene_labels"]))
        stages.append(EmitFeatures(groups))
        return stages

    return run_stages(opts, build)
