#!/usr/bin/env python
"""Hand-crafted features (colour, LBP, GIST) and ``emo features``: a baseline revision against this tree.

Both code trees are measured in one run, side by side, so the ratios share the machine's load:

1. per group: each feature function on one batch of 256 x 256 views with one torch thread, ms
   per image (wall and CPU); and the whole hand-crafted stage as ``emo features`` runs it, with
   torch's default thread count (one per core); the trees alternate ``--rounds`` times and the
   fastest of every repeat and round counts;
2. end to end: ``python -m emo features`` (default set: color,lbp,gist,object,deep) on the
   first ``--images`` images, paths on stdin, images per second from process start to exit,
   the two trees alternating ``--rounds`` times; the best round of each counts; and the CPU
   time of all its processes per image, which a busy machine inflates far less than wall time;
3. agreement: the largest difference between the two trees' outputs, per group.

The baseline is ``git archive REF emo`` unpacked into a temporary folder and run through
PYTHONPATH, so the repository and its worktrees are left alone.

    python bench/features_speed.py DATA_DIR                   # DATA_DIR holds the images (searched recursively)
    python bench/features_speed.py DATA_DIR --images 300 --rounds 2 --ref 7129823
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("color", "lbp", "gist")

# Runs inside each tree's interpreter: times the group functions and the stage on one batch.
_GROUP_TIMER = textwrap.dedent("""
    import json, sys, time
    import numpy as np, torch
    from emo.features import HANDCRAFTED_SIZE
    from emo.features.color import color_features
    from emo.features.texture import gist, lbp_histogram, to_gray
    from emo.io.decode import View, decode
    from emo.io.records import Item
    from emo.stages.handcrafted_stage import HandcraftedStage

    paths, repeats = json.loads(sys.argv[1]), int(sys.argv[2])
    view = View(HANDCRAFTED_SIZE, mode="squash")
    views = [decode(p, (view,), 0).views[view] for p in paths]
    u8 = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2)
    rgb = u8.float().div_(255.0)

    def stage():
        s = HandcraftedStage(("color", "lbp", "gist"), "cpu")
        items = [Item(i, {}) for i in range(len(views))]
        for it, v in zip(items, views):
            it.views[s.view] = v
        s.run(items)

    work = {"stage": stage, "color": lambda: color_features(rgb), "lbp": lambda: lbp_histogram(to_gray(rgb)),
            "gist": lambda: gist(to_gray(rgb))}
    out = {}
    for name, fn in work.items():
        if name != "stage":  # the functions on one core; the stage with torch's default threads
            torch.set_num_threads(1)
        fn()  # filter banks and lookup tables are built once per process
        wall, cpu = [], []
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
        out[name] = {"wall_ms": 1000 * min(wall) / len(paths), "cpu_ms": 1000 * min(cpu) / len(paths)}
    out["module"] = __import__("emo").__file__
    print(json.dumps(out))
""")


def image_list(root: Path, limit: int) -> list[Path]:
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return paths[:limit] if limit else paths


def baseline_tree(ref: str, into: Path) -> Path:
    """Unpack the ``emo`` package of revision ``ref`` under ``into``; returns the PYTHONPATH root."""
    archive = into / "emo.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", ref, "emo"], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def env_for(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    return env


def time_groups(root: Path, paths: list[Path], repeats: int) -> dict[str, dict[str, float]]:
    args = [sys.executable, "-c", _GROUP_TIMER, json.dumps([str(p) for p in paths]), str(repeats)]
    out = subprocess.run(args, env=env_for(root), cwd=root, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(result.pop("module")).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"the timing run imported emo from outside {root}: is PYTHONPATH honoured?")
    return result


def run_features(root: Path, paths: list[Path], out: Path) -> tuple[float, float]:
    """Wall and CPU seconds (all its processes) of ``python -m emo features`` on ``paths``, output to ``out``."""
    stdin = "".join(f"{p}\n" for p in paths)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with out.open("w") as f:
        subprocess.run([sys.executable, "-m", "emo", "features"], input=stdin, stdout=f, text=True,
                       env=env_for(root), cwd=root, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def largest_differences(a: Path, b: Path) -> dict[str, float]:
    import numpy as np

    ra = [json.loads(line) for line in a.read_text().splitlines()]
    rb = [json.loads(line) for line in b.read_text().splitlines()]
    if len(ra) != len(rb):
        raise SystemExit(f"the trees wrote {len(ra)} and {len(rb)} records")
    diffs: dict[str, float] = {}
    for x, y in zip(ra, rb):
        for g, v in x.get("features", {}).items():
            if g in y.get("features", {}) and g != "object_top":
                d = float(np.max(np.abs(np.asarray(v, float) - np.asarray(y["features"][g], float))))
                diffs[g] = max(diffs.get(g, 0.0), d)
    return diffs


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    import torch

    return (f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="folder of images (searched recursively)")
    ap.add_argument("--images", type=int, default=300, help="images for the end-to-end runs (0: all)")
    ap.add_argument("--batch", type=int, default=32, help="images in the per-group batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per group (the fastest counts)")
    ap.add_argument("--rounds", type=int, default=2, help="runs per tree of each part, alternating")
    ap.add_argument("--ref", default="7129823", help="baseline git revision")
    a = ap.parse_args()
    paths = image_list(a.data, a.images)
    if not paths:
        raise SystemExit(f"no images under {a.data}")

    print(f"# {machine()}")
    print(f"# baseline {a.ref} against this tree; {len(paths)} images end to end, batch of "
          f"{min(a.batch, len(paths))} per group\n")
    with tempfile.TemporaryDirectory(prefix="emo-features-bench-") as tmp:
        trees = {"before": baseline_tree(a.ref, Path(tmp)), "after": REPO}

        runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in trees}
        for _ in range(a.rounds):  # alternating, so a change in the machine's load hits both trees
            for name, root in trees.items():
                runs[name].append(time_groups(root, paths[: a.batch], a.repeats))
        groups = {name: {g: {k: min(r[g][k] for r in rs) for k in rs[0][g]} for g in rs[0]} for name, rs in runs.items()}
        print("| group (256 x 256 view; functions on 1 thread) | before ms/image | after ms/image | speed-up | "
              "before CPU ms/image | after CPU ms/image |")
        print("|---|---|---|---|---|---|")
        for g in (*GROUPS, "stage"):
            b, f = groups["before"][g], groups["after"][g]
            label = "hand-crafted stage (all three)" if g == "stage" else g
            print(f"| {label} | {b['wall_ms']:.1f} | {f['wall_ms']:.1f} | {b['wall_ms'] / f['wall_ms']:.2f}x | "
                  f"{b['cpu_ms']:.1f} | {f['cpu_ms']:.1f} |")

        seconds: dict[str, list[float]] = {name: [] for name in trees}
        cpu: dict[str, list[float]] = {name: [] for name in trees}
        outputs = {name: Path(tmp) / f"{name}.jsonl" for name in trees}
        for _ in range(a.rounds):
            for name, root in trees.items():
                wall, used = run_features(root, paths, outputs[name])
                seconds[name].append(wall)
                cpu[name].append(used)
        rate = {name: len(paths) / min(s) for name, s in seconds.items()}
        print(f"\n| `emo features` (default set), {len(paths)} images | before | after | ratio |")
        print("|---|---|---|---|")
        print(f"| images/s (best of {a.rounds}) | {rate['before']:.1f} | {rate['after']:.1f} | "
              f"{rate['after'] / rate['before']:.2f}x |")
        med = {name: len(paths) / statistics.median(s) for name, s in seconds.items()}
        print(f"| images/s (median) | {med['before']:.1f} | {med['after']:.1f} | {med['after'] / med['before']:.2f}x |")
        ms = {name: 1000 * min(c) / len(paths) for name, c in cpu.items()}
        print(f"| CPU ms/image, all processes, start-up included (least of {a.rounds}) | {ms['before']:.1f} | "
              f"{ms['after']:.1f} | {ms['before'] / ms['after']:.2f}x |")

        diffs = largest_differences(outputs["before"], outputs["after"])
        print("\nlargest |before - after| per group: " + ", ".join(f"{g} {d:.2g}" for g, d in diffs.items()))
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
