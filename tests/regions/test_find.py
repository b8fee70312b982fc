"""emo.regions.find / proposals: boxes inside the picture, in original pixels, K handling."""

from __future__ import annotations

import torch

from emo.regions.find import RegionFinder, to_original, to_view
from emo.regions.layers import LinearLayer
from emo.regions.proposals import anchors, box_mass

VIEW = 320


def _cam_layer() -> LinearLayer:
    """Two channels, two emotions: 'joy' reads channel 0, 'neutral' channel 1."""
    return LinearLayer(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2), {"kind": "cam", "labels": ["joy", "neutral"]})


def _hot_map(cells: tuple[slice, slice]) -> torch.Tensor:
    fmap = torch.zeros(1, 2, VIEW // 32, VIEW // 32)
    fmap[0, 1] = 5.0  # neutral is strong everywhere but is never the emotion regions follow
    fmap[0, 0][cells] = 10.0
    return fmap


def test_view_and_original_coordinates_round_trip():
    size = (800, 400)  # fit view 320 x 160: scale 0.4
    b = torch.tensor([[100.0, 50.0, 700.0, 390.0]])
    v = to_view(b, size, VIEW)
    assert torch.allclose(v, torch.tensor([[40.0, 20.0, 280.0, 156.0]]))
    assert torch.allclose(to_original(v, size, VIEW), b)
    assert to_original(torch.tensor([[-5.0, -5.0, 400.0, 400.0]]), size, VIEW).tolist() == [[0.0, 0.0, 800.0, 400.0]]


def test_anchors_stay_inside_the_picture_at_the_paper_sizes():
    for k, b in anchors(320, 160):
        assert b[:, 0].min() >= 0 and b[:, 1].min() >= 0 and b[:, 2].max() <= 320 and b[:, 3].max() <= 160
        side = {2: 32, 3: 64, 4: 128, 5: 256}[k]
        assert float((b[:, 2] - b[:, 0]).max()) == side


def test_box_mass_is_the_share_inside_the_box():
    act = torch.zeros(10, 10)
    act[2:4, 2:4] = 1.0
    act[8, 8] = 4.0
    m = box_mass(act, torch.tensor([[0.0, 0, 10, 10], [2, 2, 4, 4], [8, 8, 9, 9], [5, 0, 8, 5]]))
    assert torch.allclose(m, torch.tensor([1.0, 0.5, 0.5, 0.0]))


def test_regions_find_the_hot_spot_in_original_pixels():
    # Original 800 x 400 -> fit view 320 x 160; hot cells x 5..6, y 1..2 = view px 160..224, 32..96
    # = original px 400..560, 80..240.
    finder = RegionFinder(_cam_layer(), None, VIEW, top_k=10, iou=0.5)
    (r,) = finder.find(_hot_map((slice(1, 3), slice(5, 7))), [(800, 400)])
    assert r.emotion == "joy" and r.labels[0] == "joy"
    assert 1 <= r.boxes.shape[0] <= 10
    assert (r.boxes[:, 0] >= 0).all() and (r.boxes[:, 2] <= 800).all()
    assert (r.boxes[:, 1] >= 0).all() and (r.boxes[:, 3] <= 400).all()
    assert (r.score[:-1] >= r.score[1:]).all()
    x0, y0, x1, y1 = r.boxes[0].tolist()
    assert x0 <= 420 and x1 >= 540 and y0 <= 100 and y1 >= 220, r.boxes[0]
    assert x1 - x0 < 800  # a box around the spot, not the whole picture
    assert torch.allclose(r.score, torch.sqrt(r.p_emo**2 + r.p_obj**2))


def test_fewer_candidates_than_k_give_fewer_regions_and_given_boxes_are_rescored():
    finder = RegionFinder(_cam_layer(), None, VIEW, top_k=10, iou=0.5)
    given = (torch.tensor([[400.0, 80.0, 560.0, 240.0], [0.0, 300.0, 100.0, 400.0]]), torch.tensor([0.2, 0.6]), ["cat", "dog"])
    (r,) = finder.find(_hot_map((slice(1, 3), slice(5, 7))), [(800, 400)], [given])
    assert r.boxes.shape == (2, 4) and r.local.shape == (2, 2)
    assert r.labels == ["cat", "dog"]  # the spot box: p_emo ~1, p_obj 0.2 beats the empty corner (0, 0.6)
    assert float(r.p_emo[0]) > 0.75 and float(r.p_emo[1]) == 0.0
    assert r.boxes[0].tolist() == [400, 80, 560, 240]  # whole pixels, back where they were given
