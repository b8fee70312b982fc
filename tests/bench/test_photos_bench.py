"""The photo benchmark's decode side: emo's own loop with a free engine, in a process without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from PIL import Image

from tests.conftest import REPO

# Runs in a fresh interpreter, as the bench does before it imports torch: the loop forks its
# decode processes there.
_RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
import photos
from pathlib import Path
from emo.io.decode import View
paths = [Path(p) for p in sys.argv[3:]]
out = photos.bench_decode_side(paths, View(224, 256, "crop"), int(sys.argv[2]), 4)
out["torch"] = "torch" in sys.modules
print(json.dumps(out))
"""


def _run(tmp_path, paths, workers: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMO_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-c", _RUN, str(REPO / "bench"), str(workers), *map(str, paths)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_decode_side_takes_every_image_through_decode_processes(tmp_path):
    paths = []
    for i in range(10):
        p = tmp_path / f"p{i}.jpg"
        Image.new("RGB", (640 + 16 * i, 480), (20 * i, 90, 200 - 10 * i)).save(p, quality=90)
        paths.append(p)
    paths.append(tmp_path / "missing.jpg")  # a bad input is a record too, counted and in order
    for workers in (0, 2):
        got = _run(tmp_path, paths, workers)
        assert got["n"] == len(paths)
        assert got["torch"] is False  # the bench's figures are emo's process decoder, not threads
        assert "worker process" in got["plan"]
        assert got["ips"] > 0 and 0 < got["main_ms"] < 1000
