"""emo.regions.emotion_score: S_emo (Rao et al. eq. 3), NMS with top-K, and the anchor labelling rule."""

from __future__ import annotations

import math

import torch

from emo.regions.emotion_score import emotion_score, label_anchors, select


def test_emotion_score_is_the_euclidean_norm_of_the_two_probabilities():
    s = emotion_score(torch.tensor([0.6, 0.0, 1.0, 0.3]), torch.tensor([0.8, 0.5, 1.0, 0.0]))
    assert torch.allclose(s, torch.tensor([1.0, 0.5, math.sqrt(2), 0.3]))


def test_nms_drops_a_box_overlapping_a_better_one_and_keeps_score_order():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.1])
    keep = select(boxes, scores, iou=0.5, top_k=10)
    assert keep.tolist() == [1, 2]  # box 0 (IoU 0.68 with box 1) and box 3 are suppressed
    assert select(boxes, scores, iou=0.9, top_k=10).tolist() == [1, 0, 2, 3]


def test_top_k_cuts_and_fewer_candidates_give_fewer_regions():
    boxes = torch.tensor([[i * 20.0, 0, i * 20 + 10, 10] for i in range(5)])
    scores = torch.tensor([0.1, 0.5, 0.3, 0.9, 0.2])
    assert select(boxes, scores, 0.5, 3).tolist() == [3, 1, 2]
    assert select(boxes, scores, 0.5, 10).tolist() == [3, 1, 2, 4, 0]
    assert select(torch.zeros(0, 4), torch.zeros(0), 0.5, 10).numel() == 0


def test_anchor_labels_follow_the_iou_rule():
    truth = torch.tensor([[0.0, 0, 100, 100]])
    anchors = torch.tensor([
        [0.0, 0, 100, 90],    # IoU 0.9 -> positive
        [0.0, 0, 100, 50],    # IoU 0.5 -> ignored
        [0.0, 0, 100, 20],    # IoU 0.2 -> negative
        [200.0, 200, 300, 300],  # no overlap -> negative
    ])
    assert label_anchors(anchors, truth).tolist() == [1, -1, 0, 0]


def test_the_best_anchor_of_a_truth_box_is_positive_even_below_0_7():
    truth = torch.tensor([[0.0, 0, 100, 100]])
    anchors = torch.tensor([[0.0, 0, 100, 50], [0.0, 0, 100, 20]])
    assert label_anchors(anchors, truth).tolist() == [1, 0]
    assert label_anchors(anchors, torch.zeros(0, 4)).tolist() == [0, 0]


def test_select_keeps_what_torchvisions_nms_keeps_ties_included():
    from torchvision.ops import nms

    gen = torch.Generator().manual_seed(0)
    for trial in range(60):
        n = 1 + trial * 3
        xy = torch.rand(n, 2, generator=gen) * 300
        boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=gen) * 200 + 0.5], 1).round()
        scores = (torch.rand(n, generator=gen) * 5).round() / 5  # many equal scores
        iou = (0.3, 0.5, 0.7)[trial % 3]
        assert select(boxes, scores, iou, 10).tolist() == nms(boxes, scores, iou)[:10].tolist(), trial
