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
    from emo.stages.regions_stage import region_stage

    return [region_stage(settings, proposals=o.proposals, top_k=o.top_k, iou=o.iou, size=o.size,
                         detector_size=o.detector_size, cam_file=o.cam_file, region_head=o.region_head,
                         draw_dir=o.draw_dir, draw_k=o.draw_k, root=ctx.root, verbose=ctx.verbose)]


FILTER = Filter("regions", RegionsOptions, build)
