"""``emo regions`` speed before and after a change, and Rao et al.'s Table 1 rows on our data.

Speed (``--baseline REV``): the code at git revision REV is unpacked into a temporary folder and
``emo regions`` of that code and of this tree run in turns on the same ``--speed-images`` images
of DATA, ``--repeats`` times each (engine cache warm, the first run of each not timed); the median
images/s of each, their ratio, and whether their regions agree (boxes to a pixel, scores to 2e-4)
are printed side by side. Also the last-map engine alone on decoded images (the ceiling) and
``emo classify`` for scale.

Table 1 (``--features``): global only, regions only, global + regions (5-fold CV).
Same folds as ``bench/quality.py`` (``emo.train.kfold``, stratified by the Emotion6 label, seed 0).
The backbone's last feature map of every training image's ``fit`` view is computed once; then, per
fold, the CAM layer is re-trained on the training folds only (so the held-out images' regions
never come from a layer that saw their labels), regions are found for every image, and a head
with the shipped ``emotion6`` recipe (one member) is trained on the training folds and scored on
the held-out fold.

    python bench/regions.py DATA --baseline REV                     # speed only
    python bench/regions.py DATA --features FEATURES.jsonl          # Table 1 and speed

DATA holds ``train.jsonl`` (Emotion6 records with relative ``path``) and the images.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emo.config import from_env  # noqa: E402
from emo.emotions import LABEL_SETS  # noqa: E402
from emo.io.decode import View  # noqa: E402
from emo.io.records import item_from_record  # noqa: E402
from emo.models.head_file import new_head  # noqa: E402
from emo.pipeline import Pipeline  # noqa: E402
from emo.regions.layers import LinearLayer  # noqa: E402
from emo.regions.layer_fit import fit_softmax  # noqa: E402
from emo.stages.regions_stage import local_group, region_stage  # noqa: E402
from emo.train import FitConfig, evaluate, fit_head, kfold, targets_from_records  # noqa: E402

E6 = LABEL_SETS["emotion6"]
CAM_L2 = 300.0
CEILING = "last-map engine alone, in the bench's process, on decoded views (the ceiling)"


class _Maps:
    """Keeps each item's last feature map (fp16) and upright size."""

    def __init__(self, stage) -> None:
        self.stage = stage
        self.views = (stage.view,)
        self.maps: dict[int, np.ndarray] = {}
        self.sizes: dict[int, tuple[int, int]] = {}

    def wants(self, item) -> bool:
        return True

    def run(self, items) -> None:
        from emo.stages.backbone_stage import to_batch

        fmaps = self.stage.feature_maps(to_batch(items, self.view))
        for it, m in zip(items, fmaps):
            self.maps[it.index], self.sizes[it.index] = m.half().numpy(), it.size

    @property
    def view(self) -> View:
        return self.stage.view


def recipe() -> FitConfig:
    header = json.loads((REPO / "emo" / "heads" / "emotion6.safetensors.json").read_text())
    conf = header["training"]["config"]
    kw = {k: conf[k] for k in FitConfig.__dataclass_fields__ if k in conf}
    kw["hidden"] = tuple(kw["hidden"])
    return replace(FitConfig(**kw), members=1)


def machine() -> str:
    """The hardware in words: CPU model, cores this process may use, and the load when asked."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def unpack(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev`` of this repository, unpacked under ``into``."""
    tar = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev], capture_output=True, check=True)
    dest = into / "baseline"
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as tf:
        tf.extractall(dest, filter="data")
    return dest


def cli_run(tree: Path, args: list[str], data: Path, paths: str) -> tuple[float, str]:
    """Seconds of one whole ``python -m emo ARGS --root DATA -q`` run of the code in ``tree``, and its stdout."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "emo", *args, "--root", str(data), "-q"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, input=paths, text=True, capture_output=True, env=env, cwd=tree)
    secs = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} in {tree} failed ({r.returncode}): {r.stderr[-500:]}")
    return secs, r.stdout


def _pixel_box(box: list[float]) -> list[int]:
    """A box given to 0.1 pixel as the smallest whole-pixel box holding it (how emo now writes boxes)."""
    return [math.floor(box[0] + 1e-3), math.floor(box[1] + 1e-3), math.ceil(box[2] - 1e-3), math.ceil(box[3] - 1e-3)]


def agreement(before: str, after: str) -> tuple[int, int, float]:
    """Records whose regions agree (same count and labels, boxes within a pixel, scores within 2e-4),
    records compared, and the largest score difference."""
    same, n, worst = 0, 0, 0.0
    for a, b in zip(before.splitlines(), after.splitlines()):
        ra, rb = json.loads(a).get("regions"), json.loads(b).get("regions")
        n += 1
        if ra is None or rb is None or len(ra) != len(rb):
            continue
        ok = True
        for x, y in zip(ra, rb):
            d = max(abs(x[k] - y[k]) for k in ("score", "p_emo", "p_obj"))
            worst = max(worst, d)
            box = x["box"] if all(isinstance(v, int) for v in x["box"]) else _pixel_box(x["box"])
            ok &= d <= 2e-4 and x.get("label") == y.get("label") and max(abs(u - v) for u, v in zip(box, y["box"])) <= 1
        same += ok
    return same, n, worst


def engine_alone(data: Path, paths: list[str]):
    """A function timing the last-map engine alone on decoded fit views, called as the stage calls it
    (the ceiling of ``emo regions``): each call returns images per second."""
    from emo.io.decode import decode
    from emo.stages.backbone_stage import to_batch

    stage = region_stage(replace(from_env(), batch_size=32), emit=True)
    items = [item_from_record(i, {"path": p}, data) for i, p in enumerate(paths)]
    for it in items:
        d = decode(it.path, stage.views, 0)
        it.size, it.views = d.size, d.views
    batches = [to_batch(items[i : i + 32], stage.view) for i in range(0, len(items), 32)]
    stage.feature_maps(batches[0])  # warm

    def rate() -> float:
        t0 = time.perf_counter()
        for b in batches:
            stage.feature_maps(b)
        return len(items) / (time.perf_counter() - t0)

    return rate


# Run inside each tree: CPU time per image, one torch thread, of the work after decoding.
_CPU_SCRIPT = """
import json, sys, time
from dataclasses import replace
from pathlib import Path
import torch
torch.set_num_threads(1)
from emo.config import from_env
from emo.io.decode import decode
from emo.io.records import item_from_record
from emo.stages.backbone_stage import to_batch
from emo.stages.regions_stage import region_stage
data, names = Path(sys.argv[1]), sys.stdin.read().split()
stage = region_stage(replace(from_env(), batch_size=32), emit=True)
maps = getattr(stage, "feature_maps", None) or (lambda x: stage.engine(x)[0])
items = [item_from_record(i, {"path": p}, data) for i, p in enumerate(names)]
for it in items:
    d = decode(it.path, stage.views, 0)
    it.size, it.views = d.size, d.views
stage.finder.find(maps(to_batch(items[:2], stage.view)), [it.size for it in items[:2]])  # warm
engine = find = 0.0
for i in range(0, len(items), 32):
    batch = items[i : i + 32]
    t0 = time.process_time()
    fmaps = maps(to_batch(batch, stage.view))
    t1 = time.process_time()
    stage.finder.find(fmaps, [it.size for it in batch])
    t2 = time.process_time()
    engine, find = engine + t1 - t0, find + t2 - t1
print(json.dumps({"engine": 1000 * engine / len(items), "find": 1000 * find / len(items)}))
"""


def cpu_per_image(tree: Path, data: Path, names: list[str]) -> dict[str, float]:
    """CPU milliseconds per image of the backbone pass and of finding the regions, one thread."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    r = subprocess.run([sys.executable, "-c", _CPU_SCRIPT, str(data)], input="\n".join(names), text=True,
                       capture_output=True, env=env, cwd=tree)
    if r.returncode:
        raise SystemExit(f"CPU timing in {tree} failed: {r.stderr[-500:]}")
    return json.loads(r.stdout.splitlines()[-1])


def speed(data: Path, n: int, baseline: str | None, repeats: int, regions_head: Path | None) -> None:
    """Print the speed table: whole CLI runs, before and after, in turns, on the same images."""
    names = [json.loads(line)["path"] for line in (data / "train.jsonl").read_text().splitlines()[:n]]
    paths = "\n".join(names) + "\n"
    runs: dict[str, list[float]] = {}
    outs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="emo-bench-") as tmp:
        trees = {"after": REPO}
        if baseline:
            trees = {"before": unpack(baseline, Path(tmp)), **trees}
        cases = [(f"emo regions ({k})", tree, ["regions"]) for k, tree in trees.items()]
        cases.append(("emo classify", REPO, ["classify"]))
        if regions_head is not None:
            cases.append(("emo classify --regions", REPO, ["classify", "--regions", "--head", str(regions_head)]))
        start_load = load_average()
        for name, tree, args in cases:  # engines built or loaded once, outside the timing
            cli_run(tree, args, data, names[0] + "\n")
        ceiling = engine_alone(data, names)
        cpu = {k: cpu_per_image(tree, data, names) for k, tree in trees.items()}
        for _ in range(repeats):
            for name, tree, args in cases:  # in turns, so a busy spell of the machine hits all alike
                secs, outs[name] = cli_run(tree, args, data, paths)
                runs.setdefault(name, []).append(n / secs)
            runs.setdefault(CEILING, []).append(ceiling())
    print(f"\n`emo regions` speed on {n} Emotion6 images (about 400 px), whole CLI runs from process start to "
          f"exit, engine cache warm, batch 32, default backend; median of {repeats} runs each, taken in turns. "
          f"Machine: {machine()}, shared with other jobs (load average {start_load} at the start, "
          f"{load_average()} at the end).\n")
    print("| run | images/s (median) | runs |")
    print("|---|---|---|")
    med = {k: statistics.median(v) for k, v in runs.items()}
    for name, v in runs.items():
        shown = name if name == CEILING else f"`{name}`"
        print(f"| {shown} | {med[name]:.1f} | {', '.join(f'{x:.1f}' for x in v)} |")
    print(f"\nCPU time per image after decoding, one torch thread (little affected by other jobs), "
          f"on the same {n} images:\n")
    print("| code | backbone pass, ms | finding regions, ms | total, ms |")
    print("|---|---|---|---|")
    for k, c in cpu.items():
        print(f"| {k} | {c['engine']:.1f} | {c['find']:.1f} | {c['engine'] + c['find']:.1f} |")
    if baseline:
        b, a = cpu["before"], cpu["after"]
        print(f"\nCPU per image, before / after: **{(b['engine'] + b['find']) / (a['engine'] + a['find']):.2f}x**.")
        ratios = [x / y for x, y in zip(runs["emo regions (after)"], runs["emo regions (before)"])]
        print(f"Whole runs, after / before in each round: {', '.join(f'{r:.2f}' for r in ratios)}.")
        same, total, worst = agreement(outs["emo regions (before)"], outs["emo regions (after)"])
        print(f"\nafter / before: **{med['emo regions (after)'] / med['emo regions (before)']:.2f}x** "
              f"(before = git revision {baseline}). Regions agree on {same} of {total} images "
              f"(boxes within a pixel, scores within 2e-4; largest score difference {worst:.1e}).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="Emotion6 folder: train.jsonl and the images it names")
    ap.add_argument("--features", type=Path, default=None,
                    help="records with features.deep of DATA's images (emo features --set deep): runs Table 1")
    ap.add_argument("--baseline", default=None, help="git revision to time against (e.g. a merge-base)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--speed-images", type=int, default=200)
    ap.add_argument("--regions-head", type=Path, default=None,
                    help="a head from emo fit --task classify --regions, for timing emo classify --regions")
    args = ap.parse_args()
    rows = []
    if args.features is not None:
        recs = [orjson.loads(line) for line in args.features.read_bytes().splitlines() if line.strip()]
        targets, kept, _ = targets_from_records(recs, "classify", E6)
        folds = kfold(len(recs), args.folds, args.seed, targets.y)
        deep = np.stack([np.asarray(r["features"]["deep"], np.float32) for r in recs])
        names = list(recs[0]["distribution"])
        y = np.array([names.index(r["label"]) for r in recs])
        dist = np.array([[r["distribution"][n] for n in names] for r in recs], np.float32)

        settings = replace(from_env(), batch_size=32)
        stage = region_stage(settings, top_k=args.top_k, emit=False, local=True)
        cap = _Maps(stage)
        items = [item_from_record(i, {"path": r["path"]}, args.data) for i, r in enumerate(recs)]
        t0 = time.perf_counter()
        for _ in Pipeline([cap], settings).run(items):
            pass
        map_secs = time.perf_counter() - t0
        print(f"feature maps of {len(recs)} images: {map_secs:.0f} s", file=sys.stderr)
        finder = stage.finder
        cfg = recipe()
        preds = {k: np.zeros((len(recs), len(names)), np.float32) for k in ("global", "regions", "global+regions")}
        for f in range(args.folds):
            tr, te = folds != f, folds == f
            w, b = fit_softmax(deep[tr], y[tr], dist[tr], l2=CAM_L2)
            finder.cam = LinearLayer(w, b, {"kind": "cam", "labels": names})
            loc = np.zeros((len(recs), args.top_k * (deep.shape[1] + 1)), np.float32)
            for i in range(len(recs)):
                (reg,) = finder.find(torch.from_numpy(cap.maps[i]).float()[None], [cap.sizes[i]])
                loc[i] = local_group(reg, args.top_k)
            for row, groups in (("global", ["deep"]), ("regions", ["regions"]), ("global+regions", ["deep", "regions"])):
                X = np.concatenate([{"deep": deep, "regions": loc}[g] for g in groups], 1)
                dims = {"deep": deep.shape[1], "regions": loc.shape[1]}
                head = new_head(groups, dims, "classify", E6.labels)
                fit_head(X[tr], targets.take(np.flatnonzero(tr)), cfg, head.net)
                preds[row][te] = head.net.predict_array(X[te])
            print(f"fold {f + 1}/{args.folds} done", file=sys.stderr)
        for row in ("global", "regions", "global+regions"):
            per = [evaluate(preds[row][folds == f], targets.take(np.flatnonzero(folds == f)), "classify", E6)["top1"]
                   for f in range(args.folds)]
            m = evaluate(preds[row], targets, "classify", E6)
            rows.append((row, m["top1"], float(np.std(per)), m["macro_f1"], m["kl"]))
        print(f"{args.folds}-fold cross-validation on {len(recs)} Emotion6 training images, folds of emo.train.kfold "
              f"(stratified by label, seed {args.seed}), head: the shipped emotion6 recipe with one member, "
              f"K = {args.top_k} cam regions (CAM layer re-trained per fold on the training folds).\n")
        print("| features | X | top-1 (± std over folds) | macro-F1 | KL |")
        print("|---|---|---|---|---|")
        dims = {"global": "X_global (deep, 1280)", "regions": f"X_local 1..{args.top_k} + mask ({loc.shape[1]})",
                "global+regions": f"[X_global, X_local 1..{args.top_k}] + mask ({deep.shape[1] + loc.shape[1]})"}
        for row, top1, sd, f1, kl in rows:
            print(f"| {row} | {dims[row]} | {100 * top1:.1f}% ± {100 * sd:.1f} | {f1:.3f} | {kl:.3f} |")
    if args.speed_images:
        speed(args.data, args.speed_images, args.baseline, args.repeats, args.regions_head)


if __name__ == "__main__":
    main()
