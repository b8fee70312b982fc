"""The ``scene`` stage: a segmentation network's share of pixels per class, under ``features.scene``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emo.config import Settings
from emo.errors import ModelError, UsageError, WeightsNotFound
from emo.io.decode import View
from emo.io.records import Item
from emo.models.registry import REGISTRY, NetworkEntry

DEFAULT_SCENE_MODEL = "deeplabv3_mobilenet_v3_large"
# Logits of a whole batch at full resolution are large (8 x 21 x 520 x 520 floats = 180 MB).
SCENE_CHUNK = 8


class SceneStage:
    """Runs a :class:`emo.features.segmentation.SceneShares` engine on a squashed square view."""

    def __init__(self, engine, labels: list[str], size: int, chunk: int = SCENE_CHUNK) -> None:
        self.engine = engine
        self.labels = labels
        self.chunk = chunk
        # Squash, not crop: every pixel of the picture counts, and shares survive the rescaling.
        self.view = View(size, mode="squash")
        self.views = (self.view,)

    def wants(self, item: Item) -> bool:
        return "scene" not in item.features

    def run(self, items: list[Item]) -> None:
        from emo.stages.backbone_stage import to_batch

        for start in range(0, len(items), self.chunk):
            part = items[start:start + self.chunk]
            (shares,) = self.engine(to_batch(part, self.view))
            out = shares.numpy().astype(np.float32)
            for item, row in zip(part, out):
                item.features["scene"] = row


def _registry_network(entry: NetworkEntry, settings: Settings):
    """The registry network with verified weights, as (network, weights sha256)."""
    import importlib

    from emo.models.weights import load_state_dict, resolve

    if entry.weights is None:
        raise ModelError(f"{entry.name} has no weights in the registry")
    try:
        path, digest = resolve(entry.weights, settings)
    except WeightsNotFound as e:
        raise WeightsNotFound(
            f"scene: no weights for the segmentation network {entry.name}: {e}; or give your own "
            "network: --scene-model FILE (.pt2 ExportedProgram or TorchScript) --scene-labels FILE"
        ) from None
    mod, fn = entry.builder.split(":")
    net = getattr(importlib.import_module(mod), fn)()
    try:
        net.load_state_dict(load_state_dict(path))
    except RuntimeError as e:
        raise ModelError(f"{path}: does not fit {entry.name}: {str(e)[:300]}") from None
    if getattr(net, "aux_classifier", None) is not None:
        net.aux_classifier = None  # training-time head; inference needs only "out"
    return net, digest


def scene_stage(settings: Settings, model_path: str | None, labels_path: str | None) -> SceneStage:
    """The ``scene`` stage for ``--scene-model`` / ``--scene-labels`` (both optional).

    No model: the registry's :data:`DEFAULT_SCENE_MODEL`. A registry name: that entry. Else a
    file (see :mod:`emo.features.segmentation`), which needs its label list. Weights that cannot be
    had raise :class:`WeightsNotFound` naming both fixes (exit 2).
    """
    from emo.engine import Profile, load
    from emo.features.segmentation import LABEL_SETS, SceneShares, load_user_network, read_labels
    from emo.models.safe_load import is_file
    from emo.models.weights import sha256_file

    name = model_path or DEFAULT_SCENE_MODEL
    entry = REGISTRY.get(name)
    if entry is not None and not is_file(name):
        if entry.task != "segmentation":
            raise UsageError(f"--scene-model {name} is a {entry.task}, not a segmentation network")
        net, digest = _registry_network(entry, settings)
        labels = read_labels(labels_path) if labels_path else LABEL_SETS[entry.labels]()
        if len(labels) != entry.num_classes:
            raise UsageError(f"{entry.name} has {entry.num_classes} classes but {len(labels)} labels were given")
        pp = entry.preprocess
        model = SceneShares(net, len(labels), pp.mean, pp.std)
        size, network_id = pp.crop, entry.name
    else:
        if not labels_path:
            raise UsageError("--scene-model FILE needs --scene-labels FILE (its class names, one per line)")
        labels = read_labels(labels_path)
        net, size, exported = load_user_network(name)
        model = SceneShares(net, len(labels), exported=exported)
        digest, network_id = sha256_file(Path(name)), f"scene:{Path(name).name}"
    engine = load(model, network_id=network_id, weights_sha256=digest,
                  profile=Profile(size, min(settings.batch_size, SCENE_CHUNK)), settings=settings)
    return SceneStage(engine, labels, size)
