"""``emo features``: for the groups asked for, the check of what records carry, then hand-crafted,
backbone and scene stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emo import config
from emo.assembly.feature_needs import backbone_engine, carried_shape
from emo.assembly.filters import BuildContext, Filter, flag
from emo.errors import UsageError
from emo.features import DEFAULT_GROUPS, HANDCRAFTED_DIMS, NETWORK_GROUPS, parse_groups


@dataclass(frozen=True)
class FeaturesOptions:
    """The options of ``emo features``."""

    groups: tuple[str, ...] = flag("--set", default=DEFAULT_GROUPS)
    scene_model: str | None = None  # an ExportedProgram (.pt2), TorchScript file, or registry name
    scene_labels: str | None = None  # the scene model's class names, one per line

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "groups", parse_groups(",".join(self.groups)))
        except ValueError as e:
            raise UsageError(str(e)) from None


def build(o: FeaturesOptions, settings: config.Settings, ctx: BuildContext) -> list[Any]:
    """Stages computing ``o.groups``; networks are built on the first batch that needs them. A
    group a record carries is checked first and kept: only a malformed one fails that record."""
    from emo.features import HANDCRAFTED_SIZE
    from emo.io.decode import View
    from emo.models.registry import get
    from emo.stages.carried_check import CheckCarried, GroupShape
    from emo.stages.handcrafted_stage import EmitFeatures
    from emo.stages.head_stages import LazyStage

    # Built lazily so the decode workers start before torch loads; views and groups come from the registry.
    groups = o.groups
    stages: list[Any] = []
    hand = tuple(g for g in groups if g in HANDCRAFTED_DIMS)
    if hand:
        def handcrafted():
            from emo.engine import resolve_device
            from emo.stages.handcrafted_stage import HandcraftedStage

            return HandcraftedStage(groups, resolve_device(settings.device))

        stages.append(LazyStage(handcrafted, (View(HANDCRAFTED_SIZE, mode="squash"),), hand))
    net = tuple(g for g in groups if g in NETWORK_GROUPS)
    if net:
        def backbone():
            from emo.models import imagenet_labels
            from emo.stages.backbone_stage import BackboneStage

            entry, _, engine = backbone_engine(settings, ctx.say)
            # A network without ImageNet's 1000 names reports its classes by index.
            imagenet = entry.labels == "imagenet1k" and entry.num_classes == 1000
            labels = imagenet_labels() if imagenet else [str(i) for i in range(entry.num_classes)]
            return BackboneStage(engine, entry, groups, labels)

        pp = get(settings.backbone).preprocess
        stages.append(LazyStage(backbone, (View(pp.crop, pp.resize, "crop"),), net))
    if hand and net:  # neither needs the other's groups: they share the cores on each batch
        from emo.stages.together import Together

        stages = [Together(stages)]
    shapes = {g: carried_shape(g, settings.backbone) for g in groups}
    if "scene" in groups:
        from pathlib import Path

        from emo.stages.scene_stage import DEFAULT_SCENE_MODEL, scene_stage

        scene = scene_stage(settings, o.scene_model, o.scene_labels)  # built now: its size is its labels'
        shapes["scene"] = GroupShape(len(scene.labels), Path(o.scene_model or DEFAULT_SCENE_MODEL).name)
        stages.append(scene)
    stages.insert(0, CheckCarried(shapes))  # before any stage reads or writes what records carry
    stages.append(EmitFeatures(groups))
    return stages


FILTER = Filter("features", FeaturesOptions, build)
