"""emo.regions.draw: captions never overlap, the best k are drawn, names keep the source's identity."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emo.io.records import item_from_record, name_fields
from emo.regions.draw import NAME_BYTES, DrawingNames, Rect, draw_regions, drawing_name, layout
from tests.conftest import alike_images

SIZES = [(1, 1), (3, 2), (20000, 20), (20, 20000), (400, 300), (300, 400), (4000, 3000), (640, 10)]


def _random_regions(size: tuple[int, int], n: int, rng: random.Random) -> list[dict]:
    w, h = size
    out = []
    for i in range(n):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        out.append({"box": [x0, y0, rng.randint(x0 + 1, w), rng.randint(y0 + 1, h)], "score": 1.2 - i / 10,
                    "label": rng.choice(["joy", "dog", "a long object name"])})
    return out


def _crowded(size: tuple[int, int], n: int) -> list[dict]:
    """``n`` boxes on one spot at the top-left corner: every caption wants the same place."""
    w, h = size
    return [{"box": [0, 0, max(1, w // 3), max(1, h // 3)], "score": 1.0, "label": "joy"}] * n


@pytest.mark.parametrize("size", SIZES)
def test_captions_never_overlap_each_other_or_the_title_and_stay_on_the_canvas(size):
    rng = random.Random(sum(size))
    for regions, k in [(_random_regions(size, 10, rng), 10), (_crowded(size, 10), 10),
                       (_random_regions(size, 5, rng), 3), ([{"box": [0, 0, size[0], size[1]], "score": 0.5}], 3)]:
        plan = layout(size, regions, k=k, title="joy")
        width, height = plan.size
        labels = plan.captions + [plan.title]
        assert len(plan.captions) == min(k, len(regions))
        for a, b in itertools.combinations(labels, 2):
            assert not a.overlaps(b), (size, a, b)
        for c in labels:
            assert 0 <= c.y0 < c.y1 <= height and c.x0 >= 0 and c.x1 > c.x0, (size, c, plan.size)
            assert c.x1 <= width or c.x0 == 0  # only a label wider than the canvas may run past it
        pic = plan.picture
        for b in plan.boxes:  # boxes lie on the picture
            assert pic.x0 <= b.x0 < b.x1 <= pic.x1 and pic.y0 <= b.y0 < b.y1 <= pic.y1, (size, b, pic)


def test_a_lone_box_has_its_caption_right_against_it():
    plan = layout((400, 300), [{"box": [100, 100, 300, 200], "score": 0.9}], title="joy")
    (box,), (cap,) = plan.boxes, plan.captions
    assert cap.y1 == box.y0 and cap.x0 == box.x0  # just above it, left-aligned
    assert plan.texts == ["1 0.90"]


def test_labels_that_repeat_the_title_are_left_out_of_captions():
    regions = [{"box": [0, 0, 10, 10], "score": 0.5, "label": "joy"}, {"box": [5, 5, 20, 20], "score": 0.4, "label": "dog"}]
    assert layout((40, 40), regions, title="joy").texts == ["1 0.50", "2 0.40 dog"]


def test_the_best_three_are_drawn_by_default_in_rank_colours(tmp_path):
    src = tmp_path / "grey.png"
    Image.new("RGB", (400, 300), (128, 128, 128)).save(src)
    regions = [{"box": [40 * i, 30 * i, 40 * i + 100, 30 * i + 80], "score": 1 - i / 10} for i in range(6)]
    out = draw_regions(src, regions, tmp_path / "out.jpg", title="joy")
    plan = layout((400, 300), regions, title="joy")
    with Image.open(out) as im:
        assert im.size == plan.size
        px = np.asarray(im.convert("RGB")).astype(int)

    def count(colour):
        return int((np.abs(px - colour).sum(2) < 60).sum())

    assert count((230, 30, 30)) > 100 and count((255, 140, 0)) > 100 and count((250, 220, 0)) > 100
    assert count((120, 230, 120)) == 0  # the 4th and later are not drawn
    pic = plan.picture
    centre = px[(pic.y0 + pic.y1) // 2 + 60, pic.x0 + 5]
    assert np.abs(centre - 128).max() < 10  # the picture itself is there, unscaled grey


def test_an_exif_rotated_photo_is_drawn_upright(tmp_path):
    src = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, upright portrait
    Image.new("RGB", (120, 80), (128, 128, 128)).save(src, exif=exif.tobytes())
    out = draw_regions(src, [{"box": [0, 60, 80, 120], "score": 1.0}], tmp_path / "o.jpg")
    plan = layout((80, 120), [{"box": [0, 60, 80, 120], "score": 1.0}])
    pic = plan.picture
    assert pic.y1 - pic.y0 > pic.x1 - pic.x0  # portrait
    with Image.open(out) as im:
        assert im.size == plan.size


def test_drawing_names_flatten_the_path_under_the_root(tmp_path):
    root = tmp_path / "lib"
    assert drawing_name(root / "photos" / "2024" / "a.jpg", root) == "photos__2024__a.jpg.jpg"
    assert drawing_name(root / "a.jpg", root) == "a.jpg.jpg"
    outside = Path("/mnt/pics/b.png")
    assert drawing_name(outside, root) == "__mnt__pics__b.png.jpg"
    # A relative path is taken from the current folder, as the input reader does.
    assert drawing_name(Path("x.jpg"), Path.cwd()) == "x.jpg.jpg"


def test_long_names_fit_a_file_system_and_stay_apart(tmp_path):
    root = tmp_path
    one = root / ("a" * 150) / ("b" * 150 + ".jpg")
    two = root / ("c" * 150) / ("b" * 150 + ".jpg")
    n1, n2 = drawing_name(one, root), drawing_name(two, root)
    assert n1 != n2 and n1.endswith(".jpg.jpg")
    assert len(n1.encode()) <= NAME_BYTES
    (tmp_path / n1).write_bytes(b"")  # the file system takes it
    wide = drawing_name(root / ("é" * 120 + ".jpg"), root)  # 2-byte characters are never cut in half
    assert len(wide.encode()) <= NAME_BYTES and wide.endswith("éé.jpg.jpg") and "\ufffd" not in wide


def test_drawings_of_names_that_read_alike_are_named_by_their_exact_bytes(tmp_path):
    pics = alike_images(tmp_path / "in")
    # As records fed back from another command name them: by path_bytes.
    items = [item_from_record(i, name_fields(str(p)), None) for i, p in enumerate(pics)]
    names = DrawingNames(tmp_path)
    drawn = [names(it.path, it.index) for it in items]
    assert [os.fsencode(n) for n in drawn] == [b"in__caf\xff.png.jpg", b"in__caf\xfe.png.jpg"]
    for it, name in zip(items, drawn):
        draw_regions(it.path, [{"box": [2, 2, 30, 20], "score": 0.9, "label": "joy"}], tmp_path / "out" / name)
    assert sorted(os.listdir(os.fsencode(tmp_path / "out"))) == [b"in__caf\xfe.png.jpg", b"in__caf\xff.png.jpg"]


def test_a_long_name_that_is_not_utf8_keeps_its_bytes_when_cut(tmp_path):
    src = Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + "é".encode() * 120 + b"\xff.png"))
    raw = os.fsencode(drawing_name(src, tmp_path))
    assert len(raw) <= NAME_BYTES and raw.endswith("é".encode() + b"\xff.png.jpg")
    assert not raw.split(b"__", 1)[1].startswith(b"\xa9")  # never half a character


def test_names_given_twice_in_a_run_get_the_input_number(tmp_path):
    names = DrawingNames(tmp_path)
    assert names(tmp_path / "a" / "b.jpg", 0) == "a__b.jpg.jpg"
    assert names(tmp_path / "a__b.jpg", 1) == "a__b.jpg.000001.jpg"
    assert names(tmp_path / "a" / "b.jpg", 2) == "a__b.jpg.000002.jpg"
    again = DrawingNames(tmp_path)  # the same inputs in the same order: the same names
    assert [again(p, i) for i, p in enumerate([tmp_path / "a" / "b.jpg", tmp_path / "a__b.jpg"])] == \
        ["a__b.jpg.jpg", "a__b.jpg.000001.jpg"]


def test_rect_overlap_is_strict():
    assert not Rect(0, 0, 10, 10).overlaps(Rect(10, 0, 20, 10))  # touching is not overlapping
    assert Rect(0, 0, 10, 10).overlaps(Rect(9, 9, 20, 20))


def test_a_link_planted_at_the_drawing_name_is_replaced_not_written_through(tmp_path):
    import os
    import stat

    src = tmp_path / "p.png"
    Image.new("RGB", (40, 30), (128, 128, 128)).save(src)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "drawn" / "p.png.jpg"
    out.parent.mkdir()
    out.symlink_to(victim)
    draw_regions(src, [{"box": [0, 0, 10, 10], "score": 1.0}], out)
    assert victim.read_text() == "keep me"
    assert out.is_file() and not out.is_symlink()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in out.parent.iterdir()] == ["p.png.jpg"]  # no temporary file left


def test_a_picture_that_changed_or_is_over_the_pixel_limit_is_refused(tmp_path):
    src = tmp_path / "p.png"
    Image.new("RGB", (40, 30), (128, 128, 128)).save(src)
    regions = [{"box": [0, 0, 10, 10], "score": 1.0}]
    with pytest.raises(ValueError, match="not 400x300"):
        draw_regions(src, regions, tmp_path / "a.jpg", size=(400, 300))
    with pytest.raises(ValueError, match="over the limit"):
        draw_regions(src, regions, tmp_path / "b.jpg", max_pixels=1000)
    assert not (tmp_path / "a.jpg").exists() and not (tmp_path / "b.jpg").exists()
