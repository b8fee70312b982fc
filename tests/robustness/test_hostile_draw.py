"""``--draw DIR`` writes a JPEG per picture: names that are too long, links planted where the
temporary file goes, a folder that cannot be made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from emo.errors import OutputError
from emo.regions.draw import draw_regions, out_name
from tests.conftest import make_image

REGIONS = [{"box": [2, 2, 30, 20], "score": 0.9, "label": "joy"}]


def test_a_long_input_name_still_gives_a_name_that_can_be_written(tmp_path):
    src = make_image(tmp_path / ("é" * 120 + ".png"))  # 240 bytes: a legal name
    name = out_name(7, src)
    assert len(os.fsencode(name)) <= 255 - len(".x.123456789.tmp") and name.startswith("000007_")
    out = draw_regions(src, REGIONS, tmp_path / "draw" / name)
    assert Image.open(out).format == "JPEG"


def test_a_non_utf8_name_is_cut_without_breaking_its_bytes(tmp_path):
    raw = os.fsencode(tmp_path) + b"/" + b"\xff" * 250 + b".png"
    src = make_image(Path(os.fsdecode(raw)))
    name = out_name(1, src)
    assert len(os.fsencode(name)) < 255
    draw_regions(src, REGIONS, tmp_path / name)


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    out = tmp_path / "draw" / "000001_a.jpg"
    out.parent.mkdir()
    (out.parent / f".{out.name}.{os.getpid()}.tmp").symlink_to(victim)
    with pytest.raises(OutputError, match="--draw"):
        draw_regions(make_image(tmp_path / "a.png"), REGIONS, out)
    assert victim.read_bytes() == b"keep" and not out.exists()


def test_a_draw_folder_that_cannot_be_made_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(OutputError) as e:
        draw_regions(make_image(tmp_path / "a.png"), REGIONS, blocker / "d" / "000001_a.jpg")
    assert "\n" not in str(e.value)


def test_a_link_at_the_drawing_s_name_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    out = tmp_path / "000001_a.jpg"
    out.symlink_to(victim)
    draw_regions(make_image(tmp_path / "a.png"), REGIONS, out)
    assert victim.read_bytes() == b"keep" and not out.is_symlink()
