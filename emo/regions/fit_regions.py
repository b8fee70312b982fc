"""Train the emotional-region head (p_emo) on ground-truth boxes: ``emo fit --task regions``.

Records carry ``regions: [{"box": [x0, y0, x1, y1]}, ...]`` in original pixels (EmotionROI's
format). Every anchor of the ``cam`` source (32..256 pixels on P2..P5) is labelled by Rao et
al.'s rule (IoU >= 0.7 or a truth box's best anchor: positive; IoU < 0.3: negative; the rest
ignored), pooled from the backbone's last map with RoIAlign, and a balanced logistic layer is
fitted. The result is a ``region_head`` layer file for ``emo regions --region-head``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from emo.config import KEY_REGIONS, Settings
from emo.errors import UsageError
from emo.io.records import item_from_record
from emo.pipeline import run
from emo.regions.find import to_view
from emo.regions.layers import LinearLayer
from emo.regions.local import with_context
from emo.regions.proposals import anchors
from emo.regions.emotion_score import label_anchors
from emo.regions.layer_fit import fit_binary
from emo.stages.backbone_stage import to_batch
from emo.stages.regions_stage import MAX_COORD, given_regions

NEGATIVES_PER_POSITIVE = 3
L2 = 10.0  # few images, 1280 features: a firm penalty


class _Samples:
    """A stage that turns each record's truth boxes into labelled anchor features."""

    def __init__(self, engine, view, size: int, rng: np.random.Generator) -> None:
        self.engine, self.view, self.size, self.rng = engine, view, size, rng
        self.views = (view,)
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []

    def wants(self, item) -> bool:
        return True

    def run(self, items) -> None:
        from emo.io.decode import fit_size

        (fmaps,) = self.engine(to_batch(items, self.view))
        for it, fmap in zip(items, fmaps):
            truth = to_view(given_regions(it.record)[0], it.size, self.size)
            w, h = fit_size(*it.size, self.size)
            boxes = torch.cat([b for _, b in anchors(w, h)])
            lab = label_anchors(boxes, truth)
            pos = torch.nonzero(lab == 1).flatten().numpy()
            near = (lab == 0) & (box_iou(boxes, truth).max(1).values > 0) if truth.numel() else lab == 2
            hard = self.rng.permutation(torch.nonzero(near).flatten().numpy())
            easy = self.rng.permutation(torch.nonzero((lab == 0) & ~near).flatten().numpy())
            n = max(1, NEGATIVES_PER_POSITIVE * len(pos))
            # Half the negatives touch a truth box: those are the ones a pooled feature confuses.
            neg = np.concatenate([hard[: n // 2], easy[: n - min(len(hard), n // 2)]])
            idx = np.concatenate([pos, neg])
            self.x.append(with_context(fmap[None], 32, boxes[idx]).numpy())
            self.y.append(np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def truth_problem(record: dict[str, Any]) -> str:
    """What is wrong with the truth ``regions`` a record carries ("" when they are usable, or when
    it carries none): each must be ``{"box": [x0, y0, x1, y1]}``, four numbers with x1 > x0, y1 > y0."""
    regs = record.get(KEY_REGIONS)
    if regs is None or given_regions(record) is not None:
        return ""
    if not isinstance(regs, list):
        return f'"{KEY_REGIONS}" is not a list of {{"box": [x0, y0, x1, y1]}}'
    for n, r in enumerate(regs):
        box = r.get("box") if isinstance(r, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) and abs(v) <= MAX_COORD for v in box)):
            return f'"{KEY_REGIONS}"[{n}] has no "box" of four numbers (pixels, within ±{MAX_COORD:.0f})'
        if not (box[2] > box[0] and box[3] > box[1]):
            return f'"{KEY_REGIONS}"[{n}]: its box is empty (x1 must exceed x0, y1 y0)'
    return f'"{KEY_REGIONS}" holds a region that is not as emo regions writes one (p_obj, label)'


def fit_region_head(records: Sequence[dict[str, Any]], settings: Settings, root: Path | None, size: int = 320,
                    seed: int = 0, on_error: Callable[[Any], None] | None = None,
                    refused: dict[int, str] | None = None) -> tuple[LinearLayer, dict[str, int]]:
    """A ``region_head`` layer from records with truth ``regions``; also the counts used.

    A record whose ``regions`` are malformed (:func:`truth_problem`) is never used; ``refused``,
    when given, gets its index and what is wrong.
    """
    from emo.engine import Profile, load
    from emo.io.decode import View
    from emo.models import create, get
    from emo.regions.find import LastMap

    usable = []
    for i, r in enumerate(records):
        problem = truth_problem(r)
        if problem and refused is not None:
            refused[i] = problem
        elif not problem and given_regions(r) is not None and len(r[KEY_REGIONS]) > 0:
            usable.append(r)
    if not usable:
        raise UsageError('no record has ground-truth "regions": [{"box": [x0, y0, x1, y1]}, ...] (EmotionROI format)')
    entry = get(settings.backbone)
    model = create(entry.name, settings)
    engine = load(LastMap(model, entry).eval(), network_id=f"{entry.name}.lastmap", weights_sha256=model.weights_sha256,
                  profile=Profile(size, settings.batch_size), settings=settings)
    stage = _Samples(engine, View(size, mode="fit"), size, np.random.default_rng(seed))
    items = (item_from_record(i, dict(r), root) for i, r in enumerate(usable))
    summary = run(items, [stage], settings, lambda batch: None, on_error)
    if not stage.x:
        raise UsageError("no record with ground-truth regions could be read")
    x, y = np.concatenate(stage.x), np.concatenate(stage.y)
    if y.min() == y.max():
        raise UsageError("the anchors got only one label; the truth boxes need both emotional and other areas")
    w, b = fit_binary(x, y, l2=L2)
    p = torch.sigmoid(torch.as_tensor(x) @ w.T + b).squeeze(1).numpy()
    counts = {"records": len(usable) - summary.failed, "failed": summary.failed,
              "malformed_regions": len(refused or {}),
              "positives": int(y.sum()), "negatives": int(len(y) - y.sum())}
    header = {
        "kind": "region_head",
        "labels": ["emotional"],
        "backbone": entry.name,
        "backbone_sha256": model.weights_sha256,
        "feature": "RoIAlign means of the last feature map over the box and over the box twice its size, fit view of side %d" % size,
        "rule": "IoU >= 0.7 or best anchor of a truth box: positive; IoU < 0.3: negative (Rao et al. 4.1)",
        "data": counts,
        "metrics": {"train_accuracy": round(float(((p > 0.5) == (y > 0.5)).mean()), 4)},
    }
    return LinearLayer(w, b, header), counts


def fit_settings(settings: Settings) -> Settings:
    """Training reads every image once; a modest batch keeps memory flat."""
    return replace(settings, batch_size=min(settings.batch_size, 16))
