"""The inductor backend: ``torch.export`` with a dynamic batch, compiled by AOTInductor into a .pt2.

Works on CPU and CUDA. Built once per cache key (see :mod:`emo.engine.cache`), loaded with
``aoti_load_package`` in milliseconds after that.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emo.engine import aoti_direct

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
        with _extraction_dir() as into:
            loader = loader_cls(str(path), "model", False, 1, index)
            direct = _direct(path, into) if device.type == "cpu" else None

        def fn(x: torch.Tensor):
            # The package was compiled for the contiguous layout export saw.
            return loader.boxed_run([x.contiguous()])

        return fn if direct is None else aoti_direct.checked(direct, fn)
    with _quiet_build(), _extraction_dir():
        runner = torch._inductor.aoti_load_package(str(path), device_index=index)
    return lambda x: runner(x.contiguous())


def _direct(path: Path, into: str) -> Any:
    """The package's model library, unpacked into ``into`` and called without Python's lock
    (:mod:`emo.engine.aoti_direct`), or None where that is not certain to be the same engine."""
    try:
        member = aoti_direct.model_library(path)
        if member is None:
            return None
        return aoti_direct.DirectEngine(aoti_direct.extract_library(path, member, into), aoti_direct.parallel_calls())
    except Exception:  # any doubt: the loader, which has loaded this package already
        return None


# The loader unpacks its package into a temporary folder that only its C++ destructor removes,
# and a command line that leaves with os._exit (emo.cli.exits.exit_now) never runs it. So each
# load unpacks into a folder of ours: removed by remove_extracted() at exit, or by a later load
# in any process once the lock this process holds on it is gone (a kill -9 included).
_EXTRACTED: list[tuple[str, int]] = []  # (folder, fd holding its lock)
_PREFIX = "emo-aoti-"
_LOCK = ".lock"


@contextlib.contextmanager
def _extraction_dir():
    """``TMPDIR`` points at a new, locked folder of this process's while the loader unpacks.

    Setting it is process-wide: loads happen on the main thread, and glibc keeps old
    environment arrays alive, so a getenv on another thread still reads a valid one.
    """
    with contextlib.suppress(Exception):  # tidying up must never fail a load
        _sweep_stale()
    d = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
    _EXTRACTED.append((d, _hold_lock(d)))
    if len(_EXTRACTED) == 1:
        atexit.register(remove_extracted)  # a normal exit; exit_now runs atexit handlers too
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = d
    try:
        yield d
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old


def _hold_lock(d: str) -> int:
    """Lock ``d`` for this process's life: taken on a temporary name, then renamed, so a sweeper
    never finds the lock file unlocked. -1 where there is no flock."""
    try:
        import fcntl
    except ImportError:
        return -1
    tmp = os.path.join(d, _LOCK + ".new")
    fd = os.open(tmp, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(tmp, os.path.join(d, _LOCK))
    return fd


def remove_extracted() -> None:
    """Remove the folders this process's engines were unpacked into (their code stays mapped)."""
    while _EXTRACTED:
        d, fd = _EXTRACTED.pop()
        shutil.rmtree(d, ignore_errors=True)
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _sweep_stale() -> None:
    """Remove folders of emo processes that no longer run: their lock is free."""
    import fcntl

    for d in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            if d.is_symlink() or not d.is_dir() or d.stat().st_uid != os.geteuid():
                continue  # only our own folders: a shared /tmp holds other users' too
            fd = os.open(d / _LOCK, os.O_RDWR | os.O_NOFOLLOW)  # no lock file: still being set up, or not ours
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: its process is alive
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass
        finally:
            os.close(fd)
