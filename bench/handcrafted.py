"""Time each hand-crafted feature group on one batch of 32 Emotion6 images (256 x 256 view).

Usage: .venv/bin/python bench/handcrafted.py IMAGES [--batch 32] [--repeats 5] [--device cpu]
(IMAGES: a folder of JPEG pictures, walked in sorted order; the first --batch are used.)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path, help="Folder of JPEG pictures (walked).")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    view = View(HANDCRAFTED_SIZE, mode="squash")
    paths = sorted(a.images.rglob("*.jpg"))[: a.batch]
    if not paths:
        raise SystemExit(f"no .jpg pictures under {a.images}")
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
