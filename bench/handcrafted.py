"""Time each hand-crafted feature group on one batch of 32 Emotion6 images (256 x 256 view).

Usage: .venv/bin/python bench/handcrafted.py [--batch 32] [--repeats 5] [--device cpu]
Prints one Markdown table row per group: median seconds per batch and images per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from emo.features import HANDCRAFTED_SIZE
from emo.features.color import color_features
from emo.features.texture import gist, lbp_histogram, to_gray
from emo.io.decode import View, decode

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "emotion6" / "images"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    view = View(HANDCRAFTED_SIZE, mode="squash")
    paths = sorted(DATA.rglob("*.jpg"))[: a.batch]
    arr = np.stack([decode(p, (view,), 0).views[view] for p in paths])
    rgb = torch.from_numpy(arr).permute(0, 3, 1, 2).to(a.device).float().div_(255.0)
    groups = {"color": lambda: color_features(rgb), "lbp": lambda: lbp_histogram(to_gray(rgb)),
              "gist": lambda: gist(to_gray(rgb))}
    print(f"# {len(paths)} images, {HANDCRAFTED_SIZE}x{HANDCRAFTED_SIZE}, device {a.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    print("| group | s / batch of %d (median of %d) | images / s |" % (len(paths), a.repeats))
    print("|---|---|---|")
    for name, fn in groups.items():
        fn()  # warm-up: filter banks and lookup tables are built once per process
        times = []
        for _ in range(a.repeats):
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"| {name} | {med:.3f} | {len(paths) / med:.0f} |")


if __name__ == "__main__":
    main()
