"""A compiled CPU engine called through its model library's C interface, without Python's lock.

torch's package loader holds Python's interpreter lock for the whole of an engine call, so
nothing else in the process runs meanwhile: not a second engine call, not the regions of the
previous pictures, not the reading of input. A ``ctypes`` call releases the lock. This module
calls the AOTInductor library of a package directly, where that is exactly the loader's engine:

- a CPU package with one model library that holds its own weights and needs no proxy executor:
  nothing in the package but that library, its sources and the archive's bookkeeping;
- its first call is checked against the loader's on the same input, bit for bit, before it is
  trusted; on any doubt (a missing symbol, an error, a difference) the loader is used.
"""

from __future__ import annotations

import ctypes
import os
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

_MODEL_DIR = "data/aotinductor/"
# Engine calls that may run at once, at the least (one model instance each, weights shared): a
# further call waits inside the library for one of them to finish.
PARALLEL_CALLS = 2


def parallel_calls() -> int:
    """Model instances for an engine: one per torch thread, as many as the threads a stage shares
    a batch among (:mod:`emo.stages.regions_stage`), so none of them waits for another's call."""
    import torch

    return max(PARALLEL_CALLS, torch.get_num_threads())


# torch hands tensor handles over as unnamed capsules; these open and make them (under the lock).
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule = ctypes.pythonapi.PyCapsule_New
_capsule.restype = ctypes.py_object
_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class DirectError(Exception):
    """The library cannot be called directly (the loader is used instead)."""


# What a plain package holds besides its model folder: the archive's own bookkeeping.
_ARCHIVE_FILES = {"archive_format", "archive_version", "byteorder", "version", ".data/version",
                  ".data/serialization_id"}
# Files of the model folder that the library does not read at run time (its sources, build notes).
_MODEL_EXTRAS = (".cpp", ".h", "_metadata.json", "_compile_flags.json", "_linker_flags.json")


def model_library(package: Path) -> str | None:
    """The archive name of a package's one model library, or None when it is not a plain CPU
    package. Only names known to hold nothing the library needs qualify: anything else (a second
    library, a proxy executor's ``<library>.json``, weights or constants kept beside the library,
    a layout of a later torch) may be something the loader gives the library and a direct call
    would not, which leaves the library reading weights that are not there."""
    with zipfile.ZipFile(package) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
    if len({n.partition("/")[0] for n in names}) != 1 or any("/" not in n for n in names):
        return None  # torch writes everything below one top folder
    folder = _MODEL_DIR + "model/"
    libs = []
    for name in names:
        inner = name.partition("/")[2]
        if inner in _ARCHIVE_FILES:
            continue
        if not inner.startswith(folder) or "/" in inner[len(folder):]:
            return None
        if inner.endswith(".so"):
            libs.append(name)
        elif not inner.endswith(_MODEL_EXTRAS):
            return None
    return libs[0] if len(libs) == 1 else None


def extract_library(package: Path, member: str, into: str) -> str:
    """Copy ``member`` out of ``package`` into the folder ``into`` (private to this process)."""
    out = os.path.join(into, "model.so")
    with zipfile.ZipFile(package) as z, z.open(member) as src:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return out


class DirectEngine:
    """An AOTInductor model library's container, run through ``ctypes`` (the lock released)."""

    def __init__(self, library: str, models: int = PARALLEL_CALLS) -> None:
        try:
            lib = ctypes.CDLL(library)
            create = lib.AOTInductorModelContainerCreateWithDevice
            self._run = lib.AOTInductorModelContainerRun
            outputs = lib.AOTInductorModelContainerGetNumOutputs
            self._delete = lib.AOTInductorModelContainerDelete
        except (OSError, AttributeError) as e:
            raise DirectError(f"not a model library: {e}") from None
        create.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p]
        self._run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                              ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        outputs.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        self._delete.argtypes = [ctypes.c_void_p]
        for fn in (create, self._run, outputs, self._delete):
            fn.restype = ctypes.c_int32
        self._lib = lib
        handle = ctypes.c_void_p()
        if create(ctypes.byref(handle), models, b"cpu", None) != 0 or not handle.value:
            raise DirectError("the library could not make its model container")
        self._handle = handle
        self.models = models
        n = ctypes.c_size_t()
        if outputs(handle, ctypes.byref(n)) != 0 or n.value < 1:
            raise DirectError("the library does not say its outputs")
        self.outputs = n.value

    def __call__(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        from torch._C._aoti import alloc_tensors_by_stealing_from_void_ptrs, unsafe_alloc_void_ptrs_from_tensors

        # New tensor handles (pointers in capsules): the call takes them over.
        handles = [_capsule_pointer(c, None) for c in unsafe_alloc_void_ptrs_from_tensors(inputs)]
        ins = (ctypes.c_void_p * len(handles))(*handles)
        outs = (ctypes.c_void_p * self.outputs)()
        if self._run(self._handle, ins, len(handles), outs, self.outputs, None, None) != 0:
            raise RuntimeError("the compiled engine failed on this batch")
        return alloc_tensors_by_stealing_from_void_ptrs([_capsule(outs[i], None, None) for i in range(self.outputs)])

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            try:
                self._delete(handle)
            except Exception:  # at interpreter exit ctypes may be half gone
                pass


def checked(direct: DirectEngine, loader: Callable[[torch.Tensor], Any]) -> Callable[[torch.Tensor], Any]:
    """The engine call: the first batch runs both ways and must agree bit for bit; then the
    direct call alone (the loader is let go: its copy of the network is memory no call uses), or
    the loader's alone if they differed or the direct call failed."""
    import torch

    from emo.forks import renew_in_child

    state: dict[str, Any] = {"fn": None, "lock": threading.Lock(), "loader": loader}
    del loader  # held in state alone, so that it can be let go

    def first(x: torch.Tensor) -> Any:
        loader = state["loader"]
        want = loader(x)
        try:
            got = direct([x.contiguous()])  # the library reads its inputs as dense row-major memory
            same = len(got) == len(want) and all(
                g.shape == w.shape and g.dtype == w.dtype and torch.equal(g, w) for g, w in zip(got, want))
        except Exception:
            same = False
        state["fn"] = (lambda t: direct([t.contiguous()])) if same else loader
        if same:
            state["loader"] = None
        return want

    def call(x: torch.Tensor) -> Any:
        fn = state["fn"]
        if fn is None:
            with state["lock"]:
                if state["fn"] is None:
                    return first(x)
                fn = state["fn"]
        return fn(x)

    call.direct = lambda: state["fn"] is not None and state["loader"] is None  # type: ignore[attr-defined]
    # a first call another thread was making at a fork never ends in the child: it takes a new lock
    return renew_in_child(call, lambda _: state.__setitem__("lock", threading.Lock()))
