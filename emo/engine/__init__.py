"""Turn a network into a fast callable for one device, precision and input profile.

:func:`load` is the one entry point the pipeline uses. Backends live beside it (``eager.py``
now; ``inductor.py``, ``tensorrt.py`` and the on-disk cache in ``cache.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from emo.config import Settings
from emo.engine.device import resolve_device

if TYPE_CHECKING:
    import torch

__all__ = ["Engine", "Profile", "load", "resolve_device"]


@dataclass(frozen=True)
class Profile:
    """The input an engine accepts: ``(B, 3, size, size) uint8``, B in [min_batch, max_batch]."""

    size: int
    max_batch: int
    min_batch: int = 1
    opt_batch: int = 0  # 0 = max_batch

    def key(self) -> str:
        return f"3x{self.size}x{self.size}:b{self.min_batch}-{self.opt_batch or self.max_batch}-{self.max_batch}:uint8"


@dataclass
class Engine:
    """A compiled (or eager) network: call it on a uint8 batch, get its outputs on the CPU."""

    fn: Callable[..., Any]
    backend: str
    device: "torch.device"
    precision: str
    profile: Profile

    def __call__(self, x: "torch.Tensor") -> tuple["torch.Tensor", ...]:
        import torch

        with torch.inference_mode():
            out = self.fn(x.to(self.device, non_blocking=True))
        if not isinstance(out, (tuple, list)):
            out = (out,)
        return tuple(o.float().cpu() for o in out)


def load(model: "torch.nn.Module", *, network_id: str, weights_sha256: str, profile: Profile,
         settings: Settings, verbose: bool = False) -> Engine:
    """An :class:`Engine` for ``model`` on ``settings.device`` with ``settings.backend``."""
    from emo.engine.eager import build_eager

    device = resolve_device(settings.device)
    return build_eager(model, device, settings.precision, profile)
