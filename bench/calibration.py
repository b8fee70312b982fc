"""Calibration of the shipped classify heads: expected calibration error by cross-validation.

For each shipped classify head, its own training configuration (read from its header) is
re-trained in 5 stratified folds on the data folder's ``train.jsonl``; the out-of-fold logits give
the ECE (15 equal-width bins) as trained, and after temperature scaling where each fold's
temperature is fitted on the other folds only. The temperature fitted on all out-of-fold logits
is what a head stores.

    python bench/calibration.py DATA [--features DEEP.jsonl] [--update-heads] [--json OUT]

``DATA`` holds ``train.jsonl`` (paths relative to DATA). ``--features``: a JSONL of the same
records with ``features.deep`` (``emo features --set deep --root DATA < DATA/train.jsonl``);
without it the features are computed first. ``--update-heads`` writes ``temperature`` and
``metrics.calibration`` into the shipped heads (tensors unchanged); ``--update-from OUT.json``
does so from an earlier run's ``--json`` without measuring again; ``--save-logits DIR`` keeps
each head's out-of-fold logits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from emo.emotions import LABEL_SETS
from emo.heads import SHIPPED, head_path
from emo.models.head_file import load_head_file, new_head, save_head
from emo.train import (FitConfig, calibration_report, cross_validate, describe_source, evaluate, kfold,
                       targets_from_records)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402  (the processor's name)

FOLDS, BINS = 5, 15
CONFIG_FIELDS = set(FitConfig.__dataclass_fields__)


def _features(data: Path, given: str | None) -> list[dict[str, Any]]:
    """The training records with ``features.deep``: read from ``given`` or computed now."""
    if given is None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "deep.jsonl"
            with open(data / "train.jsonl", "rb") as stdin:
                subprocess.run([sys.executable, "-m", "emo", "features", "--set", "deep", "--root", str(data),
                                "-q", "-o", str(out)], stdin=stdin, check=True)
            return _read(out)
    return _read(Path(given))


def _read(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _measure(name: str, records: list[dict[str, Any]], save: Path | None) -> dict[str, Any]:
    head = load_head_file(head_path(name), name)
    conf = head.header["training"]["config"]
    cfg = FitConfig(**{k: (tuple(v) if k == "hidden" else v) for k, v in conf.items() if k in CONFIG_FIELDS})
    labels = LABEL_SETS[head.header["label_set"]]
    targets, keep, _ = targets_from_records(records, "classify", labels, conf.get("label_prob", 0.7))
    X = np.stack([np.asarray(records[i]["features"]["deep"], np.float32) for i in keep])
    folds = kfold(len(keep), FOLDS, cfg.seed, targets.y)
    t0 = time.perf_counter()
    res = cross_validate(X, targets, cfg, lambda: new_head(["deep"], {"deep": X.shape[1]}, "classify",
                                                           labels.labels).net, folds=folds)
    dist = targets.dist if labels.name != "sentiment" else None  # sentiment truth is a label only
    rep = calibration_report(res.logits, targets.y, folds, BINS, dist)
    if save is not None:
        np.savez_compressed(save / f"{name}.npz", logits=res.logits, y=targets.y, folds=folds, dist=targets.dist)
    rep.update({"n": len(keep), "folds": FOLDS, "seed": cfg.seed,
                "top1": evaluate(res.pred, targets, "classify", labels)["top1"],
                "seconds": round(time.perf_counter() - t0, 1)})
    return rep


def _update(name: str, rep: dict[str, Any], data: Path) -> None:
    """Store the temperature and the measured ECE in the shipped head; tensors stay as they are."""
    path = head_path(name)
    head = load_head_file(path, name)
    head.set_temperature(round(rep["temperature"], 4))
    head.header.setdefault("metrics", {})["calibration"] = {
        "method": f"temperature scaling fitted on {FOLDS}-fold out-of-fold logits (NLL)",
        "temperature": round(rep["temperature"], 4), "bins": BINS, "folds": FOLDS, "seed": rep["seed"],
        "ece_before": round(rep["ece_before"], 4), "ece_after": round(rep["ece_after"], 4),
        "nll_before": round(rep["nll_before"], 4), "nll_after": round(rep["nll_after"], 4),
        **{k: round(rep[k], 4) for k in ("kl_before", "kl_after") if k in rep},
        "data": describe_source(data / "train.jsonl", data),
    }
    save_head(head, path)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="data folder holding train.jsonl")
    ap.add_argument("--features", help="JSONL of the records with features.deep (else computed)")
    ap.add_argument("--heads", default=",".join(n for n, e in SHIPPED.items() if e.task == "classify"))
    ap.add_argument("--update-heads", action="store_true", help="write the fitted temperature into the heads")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--save-logits", type=Path, help="folder to keep each head's out-of-fold logits in (.npz)")
    ap.add_argument("--update-from", help="update the heads from a --json file of an earlier run; measure nothing")
    a = ap.parse_args(argv)
    if a.update_from:
        for name, rep in json.loads(Path(a.update_from).read_text()).items():
            _update(name, rep, a.data)
        return 0
    records = _features(a.data, a.features)
    results = {}
    print(f"# {tp.cpu_name()}, {os.cpu_count()} cores (CPU only), "
          f"{len(records)} records, {FOLDS}-fold CV, ECE with {BINS} bins")
    print("| head | n | top1 (OOF) | ECE before | ECE after | NLL before | NLL after | KL before | KL after | T |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in a.heads.split(","):
        rep = results[name] = _measure(name, records, a.save_logits)
        print(f"| {name} | {rep['n']} | {rep['top1']:.3f} | {rep['ece_before']:.3f} | {rep['ece_after']:.3f} | "
              f"{rep['nll_before']:.3f} | {rep['nll_after']:.3f} | {_f(rep.get('kl_before'))} | "
              f"{_f(rep.get('kl_after'))} | {rep['temperature']:.3f} |", flush=True)
        if a.update_heads:
            _update(name, rep, a.data)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
