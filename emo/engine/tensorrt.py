"""The tensorrt backend: torch-tensorrt's dynamo frontend, dynamic batch (min / opt / max), CUDA only.

Optional: ``pip install '.[tensorrt]'`` in a clone of emo; ``torch_tensorrt`` is imported only when this
backend is chosen. The engine takes float pixels in [0, 255] (the host casts the uint8 batch on
the GPU) in the run's precision, and is saved as an ExportedProgram with ``torch_tensorrt.save``
and loaded with ``torch_tensorrt.load``.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from emo.engine import Profile

EXT = "ep"
FORMAT = "1"


def available() -> bool:
    """True when torch-tensorrt is installed (found without importing it: that takes seconds)."""
    return importlib.util.find_spec("torch_tensorrt") is not None


def input_dtype(precision: str) -> "torch.dtype":
    """The dtype the engine's input and weights use for ``precision``."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


def build(model: "torch.nn.Module", profile: "Profile", device: "torch.device", precision: str, out: Path) -> dict[str, Any]:
    """Compile ``model`` with TensorRT for batches in [min, max] and save it to ``out``."""
    if device.type != "cuda":
        raise RuntimeError("TensorRT needs a CUDA device")
    import torch
    import torch_tensorrt

    dtype = input_dtype(precision)
    # Weights in the run's dtype: with explicit typing (TensorRT >= 10.12) the engine runs in it.
    model = copy.deepcopy(model).eval().to(device).to(dtype)  # the caller's model stays as it was
    s, lo, hi = profile.size, profile.min_batch, profile.max_batch
    opt = profile.opt_batch or hi
    example = torch.zeros((opt, 3, s, s), dtype=dtype, device=device)
    dynamic = {"x": {0: torch.export.Dim("batch", min=lo, max=hi)}} if hi > lo else None
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
        spec = torch_tensorrt.Input(min_shape=(lo, 3, s, s), opt_shape=(opt, 3, s, s), max_shape=(hi, 3, s, s), dtype=dtype)
        kwargs: dict[str, Any] = {"inputs": [spec], "device": device}
        if "enabled_precisions" in inspect.signature(torch_tensorrt.dynamo.compile).parameters:
            kwargs["enabled_precisions"] = {dtype}  # releases before explicit typing choose kernels by this set
        trt_gm = torch_tensorrt.dynamo.compile(program, **kwargs)
        torch_tensorrt.save(trt_gm, str(out), output_format="exported_program", arg_inputs=[example],
                            dynamic_shapes=dynamic, retrace=True)
    return {"min_batch": lo, "max_batch": hi}


def load(path: Path, device: "torch.device") -> Any:
    """The loaded engine: ``(B, 3, S, S)`` float pixels in [0, 255] on ``device`` -> outputs."""
    import torch_tensorrt

    return torch_tensorrt.load(str(path)).module()


def versions() -> dict[str, str]:
    """Installed torch-tensorrt and TensorRT versions ("" when absent), read without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for field, dists in (("torch_tensorrt", ("torch-tensorrt", "torch_tensorrt")),
                         ("tensorrt", ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_cu12_libs"))):
        out[field] = ""
        for d in dists:
            try:
                out[field] = version(d)
                break
            except PackageNotFoundError:
                continue
    return out
