"""Load a freshly compiled CUDA engine in a child process first, so a loader that crashes costs
one line and a fallback, not the user's whole run.

Why: on one CUDA machine (torch 2.11, CUDA 13) the AOTInductor package loader ended the process
with a segmentation fault while loading a package that had just compiled without error. Python
cannot catch that in-process. An engine whose load crashed is remembered beside the cache entry
(``<key>.unloadable``), so later runs fall back at once instead of compiling it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from emo.errors import ModelError

if TYPE_CHECKING:
    import torch

TIMEOUT_S = 300.0  # a first CUDA load can take a while on a busy machine; a hang counts as a failure
MARK = ".unloadable"

# Runs in the child: load the package and run one batch of zeros on the device, then leave without
# the interpreter's teardown (the parent only needs to know that loading and running worked).
_CHILD = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
from emo.engine import inductor, tensorrt
mod = inductor if sys.argv[2] == "inductor" else tensorrt
dev = torch.device(sys.argv[4])
fn = mod.load(Path(sys.argv[3]), dev)
size, lo = int(sys.argv[5]), int(sys.argv[6])
x = torch.zeros((lo, 3, size, size), dtype=getattr(torch, sys.argv[7]), device=dev)
with torch.inference_mode():
    fn(x)
if dev.type == "cuda":
    torch.cuda.synchronize(dev)
getattr(mod, "remove_extracted", lambda: None)()
print("loaded", flush=True)
os._exit(0)
"""


def mark_path(cache_root: Path, key: str) -> Path:
    return cache_root / f"{key}{MARK}"


def known_unloadable(cache_root: Path, key: str) -> str | None:
    """Why an earlier run found this engine crashes its loader, or None."""
    p = mark_path(cache_root, key)
    try:
        return str(json.loads(p.read_text()).get("why", "its loader crashed"))
    except (OSError, ValueError, AttributeError):
        return None


def check_in_child(backend: str, path: Path, device: "torch.device", size: int, min_batch: int,
                   in_dtype: "torch.dtype | None", cache_root: Path, key: str) -> None:
    """Raise :class:`ModelError` (and remember why) when loading ``path`` kills or fails a child process."""
    import torch

    dtype = str(in_dtype or torch.uint8).rsplit(".", 1)[-1]
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the emo package
    cmd = [sys.executable, "-c", _CHILD, root, backend, str(path), str(device), str(size), str(min_batch), dtype]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        _fail(cache_root, key, f"loading it did not finish within {TIMEOUT_S:.0f} s")
    if proc.returncode == 0 and "loaded" in proc.stdout:
        return
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        _fail(cache_root, key, f"its loader crashed ({sig}) with torch {torch.__version__}")
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    _fail(cache_root, key, f"it cannot be loaded ({lines[-1][:160] if lines else f'exit {proc.returncode}'})")


def _fail(cache_root: Path, key: str, why: str) -> None:
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = mark_path(cache_root, key).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"why": why}) + "\n")
        os.replace(tmp, mark_path(cache_root, key))
    except OSError:
        pass  # not remembered: the next run checks again
    raise ModelError(f"the compiled engine was not kept: {why}")
