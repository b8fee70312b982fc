"""Hand-crafted feature stage and the stage that writes features into records."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from emo.config import KEY_FEATURES
from emo.features import HANDCRAFTED_DIMS, HANDCRAFTED_SIZE
from emo.forks import drop_pool, renew_in_child
from emo.io.decode import View
from emo.io.records import Item
from emo.stages.worker_threads import one_core_pool

if TYPE_CHECKING:  # torch loads with the first batch, not with this module (see emo.io.procpool)
    import torch


def _compute(rgb: torch.Tensor, rows: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """``rgb``: (B, 3, H, W) uint8; ``rows``: the images each group is wanted for -> group: (n, dims) float32."""
    from emo.features.color import color_features
    from emo.features.texture import gist, lbp_histogram, to_gray

    rgb = rgb.float().div_(255.0)
    gray = to_gray(rgb) if rows.keys() & {"lbp", "gist"} else None  # converted once, shared
    n = rgb.shape[0]

    def pick(x: torch.Tensor, r: list[int]) -> torch.Tensor:  # indexing by a list copies the images
        return x if len(r) == n else x[r]

    fns = {"color": lambda r: color_features(pick(rgb, r)), "lbp": lambda r: lbp_histogram(pick(gray, r)),
           "gist": lambda r: gist(pick(gray, r))}
    return {g: fns[g](r).float().cpu().numpy() for g, r in rows.items() if r}


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
        renew_in_child(self, drop_pool)  # its worker threads are not in a forked child, which makes its own

    def wants(self, item: Item) -> bool:
        return any(g not in item.features for g in self.groups)

    def _missing(self, items: list[Item], span: range) -> dict[str, list[int]]:
        """Group -> positions within ``span`` of the items that lack it."""
        return {g: [i - span.start for i in span if g not in items[i].features] for g in self.groups}

    def run(self, items: list[Item]) -> None:
        from emo.stages.backbone_stage import to_batch

        rgb = to_batch(items, self.view).to(self.device)
        parts = min(self.threads, len(items)) if self.device.type == "cpu" else 1
        bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
        slices = [range(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
        # each worker takes a run of whole images, and computes only the groups each of them lacks
        tasks = [(rgb[s.start:s.stop], self._missing(items, s)) for s in slices]
        if parts == 1:
            results = [_compute(*tasks[0])]
        else:
            if self._pool is None:
                self._pool = one_core_pool(self.threads, "emo-features")
            results = list(self._pool.map(lambda t: _compute(*t), tasks))
        for s, (_, rows), out in zip(slices, tasks, results):
            for g, values in out.items():
                for row, i in enumerate(rows[g]):
                    items[s.start + i].features[g] = values[row]


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
