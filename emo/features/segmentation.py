"""Scene features (Kim et al. section IV-D): each semantic class's share of the pixels.

A segmentation network labels every pixel (argmax over its class scores) and the feature is
the fraction of pixels per class, so it sums to 1 and has one entry per label. Networks come
from the registry (task ``segmentation``; torchvision's DeepLabV3 on 21 Pascal VOC classes,
weights by URL on a connected machine) or from a user's file with its label list: an
ExportedProgram (``.pt2``, :func:`torch.export.load`) or a TorchScript file
(:func:`torch.jit.load`), such as an ADE20K parser with Kim et al.'s 150 classes.

A user's network takes ``(B, 3, H, W) float32`` RGB in [0, 1] (its own normalisation inside)
and returns class scores ``(B, C, h, w)`` at any resolution, or a dict with them under
``"out"`` (torchvision's convention). ``H = W`` is the input side its ExportedProgram was
exported with, else :data:`USER_MODEL_SIZE`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from emo.errors import ModelError, UsageError

USER_MODEL_SIZE = 512


def voc_labels() -> list[str]:
    """The 21 Pascal VOC class names in torchvision's order (index 0 is background)."""
    from torchvision.models._meta import _VOC_CATEGORIES

    return list(_VOC_CATEGORIES)


LABEL_SETS = {"voc21": voc_labels}


def deeplabv3_mobilenet_v3_large() -> nn.Module:
    """torchvision DeepLabV3 MobileNetV3-Large with random weights, laid out like its weights file.

    The file carries the auxiliary head too, so it is built here and dropped after loading.
    """
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large as tv

    return tv(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)


class SceneShares(nn.Module):
    """``(B, 3, H, W) uint8`` -> ``(B, C) float32`` share of pixels per class (rows sum to 1).

    ``mean``/``std`` (per channel, on [0, 1] pixels) normalise inside the module, so an
    engine built from it takes raw pixels; ``None`` hands the network [0, 1] pixels.
    """

    def __init__(self, net: nn.Module, num_classes: int, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None, exported: bool = False) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.exported = exported
        mean_t = torch.tensor(mean if mean is not None else (0.0, 0.0, 0.0)).view(1, 3, 1, 1)
        std_t = torch.tensor(std if std is not None else (1.0, 1.0, 1.0)).view(1, 3, 1, 1)
        self.register_buffer("mean", mean_t * 255.0, persistent=False)
        self.register_buffer("inv_std", 1.0 / (std_t * 255.0), persistent=False)

    def train(self, mode: bool = True) -> SceneShares:
        # An ExportedProgram's module refuses train()/eval(): its mode was fixed at export.
        self.training = mode
        if not self.exported:
            self.net.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net((x.to(self.mean.dtype) - self.mean) * self.inv_std)
        if isinstance(out, dict):
            out = out["out"]
        if out.dim() != 4 or out.shape[1] != self.num_classes:
            raise ModelError(f"scene model gave scores of shape {tuple(out.shape)}; expected "
                             f"(B, {self.num_classes}, h, w), one channel per label")
        label = out.argmax(1).flatten(1)
        counts = torch.zeros(label.shape[0], self.num_classes, dtype=torch.float32, device=label.device)
        counts.scatter_add_(1, label, torch.ones_like(label, dtype=torch.float32))
        return counts / label.shape[1]


# A label list is a few KB; more than this is some other file.
MAX_LABELS_BYTES = 1 << 20


def read_labels(path: str | Path) -> list[str]:
    """Class names, one per non-empty line of a UTF-8 text file (at most :data:`MAX_LABELS_BYTES`)."""
    try:
        with open(path, "rb") as f:  # a device such as /dev/zero never ends: read a bounded amount
            data = f.read(MAX_LABELS_BYTES + 1)
        if len(data) > MAX_LABELS_BYTES:
            raise UsageError(f"--scene-labels {path}: over {MAX_LABELS_BYTES >> 20} MiB; not a list of class names")
        text = data.decode("utf-8")
    except (OSError, ValueError) as e:
        raise UsageError(f"--scene-labels {path}: cannot read it ({str(e)[:200]})") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise UsageError(f"--scene-labels {path}: no labels in it")
    return labels


def _input_side(ep: torch.export.ExportedProgram) -> int | None:
    """The static square input side an ExportedProgram was exported with, if it has one."""
    users = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in users:
            shape = getattr(node.meta.get("val"), "shape", ())
            if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3]:
                return int(shape[2])
            return None
    return None


def load_user_network(path: str | Path) -> tuple[nn.Module, int, bool]:
    """A user's segmentation file -> (network, input side, is an ExportedProgram).

    ``.pt2`` files load with :func:`torch.export.load`, anything else with
    :func:`torch.jit.load`; a file neither can read is a :class:`ModelError`.
    """
    from emo.models.safe_load import is_file, no_pickled_code

    path = Path(path)
    if not is_file(path):
        raise UsageError(f"--scene-model {path}: no such file (and not a registry name)")
    if path.suffix == ".pt2":
        try:
            with no_pickled_code():  # torch.export.load would fall back to a full unpickle
                ep = torch.export.load(str(path))
        except Exception as e:
            raise ModelError(f"--scene-model {path}: not a loadable ExportedProgram ({type(e).__name__}: {str(e)[:200]})") from None
        return ep.module(), _input_side(ep) or USER_MODEL_SIZE, True
    try:
        with warnings.catch_warnings():  # TorchScript's deprecation notice is not the user's business
            warnings.simplefilter("ignore", FutureWarning)
            with no_pickled_code():
                net = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ModelError(f"--scene-model {path}: not a TorchScript file, nor a .pt2 ExportedProgram "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    return net, USER_MODEL_SIZE, False
