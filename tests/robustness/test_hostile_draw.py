"""``--draw DIR`` writes a JPEG per picture: names that are too long or not UTF-8, links planted
where the drawing or its temporary file goes, a folder that cannot be made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from emo.regions.draw import draw_regions, drawing_name
from tests.conftest import make_image
from tests.robustness.conftest import emo

REGIONS = [{"box": [2, 2, 30, 20], "score": 0.9, "label": "joy"}]


def test_a_long_input_name_still_gives_a_name_that_can_be_written(tmp_path):
    src = make_image(tmp_path / ("é" * 120 + ".png"))  # 240 bytes: a legal name
    name = drawing_name(src, tmp_path)
    assert len(os.fsencode(name)) <= 255 - len(".x.123456789.tmp") and name.endswith(".jpg")
    out = draw_regions(src, REGIONS, tmp_path / "draw" / name)
    assert Image.open(out).format == "JPEG"


def test_a_non_utf8_name_is_cut_without_breaking_its_bytes(tmp_path):
    raw = os.fsencode(tmp_path) + b"/" + b"\xff" * 250 + b".png"
    src = make_image(Path(os.fsdecode(raw)))
    name = drawing_name(src, tmp_path)
    assert len(os.fsencode(name)) < 255
    draw_regions(src, REGIONS, tmp_path / name)


def test_links_planted_where_the_temporary_file_may_go_are_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    out = tmp_path / "draw" / "a.png.jpg"
    out.parent.mkdir()
    for name in (f".{out.name}.{os.getpid()}.tmp", f".{out.name}.tmp", f"{out.name}.tmp"):
        (out.parent / name).symlink_to(victim)
    draw_regions(make_image(tmp_path / "a.png"), REGIONS, out)
    assert victim.read_bytes() == b"keep" and Image.open(out).format == "JPEG" and not out.is_symlink()


def test_a_draw_folder_that_cannot_be_made_is_one_line_and_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(OSError):
        draw_regions(make_image(tmp_path / "a.png"), REGIONS, blocker / "d" / "a.png.jpg")
    run = emo(["regions", "--draw", str(blocker / "d"), str(make_image(tmp_path / "b.png"))])
    assert run.code == 2 and run.err.count("\n") == 1 and "--draw" in run.err and "Traceback" not in run.err


def test_a_link_at_the_drawing_s_name_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    out = tmp_path / "a.png.jpg"
    out.symlink_to(victim)
    draw_regions(make_image(tmp_path / "a.png"), REGIONS, out)
    assert victim.read_bytes() == b"keep" and not out.is_symlink()
