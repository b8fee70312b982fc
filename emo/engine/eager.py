"""The eager backend: channels_last, inference mode, autocast for fp16/bf16 on CUDA. Always works."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from emo.engine import Engine, Profile


def build_eager(model: "torch.nn.Module", device: "torch.device", precision: str, profile: "Profile") -> "Engine":
    """Wrap ``model`` for fast eager inference on ``device``."""
    import torch

    from emo.engine import Engine

    model = model.eval().to(device).to(memory_format=torch.channels_last)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    use_autocast = dtype is not None and (device.type == "cuda" or dtype is torch.bfloat16)

    def fn(x: torch.Tensor):
        x = x.contiguous(memory_format=torch.channels_last)
        if use_autocast:
            with torch.autocast(device.type, dtype=dtype):
                return model(x)
        return model(x)

    return Engine(fn=fn, backend="eager", device=device, precision=precision, profile=profile)
