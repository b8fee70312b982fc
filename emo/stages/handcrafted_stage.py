"""Hand-crafted feature stage and the stage that writes features into records."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from emo.config import KEY_FEATURES
from emo.features import HANDCRAFTED_DIMS, HANDCRAFTED_SIZE
from emo.io.decode import View
from emo.io.records import Item

if TYPE_CHECKING:  # torch loads with the first batch, not with this module (see emo.io.procpool)
    import torch


def _compute(group: str, rgb: torch.Tensor) -> torch.Tensor:
    """``rgb``: (B, 3, H, W) uint8 -> (B, HANDCRAFTED_DIMS[group]) float32."""
    rgb = rgb.float().div_(255.0)
    if group == "color":
        from emo.features.color import color_features

        return color_features(rgb)
    from emo.features.texture import gist, lbp_histogram, to_gray

    gray = to_gray(rgb)
    return lbp_histogram(gray) if group == "lbp" else gist(gray)


def _one_intra_op_thread() -> None:
    import torch

    # torch keeps this per thread once the thread has run an op; the main thread keeps its own
    torch.set_num_threads(1)
    torch.ones(2).add_(1)


class HandcraftedStage:
    """Computes colour, LBP and GIST on a square view, batched on ``device``.

    On the CPU the images of a batch are shared out to ``threads`` worker threads (default: torch's
    intra-op thread count), each running torch with one thread: the features are many small
    operations per image, which split across images far better than across cores within one op.
    """

    def __init__(self, groups: tuple[str, ...], device: torch.device | str = "cpu", threads: int | None = None) -> None:
        import torch

        self.groups = tuple(g for g in groups if g in HANDCRAFTED_DIMS)
        self.device = torch.device(device)
        self.view = View(HANDCRAFTED_SIZE, mode="squash")
        self.views = (self.view,) if self.groups else ()
        self.threads = max(1, threads if threads is not None else torch.get_num_threads())
        self._pool: ThreadPoolExecutor | None = None

    def wants(self, item: Item) -> bool:
        return any(g not in item.features for g in self.groups)

    def _map(self, group: str, rgb: torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) uint8 -> (B, dims) float32 rows, split across the worker threads on the CPU."""
        parts = min(self.threads, rgb.shape[0]) if self.device.type == "cpu" else 1
        if parts <= 1:
            return _compute(group, rgb).float().cpu().numpy()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, "emo-features", initializer=_one_intra_op_thread)
        chunks = rgb.tensor_split(parts)
        return np.concatenate([out.numpy() for out in self._pool.map(lambda x: _compute(group, x), chunks)])

    def run(self, items: list[Item]) -> None:
        from emo.stages.backbone_stage import to_batch

        rgb = to_batch(items, self.view).to(self.device)
        for g in self.groups:
            todo = [i for i, it in enumerate(items) if g not in it.features]
            if not todo:
                continue
            out = self._map(g, rgb[todo])
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
