"""emo.regions.rcnn: the Faster R-CNN source end to end with random weights, and COCO key mapping."""

from __future__ import annotations

import pytest
import torch

from emo.config import from_env
from emo.regions.find import RegionFinder
from emo.regions.layers import LinearLayer
from emo.regions.rcnn import Detector, _coco_state, build_detector


@pytest.fixture(scope="module")
def small_detector():
    # Random weights, tiny input; a zero score threshold so random class scores still give boxes.
    torch.manual_seed(0)
    return build_detector("mobilenet_v2", min_size=64, max_size=96, score_thresh=0.0, settings=from_env())


def test_rcnn_runs_end_to_end_with_random_weights(small_detector):
    det = Detector(small_detector)
    pics = [torch.randint(0, 255, (3, 60, 80), dtype=torch.uint8), torch.randint(0, 255, (3, 90, 40), dtype=torch.uint8)]
    out = det(pics)
    assert len(out) == 2
    for d, p in zip(out, pics):
        h, w = p.shape[1:]
        assert d.boxes.shape[1] == 4 and d.boxes.shape[0] == d.scores.shape[0] == len(d.labels) > 0
        assert (d.boxes[:, 0] >= 0).all() and (d.boxes[:, 2] <= w).all() and (d.boxes[:, 3] <= h).all()
        assert ((d.scores >= 0) & (d.scores <= 1)).all()
        assert all(lab in det.categories for lab in d.labels)
    # The anchors are the paper's: one square size per level, 32..256.
    gen = small_detector.rpn.anchor_generator
    assert gen.sizes == ((32,), (64,), (128,), (256,)) and gen.num_anchors_per_location() == [1, 1, 1, 1]
    # Detections feed the region finder: boxes in the picture's pixels, rescored with S_emo.
    d = out[0]
    cam = LinearLayer(torch.randn(2, 1280) * 0.01, torch.zeros(2), {"kind": "cam", "labels": ["joy", "neutral"]})
    finder = RegionFinder(cam, None, view=96, top_k=3)
    (r,) = finder.find(torch.rand(1, 1280, 3, 3), [(80, 60)], [(d.boxes, d.scores, d.labels)])
    assert 1 <= r.boxes.shape[0] <= 3 and (r.boxes[:, 2] <= 80).all() and (r.boxes[:, 3] <= 60).all()
    assert set(r.labels) <= set(d.labels)


def test_torchvision_coco_checkpoint_keys_map_onto_the_pyramid_detector():
    """torchvision's own resnet50 FPN detector (random) -> our layout: same pyramid outputs, 1:1 RPN anchor."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    ref = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    ours = build_detector("resnet50", settings=from_env())
    ours.load_state_dict(_coco_state(ref.state_dict(), ours), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = ref.backbone(x), ours.backbone(x)
        for k in ("0", "1", "2", "3"):
            assert torch.allclose(a[k], b[k], atol=1e-4)
        feat = [a["0"]]
        ref_cls, ref_box = ref.rpn.head(feat)
        our_cls, our_box = ours.rpn.head(feat)
    assert torch.allclose(our_cls[0], ref_cls[0][:, 1:2]) and torch.allclose(our_box[0], ref_box[0][:, 4:8])
