"""``emo regions``: one stage that proposes, scores and suppresses boxes (Rao et al.)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo import config
from emo.assembly.filters import BuildContext, Filter, flag
from emo.errors import UsageError

PROPOSALS = ("cam", "rcnn")


@dataclass(frozen=True)
class RegionsOptions:
    """The options of ``emo regions``."""

    proposals: str = "cam"  # cam: class activation maps at the pyramid's anchor scales; rcnn: a COCO detector
    top_k: int = 10  # at most this many regions per image
    iou: float = 0.5  # non-maximum suppression threshold
    size: int = 320  # longer side of the whole-picture view the backbone sees
    detector_size: int = 800  # longer side of the view the rcnn detector sees
    region_head: Path | None = None  # p_emo from a region head (emo fit --task regions)
    cam_file: Path | None = flag("--cam", default=None)  # CAM layer file [default: the shipped one]
    draw_dir: Path | None = flag("--draw", default=None)  # write a picture per image with its boxes here
    draw_k: int = 3  # regions drawn per picture, best first

    def __post_init__(self) -> None:
        if self.proposals not in PROPOSALS:
            raise UsageError(f"--proposals must be one of {', '.join(PROPOSALS)}")
        if self.top_k < 1 or self.size < 64 or self.detector_size < 64 or not 0.0 <= self.iou <= 1.0:
            raise UsageError("--top-k must be at least 1, --size and --detector-size at least 64, --iou in [0, 1]")
        if self.draw_k < 1:
            raise UsageError("--draw-k must be at least 1")


def build(o: RegionsOptions, settings: config.Settings, ctx: BuildContext) -> list[Any]:
    """The region stage for these options."""
    return [region_stage(settings, proposals=o.proposals, top_k=o.top_k, iou=o.iou, size=o.size,
                         detector_size=o.detector_size, cam_file=o.cam_file, region_head=o.region_head,
                         draw_dir=o.draw_dir, draw_k=o.draw_k, root=ctx.root, verbose=ctx.verbose)]


def region_stage(settings: config.Settings, *, proposals: str = "cam", top_k: int = 10, iou: float = 0.5,
                 size: int = 320, detector_size: int = 800, cam_file: Path | None = None,
                 region_head: Path | None = None, emit: bool = True, local: bool = False,
                 draw_dir: Path | None = None, draw_k: int = 3, root: Path | None = None,
                 verbose: bool = False) -> Any:
    """The regions stage (:func:`emo.stages.regions_stage.region_stage`), built on its first batch.

    What the user named is checked now, before any input is read: the backbone, the CAM layer
    and region head files, the ``--draw`` folder. torch and the engine load with the first batch,
    so the decode processes start first and decode while they load.
    """
    from emo.config import KEY_REGIONS
    from emo.io.decode import View
    from emo.models.registry import get
    from emo.regions.layers import read_region_layers
    from emo.stages.head_stages import LazyStage

    # Read once, here: the stage takes these arrays, so a file replaced during start-up changes nothing.
    read = read_region_layers(get(settings.backbone), cam_file, region_head)
    if draw_dir is not None:
        try:
            draw_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--draw {draw_dir}: cannot make the folder ({e.strerror or e})") from None

    def stage() -> Any:
        from emo.stages import regions_stage

        return regions_stage.region_stage(
            settings, proposals=proposals, top_k=top_k, iou=iou, size=size, detector_size=detector_size,
            cam_file=cam_file, region_head=region_head, emit=emit, local=local, draw_dir=draw_dir,
            draw_k=draw_k, root=root, verbose=verbose, read=read)

    views = (View(size, mode="fit"),) + ((View(detector_size, mode="fit"),) if proposals == "rcnn" else ())
    group = "regions"  # the feature group a regions head reads (X_local)
    if local:
        return LazyStage(stage, views, (group,))
    return LazyStage(stage, views, (), wants=lambda item: KEY_REGIONS not in item.record)


def regions_for_head(head: Any, settings: config.Settings, verbose: bool = False) -> Any:
    """The region stage a classify head trained with ``--regions`` needs (its K from the head's dims)."""
    from emo.models.registry import get

    if "regions" not in head.groups:
        raise UsageError(f"head {head.name} reads {', '.join(head.groups)}, not regions; train one with "
                         "emo fit --task classify --regions")
    channels = get(settings.backbone).stages[-1][1]
    k, rest = divmod(head.dims["regions"], channels + 1)
    if rest or k < 1:
        raise UsageError(f"head {head.name}: {head.dims['regions']} region features do not fit {settings.backbone} "
                         f"({channels} per region + 1 mask)")
    return region_stage(settings, top_k=k, emit=True, local=True, verbose=verbose)


FILTER = Filter("regions", RegionsOptions, build)
