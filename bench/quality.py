"""Quality of the shipped heads' recipes against a linear probe, by k-fold cross-validation.

Every row uses the same folds (stratified by the Emotion6 label, seeded), trains on k-1 folds and
predicts the held-out one; nothing is tuned on the held-out fold. The recipes are read from the
shipped heads' own headers (``emo/heads/*.json``: the config ``emo fit`` trained them with), so
this measures exactly what ships. Prints a markdown table for ``bench/RESULTS.md``.

Features come from a JSONL file of Emotion6 records carrying ``features.deep`` (and ``object``);
with DATA the Emotion6 folder (``train.jsonl`` and the pictures it names):

    emo features --set object,deep --root DATA < DATA/train.jsonl > emo6_feats.jsonl
    nice .venv/bin/python bench/quality.py --features emo6_feats.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emo.emotions import LABEL_SETS  # noqa: E402
from emo.models.head_file import new_head  # noqa: E402
from emo.train import FitConfig, cross_validate, evaluate, kfold, targets_from_records  # noqa: E402

E6 = LABEL_SETS["emotion6"]
SENT = LABEL_SETS["sentiment"]
# The baseline linear probe: standardised deep features, one linear layer, cross-entropy.
PROBE = FitConfig(loss="ce", hidden=(), dropout=0.0, epochs=30, lr=1e-3, weight_decay=1e-4, schedule="onecycle")
RIDGE_ALPHA = 3000.0  # the VA probe: ridge regression on standardised deep features


def load(path: Path) -> list[dict]:
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def stack(records: list[dict], groups: list[str]) -> np.ndarray:
    return np.stack([np.concatenate([np.asarray(r["features"][g], np.float32) for g in groups]) for r in records])


def recipe(name: str) -> tuple[FitConfig, list[str], dict]:
    """The FitConfig and feature groups a shipped head was trained with (from its JSON header)."""
    header = json.loads((REPO / "emo" / "heads" / f"{name}.safetensors.json").read_text())
    conf = header["training"]["config"]
    kw = {f.name: conf[f.name] for f in fields(FitConfig) if f.name in conf}
    kw["hidden"] = tuple(kw["hidden"])
    return FitConfig(**kw), conf["features"], header


def ridge_cv(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, alpha: float) -> np.ndarray:
    pred = np.zeros_like(Y)
    for f in range(int(folds.max()) + 1):
        tr, te = folds != f, folds == f
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-6
        A, B = (X[tr] - mu) / sd, (X[te] - mu) / sd
        ym = Y[tr].mean(0)
        W = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ (Y[tr] - ym))
        pred[te] = B @ W + ym
    return pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True,
                    help="JSONL of labelled records with features.deep (emo features --set object,deep).")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", default="probe,emotion6,emotion6_linear,sentiment,va")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    recs = load(args.features)
    t6, kept, _ = targets_from_records(recs, "classify", E6)
    assert len(kept) == len(recs), "every Emotion6 record has a distribution"
    ts, kept_s, _ = targets_from_records(recs, "classify", SENT)
    tva, _, _ = targets_from_records(recs, "va")
    folds = kfold(len(recs), args.folds, args.seed, t6.y)
    rows = []
    want = args.rows.split(",")

    def classify_row(name: str, cfg: FitConfig, groups: list[str], labels, targets, idx) -> dict:
        X = stack([recs[i] for i in idx], groups)
        dims = {g: len(recs[0]["features"][g]) for g in groups}
        t0 = time.perf_counter()
        res = cross_validate(X, targets, cfg, lambda: new_head(groups, dims, "classify", labels.labels).net,
                             folds=folds[idx], metric=lambda p, t: evaluate(p, t, "classify", labels))
        m = evaluate(res.pred, targets, "classify", labels)
        per = [r["top1"] for r in res.per_fold]
        return {"row": name, "labels": labels.name, "features": "+".join(groups), "top1": m["top1"],
                "top1_std": float(np.std(per)), "macro_f1": m["macro_f1"], "kl": m["kl"],
                "secs": time.perf_counter() - t0}

    if "probe" in want:
        rows.append(classify_row("linear probe (baseline)", PROBE, ["deep"], E6, t6, np.arange(len(recs))))
        rows.append(classify_row("linear probe (baseline)", PROBE, ["deep"], SENT, ts, np.asarray(kept_s)))
        t0 = time.perf_counter()
        p = ridge_cv(stack(recs, ["deep"]).astype(np.float64), tva.va.astype(np.float64), folds, RIDGE_ALPHA)
        mse = ((p - tva.va) ** 2).mean(0)
        rows.append({"row": "ridge probe (baseline)", "labels": "va", "features": "deep", "valence_mse": float(mse[0]),
                     "arousal_mse": float(mse[1]), "secs": time.perf_counter() - t0})
    for name in ("emotion6", "emotion6_linear", "sentiment"):
        if name in want:
            cfg, groups, _ = recipe(name)
            labels, targets, idx = (SENT, ts, np.asarray(kept_s)) if name == "sentiment" else (E6, t6, np.arange(len(recs)))
            rows.append(classify_row(f"shipped {name} recipe", cfg, groups, labels, targets, idx))
    if "va" in want:
        cfg, groups, _ = recipe("va")
        X = stack(recs, groups)
        dims = {g: len(recs[0]["features"][g]) for g in groups}
        t0 = time.perf_counter()
        res = cross_validate(X, tva, cfg, lambda: new_head(groups, dims, "va", ()).net, folds=folds)
        m = evaluate(res.pred, tva, "va")
        rows.append({"row": "shipped va recipe", "labels": "va", "features": "+".join(groups),
                     "valence_mse": m["valence_mse"], "arousal_mse": m["arousal_mse"], "valence_r": m["valence_r"],
                     "arousal_r": m["arousal_r"], "secs": time.perf_counter() - t0})

    def f(v, pct=False):
        return "" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}")

    print(f"{args.folds}-fold cross-validation on {len(recs)} Emotion6 training records, folds stratified by label, "
          f"seed {args.seed}; same folds for every row.\n")
    print("| row | labels | features | top-1 (± std over folds) | macro-F1 | KL | valence MSE | arousal MSE | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        top = f"{f(r.get('top1'), True)} ± {100 * r['top1_std']:.1f}" if "top1" in r else ""
        print(f"| {r['row']} | {r['labels']} | {r['features']} | {top} | {f(r.get('macro_f1'))} | {f(r.get('kl'))} | "
              f"{f(r.get('valence_mse'))} | {f(r.get('arousal_mse'))} | {r['secs']:.0f} s |")


if __name__ == "__main__":
    main()
