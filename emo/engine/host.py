"""Process-wide CPU settings the engines run best with, applied once before torch loads.

Two settings, both measured with ``bench/throughput.py`` on a 2-core x86_64 machine:

* ``OMP_WAIT_POLICY=PASSIVE``: OpenMP workers that spin while they wait take the cores the
  decode threads (and anyone else on a shared machine) need; spinning doubled the engine's
  CPU time per image on 2 busy cores. libgomp reads it when torch loads it.
* glibc's heap keeps what it frees: a compiled engine allocates its activations (tens of MB
  at batch 32) on every call. By default glibc serves blocks that big with ``mmap`` and
  returns them with ``munmap``, so every batch page-faults its buffers in again: 40% of the
  engine's CPU time went to the kernel, and the engine alone ran at half its speed.
  ``mallopt`` makes the heap serve them and keep them. The set of buffers is the same every
  batch, so the heap stops growing after the first few batches (peak memory stays flat).

``EMO_HEAP=system`` leaves glibc's defaults (for a host process that wants its memory back).
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_KEEP = 2**31 - 1  # mallopt takes a C int: the largest trim threshold it can express

_done = False


def tune_process() -> bool:
    """Apply the settings above once per process; true when glibc's heap was tuned."""
    global _done
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if _done:
        return True
    if os.environ.get("EMO_HEAP", "").lower() == "system":
        return False
    _done = keep_freed_memory()
    return _done


def keep_freed_memory() -> bool:
    """Ask glibc to serve large blocks from the heap and not to give freed memory back.

    False where there is no glibc (macOS, musl, Windows) or it refuses: nothing changes there.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Trim first: if the second call failed, a heap that keeps its top is still harmless.
    return bool(mallopt(M_TRIM_THRESHOLD, _KEEP)) and bool(mallopt(M_MMAP_MAX, 0))
