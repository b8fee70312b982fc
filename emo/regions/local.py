"""Local features of regions (Rao et al. eq. 5): RoIAlign over the pyramid level that fits each box.

Each box is pooled to one vector: RoIAlign with a 1 x 1 output and an adaptive sampling grid
(one sample per feature cell the box spans, ``aligned=True``), so for a box on cell boundaries
the result is exactly the mean of the feature cells inside it (the crop's pooled features).

RoIAlign with one output bin is linear in the map and its bilinear sample weights factor into a
row part and a column part, so it is computed here as a weight matrix ``(N, h * w)`` times the map:
the same numbers as torchvision's ``roi_align`` (to float rounding), one matrix product for all
boxes, and the same weights serve any other linear read-out of the map (a classifier's logits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from emo.models.pyramid import assign_levels


def _axis_weights(lo: torch.Tensor, hi: torch.Tensor, stride: int, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One axis of RoIAlign's samples: box edges ``(N,)`` in pixels -> summed weights ``(N, cells)``, grid ``(N,)``.

    Follows torchvision's CPU kernel (``aligned=True``, ``sampling_ratio=0``, one bin): samples at
    ``start + (k + 0.5) * length / grid``, dropped beyond one cell outside the map, clamped at 0,
    and the last cell taken whole at the far edge.
    """
    scale = 1.0 / stride
    start = lo.float() * scale - 0.5
    length = (hi.float() * scale - 0.5) - start
    grid = torch.ceil(length).clamp(min=0)
    n = max(int(grid.max()), 1) if grid.numel() else 1
    k = torch.arange(n, dtype=torch.float32)[None, :]
    pos = start[:, None] + (k + 0.5) * length[:, None] / grid.clamp(min=1)[:, None]
    valid = (k < grid[:, None]) & (pos >= -1.0) & (pos <= cells)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    edge = low >= cells - 1
    low = torch.where(edge, torch.full_like(low, cells - 1), low)
    high = torch.where(edge, low, low + 1)
    frac = torch.where(edge, torch.zeros_like(pos), pos - low.float())
    keep = valid.float()
    out = torch.zeros(lo.shape[0], cells, dtype=torch.float32)
    out.scatter_add_(1, low, (1.0 - frac) * keep)
    out.scatter_add_(1, high, frac * keep)
    return out, grid


def box_weights(boxes: torch.Tensor, stride: int, height: int, width: int) -> torch.Tensor:
    """RoIAlign (1 x 1, aligned, adaptive grid) as weights on the cells of an ``height`` x ``width`` map.

    ``boxes (N, 4)`` in pixels of a map with ``stride`` pixels per cell -> ``(N, height * width)``
    float32; ``weights @ fmap.reshape(C, -1).T`` is each box's pooled feature.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, height * width)
    wy, gy = _axis_weights(boxes[:, 1], boxes[:, 3], stride, height)
    wx, gx = _axis_weights(boxes[:, 0], boxes[:, 2], stride, width)
    count = (gy * gx).clamp(min=1)
    return ((wy[:, :, None] * wx[:, None, :]) / count[:, None, None]).reshape(boxes.shape[0], -1)


def pool(fmap: torch.Tensor, stride: int, boxes: torch.Tensor) -> torch.Tensor:
    """Pooled features of ``boxes (N, 4)`` (pixels) on one map ``fmap (C, h, w)`` -> ``(N, C) float32``."""
    c, h, w = fmap.shape
    return box_weights(boxes, stride, h, w) @ fmap.float().reshape(c, h * w).T


def roi_features(levels: Sequence[tuple[torch.Tensor, int]], boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Pool every box's features from the level that fits it.

    ``levels``: ``(feature map (B, C, h, w), stride)`` pairs, one per pyramid level, all with the
    same C (a single pair: every box pools from it). ``boxes``: B tensors ``(N_i, 4)`` in
    network-input pixels. Returns ``(sum N_i, C) float32`` in the order of the boxes.
    """
    n = sum(int(b.shape[0]) for b in boxes)
    channels = levels[0][0].shape[1]
    out = torch.zeros(n, channels, dtype=torch.float32)
    if n == 0:
        return out
    level_ids = tuple(int(s).bit_length() - 1 for _, s in levels)  # stride 2**k -> k
    at = 0
    for i, b in enumerate(boxes):
        b = b.float()
        if len(levels) == 1:
            which = torch.zeros(b.shape[0], dtype=torch.long)
        else:
            k = assign_levels(b, levels=level_ids)
            which = torch.tensor([level_ids.index(int(v)) for v in k], dtype=torch.long)
        for j, (fmap, s) in enumerate(levels):
            idx = (which == j).nonzero(as_tuple=True)[0]
            if idx.numel():
                out[at + idx] = pool(fmap[i].cpu(), s, b[idx])
        at += b.shape[0]
    return out


def pad_regions(local: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C)`` best-first features -> ``(k, C)`` zero-padded and a ``(k,)`` bool mask of real rows."""
    out = torch.zeros(k, local.shape[1], dtype=local.dtype)
    m = min(k, local.shape[0])
    out[:m] = local[:m]
    mask = torch.zeros(k, dtype=torch.bool)
    mask[:m] = True
    return out, mask


def with_context(fmap: torch.Tensor, stride: int, boxes: torch.Tensor) -> torch.Tensor:
    """A box's pooled features and those of the box twice its size around it: ``(N, 2 C)``.

    Mean pooling alone cannot tell a box from a smaller one inside the same object; the
    surroundings can (the region head's input). ``fmap (1, C, h, w)``, ``boxes (N, 4)`` in pixels.
    """
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = boxes[:, 2:] - boxes[:, :2]
    wide = torch.cat([c - half, c + half], 1)
    wide[:, 0::2] = wide[:, 0::2].clamp(0, fmap.shape[3] * stride)
    wide[:, 1::2] = wide[:, 1::2].clamp(0, fmap.shape[2] * stride)
    return torch.cat([pool(fmap[0], stride, boxes), pool(fmap[0], stride, wide)], 1)
