"""Feature pyramid (Rao et al. section 3.1, Lin et al. FPN): backbone stages C2..C5 -> P2..P5.

The bottom-up pathway is a registry backbone; :attr:`NetworkEntry.stages` names the modules
whose outputs are C2..C5 (strides 4, 8, 16, 32). :class:`StageTaps` reads them with forward
hooks, so any backbone works without rewriting its forward. :class:`FeaturePyramid` adds the
top-down pathway: a 1x1 lateral convolution per stage, nearest upsampling, element-wise
addition, and a 3x3 convolution per merged map (torchvision's ``FeaturePyramidNetwork``, whose
parameter names match torchvision's detection checkpoints).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from emo.errors import ModelError
from emo.models.registry import NetworkEntry

# Pyramid level k has stride 2**k: C2/P2 is stride 4, ..., C5/P5 stride 32.
LEVELS = (2, 3, 4, 5)


def stride(level: int) -> int:
    """Pixels of the network input per cell of pyramid level ``level``."""
    return 2**level


def find_module(root: nn.Module, path: str) -> str:
    """Qualified name of the submodule ``path`` inside ``root`` (exactly, or as the tail of a longer name).

    Registry stage paths are given relative to the torchvision network; a :class:`Backbone`
    wraps that network (``body.net.layer1``), hence the tail match.
    """
    found = [name for name, _ in root.named_modules() if name == path or name.endswith("." + path)]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ModelError(f"stage {path!r}: {what} matching modules in {type(root).__name__}")
    return found[0]


class StageTaps(nn.Module):
    """Runs ``body`` up to its last stage and returns the stage outputs: ``{"c2": (B, C2, H/4, W/4), ...}``.

    ``stages`` are ``(module path, channels)`` pairs, finest first; the last ``len(stages)``
    level names of C2..C5 are used (a 1-stage network gives only ``c5``). The body is cut with
    torchvision's FX feature extractor, so nothing after the last stage runs and the module
    exports (``torch.export``) like any other.
    """

    def __init__(self, body: nn.Module, stages: tuple[tuple[str, int], ...]) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        if not stages or len(stages) > len(LEVELS):
            raise ModelError(f"a pyramid needs 1 to {len(LEVELS)} stages, got {len(stages)}")
        self.names = [f"c{k}" for k in LEVELS[len(LEVELS) - len(stages):]]
        self.channels = [c for _, c in stages]
        nodes = {find_module(body, p): n for (p, _), n in zip(stages, self.names)}
        self.body = create_feature_extractor(body, return_nodes=nodes)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """``x``: the body's normalised input ``(B, 3, H, W) float32``."""
        out = self.body(x)
        return OrderedDict((n, out[n]) for n in self.names)


class FeaturePyramid(nn.Module):
    """Top-down pathway with lateral connections: ``{"c2".., "c5"}`` -> ``{"p2".., "p5"}``, each ``out_channels``."""

    def __init__(self, in_channels: list[int], out_channels: int = 256) -> None:
        # torchvision.ops imports torch._dynamo (seconds): only the networks that need it pay for it.
        from torchvision.ops import FeaturePyramidNetwork

        super().__init__()
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels)
        self.out_channels = out_channels

    def forward(self, c: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        p = self.fpn(c)
        return OrderedDict(("p" + k[1:], v) for k, v in p.items())


class PyramidBackbone(nn.Module):
    """A registry backbone's body with taps and a pyramid: normalised image -> P2..P5.

    Keys are ``"0".."3"`` (P2..P5) and ``out_channels`` is set, the contract torchvision's
    :class:`~torchvision.models.detection.FasterRCNN` expects of its backbone.
    """

    def __init__(self, body: nn.Module, entry: NetworkEntry, out_channels: int = 256) -> None:
        from torchvision.ops import FeaturePyramidNetwork

        super().__init__()
        if len(entry.stages) != len(LEVELS):
            raise ModelError(f"{entry.name}: a P2..P5 pyramid needs 4 stages in the registry, it has {len(entry.stages)}")
        self.body = StageTaps(body, entry.stages)
        self.fpn = FeaturePyramidNetwork([c for _, c in entry.stages], out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        p = self.fpn(self.body(x))
        return OrderedDict((str(i), v) for i, v in enumerate(p.values()))


def assign_levels(boxes: torch.Tensor, levels: tuple[int, ...] = LEVELS, canonical: float = 224.0,
                  canonical_level: int = 4) -> torch.Tensor:
    """Pyramid level that fits each box (FPN eq. 1): ``floor(k0 + log2(sqrt(w h) / 224))``, clamped.

    ``boxes (N, 4)`` in network-input pixels -> ``(N,) long`` level numbers from ``levels``.
    """
    wh = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-6) * (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-6)
    k = torch.floor(canonical_level + torch.log2(torch.sqrt(wh) / canonical + 1e-8))
    return k.clamp(min(levels), max(levels)).long()

