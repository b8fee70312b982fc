"""The emotion score of a region (Rao et al. eq. 3), non-maximum suppression, and anchor labels.

Boxes are ``(N, 4) float32`` as ``[x0, y0, x1, y1]`` in pixels, x1 > x0, y1 > y0.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# Rao et al. section 4.1: IoU >= 0.7 with a ground-truth emotional region is positive, < 0.3 negative.
POSITIVE_IOU = 0.7
NEGATIVE_IOU = 0.3


def emotion_score(p_emo: torch.Tensor, p_obj: torch.Tensor) -> torch.Tensor:
    """S_emo = sqrt(p_emo^2 + p_obj^2), element-wise; inputs in [0, 1], result in [0, sqrt(2)]."""
    return torch.sqrt(p_emo.float() ** 2 + p_obj.float() ** 2)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every box in ``a (N, 4)`` with every box in ``b (M, 4)``: ``(N, M)``."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms_order(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> Iterator[int]:
    """Greedy non-maximum suppression, lazily: indices of kept boxes, best score first.

    The same rule and arithmetic as torchvision's ``nms`` (stable descending sort; a box goes when
    its float32 IoU with a kept one is over ``iou``), without importing torchvision, which costs
    seconds of start-up. A caller that needs only the first few stops early.
    """
    b = boxes.detach().float().numpy()
    if b.shape[0] == 0:
        return
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x1 - x0) * (y1 - y0)
    w = np.maximum(np.float32(0), np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :]))
    h = np.maximum(np.float32(0), np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :]))
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: 0 / 0 is not an overlap
        over = inter / (area[:, None] + area[None, :] - inter) > iou
    order = np.argsort(-scores.detach().float().numpy(), kind="stable")
    gone = np.zeros(b.shape[0], dtype=bool)
    for i in order:
        if not gone[i]:
            yield int(i)
            gone |= over[i]


def select(boxes: torch.Tensor, scores: torch.Tensor, iou: float, top_k: int) -> torch.Tensor:
    """Indices of the boxes kept by NMS at ``iou``, best score first, at most ``top_k`` (may be fewer)."""
    keep: list[int] = []
    if top_k > 0:
        for i in nms_order(boxes, scores, iou):
            keep.append(i)
            if len(keep) == top_k:
                break
    return torch.tensor(keep, dtype=torch.long)


def label_anchors(anchors: torch.Tensor, truth: torch.Tensor,
                  positive: float = POSITIVE_IOU, negative: float = NEGATIVE_IOU) -> torch.Tensor:
    """Training label of each anchor against ground-truth boxes: 1 emotional, 0 not, -1 ignored.

    ``anchors (N, 4)``, ``truth (M, 4)``. Positive: IoU >= ``positive`` with any truth box, or the
    anchor with the highest IoU for a truth box; negative: IoU < ``negative`` with every truth box.
    """
    labels = torch.full((anchors.shape[0],), -1, dtype=torch.long)
    if anchors.numel() == 0:
        return labels
    if truth.numel() == 0:
        return labels.fill_(0)
    iou = box_iou(anchors.float(), truth.float())  # (N, M)
    best = iou.max(dim=1).values
    labels[best < negative] = 0
    labels[best >= positive] = 1
    # Every truth box gets at least its best-matching anchor(s), however low the IoU.
    per_truth = iou.max(dim=0).values
    hit = (iou == per_truth[None, :]) & (per_truth[None, :] > 0)
    labels[hit.any(dim=1)] = 1
    return labels
