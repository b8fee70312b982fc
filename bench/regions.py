"""Rao et al.'s Table 1 rows on our data: global only, regions only, global + regions (5-fold CV).

Same folds as ``bench/quality.py`` (``emo.train.kfold``, stratified by the Emotion6 label, seed 0).
The backbone's last feature map of every training image's ``fit`` view is computed once; then, per
fold, the CAM layer is re-trained on the training folds only (so the held-out images' regions
never come from a layer that saw their labels), regions are found for every image, and a head
with the shipped ``emotion6`` recipe (one member) is trained on the training folds and scored on
the held-out fold. Also times ``emo classify``, ``emo regions`` and ``emo classify --regions``.

    nice .venv/bin/python bench/regions.py > /tmp/regions.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
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
DATA = REPO.parent / "shared" / "data" / "emotion6"
CAM_L2 = 300.0


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

        (fmaps,) = self.stage.engine(to_batch(items, self.view))
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


def throughput(n: int, regions_head: Path | None) -> list[tuple[str, float]]:
    """Images per second of whole CLI runs on ``n`` Emotion6 images (engine cache warm).

    ``emo classify --regions`` needs a head trained with ``--regions`` (K = 10); none ships, so
    one is given (its weights do not change the time).
    """
    paths = "\n".join(json.loads(line)["path"] for line in (DATA / "train.jsonl").read_text().splitlines()[:n]) + "\n"
    emo = str(REPO / ".venv" / "bin" / "emo")
    out = []
    for name, args in [("emo classify", ["classify"]), ("emo regions", ["regions"]),
                       ("emo classify --regions", ["classify", "--regions", "--head", str(regions_head)])]:
        cmd = [emo, *args, "--root", str(DATA), "-q"]
        subprocess.run(cmd, input=paths.splitlines()[0] + "\n", text=True, capture_output=True)  # build/cache engines
        t0 = time.perf_counter()
        r = subprocess.run(cmd, input=paths, text=True, capture_output=True)
        secs = time.perf_counter() - t0
        if r.returncode not in (0, 1):
            out.append((name, float("nan")))
            continue
        out.append((name, n / secs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, default=Path("/work/cache/emo6_objdeep.jsonl"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--speed-images", type=int, default=200)
    ap.add_argument("--skip-cv", action="store_true")
    ap.add_argument("--regions-head", type=Path, default=None,
                    help="a head from emo fit --task classify --regions, for timing emo classify --regions")
    args = ap.parse_args()
    rows = []
    if not args.skip_cv:
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
        items = [item_from_record(i, {"path": r["path"]}, DATA) for i, r in enumerate(recs)]
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
        print(f"\nWhole CLI runs on {args.speed_images} Emotion6 images (400 px), engines cached, batch 32:\n")
        print("| command | images/s |")
        print("|---|---|")
        for name, ips in throughput(args.speed_images, args.regions_head):
            print(f"| `{name}` | {ips:.1f} |")


if __name__ == "__main__":
    main()
