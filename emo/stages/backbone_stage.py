"""The backbone stage: ImageNet probabilities (``object``) and the embedding (``deep``)."""

from __future__ import annotations

import numpy as np
import torch

from emo.engine import Engine
from emo.io.decode import View
from emo.io.records import Item
from emo.models.registry import NetworkEntry


def to_batch(items: list[Item], view: View, engine: Engine | None = None) -> torch.Tensor:
    """Stack one view of each item: ``(B, 3, S, S) uint8``, channels_last in memory.

    With ``engine``, in the host memory it copies fastest (page-locked for CUDA, see Engine.stage).
    """
    if engine is not None:
        return engine.stage([it.views[view] for it in items])
    arr = np.stack([it.views[view] for it in items])
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


class BackboneStage:
    """Runs the backbone engine once per batch and fills ``object`` and/or ``deep``."""

    def __init__(self, engine: Engine, entry: NetworkEntry, groups: tuple[str, ...], labels: list[str] | None = None, top_k: int = 5) -> None:
        self.engine = engine
        self.entry = entry
        self.groups = tuple(g for g in groups if g in ("object", "deep"))
        self.labels = labels
        self.top_k = top_k
        pp = entry.preprocess
        self.view = View(pp.crop, pp.resize, "crop")
        self.views = (self.view,)

    def wants(self, item: Item) -> bool:
        return any(g not in item.features for g in self.groups)

    def run(self, items: list[Item]) -> None:
        logits, emb = self.engine(to_batch(items, self.view, self.engine))
        probs = torch.softmax(logits, dim=1)
        top = torch.topk(probs, min(self.top_k, probs.shape[1]), dim=1).indices if self.labels else None
        probs_np, emb_np = probs.numpy(), emb.numpy()
        for i, item in enumerate(items):
            # a group the record carried is kept: the network ran for the other one
            if "object" in self.groups and "object" not in item.features:
                item.features["object"] = probs_np[i]
                if top is not None:
                    item.scratch["object_top"] = [self.labels[j] for j in top[i].tolist()]
            if "deep" in self.groups and "deep" not in item.features:
                item.features["deep"] = emb_np[i]
