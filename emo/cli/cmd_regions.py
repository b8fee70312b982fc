"""``emo regions``: the emotional regions of each image (Rao et al.)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from emo.cli.options import input_options, pass_opts, run_options, run_stages


@click.command()
@click.option("--proposals", type=click.Choice(["cam", "rcnn"]), default="cam", show_default=True,
              help="Where boxes come from: class activation maps of the emotion layer at the pyramid's anchor "
                   "scales (offline), or a COCO Faster R-CNN on a ResNet-50 FPN (weights by URL).")
@click.option("--top-k", type=click.IntRange(1), default=10, show_default=True, help="At most this many regions per image.")
@click.option("--iou", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Non-maximum suppression: drop a box overlapping a better one by more than this IoU.")
@click.option("--size", type=click.IntRange(64), default=320, show_default=True,
              help="Longer side of the whole-picture view the backbone sees (aspect kept, padded square).")
@click.option("--detector-size", type=click.IntRange(64), default=800, show_default=True,
              help="Longer side of the view the rcnn detector sees.")
@click.option("--region-head", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="p_emo from this region head (emo regions --fit) instead of the CAM's activation mass.")
@click.option("--cam", "cam_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CAM layer file [default: the shipped Emotion6 layer for mobilenet_v2].")
@click.option("--draw", "draw_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a JPEG per image with its boxes, ranks and scores into this folder.")
@input_options
@run_options
@pass_opts
def regions(opts: dict[str, Any]) -> int:
    """Find the emotional regions of each image.

    Adds "regions": [{"box": [x0, y0, x1, y1], "score", "p_emo", "p_obj", "label"}, ...], boxes
    in the original image's pixels (after EXIF rotation), best first, score = S_emo =
    sqrt(p_emo^2 + p_obj^2), at most --top-k after non-maximum suppression.

    \b
    Examples:
      emo regions photo.jpg
      emo regions --draw shown/ -r photos > regions.jsonl
      emo regions -r photos | emo classify --regions
    """

    def build(settings):
        from emo.stages.regions_stage import region_stage

        return [region_stage(settings, proposals=opts["proposals"], top_k=opts["top_k"], iou=opts["iou"],
                             size=opts["size"], detector_size=opts["detector_size"], cam_file=opts["cam_file"],
                             region_head=opts["region_head"], draw_dir=opts["draw_dir"], verbose=opts["verbose"])]

    return run_stages(opts, build)
