"""Scene shares: a registry segmentation network (random weights) and users' exported files."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from emo.features.segmentation import SceneShares, deeplabv3_mobilenet_v3_large, voc_labels
from tests.cli.test_cmd_models import emo

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


class ColourSegmenter(nn.Module):
    """Labels each pixel by its dominant channel (0 red, 1 green, 2 blue), at half resolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, 2)


def _half_red_half_blue(path, size=(64, 40)):
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    img.save(path)
    return path


@pytest.fixture
def labels_file(tmp_path):
    p = tmp_path / "labels.txt"
    p.write_text("red\ngreen\nblue\n")
    return p


def _check_red_blue(r, n=1):
    assert r.code == 0, r.err
    recs = r.records()
    assert len(recs) == n
    for rec in recs:
        s = rec["features"]["scene"]
        assert len(s) == 3 and sum(s) == pytest.approx(1.0)
        assert s[0] == pytest.approx(0.5, abs=0.04) and s[1] == 0 and s[2] == pytest.approx(0.5, abs=0.04)


def test_exported_program_file(monkeypatch, tmp_path, labels_file):
    ep = torch.export.export(ColourSegmenter(), (torch.rand(2, 3, 32, 32),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    model = tmp_path / "seg.pt2"
    torch.export.save(ep, str(model))
    imgs = [str(_half_red_half_blue(tmp_path / f"{i}.png")) for i in range(3)]
    r = emo(monkeypatch, "features", "--set", "scene", "--scene-model", str(model), "--scene-labels", str(labels_file), *imgs)
    _check_red_blue(r, 3)


def test_torchscript_file(monkeypatch, tmp_path, labels_file):
    model = tmp_path / "seg.ts"
    torch.jit.script(ColourSegmenter()).save(str(model))
    r = emo(monkeypatch, "features", "--set", "scene", "--scene-model", str(model), "--scene-labels", str(labels_file),
            str(_half_red_half_blue(tmp_path / "a.png")))
    _check_red_blue(r)


def test_user_model_needs_labels_and_a_real_file(monkeypatch, tmp_path, labels_file):
    model = tmp_path / "seg.ts"
    torch.jit.script(ColourSegmenter()).save(str(model))
    img = str(_half_red_half_blue(tmp_path / "a.png"))
    r = emo(monkeypatch, "features", "--set", "scene", "--scene-model", str(model), img)
    assert r.code == 2 and "--scene-labels" in r.err and r.out == b""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a network")
    r = emo(monkeypatch, "features", "--set", "scene", "--scene-model", str(junk), "--scene-labels", str(labels_file), img)
    assert r.code == 2 and "not a TorchScript file" in r.err
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n")
    r = emo(monkeypatch, "features", "--set", "scene", "--scene-model", str(model), "--scene-labels", str(two), img)
    assert r.code == 2 and "one channel per label" in r.err and r.out == b""


def test_no_scene_model_here_is_exit_2_with_the_fixes(monkeypatch):
    from emo.errors import WeightsNotFound
    from emo.models import weights

    def offline(wf, *args, **kwargs):  # what a machine without internet answers
        raise WeightsNotFound(f"cannot download {wf.url} (no network)")

    monkeypatch.setattr(weights, "download", offline)
    r = emo(monkeypatch, "features", "--set", "scene", "emo/data/samples/cat.jpg")
    assert r.code == 2 and r.out == b""
    assert "deeplabv3_mobilenet_v3_large" in r.err and "--scene-model FILE" in r.err and "--scene-labels FILE" in r.err


def test_registry_deeplab_with_random_weights(monkeypatch, tmp_path):
    """The registry path end to end: builder, hash-checked weights file, strict load, 21 shares."""
    import dataclasses

    from emo.models import registry
    from emo.models.registry import Preprocess, WeightsFile

    torch.manual_seed(0)
    net = deeplabv3_mobilenet_v3_large()
    wdir = tmp_path / "w"
    wdir.mkdir()
    path = wdir / "deeplab_test.pth"
    torch.save(net.state_dict(), path)
    entry = dataclasses.replace(
        registry.get("deeplabv3_mobilenet_v3_large"), name="deeplab_test",
        weights=WeightsFile("deeplab_test.pth", hashlib.sha256(path.read_bytes()).hexdigest(), license="test"),
        preprocess=Preprocess(crop=64, resize=64),
    )
    monkeypatch.setitem(registry.REGISTRY, "deeplab_test", entry)
    monkeypatch.setenv("EMO_WEIGHTS_DIR", str(wdir))
    img = str(_half_red_half_blue(tmp_path / "a.png"))
    r = emo(monkeypatch, "features", "--set", "scene,color", "--scene-model", "deeplab_test", img)
    assert r.code == 0, r.err
    (rec,) = r.records()
    s = np.array(rec["features"]["scene"])
    assert s.shape == (21,) == (len(voc_labels()),) and s.sum() == pytest.approx(1.0) and (s >= 0).all()
    assert len(rec["features"]["color"]) == 22


def test_scene_shares_counts_argmax_per_class():
    class Fixed(nn.Module):
        def forward(self, x):  # class 2 on the left quarter, class 0 elsewhere
            out = torch.zeros(x.shape[0], 4, 8, 8)
            out[:, 0] = 1.0
            out[:, 2, :, :2] = 2.0
            return {"out": out}

    shares = SceneShares(Fixed(), 4)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    torch.testing.assert_close(shares, torch.tensor([[0.75, 0.0, 0.25, 0.0]] * 2))
