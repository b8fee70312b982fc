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


def _cpu_model_and_flags() -> tuple[str, str]:
    """CPU model name and its ISA flags (sorted, space-separated) from /proc/cpuinfo, else platform."""
    import platform

    model, flags = "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("model name", "Processor", "cpu model") and not model:
                    model = v.strip()
                elif k in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(v.split()))
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def fingerprint(device: "torch.device") -> dict[str, str]:
    """What a compiled engine is specific to: ``device`` (name) and ``capability``.

    CUDA: the GPU's name and compute capability (``sm_90``) with the CUDA runtime version.
    CPU: the CPU model, the vector ISA torch dispatches to (``AVX512``) and a hash of every
    ISA flag, so an engine built on one CPU is never loaded on another that lacks an instruction.
    """
    import hashlib

    import torch

    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(idx)
        return {
            "device": f"cuda: {torch.cuda.get_device_name(idx)}",
            "capability": f"sm_{major}{minor} cuda {torch.version.cuda}",
        }
    model, flags = _cpu_model_and_flags()
    isa = torch.backends.cpu.get_cpu_capability()
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return {"device": f"{device.type}: {model}", "capability": f"{isa} flags:{digest}"}
