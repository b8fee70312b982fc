"""emo fit --task regions: a region head trained on ground-truth boxes finds such boxes again."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from emo.regions.layers import load_layer
from tests.cli.test_cmd_models import emo


def _picture(path, box, seed):
    """Grey noise with one bright orange square at ``box``."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(60, 120, (240, 320, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = (250, 150, 20)
    Image.fromarray(arr).save(path)
    return path


def test_a_trained_region_head_ranks_the_truth_box_first(monkeypatch, tmp_path):
    boxes = [(20, 20, 148, 148), (170, 90, 298, 218), (100, 40, 228, 168), (10, 100, 138, 228), (180, 10, 308, 138)]
    lines = []
    for i, b in enumerate(boxes):
        p = _picture(tmp_path / f"{i}.png", b, i)
        lines.append(json.dumps({"path": str(p), "regions": [{"box": list(b)}]}))
    lines.append(json.dumps({"path": str(tmp_path / "missing.png"), "regions": [{"box": [0, 0, 5, 5]}]}))
    head = tmp_path / "roi.head"
    r = emo(monkeypatch, "fit", "--task", "regions", "-o", str(head), input="\n".join(lines) + "\n")
    assert r.code == 0, r.err
    layer = load_layer(head, "region_head", 2 * 1280)
    assert layer.header["data"]["records"] == 5 and layer.header["data"]["failed"] == 1
    assert layer.header["data"]["positives"] >= 5 and layer.header["data"]["negatives"] > layer.header["data"]["positives"]

    new = _picture(tmp_path / "new.png", (150, 20, 278, 148), 99)
    r = emo(monkeypatch, "regions", "--region-head", str(head), "--top-k", "3", str(new))
    assert r.code == 0, r.err
    best = r.records()[0]["regions"][0]
    x0, y0, x1, y1 = best["box"]
    inter = max(0, min(x1, 278) - max(x0, 150)) * max(0, min(y1, 148) - max(y0, 20))
    iou = inter / ((x1 - x0) * (y1 - y0) + 128 * 128 - inter)
    assert iou > 0.5, best
    assert best["p_emo"] > 0.5


def test_fit_regions_without_truth_boxes_is_a_usage_error(monkeypatch, tmp_path):
    r = emo(monkeypatch, "fit", "--task", "regions", "-o", str(tmp_path / "x.head"), input='{"path": "a.jpg"}\n')
    assert r.code == 2 and "ground-truth" in r.err


def test_malformed_truth_regions_are_named_per_record_not_dropped_silently(monkeypatch, tmp_path):
    # Boxes of strings, of three numbers, empty or an object in place of the list were skipped without a word.
    recs = [{"path": "a.jpg", "regions": [{"box": ["0", True, None, 5]}]},
            {"path": "b.jpg", "regions": {"box": [0, 0, 5, 5]}},
            {"path": "c.jpg", "regions": [{"box": [5, 5, 5, 9]}]},
            {"path": "d.jpg", "regions": [{"box": [0, 0, 5, 5]}, 7]}]
    r = emo(monkeypatch, "fit", "--task", "regions", "-o", str(tmp_path / "x.head"),
            input="".join(json.dumps(x) + "\n" for x in recs))
    assert r.code == 2 and "Traceback" not in r.err
    lines = r.err.splitlines()
    assert lines[:4] == [
        'emo: a.jpg: bad_record: "regions"[0] has no "box" of four numbers (pixels, within ±2147483648) (skipped)',
        'emo: b.jpg: bad_record: "regions" is not a list of {"box": [x0, y0, x1, y1]} (skipped)',
        'emo: c.jpg: bad_record: "regions"[0]: its box is empty (x1 must exceed x0, y1 y0) (skipped)',
        'emo: d.jpg: bad_record: "regions"[1] has no "box" of four numbers (pixels, within ±2147483648) (skipped)']
    assert lines[4].startswith("emo: error: no record has ground-truth")
