"""``emo regions`` through the command line on real pictures with the shipped CAM layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_cmd_models import emo
from tests.conftest import SAMPLES


def _exif_rotated(path, size=(300, 200)):
    """A landscape JPEG stored with EXIF orientation 6: upright it is portrait, 200 x 300."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 2] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    arr[40:120, 180:260] = (250, 200, 30)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(path, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("proposals", ["cam"])
def test_regions_are_in_upright_original_pixels_best_first(monkeypatch, tmp_path, proposals):
    rotated = _exif_rotated(tmp_path / "rot.jpg")
    cat = SAMPLES / "cat.jpg"  # 451 x 300
    draw = tmp_path / "drawn"
    r = emo(monkeypatch, "regions", "--proposals", proposals, "--top-k", "4", "--draw", str(draw), "--draw-k", "2",
            "--root", str(tmp_path), "--batch-size", "2", str(rotated), str(cat))
    assert r.code == 0, r.err
    recs = r.records()
    for rec, (w, h) in zip(recs, [(200, 300), (451, 300)]):
        regs = rec["regions"]
        assert 1 <= len(regs) <= 4
        scores = [g["score"] for g in regs]
        assert scores == sorted(scores, reverse=True)
        for g in regs:
            x0, y0, x1, y1 = g["box"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (g, w, h)
            assert g["score"] == pytest.approx((g["p_emo"] ** 2 + g["p_obj"] ** 2) ** 0.5, abs=2e-4)
            assert 0 <= g["p_emo"] <= 1 and 0 <= g["p_obj"] <= 1
    # The rotated picture is upright portrait: some box reaches below y = 200, which a
    # landscape (unrotated) reading could not give.
    assert max(g["box"][3] for g in recs[0]["regions"]) > 200
    for g in recs[0]["regions"] + recs[1]["regions"]:
        assert all(isinstance(v, int) for v in g["box"])  # whole pixels
    # Names keep the source's identity: relative to --root, or the whole path when outside it.
    from emo.regions.draw import drawing_name

    drawn = sorted(p.name for p in draw.iterdir())
    assert drawn == sorted([drawing_name(rotated, tmp_path), drawing_name(cat, tmp_path)])
    assert "rot.jpg.jpg" in drawn and any(n.startswith("__") and n.endswith("cat.jpg.jpg") for n in drawn)
    with Image.open(draw / "rot.jpg.jpg") as im:
        assert im.size[1] > im.size[0]  # the upright portrait, with its caption margin


def test_a_record_with_regions_is_not_recomputed_and_bad_inputs_become_errors(monkeypatch, tmp_path):
    line = '{"path": "%s", "regions": [{"box": [1, 2, 3, 4], "score": 1.0}]}\n' % (SAMPLES / "cat.jpg")
    missing = str(tmp_path / "nope.jpg") + "\n"
    r = emo(monkeypatch, "regions", input=line + missing)
    assert r.code == 1
    recs = r.records()
    assert recs[0]["regions"] == [{"box": [1, 2, 3, 4], "score": 1.0}]
    assert recs[1]["error"]["kind"] == "not_found"


def _labelled_pictures(folder) -> list[str]:
    """Six JSONL records of real pictures made here: a coloured object on a gradient, with a label."""
    folder.mkdir()
    labels = ["joy", "sadness", "anger", "joy", "sadness", "anger"]
    lines = []
    for i, label in enumerate(labels):
        arr = np.zeros((240, 320, 3), np.uint8)
        arr[..., i % 3] = np.linspace(40, 220, 320, dtype=np.uint8)[None, :]
        arr[60 + 10 * i:160, 80:200 + 10 * i] = (250 - 30 * i, 30 * i, 120)
        Image.fromarray(arr).save(folder / f"p{i}.jpg")
        lines.append(json.dumps({"path": f"p{i}.jpg", "label": label}))
    return lines


def test_fit_and_classify_with_regions(monkeypatch, tmp_path):
    root = tmp_path / "pictures"
    lines = _labelled_pictures(root)
    head = tmp_path / "r.head"
    r = emo(monkeypatch, "fit", "--task", "classify", "--labels", "emotion6", "--regions", "--regions-k", "2",
            "--epochs", "1", "-q", "--root", str(root), "-o", str(head), input="\n".join(lines) + "\n")
    assert r.code == 0, r.err
    header = json.loads(head.with_name(head.name + ".json").read_text())
    assert header["groups"] == ["deep", "regions"] and header["dims"]["regions"] == 2 * 1280 + 2
    r = emo(monkeypatch, "classify", "--regions", "--head", str(head), "--root", str(root), input=lines[0] + "\n")
    assert r.code == 0, r.err
    (rec,) = r.records()
    assert rec["emotion"]["label"] in header["labels"] and 1 <= len(rec["regions"]) <= 2
    # A head that never saw regions cannot take them.
    r = emo(monkeypatch, "classify", "--regions", "--head", "emotion6", "--root", str(root), input=lines[0] + "\n")
    assert r.code == 2 and "not regions" in r.err
