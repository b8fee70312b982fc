"""Find the emotional regions of a batch of pictures: propose, score, suppress, pool.

One pass of the backbone on a ``fit`` view (whole picture, aspect kept) gives its last feature
map. From it: the CAM of the picture's strongest emotion (p_emo, unless a trained region head
gives it), the backbone's own ImageNet classifier on each box's pooled features (p_obj for the
``cam`` source: how clearly the box shows a recognisable object), and each kept box's local
features X_local. The ``rcnn`` source takes boxes and p_obj from a Faster R-CNN instead.
Boxes are ranked by S_emo (:func:`emo.regions.emotion_score.emotion_score`), thinned by NMS, cut to
``top_k`` and mapped back to the original picture's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from emo.io.decode import fit_size
from emo.models.backbones import Backbone
from emo.models.pyramid import StageTaps
from emo.models.registry import NetworkEntry
from emo.regions.layers import LinearLayer
from emo.regions.local import roi_features, with_context
from emo.regions.proposals import activation, anchors, box_mass, cam_proposals
from emo.regions.emotion_score import emotion_score, select

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
    """One picture's regions, best first: ``boxes (K, 4)`` in original pixels, scores ``(K,)``,
    ``local (K, C)`` their pooled features; ``labels`` the emotion (cam) or object (rcnn) per box."""

    boxes: torch.Tensor
    score: torch.Tensor
    p_emo: torch.Tensor
    p_obj: torch.Tensor
    local: torch.Tensor
    labels: list[str]
    emotion: str = ""

    def records(self, digits: int = 4) -> list[dict]:
        """The JSONL form: ``[{box, score, p_emo, p_obj, label}, ...]``, boxes to 0.1 pixel."""
        out = []
        for i in range(self.boxes.shape[0]):
            r = {
                "box": [round(float(v), 1) for v in self.boxes[i]],
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


class RegionFinder:
    """Regions of pictures from their ``fit`` views and last feature maps.

    ``cam``: the CAM layer (labels of its emotions); ``classifier``: the backbone's ImageNet
    classifier on pooled features (p_obj of the cam source); ``region_head``: a trained
    p_emo layer on local features, or None for the CAM's activation mass.
    """

    def __init__(self, cam: LinearLayer, classifier: nn.Module | None, view: int, stride: int = 32,
                 top_k: int = 10, iou: float = 0.5, region_head: LinearLayer | None = None,
                 per_level: int = 40) -> None:
        self.cam = cam
        self.classifier = classifier
        self.view = view
        self.stride = stride
        self.top_k = top_k
        self.iou = iou
        self.region_head = region_head
        self.per_level = per_level
        labels = cam.labels
        self.emotion_ids = [i for i, n in enumerate(labels) if n != NEUTRAL] or list(range(len(labels)))

    def _p_obj(self, local: torch.Tensor) -> torch.Tensor:
        if self.classifier is None or local.numel() == 0:
            return torch.zeros(local.shape[0])
        with torch.inference_mode():
            logits = self.classifier(local)
        return torch.softmax(logits.float(), 1).max(1).values

    def _p_emo(self, fmap: torch.Tensor, boxes: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
        if self.region_head is None:
            return mass
        return torch.sigmoid(self.region_head(with_context(fmap[None], self.stride, boxes))[:, 0])

    def _head_proposals(self, fmap: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """With a region head, every anchor is scored by it; the ``per_level`` best of each level are kept."""
        boxes, p_emo = [], []
        for _, b in anchors(width, height):
            p = torch.sigmoid(self.region_head(with_context(fmap[None], self.stride, b))[:, 0])
            top = torch.argsort(p, descending=True)[: self.per_level]
            boxes.append(b[top])
            p_emo.append(p[top])
        b = torch.cat(boxes)
        return b, roi_features([(fmap[None], self.stride)], [b]), torch.cat(p_emo)

    def strongest(self, fmap: torch.Tensor, width: int, height: int) -> int:
        """Index of the picture's strongest emotion (neutral excluded): the CAM layer on the pooled picture."""
        cols, rows = -(-width // self.stride), -(-height // self.stride)
        pooled = fmap[:, :rows, :cols].mean((1, 2))
        scores = self.cam(pooled)
        return max(self.emotion_ids, key=lambda i: float(scores[i]))

    def find(self, fmaps: torch.Tensor, sizes: Sequence[tuple[int, int]],
             given: Sequence[tuple[torch.Tensor, torch.Tensor, list[str]] | None] | None = None) -> list[Regions]:
        """``fmaps (B, C, h, w)``: last maps of the ``fit`` views; ``sizes``: originals' ``(W, H)``.

        ``given[i]``: the ``rcnn`` source's ``(boxes in original pixels, p_obj, labels)`` for
        picture i, used instead of CAM anchors and the classifier's p_obj.
        """
        out = []
        for i, size in enumerate(sizes):
            fmap = fmaps[i]
            width, height = fit_size(size[0], size[1], self.view)
            emo_id = self.strongest(fmap, width, height)
            emotion = self.cam.labels[emo_id] if self.cam.labels else str(emo_id)
            cam = self.cam.cam(fmap[None])[0, emo_id]
            if given is not None and given[i] is not None:
                gboxes, p_obj, labels = given[i]
                boxes = to_view(gboxes, size, self.view)
                mass = box_mass(activation(cam, width, height, self.view), boxes)
                local = roi_features([(fmap[None], self.stride)], [boxes])
            elif self.region_head is not None:
                boxes, local, mass = self._head_proposals(fmap, width, height)
                p_obj = self._p_obj(local)
                labels = [emotion] * boxes.shape[0]
            else:
                boxes, mass = cam_proposals(cam, width, height, self.view, self.per_level)
                local = roi_features([(fmap[None], self.stride)], [boxes])
                p_obj = self._p_obj(local)
                labels = [emotion] * boxes.shape[0]
            p_emo = mass if self.region_head is not None and given is None else self._p_emo(fmap, boxes, mass)
            score = emotion_score(p_emo, p_obj)
            keep = select(boxes, score, self.iou, self.top_k)
            out.append(Regions(to_original(boxes[keep], size, self.view), score[keep], p_emo[keep],
                               p_obj[keep], local[keep], [labels[int(j)] for j in keep], emotion))
        return out
