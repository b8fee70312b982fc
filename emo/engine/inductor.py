"""The inductor backend: ``torch.export`` with a dynamic batch, compiled by AOTInductor into a .pt2.

Works on CPU and CUDA. Built once per cache key (see :mod:`emo.engine.cache`), loaded with
``aoti_load_package`` in milliseconds after that.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from emo.engine import Profile

EXT = "pt2"
# Bump when the recipe below changes, so engines built by an older recipe are never loaded.
FORMAT = "1"

_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


@contextlib.contextmanager
def _quiet_build():
    """Torch logs a warning per build on a CPU-only machine (no CUDA runtime); keep stderr to our one line."""
    names = ("torch.utils.cpp_extension", "torch._inductor", "torch._export", "torch.export")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def prepare(model: "torch.nn.Module", device: "torch.device", precision: str) -> "torch.nn.Module":
    """The model in eval mode on ``device``, its weights in the run's precision."""
    import torch

    model = copy.deepcopy(model).eval().to(device)  # the caller's model stays as it was (fallbacks use it)
    if precision in _DTYPES:
        model = model.to(getattr(torch, _DTYPES[precision]))
    return model


def export(model: "torch.nn.Module", profile: "Profile", device: "torch.device", in_dtype: "torch.dtype") -> tuple[Any, int]:
    """``torch.export`` with the batch dimension dynamic in [min, max]: ``(program, min batch)``.

    Export may refuse a minimum of 1 (size-1 specialisation); the minimum is then 2 and the
    engine pads a batch of 1 (see :class:`emo.engine.Engine`).
    """
    import torch

    lo, hi = profile.min_batch, profile.max_batch
    opt = min(max(2, profile.opt_batch or hi), hi)
    example = torch.zeros((opt, 3, profile.size, profile.size), dtype=in_dtype, device=device)
    if hi <= 1:
        return torch.export.export(model, (example,)), hi
    last: Exception | None = None
    for floor in sorted({max(1, lo), max(2, lo)}):
        if floor > hi:
            break
        try:
            dim = torch.export.Dim("batch", min=floor, max=hi)
            return torch.export.export(model, (example,), dynamic_shapes=({0: dim},)), floor
        except Exception as e:  # export's constraint solver says no: try the next floor
            last = e
    assert last is not None
    raise last


def build(model: "torch.nn.Module", profile: "Profile", device: "torch.device", precision: str, out: Path) -> dict[str, Any]:
    """Export and compile ``model`` into the AOTInductor package ``out``; extra sidecar fields."""
    import torch

    model = prepare(model, device, precision)
    with _quiet_build(), torch.inference_mode(False), torch.no_grad():
        program, lo = export(model, profile, device, torch.uint8)
        # Freezing folds weights into constants: the documented speed-up for CPU inference.
        configs = {"freezing": True} if device.type == "cpu" else {}
        torch._inductor.aoti_compile_and_package(program, package_path=str(out), inductor_configs=configs)
    return {"min_batch": lo, "max_batch": profile.max_batch}


def load(path: Path, device: "torch.device") -> Any:
    """The compiled callable: ``(B, 3, S, S) uint8`` on ``device`` -> list of outputs.

    Uses the AOTInductor package loader in ``torch._C`` directly when it is there: loading
    through ``aoti_load_package`` imports torch._dynamo, seconds that a cached run should not pay.
    """
    import torch

    index = device.index if device.type == "cuda" and device.index is not None else -1
    loader_cls = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if loader_cls is not None:
        with _extraction_dir():
            loader = loader_cls(str(path), "model", False, 1, index)

        def fn(x: torch.Tensor):
            # The package was compiled for the contiguous layout export saw.
            return loader.boxed_run([x.contiguous()])

        return fn
    with _quiet_build(), _extraction_dir():
        runner = torch._inductor.aoti_load_package(str(path), device_index=index)
    return lambda x: runner(x.contiguous())


# The loader unpacks its package into a temporary folder that only its C++ destructor removes,
# and a command line that leaves with os._exit (emo.cli._run.exit_now) never runs it. So each
# load unpacks into a folder of ours, named after this process: removed by remove_extracted()
# at exit, or by the next load in any process once this one is gone (a kill -9 included).
_EXTRACTED: list[str] = []
_PREFIX = "emo-aoti-"


@contextlib.contextmanager
def _extraction_dir():
    """``TMPDIR`` points at a new folder of this process's while the loader unpacks."""
    _sweep_stale()
    d = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
    _EXTRACTED.append(d)
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = d
    try:
        yield d
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old


def remove_extracted() -> None:
    """Remove the folders this process's engines were unpacked into (their code stays mapped)."""
    while _EXTRACTED:
        shutil.rmtree(_EXTRACTED.pop(), ignore_errors=True)


def _sweep_stale() -> None:
    """Remove folders left by emo processes that no longer run."""
    for d in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            pid = int(d.name[len(_PREFIX):].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue  # not ours to judge: another user's process, or not a name we made
