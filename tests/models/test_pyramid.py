"""emo.models.pyramid: stage taps C2..C5, the FPN's P2..P5, and the level a box fits."""

from __future__ import annotations

import pytest
import torch

from emo.errors import ModelError
from emo.models import create, get
from emo.models.pyramid import FeaturePyramid, PyramidBackbone, StageTaps, assign_levels, find_module


@pytest.fixture(scope="module")
def mobilenet():
    return create("mobilenet_v2", pretrained=False).eval()


def test_taps_give_c2_to_c5_at_strides_4_to_32_with_the_registry_channels(mobilenet):
    entry = get("mobilenet_v2")
    taps = StageTaps(mobilenet.body, entry.stages).eval()
    with torch.no_grad():
        c = taps(torch.randn(1, 3, 128, 96))
    assert list(c) == ["c2", "c3", "c4", "c5"]
    assert [t.shape[1] for t in c.values()] == [ch for _, ch in entry.stages]
    assert [tuple(t.shape[2:]) for t in c.values()] == [(32, 24), (16, 12), (8, 6), (4, 3)]


def test_the_last_tap_is_the_map_the_embedding_pools(mobilenet):
    taps = StageTaps(mobilenet.body, get("mobilenet_v2").stages[-1:]).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        c5 = taps(x)["c5"]
        emb = mobilenet.body(x)
    assert torch.allclose(c5.mean((2, 3)), emb, atol=1e-5)


def test_pyramid_levels_have_one_width_and_the_stage_sizes(mobilenet):
    entry = get("mobilenet_v2")
    taps = StageTaps(mobilenet.body, entry.stages)
    fpn = FeaturePyramid([ch for _, ch in entry.stages], 64)
    with torch.no_grad():
        p = fpn(taps(torch.randn(1, 3, 64, 64)))
    assert list(p) == ["p2", "p3", "p4", "p5"]
    assert [tuple(t.shape[1:]) for t in p.values()] == [(64, 16, 16), (64, 8, 8), (64, 4, 4), (64, 2, 2)]


def test_pyramid_backbone_keys_for_faster_rcnn(mobilenet):
    pb = PyramidBackbone(mobilenet.body, get("mobilenet_v2")).eval()
    with torch.no_grad():
        out = pb(torch.randn(1, 3, 64, 64))
    assert list(out) == ["0", "1", "2", "3"] and pb.out_channels == 256


def test_a_network_without_four_stages_has_no_p2_to_p5(tiny_backbone):
    net = create("tiny_test", pretrained=False)
    with pytest.raises(ModelError, match="needs 4 stages"):
        PyramidBackbone(net.body, tiny_backbone)


def test_an_unknown_stage_is_a_model_error(mobilenet):
    with pytest.raises(ModelError, match="no matching modules"):
        find_module(mobilenet.body, "features.99")


def test_assign_levels_follows_fpn_eq_1():
    sides = torch.tensor([16.0, 56, 111, 112, 224, 447, 448, 2000])
    boxes = torch.stack([torch.zeros(8), torch.zeros(8), sides, sides], 1)
    assert assign_levels(boxes).tolist() == [2, 2, 2, 3, 4, 4, 5, 5]
