"""emo.engine.host: the process settings emo applies before torch loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocates 64 MiB with malloc and reports how many of glibc's chunks are mmap()ed while it lives.
PROBE = """
import ctypes, sys
from emo.engine.host import tune_process
tuned = tune_process()
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = libc.mallinfo2().hblks
p = libc.malloc(64 << 20)
during = libc.mallinfo2().hblks
libc.free(p)
import os
print(tuned, during - before, os.environ.get("OMP_WAIT_POLICY"))
"""


def _probe(env_extra: dict[str, str]) -> list[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("EMO_HEAP", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**env, **env_extra}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap")
def test_large_blocks_come_from_the_heap_once_tuned():
    try:
        tuned, mmapped, omp = _probe({})
    except AssertionError as e:  # a libc without mallinfo2 (musl, old glibc): nothing to check
        pytest.skip(str(e)[:200])
    assert (tuned, mmapped, omp) == ("True", "0", "PASSIVE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap")
def test_emo_heap_system_leaves_glibc_alone():
    try:
        tuned, mmapped, _ = _probe({"EMO_HEAP": "system"})
    except AssertionError as e:
        pytest.skip(str(e)[:200])
    assert (tuned, mmapped) == ("False", "1")  # glibc's default: a 64 MiB block is its own mapping


def test_an_explicit_omp_policy_is_kept(monkeypatch):
    from emo.engine import host

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    host.tune_process()
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
