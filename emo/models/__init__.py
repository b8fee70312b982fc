"""Networks: the registry (pure data), weights resolution, and :func:`create`, the one front door."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from emo.config import Settings, from_env
from emo.errors import ModelError
from emo.models.registry import REGISTRY, NetworkEntry, get, names

if TYPE_CHECKING:
    from emo.models.backbones import Backbone

__all__ = ["REGISTRY", "NetworkEntry", "create", "get", "names", "imagenet_labels", "weights_digest"]


def _builder(entry: NetworkEntry):
    mod, fn = entry.builder.split(":")
    return getattr(importlib.import_module(mod), fn)


def create(
    name: str,
    settings: Settings | None = None,
    pretrained: bool = True,
    weights: Path | None = None,
) -> Backbone:
    """Build the backbone ``name`` in eval mode on the CPU, with verified weights.

    ``pretrained=False`` leaves random weights (tests, shape checks). The returned module has
    ``weights_sha256`` set to the full digest of the file it loaded ("" when random).
    """
    from emo.models.backbones import Backbone
    from emo.models.weights import load_state_dict

    settings = settings or from_env()
    entry = get(name)
    if entry.task != "backbone":
        raise ModelError(f"{name} is a {entry.task}, not a backbone")
    net, split = _builder(entry)()
    digest = ""
    if pretrained:
        path, digest = _weights_file(entry, settings, weights)
        state = load_state_dict(path)
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ModelError(f"{path}: does not fit {name}: {str(e)[:300]}") from None
    body, classifier = split(net)
    model = Backbone(body, classifier, entry).eval()
    model.weights_sha256 = digest
    return model


def weights_digest(name: str, settings: Settings | None = None, weights: Path | None = None) -> str:
    """The verified sha256 of the weights :func:`create` would load, without building the network.

    An engine's cache key needs only this, so a cached engine runs without importing the
    network's code (torchvision pulls in torch._dynamo: about a second of start-up).
    """
    return _weights_file(get(name), settings or from_env(), weights)[1]


def _weights_file(entry: NetworkEntry, settings: Settings, weights: Path | None) -> tuple[Path, str]:
    """The verified weights file of ``entry`` (``weights`` when given) and its sha256."""
    from emo.models.weights import resolve

    if entry.weights is None:
        raise ModelError(f"{entry.name} has no weights in the registry")
    return resolve(entry.weights, settings, explicit=weights)


# torchvision's ImageNet-1k names, in its order, shipped as a file: importing torchvision for them
# would pull in torch._dynamo, a second of every emo features start-up.
IMAGENET_CLASSES = Path(__file__).resolve().parents[1] / "data" / "imagenet1k_classes.txt"


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in torchvision's order."""
    return IMAGENET_CLASSES.read_text(encoding="utf-8").splitlines()
