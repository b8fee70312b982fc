"""emo.stages.regions_stage: pictures of any shape get regions, drawings, whole-pixel boxes, names."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emo.config import from_env
from emo.io.records import item_from_record
from emo.pipeline import run
from emo.regions.layers import LinearLayer
from emo.stages.regions_stage import object_classifier, region_stage
from tests.conftest import in_fork, make_image

# Valid pictures that once failed or that stretch the arithmetic: strips thinner than half a
# cell, single pixels, and a strip far longer than the view.
SHAPES = [(1, 1), (2, 1), (1, 300), (300, 10), (640, 10), (10, 300), (20000, 20), (3, 2), (64, 48)]


@pytest.fixture
def cam_file(tiny_backbone, tmp_path) -> Path:
    """A CAM layer for the tiny network's 8 channels: 'joy' reads channels 0-3, 'sadness' 4-7."""
    w = torch.zeros(3, 8)
    w[0, :4], w[1, 4:], w[2] = 1.0, 1.0, 0.5
    path = tmp_path / "cam.safetensors"
    LinearLayer(w, torch.zeros(3), {"kind": "cam", "labels": ["joy", "sadness", "neutral"],
                                    "backbone": "tiny_test"}).save(path)
    return path


def _settings(**kw):
    return replace(from_env(), backbone="tiny_test", device="cpu", backend="eager", batch_size=4, **kw)


def _run(stage, records: list[dict], root: Path | None, settings=None) -> list[dict]:
    items = [item_from_record(i, dict(r), root) for i, r in enumerate(records)]
    out: list = []
    run(items, [stage], settings or _settings(), out.extend, on_error=lambda item: None)
    return [it.record for it in sorted(out, key=lambda it: it.index)]


def _noise(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    w, h = size
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_pictures_of_any_shape_get_whole_pixel_regions_inside_them(cam_file, tmp_path):
    paths = [_noise(tmp_path / f"{w}x{h}.png", (w, h), i) for i, (w, h) in enumerate(SHAPES)]
    stage = region_stage(_settings(), top_k=5, cam_file=cam_file)
    recs = _run(stage, [{"path": str(p)} for p in paths], None)
    assert [r["path"] for r in recs] == [str(p) for p in paths]
    for rec, (w, h) in zip(recs, SHAPES):
        assert "error" not in rec, rec
        regs = rec["regions"]
        assert 1 <= len(regs) <= 5, (w, h)
        boxes = [tuple(g["box"]) for g in regs]
        assert len(set(boxes)) == len(boxes), (w, h, boxes)  # no box twice after rounding to pixels
        for x0, y0, x1, y1 in boxes:
            assert all(type(v) is int for v in (x0, y0, x1, y1))
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, ((w, h), (x0, y0, x1, y1))
        scores = [g["score"] for g in regs]
        assert scores == sorted(scores, reverse=True)
    assert recs[0]["regions"][0]["box"] == [0, 0, 1, 1]  # a single pixel is its own only region


def test_a_picture_at_the_pixel_limit_gets_regions_and_one_over_it_is_too_large(cam_file, tmp_path):
    at = _noise(tmp_path / "at.png", (5000, 2))
    over = _noise(tmp_path / "over.png", (5001, 2))
    settings = _settings(max_pixels=10_000)
    recs = _run(region_stage(settings, top_k=3, cam_file=cam_file), [{"path": str(over)}, {"path": str(at)}],
                None, settings)
    assert recs[0]["error"]["kind"] == "too_large" and "regions" not in recs[0]
    assert "error" not in recs[1] and recs[1]["regions"][0]["box"][2] <= 5000


def test_drawings_are_named_by_path_under_the_root_and_show_the_best_draw_k(cam_file, tmp_path):
    root = tmp_path / "photos"
    (root / "2024").mkdir(parents=True)
    (root / "2025").mkdir()
    a = make_image(root / "2024" / "a.jpg", size=(120, 80), color=(20, 40, 220))
    b = make_image(root / "2025" / "a.jpg", size=(80, 120), color=(20, 200, 40))
    odd = make_image(root / "2024__a.jpg", size=(50, 50))  # flattens like 2024/a.jpg
    outside = make_image(tmp_path / "elsewhere.png", size=(40, 30))
    draw = tmp_path / "drawn"
    stage = region_stage(_settings(), top_k=6, cam_file=cam_file, draw_dir=draw, draw_k=2, root=root)
    recs = _run(stage, [{"path": "2024/a.jpg"}, {"path": "2025/a.jpg"}, {"path": "2024__a.jpg"},
                        {"path": str(outside)}, {"path": "2024/a.jpg"}], root)
    assert all("error" not in r for r in recs)
    names = sorted(p.name for p in draw.iterdir())
    flat_outside = "__".join(("",) + outside.parts[1:]) + ".jpg"
    assert names == sorted(["2024__a.jpg.jpg", "2025__a.jpg.jpg", "2024__a.jpg.000002.jpg", flat_outside,
                            "2024__a.jpg.000004.jpg"])
    assert a.exists() and b.exists() and odd.exists()  # sources untouched
    with Image.open(draw / "2024__a.jpg.jpg") as im:
        drawn = np.asarray(im.convert("RGB")).astype(int)
    # Best (red) and second (orange) are drawn; the third colour (yellow) is not.
    red = (np.abs(drawn - [230, 30, 30]).sum(2) < 60).sum()
    orange = (np.abs(drawn - [255, 140, 0]).sum(2) < 60).sum()
    yellow = (np.abs(drawn - [250, 220, 0]).sum(2) < 60).sum()
    assert red > 50 and orange > 50 and yellow == 0, (red, orange, yellow)


def test_a_drawing_that_cannot_be_read_keeps_the_regions_and_says_why(cam_file, tmp_path, monkeypatch):
    good = make_image(tmp_path / "good.jpg", size=(64, 48))
    gone = make_image(tmp_path / "gone.jpg", size=(64, 48))
    stage = region_stage(_settings(), top_k=3, cam_file=cam_file, draw_dir=tmp_path / "drawn", root=tmp_path)
    from emo.regions import draw

    real = draw.draw_regions

    def flaky(path, *a, **kw):
        if Path(path).name == "gone.jpg":
            raise FileNotFoundError(2, "No such file or directory")
        return real(path, *a, **kw)

    monkeypatch.setattr(draw, "draw_regions", flaky)
    recs = _run(stage, [{"path": str(gone)}, {"path": str(good)}], None)
    assert recs[0]["error"]["kind"] == "read_error" and "drawing not written" in recs[0]["error"]["message"]
    assert recs[0]["regions"] and recs[1]["regions"] and "error" not in recs[1]
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["good.jpg.jpg"]


def test_a_draw_folder_that_cannot_be_made_is_a_usage_error(cam_file, tmp_path):
    from emo.errors import UsageError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="--draw"):
        region_stage(_settings(), cam_file=cam_file, draw_dir=blocker / "sub")


def test_the_object_classifier_is_the_one_linear_layer_of_its_shape():
    state = {"features.0.weight": torch.zeros(8, 3, 3, 3), "classifier.1.weight": torch.ones(10, 8),
             "classifier.1.bias": torch.arange(10.0)}
    layer = object_classifier(state, 10, 8)
    assert torch.equal(layer.weight, torch.ones(10, 8)) and torch.equal(layer.bias, torch.arange(10.0))
    assert object_classifier(state, 10, 16) is None  # no layer reads 16 channels
    state["other.weight"] = torch.zeros(10, 8)  # two candidates: cannot tell which
    assert object_classifier(state, 10, 8) is None


def test_pace_tries_both_ways_takes_the_faster_and_looks_again():
    from emo.stages.regions_stage import Pace

    pace = Pace(every=6)
    pace.record(pace.way(), 9.0)  # the engine's first call sets it up: not a measure of its way
    assert not any(pace.seen.values())
    seen = []
    for _ in range(14):
        way = pace.way()
        seen.append(way)
        pace.record(way, {"all": 0.050, "one": 0.010}[way])  # one thread is 5x faster here
    assert seen[:2] == ["all", "one"]  # each tried once first
    assert seen[2:6] == ["one"] * 4  # then the faster
    assert seen[6:8] == ["all", "one"] and seen[8:12] == ["one"] * 4  # and both again every 6 calls
    pace = Pace(every=6)
    pace.warm = True
    for _ in range(3):
        for way, t in (("all", 0.01), ("one", 0.04)):
            pace.record(way, t)
    assert pace.way() == "all"


def test_feature_maps_are_the_same_bits_in_chunks_on_either_way(cam_file):
    stage = region_stage(_settings(), cam_file=cam_file)
    batch = torch.randint(0, 256, (5, 3, 320, 320), dtype=torch.uint8)
    whole = stage.engine(batch)[0]
    for _ in range(4):  # the first call (not timed), all threads, one thread, then the faster
        assert torch.equal(stage.feature_maps(batch), whole)
    assert all(len(v) >= 1 for v in stage.pace.seen.values())


def test_a_batch_shared_among_threads_gives_the_same_regions(cam_file, tmp_path, monkeypatch):
    """Where engine calls run at once (a lock-free engine), each thread takes whole pictures of the
    batch on one core: the records are the same, in order, as one thread's."""
    from emo.engine import Engine

    paths = [_noise(tmp_path / f"{i}.png", (40 + 7 * i, 30 + 5 * i), i) for i in range(13)]
    records = [{"path": str(p)} for p in paths]
    settings = replace(_settings(), batch_size=13)
    one = _run(region_stage(settings, top_k=3, cam_file=cam_file), records, None, settings)
    monkeypatch.setattr(Engine, "lock_free", property(lambda self: True))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    stage = region_stage(settings, top_k=3, cam_file=cam_file)
    shared = _run(stage, records, None, settings)
    assert stage._pool is not None and stage._pool_size == 2  # the batch was shared out
    assert shared == one


@pytest.mark.parametrize("regions", [
    [{"box": [0, 0, 10, 10], "p_obj": "abc"}],
    [{"box": [0, 0, 10, 10], "p_obj": None}],
    [{"box": [0, 0, 10, 10], "p_obj": [1]}],
    [{"box": [0, 0, 10, 10], "p_obj": 1e308}],
    [{"box": [0, 0, 10, 10], "p_obj": -0.5}],
    [{"box": [0, 0, 1e30, 1e30]}],
    [{"box": [0, 0, 1e308, 1e308]}],
    [{"box": [-1e30, -1e30, 5, 5]}],
    [{"box": [True, False, 3, 3]}],
    [{"box": [0, 0, 10, 10], "label": {"a": 1}}],
], ids=["p_obj_text", "p_obj_null", "p_obj_list", "p_obj_huge", "p_obj_negative", "box_huge", "box_overflow",
        "box_huge_negative", "box_booleans", "label_object"])
def test_regions_a_record_carries_that_emo_never_writes_are_found_afresh(cam_file, tmp_path, regions):
    """classify --regions reuses a record's boxes; edited ones (a file is anyone's) must neither
    fail the picture as a model error nor put infinities in its output: its regions are found again."""
    pic = _noise(tmp_path / "p.png", (64, 48))
    stage = region_stage(_settings(), top_k=3, cam_file=cam_file, local=True, emit=True)
    hostile, fresh = _run(stage, [{"path": str(pic), "regions": regions}, {"path": str(pic)}], None)
    assert "error" not in hostile and "error" not in fresh, hostile
    assert hostile["regions"] == fresh["regions"]
    assert all(np.isfinite(g["score"]) and 0 <= g["p_obj"] <= 1 for g in hostile["regions"])


def test_regions_as_emo_regions_writes_them_are_reused(cam_file, tmp_path):
    pic = _noise(tmp_path / "p.png", (64, 48))
    given = [{"box": [0, 0, 10, 10], "p_obj": 0.25, "label": "joy", "score": 1.0, "p_emo": 0.5}]
    stage = region_stage(_settings(), top_k=3, cam_file=cam_file, local=True, emit=True)
    (rec,) = _run(stage, [{"path": str(pic), "regions": given}], None)
    assert [(g["box"], g["p_obj"]) for g in rec["regions"]] == [([0, 0, 10, 10], 0.25)]


def test_a_shared_batch_that_fails_ends_every_part_before_it_is_retried(cam_file, monkeypatch):
    """A part that raises sends the batch back to be run picture by picture; no other part may
    still be writing into those records then (or later, while they are written out)."""
    import threading
    import time

    from emo.engine import Engine
    from emo.stages.regions_stage import RegionStage

    monkeypatch.setattr(Engine, "lock_free", property(lambda self: True))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    stage = region_stage(_settings(), top_k=3, cam_file=cam_file)
    done = threading.Event()

    def part(self, items):
        if items[0] == 0:
            raise ValueError("a bad picture")
        time.sleep(0.5)
        done.set()

    monkeypatch.setattr(RegionStage, "_run_part", part)
    with pytest.raises(ValueError):
        stage.run(list(range(8)))
    assert done.is_set()  # the slower part had ended when the failure came back


def test_batches_of_any_size_share_one_pool_that_no_call_shuts_down(cam_file, monkeypatch):
    """A shorter last batch (fewer threads) neither replaces the pool nor shuts it down under a
    call from another thread (emo.Predictor), which would then fail its whole batch."""
    from emo.engine import Engine
    from emo.stages.regions_stage import RegionStage

    monkeypatch.setattr(Engine, "lock_free", property(lambda self: True))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(RegionStage, "_run_part", lambda self, items: None)
    stage = region_stage(_settings(), top_k=3, cam_file=cam_file)
    stage.run(list(range(16)))  # four threads' worth
    pool = stage._pool
    for n in (12, 8, 16, 9):
        stage.run(list(range(n)))
        assert stage._pool is pool
    pool.submit(lambda: None).result()  # still open


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")
def test_a_forked_child_shares_its_batches_among_threads_of_its_own(cam_file, monkeypatch):
    """The parent's pool threads are not in a forked child: a share given to them never ran."""
    import threading

    from emo.engine import Engine
    from emo.stages.regions_stage import RegionStage

    monkeypatch.setattr(Engine, "lock_free", property(lambda self: True))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    ran: list[str] = []
    monkeypatch.setattr(RegionStage, "_run_part", lambda self, items: ran.append(threading.current_thread().name))
    stage = region_stage(_settings(), top_k=3, cam_file=cam_file)
    stage.run(list(range(8)))
    assert len(ran) == 2 and stage._pool is not None

    def child() -> bytes:
        ran.clear()
        stage.run(list(range(8)))
        return " ".join(name.split("_")[0] for name in ran).encode()

    assert in_fork(child) == b"emo-regions emo-regions"  # both shares, on the child's own pool
