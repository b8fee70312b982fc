"""emo.regions.local: RoIAlign pooling equals the crop's features; level fitting; K padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emo.regions.local import pad_regions, roi_features


def test_an_aligned_box_pools_to_the_mean_of_its_cells():
    torch.manual_seed(0)
    fmap = torch.randn(2, 5, 8, 10)
    boxes = [torch.tensor([[32.0, 0.0, 96.0, 64.0]]), torch.tensor([[0.0, 0.0, 320.0, 256.0], [288.0, 224.0, 320.0, 256.0]])]
    out = roi_features([(fmap, 32)], boxes)
    assert out.shape == (3, 5)
    assert torch.allclose(out[0], fmap[0, :, 0:2, 1:3].mean((1, 2)), atol=1e-5)
    assert torch.allclose(out[1], fmap[1].mean((1, 2)), atol=1e-5)
    assert torch.allclose(out[2], fmap[1, :, 7, 9], atol=1e-5)


class _PointwiseNet(nn.Module):
    """Per-pixel layers then 4x4 average pooling: a crop on the 4-pixel grid sees exactly its own cells."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.mix = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU(), nn.Conv2d(6, 6, 1))
        self.pool = nn.AvgPool2d(4)

    def forward(self, x):
        return self.pool(self.mix(x))


def test_roi_features_equal_the_features_of_the_crop_computed_directly():
    net = _PointwiseNet().eval()
    img = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        fmap = net(img)
        for x0, y0, x1, y1 in [(8, 12, 40, 44), (0, 0, 96, 64), (52, 20, 92, 36)]:
            crop = net(img[:, :, y0:y1, x0:x1]).mean((2, 3))[0]
            pooled = roi_features([(fmap, 4)], [torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32)])[0]
            assert torch.allclose(pooled, crop, atol=1e-5), (x0, y0, x1, y1)


def test_each_box_pools_from_the_pyramid_level_that_fits_it():
    # Level k is filled with the constant k, so the pooled value names the level used.
    levels = [(torch.full((1, 1, 512 // 2**k, 512 // 2**k), float(k)), 2**k) for k in (2, 3, 4, 5)]
    boxes = torch.tensor([[0, 0, 56, 56], [0, 0, 112, 112], [0, 0, 224, 224], [0, 0, 448, 448],
                          [0, 0, 16, 16], [0, 0, 512, 512], [0, 0, 300, 100]], dtype=torch.float32)
    got = roi_features(levels, [boxes])[:, 0].tolist()
    # FPN eq. 1: floor(4 + log2(sqrt(wh) / 224)), clamped to 2..5; sqrt(300 * 100) = 173 -> 3.
    assert got == pytest.approx([2.0, 3.0, 4.0, 5.0, 2.0, 5.0, 3.0], abs=1e-5)


def test_fewer_regions_than_k_are_zero_padded_with_a_mask():
    local = torch.arange(6.0).reshape(3, 2) + 1
    feats, mask = pad_regions(local, 5)
    assert feats.shape == (5, 2) and torch.equal(feats[:3], local) and not feats[3:].any()
    assert mask.tolist() == [True, True, True, False, False]
    feats, mask = pad_regions(torch.ones(7, 2), 5)
    assert feats.shape == (5, 2) and bool(mask.all())
    feats, mask = pad_regions(torch.zeros(0, 2), 3)
    assert feats.shape == (3, 2) and not mask.any()


def test_pooling_weights_give_torchvisions_roi_align_for_any_box():
    from torchvision.ops import roi_align

    from emo.regions.local import pool

    gen = torch.Generator().manual_seed(0)
    for h, w, s in [(10, 10, 32), (1, 7, 32), (5, 1, 4), (13, 9, 8)]:
        fmap = torch.randn(6, h, w, generator=gen)
        n = 64
        x0 = torch.rand(n, generator=gen) * (w * s + 2 * s) - s  # some boxes start off the map
        y0 = torch.rand(n, generator=gen) * (h * s + 2 * s) - s
        boxes = torch.stack([x0, y0, x0 + torch.rand(n, generator=gen) * w * s * 1.3 + 0.01,
                             y0 + torch.rand(n, generator=gen) * h * s * 1.3 + 0.01], 1)
        boxes[::2] = boxes[::2].round()
        want = roi_align(fmap[None], torch.cat([torch.zeros(n, 1), boxes], 1), 1, 1.0 / s, 0, True).flatten(1)
        assert torch.allclose(pool(fmap, s, boxes), want, atol=1e-5), (h, w, s)
