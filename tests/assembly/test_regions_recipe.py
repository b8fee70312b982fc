"""emo.assembly.regions_recipe: the layer files are checked and read when the run starts, once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emo.assembly.regions_recipe import region_stage
from emo.config import from_env
from emo.errors import ModelError
from emo.io.records import item_from_record
from emo.pipeline import run
from emo.regions.layers import LinearLayer


def _layer(path: Path, kind: str, rows: int, cols: int, **header) -> Path:
    w = torch.zeros(rows, cols)
    w[0, : cols // 2] = 1.0
    LinearLayer(w, torch.zeros(rows), {"kind": kind, "labels": [f"c{i}" for i in range(rows)], **header}).save(path)
    return path


def _settings():
    return replace(from_env(), backbone="tiny_test", device="cpu", backend="eager", batch_size=4)


def test_layer_files_replaced_after_the_start_are_not_read_again(tiny_backbone, tmp_path):
    cam = _layer(tmp_path / "cam.safetensors", "cam", 3, 8, backbone="tiny_test")
    head = _layer(tmp_path / "head.safetensors", "region_head", 2, 16)
    stage = region_stage(_settings(), top_k=3, cam_file=cam, region_head=head)
    assert not stage.built  # torch and the engine load with the first batch
    cam.write_bytes(b"replaced while the run started")
    head.unlink()
    picture = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(picture)
    out: list = []
    run([item_from_record(0, {"path": str(picture)}, None)], [stage], _settings(), out.extend,
        on_error=lambda item: None)
    (rec,) = [it.record for it in out]
    assert "error" not in rec and 1 <= len(rec["regions"]) <= 3


def test_a_layer_for_another_backbone_is_refused_before_any_input(tiny_backbone, tmp_path):
    cam = _layer(tmp_path / "cam.safetensors", "cam", 3, 8, backbone="mobilenet_v2")
    with pytest.raises(ModelError, match="trained on mobilenet_v2"):
        region_stage(_settings(), cam_file=cam)
