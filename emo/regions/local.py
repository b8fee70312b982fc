"""Local features of regions (Rao et al. eq. 5): RoIAlign over the pyramid level that fits each box.

Each box is pooled to one vector: RoIAlign with a 1 x 1 output and an adaptive sampling grid
(one sample per feature cell the box spans, ``aligned=True``), so for a box on cell boundaries
the result is exactly the mean of the feature cells inside it (the crop's pooled features).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.ops import roi_align

from emo.models.pyramid import assign_levels


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
    rois = torch.cat([torch.cat([torch.full((b.shape[0], 1), float(i)), b.float()], 1) for i, b in enumerate(boxes)])
    if len(levels) == 1:
        which = torch.zeros(n, dtype=torch.long)
    else:
        level_ids = tuple(int(s).bit_length() - 1 for _, s in levels)  # stride 2**k -> k
        k = assign_levels(rois[:, 1:], levels=level_ids)
        which = torch.tensor([level_ids.index(int(v)) for v in k], dtype=torch.long)
    for j, (fmap, s) in enumerate(levels):
        idx = (which == j).nonzero(as_tuple=True)[0]
        if idx.numel():
            pooled = roi_align(fmap.float(), rois[idx].to(fmap.device), output_size=1,
                               spatial_scale=1.0 / s, sampling_ratio=0, aligned=True)
            out[idx] = pooled.flatten(1).cpu()
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
    return torch.cat([roi_features([(fmap, stride)], [boxes]), roi_features([(fmap, stride)], [wide])], 1)
