"""Turn a network into a fast callable for one device, precision and input profile.

:func:`load` is the one entry point the pipeline uses. Backends live beside it: ``tensorrt.py``
(torch-tensorrt, CUDA), ``inductor.py`` (torch.export + AOTInductor, CPU or CUDA), ``eager.py``
(always works); compiled engines are kept in the on-disk cache of ``cache.py``.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from emo.config import Settings, engines_cache
from emo.engine.device import fingerprint, resolve_device
from emo.errors import EmoError, ModelError

if TYPE_CHECKING:
    import numpy as np
    import torch

# Told when an engine compile starts (seconds None) and ends (seconds taken), so a command's
# progress display can show compiling as its own phase; None: a line on stderr instead.
compile_listener: Callable[[str, float | None], None] | None = None

__all__ = ["Engine", "Profile", "load", "resolve_device", "key_fields", "candidates", "COMPILED"]

COMPILED = ("tensorrt", "inductor")  # backends that build a cached engine file


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
    """A compiled (or eager) network: call it on a uint8 batch, get its outputs on the CPU.

    ``fn`` accepts batches of ``min_batch`` .. ``max_batch`` (0: any size) rows; a shorter batch
    is padded by repeating its last row and a longer one is split, so callers may pass any B.
    ``in_dtype`` is the dtype ``fn`` wants its pixels in (cast on the device; None: uint8).
    """

    fn: Callable[..., Any]
    backend: str
    device: "torch.device"
    precision: str
    profile: Profile
    min_batch: int = 1
    max_batch: int = 0
    in_dtype: Any = None
    path: Path | None = None  # the cached engine file (compiled backends)
    built: bool = False  # True when this call compiled it (not loaded from the cache)
    _staging: Any = field(default=None, init=False, repr=False, compare=False)  # page-locked input buffer (CUDA), reused

    def stage(self, views: Sequence["np.ndarray"]) -> "torch.Tensor":
        """Stack ``(S, S, 3) uint8`` views into the ``(B, 3, S, S)`` batch this engine copies fastest.

        On CUDA the pixels land in page-locked memory kept from call to call, so the copy to the
        device is one direct transfer that ``non_blocking`` overlaps; a pageable batch is copied
        twice, through the driver's own staging buffer. The batch is valid until the next call.
        """
        import numpy as np
        import torch

        first = np.asarray(views[0])
        shape = (len(views), *first.shape)
        if self.device.type != "cuda" or first.dtype != np.uint8:
            return torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2)
        buf = self._staging
        if buf is None or buf.shape[0] < shape[0] or tuple(buf.shape[1:]) != shape[1:]:
            buf = self._staging = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        out = buf[: shape[0]]
        np.stack(views, out=out.numpy())
        return out.permute(0, 3, 1, 2)

    @property
    def lock_free(self) -> bool:
        """Whether a call releases Python's lock, so calls from two threads run at once
        (:mod:`emo.engine.aoti_direct`, once its first call has checked it)."""
        probe = getattr(self.fn, "direct", None)
        return bool(probe is not None and probe())

    def __call__(self, x: "torch.Tensor") -> tuple["torch.Tensor", ...]:
        """``(B, 3, S, S) uint8`` -> the network's outputs, each ``(B, ...)`` float32 on the CPU."""
        import torch

        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            if self.in_dtype is not None:
                x = x.to(self.in_dtype)
            step = self.max_batch
            if step and x.shape[0] > step:
                parts = [self._run(x[i : i + step]) for i in range(0, x.shape[0], step)]
                out = tuple(torch.cat(p) for p in zip(*parts))
            else:
                out = self._run(x)
        return tuple(o.float().cpu() for o in out)

    def _run(self, x: "torch.Tensor") -> tuple["torch.Tensor", ...]:
        import torch

        n = x.shape[0]
        if n < self.min_batch:
            x = torch.cat([x, x[-1:].expand(self.min_batch - n, *x.shape[1:])])
        out = self.fn(x)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        return tuple(o[:n] for o in out)


def candidates(backend: str, device: "torch.device") -> list[str]:
    """Backends to try in order: ``auto`` is tensorrt (CUDA, installed), inductor, eager."""
    if backend != "auto":
        return [backend]
    from emo.engine import tensorrt

    order = ["tensorrt"] if device.type == "cuda" and tensorrt.available() else []
    return order + ["inductor", "eager"]


ModelSource = Callable[[], "torch.nn.Module"]


def _once(model: "torch.nn.Module | ModelSource") -> ModelSource:
    """A function that returns ``model``, building it on the first call if it is a factory."""
    import torch

    if isinstance(model, torch.nn.Module):
        return lambda: model
    built: list[torch.nn.Module] = []

    def get() -> "torch.nn.Module":
        if not built:
            built.append(model())
        return built[0]

    return get


def _state_sha256(model: "torch.nn.Module") -> str:
    """sha256 of every parameter and buffer: the weights' identity when no file hash is known."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def key_fields(network_id: str, weights_sha256: str, profile: Profile, precision: str, backend: str,
               device: "torch.device") -> dict[str, str]:
    """Everything a compiled engine depends on; the cache key is their hash (see cache.key_of)."""
    import torch

    from emo.engine import inductor, tensorrt

    fmt = {"inductor": inductor.FORMAT, "tensorrt": tensorrt.FORMAT}.get(backend, "0")
    return {
        "network": network_id,
        "weights_sha256": weights_sha256,
        "profile": profile.key(),
        "precision": precision,
        "backend": backend,
        **fingerprint(device),
        "torch": torch.__version__,
        **tensorrt.versions(),
        "format": fmt,
    }


def _say(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[0][:160] + ("…" if len(lines[0]) > 160 else "")) if lines else type(e).__name__


def _compiled(name: str, model: "ModelSource", network_id: str, weights_sha256: str, profile: Profile,
              settings: Settings, device: "torch.device", announce: bool) -> Engine:
    """Load the ``name`` engine from the cache, building it once if absent or corrupt."""
    import torch

    from emo.engine import inductor, load_probe, tensorrt
    from emo.engine.cache import EngineCache, key_of

    mod = inductor if name == "inductor" else tensorrt
    precision = settings.precision
    in_dtype = tensorrt.input_dtype(precision) if name == "tensorrt" else None
    fields = key_fields(network_id, weights_sha256 or _state_sha256(model()), profile, precision, name, device)
    cache = EngineCache(engines_cache(settings))
    key = key_of(fields)
    if device.type == "cuda" and (why := load_probe.known_unloadable(cache.root, key)):
        mark = load_probe.mark_path(cache.root, key)
        raise ModelError(f"an earlier run found that {why} (remove {mark} to try again)")

    def build(tmp: Path) -> dict[str, Any]:
        what = f"compiling the {name} engine for {network_id} on {device.type}"
        listener = compile_listener
        if listener is not None:
            listener(what, None)
        elif announce:
            _say(f"emo: {what} (once; cached in {cache.root})")
        start = time.perf_counter()
        extra = mod.build(model(), profile, device, precision, tmp)
        if device.type == "cuda":  # a CUDA loader that crashes must not take this process with it
            load_probe.check_in_child(name, tmp, device, profile.size, int(extra.get("min_batch", 1)), in_dtype,
                                      cache.root, key)
        if listener is not None:
            listener(what, time.perf_counter() - start)
        return extra

    def load_checked(path: Path, meta: dict[str, Any]) -> Callable[..., Any]:
        fn = mod.load(path, device)
        lo = int(meta.get("min_batch", 1))
        probe = torch.zeros((lo, 3, profile.size, profile.size), dtype=in_dtype or torch.uint8, device=device)
        with torch.inference_mode():
            fn(probe)  # a package that loads but cannot run counts as corrupt: rebuilt once
        return fn

    fn, meta, built = cache.get(fields, mod.EXT, build, load_checked, what=f"{name} engine")
    return Engine(fn=fn, backend=name, device=device, precision=precision, profile=profile,
                  min_batch=int(meta.get("min_batch", 1)), max_batch=int(meta.get("max_batch", 0)),
                  in_dtype=in_dtype, path=cache.root / meta["file"], built=built)


def _one(name: str, model: "ModelSource", network_id: str, weights_sha256: str, profile: Profile,
         settings: Settings, device: "torch.device", announce: bool) -> Engine:
    if name == "eager":
        from emo.engine.eager import build_eager

        return build_eager(model(), device, settings.precision, profile)
    if name == "tensorrt":
        from emo.engine import tensorrt

        if device.type != "cuda":
            raise ModelError("TensorRT needs a CUDA device (use --device cuda, or --backend inductor)")
        if not tensorrt.available():
            raise ModelError("torch-tensorrt is not installed (in a clone of emo: pip install '.[tensorrt]'; "
                             "its version must match the installed torch's)")
    return _compiled(name, model, network_id, weights_sha256, profile, settings, device, announce)


def load(model: "torch.nn.Module | Callable[[], torch.nn.Module]", *, network_id: str, weights_sha256: str,
         profile: Profile, settings: Settings, verbose: bool = False) -> Engine:
    """An :class:`Engine` for ``model`` on ``settings.device`` with ``settings.backend``.

    ``model`` may be a function that builds it: with ``weights_sha256`` given and the engine in
    the cache, it is never called, so a cached run does not pay for building the network.

    ``auto`` tries tensorrt (CUDA, installed), then inductor, then eager: a backend that fails
    costs one line on stderr and the next is tried. A backend named explicitly that fails raises
    :class:`ModelError` (exit 2). Compiled engines come from the cache under ``--cache-dir``.
    """
    device = resolve_device(settings.device)
    order = candidates(settings.backend, device)
    model = _once(model)
    announce = verbose or sys.stderr.isatty()
    for i, name in enumerate(order):
        try:
            engine = _one(name, model, network_id, weights_sha256, profile, settings, device, announce)
        except EmoError as e:
            if settings.backend != "auto" or i + 1 == len(order):
                raise ModelError(f"--backend {name}: {e}") from None
            _say(f"emo: {name} engine unavailable for {network_id} ({e}); using {order[i + 1]}")
            continue
        except Exception as e:
            why = f"{type(e).__name__}: {_first_line(e)}"
            if settings.backend != "auto" or i + 1 == len(order):
                raise ModelError(f"--backend {name}: cannot build the engine for {network_id} ({why})") from None
            _say(f"emo: {name} engine failed for {network_id} ({why}); using {order[i + 1]}")
            continue
        if verbose:
            how = "compiled" if engine.built else ("loaded from " + str(engine.path) if engine.path else "no compilation")
            _say(f"emo: engine {engine.backend} on {engine.device} ({engine.precision}, {how})")
        return engine
    raise ModelError(f"no backend could run {network_id}")  # unreachable: eager is always last
