"""Find the emotional regions of a batch of pictures: propose, score, suppress, pool.

One pass of the backbone on a ``fit`` view (whole picture, aspect kept) gives its last feature
map. From it: the CAM of the picture's strongest emotion (p_emo, unless a trained region head
gives it), the backbone's own ImageNet classifier on each box's pooled features (p_obj for the
``cam`` source: how clearly the box shows a recognisable object), and each kept box's local
features X_local. The ``rcnn`` source takes boxes and p_obj from a Faster R-CNN instead.
Boxes are ranked by S_emo (:func:`emo.regions.emotion_score.emotion_score`), thinned by NMS, mapped
back to the original picture as whole pixels, and cut to ``top_k``.

Every box's pooled features are a weight matrix times the map (:func:`emo.regions.local.box_weights`),
and the ImageNet classifier is linear, so p_obj comes from the classifier applied once per feature
cell, not once per box: the logits of a box are its weights times the cells' logits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from emo.io.decode import fit_size
from emo.models.backbones import Backbone
from emo.models.pyramid import StageTaps
from emo.models.registry import NetworkEntry
from emo.regions.layers import LinearLayer
from emo.regions.emotion_score import emotion_score, nms_order
from emo.regions.local import box_weights, with_context
from emo.regions.proposals import activation, anchors, box_mass, cam_proposals

NEUTRAL = "neutral"


class LastMap(nn.Module):
    """``(B, 3, S, S) uint8`` -> the backbone's last stage map ``(B, C5, S/32, S/32) float32``."""

    def __init__(self, backbone: Backbone, entry: NetworkEntry) -> None:
        super().__init__()
        self.backbone = backbone
        self.taps = StageTaps(backbone.body, entry.stages[-1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.taps(self.backbone.normalize(x))["c5"]


@dataclass
class Regions:
    """One picture's regions, best first: ``boxes (K, 4) int64`` in the original's whole pixels, scores
    ``(K,)``, ``local (K, C)`` their pooled features; ``labels`` the emotion (cam) or object (rcnn) per box."""

    boxes: torch.Tensor
    score: torch.Tensor
    p_emo: torch.Tensor
    p_obj: torch.Tensor
    local: torch.Tensor
    labels: list[str]
    emotion: str = ""

    def records(self, digits: int = 4) -> list[dict]:
        """The JSONL form: ``[{box, score, p_emo, p_obj, label}, ...]``, boxes as integer pixels."""
        out = []
        for i in range(self.boxes.shape[0]):
            r = {
                "box": [int(v) for v in self.boxes[i]],
                "score": round(float(self.score[i]), digits),
                "p_emo": round(float(self.p_emo[i]), digits),
                "p_obj": round(float(self.p_obj[i]), digits),
            }
            if self.labels and self.labels[i]:
                r["label"] = self.labels[i]
            out.append(r)
        return out


def to_view(boxes: torch.Tensor, size: tuple[int, int], view: int) -> torch.Tensor:
    """Original-pixel boxes of a ``size = (W, H)`` picture -> pixels of its ``fit`` view of side ``view``."""
    w, h = size
    nw, nh = fit_size(w, h, view)
    return boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h])


def to_original(boxes: torch.Tensor, size: tuple[int, int], view: int) -> torch.Tensor:
    """Pixels of a ``fit`` view of side ``view`` -> the ``(W, H)`` original's pixels, clipped to it."""
    w, h = size
    nw, nh = fit_size(w, h, view)
    out = boxes * torch.tensor([w / nw, h / nh, w / nw, h / nh])
    out[:, 0::2] = out[:, 0::2].clamp(0, w)
    out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


# Edges this close to a whole pixel are on it: float noise must not grow a box by a pixel.
_SNAP = 1e-3


def to_pixels(boxes: torch.Tensor, size: tuple[int, int], view: int) -> torch.Tensor:
    """View-pixel boxes -> the smallest whole-pixel boxes of the ``(W, H)`` original that hold them.

    ``(N, 4) int64``, clipped to the picture, at least one pixel wide and high.
    """
    w, h = size
    nw, nh = fit_size(w, h, view)
    b = boxes.double() * torch.tensor([w / nw, h / nh, w / nw, h / nh], dtype=torch.float64)
    x0 = torch.floor(b[:, 0] + _SNAP).clamp(0, w - 1)
    y0 = torch.floor(b[:, 1] + _SNAP).clamp(0, h - 1)
    x1 = torch.maximum(torch.ceil(b[:, 2] - _SNAP), x0 + 1).clamp(max=w)
    y1 = torch.maximum(torch.ceil(b[:, 3] - _SNAP), y0 + 1).clamp(max=h)
    return torch.stack([x0, y0, x1, y1], 1).long()


def linear_part(classifier: nn.Module | LinearLayer | None) -> LinearLayer | None:
    """``classifier`` as one linear layer if it is one (dropout aside, as in eval mode), else None."""
    if classifier is None or isinstance(classifier, LinearLayer):
        return classifier
    mods = [m for m in classifier.modules() if not isinstance(m, (nn.Sequential, nn.Dropout, nn.Identity))]
    if len(mods) != 1 or not isinstance(mods[0], nn.Linear):
        return None
    lin = mods[0]
    bias = lin.bias.detach().float() if lin.bias is not None else torch.zeros(lin.out_features)
    return LinearLayer(lin.weight.detach().float(), bias)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on this thread alone for a while.

    A picture's own work is hundreds of tensor operations on a few thousand numbers; splitting
    each over threads costs more than it saves, and much more when other programs hold the cores.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class RegionFinder:
    """Regions of pictures from their ``fit`` views and last feature maps.

    ``cam``: the CAM layer (labels of its emotions); ``classifier``: the backbone's ImageNet
    classifier on pooled features (p_obj of the cam source), a module or a :class:`LinearLayer`;
    ``region_head``: a trained p_emo layer on local features, or None for the CAM's activation mass.
    ``stride``: view pixels per cell of the maps; None reads it from the maps' size (a power of 2).
    """

    def __init__(self, cam: LinearLayer, classifier: nn.Module | LinearLayer | None, view: int, stride: int | None = 32,
                 top_k: int = 10, iou: float = 0.5, region_head: LinearLayer | None = None,
                 per_level: int = 40) -> None:
        self.cam = cam
        self.classifier = classifier
        self.linear = linear_part(classifier)
        self.view = view
        self.stride = stride
        self.top_k = top_k
        self.iou = iou
        self.region_head = region_head
        self.per_level = per_level
        labels = cam.labels
        self.emotion_ids = [i for i, n in enumerate(labels) if n != NEUTRAL] or list(range(len(labels)))

    def _cell_logits(self, fmaps: torch.Tensor) -> torch.Tensor | None:
        """The linear classifier on every cell of every map, without its bias: ``(B, h * w, classes)``."""
        if self.linear is None:
            return None
        b, c, h, w = fmaps.shape
        return fmaps.permute(0, 2, 3, 1).reshape(b, h * w, c) @ self.linear.weight.T

    def _p_obj(self, weights: torch.Tensor, fmap: torch.Tensor, cell_logits: torch.Tensor | None) -> torch.Tensor:
        """Top ImageNet probability of each box: ``weights (N, h * w)`` its pooling weights on ``fmap (C, h, w)``."""
        if self.classifier is None or weights.shape[0] == 0:
            return torch.zeros(weights.shape[0])
        if cell_logits is not None:
            logits = weights @ cell_logits + self.linear.bias
        else:
            logits = self.classifier(weights @ fmap.reshape(fmap.shape[0], -1).T)
        return torch.softmax(logits.float(), 1).max(1).values

    def _head_p_emo(self, fmap: torch.Tensor, boxes: torch.Tensor, stride: int) -> torch.Tensor:
        return torch.sigmoid(self.region_head(with_context(fmap[None], stride, boxes))[:, 0])

    def _head_proposals(self, fmap: torch.Tensor, width: int, height: int,
                        stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """With a region head, every anchor is scored by it; the ``per_level`` best of each level are kept."""
        boxes, p_emo = [], []
        for _, b in anchors(width, height):
            p = self._head_p_emo(fmap, b, stride)
            top = torch.argsort(p, descending=True)[: self.per_level]
            boxes.append(b[top])
            p_emo.append(p[top])
        return torch.cat(boxes), torch.cat(p_emo)

    def stride_of(self, fmaps: torch.Tensor) -> int:
        """View pixels per cell of ``fmaps (B, C, h, w)``: the given stride, or the power of 2 nearest view / w."""
        if self.stride:
            return self.stride
        return 2 ** max(0, round(math.log2(self.view / max(1, fmaps.shape[-1]))))

    def strongest(self, fmap: torch.Tensor, width: int, height: int, stride: int | None = None) -> int:
        """Index of the picture's strongest emotion (neutral excluded): the CAM layer on the pooled picture."""
        stride = stride or self.stride_of(fmap[None])
        cols, rows = -(-width // stride), -(-height // stride)
        pooled = fmap[:, :rows, :cols].mean((1, 2))
        scores = self.cam(pooled)
        return max(self.emotion_ids, key=lambda i: float(scores[i]))

    def _keep(self, boxes: torch.Tensor, score: torch.Tensor, size: tuple[int, int]) -> tuple[list[int], torch.Tensor]:
        """NMS in view pixels, then the first ``top_k`` boxes whose whole-pixel form is new.

        A picture smaller than the view can round two kept boxes to one pixel box; the better one stays.
        """
        pixels = to_pixels(boxes, size, self.view)
        keep: list[int] = []
        seen: set[tuple[int, ...]] = set()
        if self.top_k > 0:
            for i in nms_order(boxes, score, self.iou):
                key = tuple(pixels[i].tolist())
                if key in seen:
                    continue
                seen.add(key)
                keep.append(i)
                if len(keep) == self.top_k:
                    break
        return keep, pixels[keep] if keep else torch.zeros(0, 4, dtype=torch.long)

    def find(self, fmaps: torch.Tensor, sizes: Sequence[tuple[int, int]],
             given: Sequence[tuple[torch.Tensor, torch.Tensor, list[str]] | None] | None = None) -> list[Regions]:
        """``fmaps (B, C, h, w)``: last maps of the ``fit`` views; ``sizes``: originals' ``(W, H)``.

        ``given[i]``: the ``rcnn`` source's ``(boxes in original pixels, p_obj, labels)`` for
        picture i, used instead of CAM anchors and the classifier's p_obj.
        """
        with torch.inference_mode():
            fmaps = fmaps.float()
            stride = self.stride_of(fmaps)
            own = [given is None or given[i] is None for i in range(len(sizes))]
            cell_logits = self._cell_logits(fmaps) if any(own) and self.classifier is not None else None
            with one_thread():
                return [self._one(fmaps[i], size, None if own[i] else given[i],
                                  None if cell_logits is None else cell_logits[i], stride)
                        for i, size in enumerate(sizes)]

    def _one(self, fmap: torch.Tensor, size: tuple[int, int],
             given: tuple[torch.Tensor, torch.Tensor, list[str]] | None, cell_logits: torch.Tensor | None,
             stride: int) -> Regions:
        """One picture's regions from its map ``fmap (C, h, w)`` of ``stride`` view pixels per cell."""
        channels, rows, cols = fmap.shape
        width, height = fit_size(size[0], size[1], self.view)
        emo_id = self.strongest(fmap, width, height, stride)
        emotion = self.cam.labels[emo_id] if self.cam.labels else str(emo_id)
        cam = self.cam.cam(fmap[None])[0, emo_id]
        if given is not None:
            gboxes, p_obj, labels = given
            boxes = to_view(gboxes, size, self.view)
            mass = box_mass(activation(cam, width, height, self.view), boxes)
            p_emo = mass if self.region_head is None else self._head_p_emo(fmap, boxes, stride)
            weights = box_weights(boxes, stride, rows, cols)
        else:
            if self.region_head is not None:
                boxes, p_emo = self._head_proposals(fmap, width, height, stride)
            else:
                boxes, p_emo = cam_proposals(cam, width, height, self.view, self.per_level)
            weights = box_weights(boxes, stride, rows, cols)
            p_obj = self._p_obj(weights, fmap, cell_logits)
            labels = [emotion] * boxes.shape[0]
        score = emotion_score(p_emo, p_obj)
        keep, pixels = self._keep(boxes, score, size)
        idx = torch.tensor(keep, dtype=torch.long)
        local = weights[idx] @ fmap.reshape(channels, rows * cols).T
        return Regions(pixels, score[idx], p_emo[idx], p_obj[idx].float(), local, [labels[j] for j in keep], emotion)
