"""Pick the torch device a run asks for, with a clear error when it is not here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emo.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(spec: str) -> "torch.device":
    """``auto`` -> CUDA when available else CPU; ``cuda[:N]`` must exist."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: no CUDA device is available here (use --device cpu)")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    return torch.device(spec)
