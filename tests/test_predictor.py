"""emo.Predictor: the same records as the command line, from paths, records, arrays or columns."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import orjson
import pytest
from PIL import Image

import emo
from emo.errors import UsageError
from tests.conftest import FORK_TIMEOUT, alike_images, in_fork, make_image
from tests.robustness.conftest import TINY, assert_same_records, emo as run_emo


@pytest.fixture
def predictor(tiny_backbone):
    return emo.Predictor(*TINY)


def _lines(records) -> bytes:
    from emo.io.writer import dumps

    return b"".join(dumps(r) for r in records)


def test_records_equal_the_command_lines(tiny_backbone, predictor, tmp_path):
    paths = [str(make_image(tmp_path / f"{i}.png", color=(40 * i, 200 - 30 * i, 90))) for i in range(5)]
    paths.insert(2, str(tmp_path / "missing.png"))
    cli = run_emo(TINY + paths)
    got = predictor(paths)
    assert [r.get("error", {}).get("kind") for r in got] == [None, None, "not_found", None, None, None]
    assert_same_records(_lines(got), cli.out)


def test_names_that_are_not_utf8_are_named_as_the_command_line_names_them(predictor, tmp_path):
    pics = alike_images(tmp_path)
    cli = run_emo(TINY + [str(p) for p in pics])
    got = predictor([pics[0], {"path": str(pics[1]), "label": "joy"}])
    assert got[1].pop("label") == "joy"
    assert_same_records(_lines(got), cli.out)
    assert [r["path_bytes"] for r in got] == [r["path_bytes"] for r in cli.records]


def test_names_given_as_bytes_are_files_like_their_str_spelling(predictor, tmp_path):
    import os

    pics = alike_images(tmp_path)
    got = predictor([os.fsencode(pics[0]), os.fsencode(pics[1])])
    assert [r.get("error") for r in got] == [None, None]
    assert_same_records(_lines(got), _lines(predictor([str(p) for p in pics])))


def test_a_name_no_file_system_can_hold_never_opens_its_readable_spelling(predictor, tmp_path):
    # "x\ud800.png" reads as "x?.png": that file exists and must not be taken for it.
    make_image(tmp_path / "x?.png")
    make_image(tmp_path / "x\ufffd.png")
    name = str(tmp_path / "x\ud800.png")
    got = predictor([name, {"path": name, "label": "joy"}, str(tmp_path / "x?.png")])
    assert [r.get("error", {}).get("kind") for r in got] == ["bad_path", "bad_path", None]
    assert "features" not in got[0] and "features" not in got[1] and got[1]["label"] == "joy"
    _lines(got)  # each record can still be written as UTF-8 JSON


def test_loads_once_and_keeps_input_fields(predictor, tmp_path):
    stages = predictor.stages
    p = str(make_image(tmp_path / "a.png"))
    (rec,) = predictor([{"path": p, "label": "joy"}])
    assert rec["label"] == "joy" and len(rec["features"]["object"]) == 10
    predictor([p])
    assert predictor.stages is stages


def test_carried_arrays_are_kept_and_checked_like_json_lists(predictor, tmp_path):
    # A Python caller's numpy arrays were dropped and the group recomputed; now they are carried.
    p = str(make_image(tmp_path / "a.png"))
    probs = np.full(10, 0.1, np.float32)
    kept, short, flat = predictor([{"path": p, "features": {"object": probs}},
                                   {"path": p, "features": {"object": np.zeros(3)}},
                                   {"path": p, "features": {"object": np.zeros((2, 5))}}])
    assert kept["features"]["object"].tolist() == probs.tolist() and "error" not in kept
    assert short["error"] == {"kind": "bad_features",
                              "message": "features.object has 3 values; object has 10 from tiny_test"
                              " (computed by another --backbone?)"}
    assert flat["error"]["message"].startswith("features.object is an array of 2 dimensions;")


def test_arrays_and_pil_images_match_their_files(predictor, tmp_path):
    p = make_image(tmp_path / "a.png", size=(80, 60), color=(10, 120, 230))
    arr = np.asarray(Image.open(p).convert("RGB"))
    from_file, from_array, from_pil = predictor([str(p), arr, Image.open(p)])
    assert "path" not in from_array
    for r in (from_array, from_pil):
        np.testing.assert_allclose(r["features"]["object"], from_file["features"]["object"], rtol=1e-5, atol=1e-7)


def test_a_bad_array_is_an_error_record_not_an_exception(predictor):
    bad, good = predictor([np.zeros((4, 4), np.float32), np.full((8, 8, 3), 200, np.uint8)])
    assert bad["error"]["kind"] == "not_an_image" and "features" in good


def test_column_batches_like_ray_datas(predictor, tmp_path):
    p = str(make_image(tmp_path / "a.png"))
    recs = predictor({"path": np.array([p, p]), "id": np.array([7, 8])})
    assert [r["id"] for r in recs] == [7, 8] and all(type(r["id"]) is int for r in recs)
    orjson.dumps(recs, option=orjson.OPT_SERIALIZE_NUMPY)
    arr = np.asarray(Image.open(p).convert("RGB"))
    (rec,) = predictor({"path": np.array([p]), "image": [arr]})
    assert rec["path"] == p and "features" in rec


def test_options_are_checked_like_the_command_line(tiny_backbone):
    with pytest.raises(UsageError, match="no-such-option"):
        emo.Predictor("features", "--no-such-option")
    with pytest.raises(UsageError, match="not a filter subcommand"):
        emo.Predictor("models")


def test_import_emo_does_not_import_torch():
    code = "import emo, sys; emo.__version__; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")

# The hand-crafted groups on their worker threads beside the backbone (emo.stages.together).
TOGETHER = ["features", "--set", "color,lbp,object", "--backbone", "tiny_test", "--batch-size", "4"]


def _cam(tmp_path) -> str:
    """A CAM layer for tiny_test's 8 channels (see tests/stages/test_regions_stage.py)."""
    import torch

    from emo.regions.layers import LinearLayer

    w = torch.zeros(3, 8)
    w[0, :4], w[1, 4:], w[2] = 1.0, 1.0, 0.5
    path = tmp_path / "cam.safetensors"
    LinearLayer(w, torch.zeros(3), {"kind": "cam", "labels": ["joy", "sadness", "neutral"],
                                    "backbone": "tiny_test"}).save(path)
    return str(path)


def _pictures(tmp_path, n: int = 9) -> list[str]:
    return [str(make_image(tmp_path / f"{i}.png", size=(64 + 8 * i, 48 + 5 * i), color=(25 * i, 200 - 20 * i, 90)))
            for i in range(n)]


@needs_fork
@pytest.mark.parametrize("command", ["features", "regions"])
def test_a_child_forked_after_a_call_gets_the_parents_records(tiny_backbone, tmp_path, command):
    """The parent's thread pools and torch's OpenMP threads are not in a forked child: its call
    waited forever on them. Now the child makes its own and writes the parent's records."""
    args = TOGETHER if command == "features" else ["regions", "--cam", _cam(tmp_path), "--backbone", "tiny_test",
                                                   "--batch-size", "4"]
    p = emo.Predictor(*args)
    paths = _pictures(tmp_path)
    want = _lines(p(paths))
    assert _lines(p(paths)) == want  # the parent's own records are the same bits call after call
    assert in_fork(lambda: _lines(p(paths))) == want
    assert _lines(p(paths)) == want  # and the parent is as it was


_forked: emo.Predictor | None = None  # the predictor multiprocessing's forked workers call


def _work(paths: list[str]) -> bytes:
    assert _forked is not None
    return _lines(_forked(paths))


@needs_fork
def test_a_fork_pool_of_workers_calls_the_parents_predictor(tiny_backbone, tmp_path, monkeypatch):
    """``p(...)`` then ``multiprocessing.Pool(2).map(work, chunks)`` with ``work`` calling ``p``."""
    import multiprocessing

    paths = _pictures(tmp_path, 8)
    monkeypatch.setattr(sys.modules[__name__], "_forked", emo.Predictor(*TOGETHER))
    want = [_lines(_forked(paths[:4])), _lines(_forked(paths[4:]))]
    with multiprocessing.get_context("fork").Pool(2) as pool:  # leaving it kills hung workers
        assert pool.map_async(_work, [paths[:4], paths[4:]]).get(timeout=FORK_TIMEOUT) == want


def test_a_cuda_predictor_in_a_process_forked_after_cuda_was_used_says_so(predictor, tmp_path, monkeypatch):
    """torch refuses CUDA in such a child: every record would fail; the call fails at once instead."""
    import dataclasses

    import torch

    from emo.errors import EmoError

    monkeypatch.setattr(torch.cuda, "_is_in_bad_fork", lambda: True)
    monkeypatch.setattr(predictor, "settings", dataclasses.replace(predictor.settings, device="cuda:1"))
    with pytest.raises(EmoError, match=r"CUDA \(device cuda:1\).*'spawn' or 'forkserver'"):
        predictor([str(make_image(tmp_path / "a.png"))])
    monkeypatch.setattr(predictor, "settings", dataclasses.replace(predictor.settings, device="cpu"))
    assert "error" not in predictor([str(make_image(tmp_path / "a.png"))])[0]  # CPU work is unaffected
