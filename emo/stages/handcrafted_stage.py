"""Hand-crafted feature stage and the stage that writes features into records."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from emo.config import KEY_FEATURES
from emo.features import HANDCRAFTED_DIMS, HANDCRAFTED_SIZE
from emo.io.decode import View
from emo.io.records import Item

if TYPE_CHECKING:  # torch loads with the first batch, not with this module (see emo.io.procpool)
    import torch


def _compute(group: str, rgb: torch.Tensor) -> torch.Tensor:
    """``rgb``: (B, 3, H, W) float32 in [0, 1] -> (B, HANDCRAFTED_DIMS[group])."""
    if group == "color":
        from emo.features.color import color_features

        return color_features(rgb)
    from emo.features.texture import gist, lbp_histogram, to_gray

    gray = to_gray(rgb)
    return lbp_histogram(gray) if group == "lbp" else gist(gray)


class HandcraftedStage:
    """Computes colour, LBP and GIST on a square view, batched on ``device``."""

    def __init__(self, groups: tuple[str, ...], device: torch.device | str = "cpu") -> None:
        import torch

        self.groups = tuple(g for g in groups if g in HANDCRAFTED_DIMS)
        self.device = torch.device(device)
        self.view = View(HANDCRAFTED_SIZE, mode="squash")
        self.views = (self.view,) if self.groups else ()

    def wants(self, item: Item) -> bool:
        return any(g not in item.features for g in self.groups)

    def run(self, items: list[Item]) -> None:
        from emo.stages.backbone_stage import to_batch

        rgb = to_batch(items, self.view).to(self.device).float().div_(255.0)
        for g in self.groups:
            todo = [i for i, it in enumerate(items) if g not in it.features]
            if not todo:
                continue
            out = _compute(g, rgb[todo]).float().cpu().numpy()
            for row, i in enumerate(todo):
                items[i].features[g] = out[row]


class EmitFeatures:
    """Writes the chosen groups under ``features.<group>`` in each record (float32 lists)."""

    views = ()

    def __init__(self, groups: tuple[str, ...]) -> None:
        self.groups = groups

    def wants(self, item: Item) -> bool:
        return True

    def run(self, items: list[Item]) -> None:
        for item in items:
            out = item.record.get(KEY_FEATURES)
            out = dict(out) if isinstance(out, dict) else {}
            for g in self.groups:
                if g in item.features:
                    out[g] = np.asarray(item.features[g], dtype=np.float32)
            if "object" in self.groups and "object_top" in item.scratch:
                out["object_top"] = item.scratch["object_top"]
            item.record[KEY_FEATURES] = out
