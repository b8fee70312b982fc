"""``emo regions``: the emotional regions of each image (Rao et al.)."""

from __future__ import annotations

from typing import Any

import click

from emo.cli.options import FILE, FOLDER, input_options, pass_opts, run_options


@click.command()
@click.option("--proposals", type=click.Choice(["cam", "rcnn"]), default=None,
              help="Where boxes come from: class activation maps of the emotion layer at the pyramid's anchor "
                   "scales (offline), or a COCO Faster R-CNN on a ResNet-50 FPN (weights by URL) [default: cam].")
@click.option("--top-k", type=click.IntRange(1), default=None, help="At most this many regions per image [default: 10].")
@click.option("--iou", type=click.FloatRange(0.0, 1.0), default=None,
              help="Non-maximum suppression: drop a box overlapping a better one by more than this IoU [default: 0.5].")
@click.option("--size", type=click.IntRange(64), default=None,
              help="Longer side of the whole-picture view the backbone sees (aspect kept, padded square) [default: 320].")
@click.option("--detector-size", type=click.IntRange(64), default=None,
              help="Longer side of the view the rcnn detector sees [default: 800].")
@click.option("--region-head", type=FILE, default=None,
              help="p_emo from this region head (trained by emo fit --task regions) instead of the CAM's activation mass.")
@click.option("--cam", "cam_file", type=FILE, default=None,
              help="CAM layer file [default: the shipped Emotion6 layer for mobilenet_v2].")
@click.option("--draw", "draw_dir", type=FOLDER, default=None,
              help="Write a JPEG per image with its best boxes, ranks and scores into this folder, named by its path "
                   "relative to --root with / as __ (photos/a.jpg -> photos__a.jpg.jpg).")
@click.option("--draw-k", type=click.IntRange(1), default=None,
              help="Regions drawn per picture with --draw, best first [default: 3].")
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
      emo regions -r photos | emo classify --regions --head my_regions.head   # from emo fit --regions
    """
    from emo.assembly.runner import run_command

    return run_command("regions", opts)
