"""``--draw DIR`` writes a JPEG per picture: names that are too long or not UTF-8, links planted
where the drawing or its temporary file goes, a folder that cannot be made."""

from __future__ import annotations

import json
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


def test_a_users_file_at_the_drawing_s_name_is_left_as_it_is(tmp_path):
    # `--draw .` beside photos: a.png's drawing is a.png.jpg, which may be the user's own photo.
    from emo.regions.draw import DRAWING_MARK, is_drawing

    photo = tmp_path / "a.png.jpg"
    Image.new("RGB", (30, 20), (10, 200, 10)).save(photo)
    before = photo.read_bytes()
    with pytest.raises(FileExistsError, match="not an emo drawing"):
        draw_regions(make_image(tmp_path / "a.png"), REGIONS, photo)
    assert photo.read_bytes() == before and not is_drawing(photo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.png.jpg"]  # no temporary file left
    folder = tmp_path / "b.png.jpg"
    folder.mkdir()
    with pytest.raises(FileExistsError, match="not a file"):
        draw_regions(make_image(tmp_path / "b.png"), REGIONS, folder)
    # emo's own drawing, from an earlier run, is replaced: a rerun into the same folder works.
    out = tmp_path / "drawn" / "c.png.jpg"
    draw_regions(make_image(tmp_path / "c.png"), REGIONS, out)
    with Image.open(out) as im:
        assert im.info.get("comment") == DRAWING_MARK
    first = out.stat().st_ino
    draw_regions(make_image(tmp_path / "c.png", size=(50, 40)), REGIONS, out)
    assert out.stat().st_ino != first and is_drawing(out)


def test_a_run_drawing_beside_the_photos_keeps_the_users_file_and_every_record(tmp_path):
    from tests.conftest import SAMPLES

    import shutil

    shutil.copy(SAMPLES / "cat.jpg", tmp_path / "cat.jpg")
    shutil.copy(SAMPLES / "coffee.jpg", tmp_path / "coffee.jpg")
    shutil.copy(SAMPLES / "rocket.jpg", tmp_path / "cat.jpg.jpg")  # the user's photo, at cat.jpg's drawing name
    before = (tmp_path / "cat.jpg.jpg").read_bytes()
    args = ["regions", "-q", "--draw", str(tmp_path), "--root", str(tmp_path),
            str(tmp_path / "cat.jpg"), str(tmp_path / "coffee.jpg")]
    run = emo(args)
    lines = [json.loads(x) for x in run.out.splitlines()]
    assert run.code == 1 and [x["path"] for x in lines] == [str(tmp_path / "cat.jpg"), str(tmp_path / "coffee.jpg")]
    assert "not an emo drawing" in lines[0]["error"]["message"] and "regions" in lines[1]
    assert (tmp_path / "cat.jpg.jpg").read_bytes() == before
    assert (tmp_path / "coffee.jpg.jpg").is_file()
    again = emo(args[:1] + args[2:])  # a rerun replaces emo's own drawing
    assert again.code == 1 and (tmp_path / "cat.jpg.jpg").read_bytes() == before
