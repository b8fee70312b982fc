"""The emotion score of a region (Rao et al. eq. 3), non-maximum suppression, and anchor labels.

Boxes are ``(N, 4) float32`` as ``[x0, y0, x1, y1]`` in pixels, x1 > x0, y1 > y0.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou, nms

# Rao et al. section 4.1: IoU >= 0.7 with a ground-truth emotional region is positive, < 0.3 negative.
POSITIVE_IOU = 0.7
NEGATIVE_IOU = 0.3


def emotion_score(p_emo: torch.Tensor, p_obj: torch.Tensor) -> torch.Tensor:
    """S_emo = sqrt(p_emo^2 + p_obj^2), element-wise; inputs in [0, 1], result in [0, sqrt(2)]."""
    return torch.sqrt(p_emo.float() ** 2 + p_obj.float() ** 2)


def select(boxes: torch.Tensor, scores: torch.Tensor, iou: float, top_k: int) -> torch.Tensor:
    """Indices of the boxes kept by NMS at ``iou``, best score first, at most ``top_k`` (may be fewer)."""
    if boxes.numel() == 0 or top_k <= 0:
        return torch.zeros(0, dtype=torch.long)
    keep = nms(boxes.float(), scores.float(), iou)  # sorted by decreasing score
    return keep[:top_k]


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
