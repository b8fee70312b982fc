"""The ``cam`` proposal source: boxes at the pyramid's anchor scales, scored by emotion activation.

Anchors follow Rao et al. section 3.2: one square anchor size per pyramid level, 32, 64, 128
and 256 pixels on P2..P5 (strides 4..32), centred on every cell of that level. A box's p_emo is
the share of the image's emotion activation it holds: the class activation map of the image's
strongest emotion, minus its mean over the picture and clipped at zero (above-average
evidence), summed inside the box over the sum over the picture. Boxes are in view pixels.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from emo.models.pyramid import LEVELS, stride

# Rao et al.: anchors of 32^2 .. 256^2 pixels on P2 .. P5, aspect 1:1.
ANCHOR_SIZES = {2: 32, 3: 64, 4: 128, 5: 256}


def anchors(width: int, height: int, levels: tuple[int, ...] = LEVELS) -> list[tuple[int, torch.Tensor]]:
    """Square anchors per level, centred on the level's cells and clipped to ``width`` x ``height``.

    Returns ``(level, boxes (N, 4) float32)`` pairs; clipping can make boxes repeat, repeats are dropped.
    The boxes are shared between calls with the same picture size: callers must not write to them.
    """
    # Normal tensors even under inference_mode: a cached box may later meet autograd (emo fit).
    with torch.inference_mode(False):
        return _anchors(int(width), int(height), tuple(levels))


# Pictures in one folder come in few sizes; building the anchors was 8% of emo regions' time.
@functools.lru_cache(maxsize=256)
def _anchors(width: int, height: int, levels: tuple[int, ...]) -> list[tuple[int, torch.Tensor]]:
    out = []
    for k in levels:
        s, half = stride(k), ANCHOR_SIZES[k] / 2
        cx, cy = _centres(width, s), _centres(height, s)
        yy, xx = torch.meshgrid(cy, cx, indexing="ij")
        b = torch.stack([xx - half, yy - half, xx + half, yy + half], -1).reshape(-1, 4)
        b[:, 0::2] = b[:, 0::2].clamp(0, width)
        b[:, 1::2] = b[:, 1::2].clamp(0, height)
        b = _unique_rows(b.round(), max(width, height) + 1)
        b = b[(b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)]
        out.append((k, b))
    return out


def _unique_rows(b: torch.Tensor, bound: int) -> torch.Tensor:
    """``torch.unique(b, dim=0)`` for rows of whole numbers in ``[0, bound)``: sorted, each once.

    Each row is packed into one integer whose order is the rows' lexicographic order, and 1-D
    unique is many times faster than unique over rows (it was most of building anchors).
    """
    if bound ** 4 >= 2**63:
        return torch.unique(b, dim=0)
    v = b.long()
    key = torch.unique(((v[:, 0] * bound + v[:, 1]) * bound + v[:, 2]) * bound + v[:, 3])
    cols = []
    for _ in range(4):
        cols.append(key % bound)
        key = key // bound
    return torch.stack(cols[::-1], 1).to(b.dtype)


def _centres(length: int, s: int) -> torch.Tensor:
    """Centres of a level's cells along one side: ``s/2, 3s/2, ...`` below ``length``.

    A side shorter than half a cell (a 320 x 11 strip on the stride-32 level) has no cell centre
    inside it; its one anchor row is then centred on the side, so every level proposes something.
    """
    c = torch.arange(s / 2, length, s, dtype=torch.float32) if length > s / 2 else torch.empty(0)
    return c if c.numel() else torch.tensor([length / 2], dtype=torch.float32)


def activation(cam: torch.Tensor, width: int, height: int, size: int) -> torch.Tensor:
    """Above-average activation in view pixels: ``cam (h, w)`` on the view's cells -> ``(height, width)``.

    The map is upsampled to the ``size`` x ``size`` view, cut to the picture (the padding of a
    ``fit`` view holds no picture), then its mean is subtracted and negatives are set to zero.
    """
    up = F.interpolate(cam[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    up = up[:height, :width]
    return (up - up.mean()).clamp(min=0)


def integral_image(act: torch.Tensor) -> torch.Tensor:
    """``act (H, W)`` -> its summed-area table ``(H + 1, W + 1) float64`` with a zero first row and column."""
    return F.pad(act.double().cumsum(0).cumsum(1), (1, 0, 1, 0))


def box_mass(act: torch.Tensor, boxes: torch.Tensor, integral: torch.Tensor | None = None) -> torch.Tensor:
    """Share of ``act``'s total inside each box: ``act (H, W) >= 0``, ``boxes (N, 4)`` -> ``(N,)`` in [0, 1].

    ``integral``: :func:`integral_image` of ``act`` when the caller already has it (one per picture).
    """
    total = act.sum()
    if boxes.numel() == 0 or total <= 0:
        return torch.zeros(boxes.shape[0])
    if integral is None:
        integral = integral_image(act)
    h, w = act.shape
    b = boxes.round().long()
    x0, x1 = b[:, 0].clamp(0, w), b[:, 2].clamp(0, w)
    y0, y1 = b[:, 1].clamp(0, h), b[:, 3].clamp(0, h)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (inside / total.double()).clamp(0, 1).float()


def cam_proposals(cam: torch.Tensor, width: int, height: int, size: int,
                  per_level: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate boxes and their p_emo for one picture.

    ``cam (h, w)``: the class activation map of one emotion on the view's last feature map;
    ``width`` x ``height``: the picture inside the ``size`` view. Keeps the ``per_level`` boxes
    with the most activation on each level (as an RPN keeps its top proposals per level), so
    small boxes are not all crowded out before the objectness term has a say.
    Returns ``boxes (N, 4)`` in view pixels and ``p_emo (N,)``.
    """
    act = activation(cam, width, height, size)
    integral = integral_image(act)
    boxes, p_emo = [], []
    for _, b in anchors(width, height):
        m = box_mass(act, b, integral)
        top = torch.argsort(m, descending=True)[:per_level]
        boxes.append(b[top])
        p_emo.append(m[top])
    return torch.cat(boxes), torch.cat(p_emo)
