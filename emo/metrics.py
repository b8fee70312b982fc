"""Scores for ``emo score``: classification (accuracy, per-class TPR, macro-F1, confusion, 2-class
accuracy through the sentiment mapping, top-1 and KL against a truth distribution) and valence /
arousal regression (MSE, RMSE, Pearson r). Pure numpy; records in, plain dicts out."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emo.config import KEY_EMOTION, KEY_ERROR, KEY_SENTIMENT, KEY_VA
from emo.emotions import POLARITY, sentiment_of_valence

KL_EPS = 1e-12  # a predicted probability of 0 would make KL infinite


def confusion(truth: Sequence[int], pred: Sequence[int], n: int) -> np.ndarray:
    """``(n, n) int``: row = true class, column = predicted class."""
    m = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(truth, pred):
        m[t, p] += 1
    return m


def classification_metrics(truth: Sequence[int], pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class true positive rate (recall), macro-F1 over classes that occur in truth
    or prediction, and the confusion matrix (rows truth, columns prediction)."""
    n = len(labels)
    m = confusion(truth, pred, n)
    total = int(m.sum())
    tp = np.diag(m).astype(np.float64)
    support, predicted = m.sum(1), m.sum(0)
    tpr = {labels[i]: (float(tp[i] / support[i]) if support[i] else None) for i in range(n)}
    f1s = []
    for i in range(n):
        if support[i] == 0 and predicted[i] == 0:
            continue  # a class absent from both sides says nothing
        prec = tp[i] / predicted[i] if predicted[i] else 0.0
        rec = tp[i] / support[i] if support[i] else 0.0
        f1s.append(0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec))
    return {
        "n": total,
        "accuracy": float(tp.sum() / total) if total else None,
        "per_class_tpr": tpr,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "labels": list(labels),
        "confusion": m.tolist(),
    }


def distribution_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """``truth``, ``pred``: ``(N, C)`` rows summing to 1. Top-1 agreement of the argmaxes and the
    mean ``KL(truth || pred) = sum t log(t / p)`` in nats (``p`` floored at 1e-12)."""
    t = np.asarray(truth, dtype=np.float64)
    p = np.maximum(np.asarray(pred, dtype=np.float64), KL_EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1.0)) - np.log(p)), 0.0).sum(1)
    return {"n": int(len(t)), "top1": float((t.argmax(1) == p.argmax(1)).mean()) if len(t) else None,
            "kl": float(kl.mean()) if len(t) else None}


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """MSE, RMSE and Pearson r of ``pred`` against ``truth`` (both ``(N,)``); r is None when
    either side is constant, the MSE and RMSE None only when they exceed float64's range."""
    t, p = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if len(t) == 0:
        return {"n": 0, "mse": None, "rmse": None, "pearson_r": None}
    with np.errstate(over="ignore", invalid="ignore"):
        mse = float(((p - t) ** 2).mean())
    if math.isfinite(mse):
        rmse = math.sqrt(mse)
    else:  # numbers near 1e308: the RMSE may still be in range, computed on values scaled to 1
        scale = float(max(np.abs(t).max(), np.abs(p).max()))
        with np.errstate(over="ignore"):
            rmse = float(np.float64(math.sqrt(float(((p / scale - t / scale) ** 2).mean()))) * scale)
    if max(np.abs(t).max(), np.abs(p).max()) > 1e150:  # r is the same for either side scaled on its own
        t, p = t / (np.abs(t).max() or 1.0), p / (np.abs(p).max() or 1.0)
    st, sp = t.std(), p.std()
    r = float(((t - t.mean()) * (p - p.mean())).mean() / (st * sp)) if st > 0 and sp > 0 else None
    mse, rmse, r = (v if v is not None and math.isfinite(v) else None for v in (mse, rmse, r))
    return {"n": int(len(t)), "mse": mse, "rmse": rmse, "pearson_r": r}


def out_of_range(result: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``task.target`` names of the regression scores whose MSE exceeded float64 and is written as null."""
    return [f"{task}.{target}" for task, r in result.items() for target, m in r.items()
            if isinstance(m, Mapping) and "mse" in m and m.get("n") and m["mse"] is None]


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE (Guo et al., 2017): the share-weighted mean gap between confidence and accuracy.

    ``probs (N, C)`` rows summing to 1, ``y (N,) int`` true classes. Records are binned by their
    top probability into ``bins`` equal-width bins on (0, 1]; in [0, 1], 0 = perfectly calibrated.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    if len(p) == 0:
        raise ValueError("no predictions to measure calibration on")
    conf, hit = p.max(1), (p.argmax(1) == y).astype(np.float64)
    # Bin b holds confidences in (b/bins, (b+1)/bins]; ceil puts an exact edge in the lower bin.
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return float(ece)


def _truth_sentiment(rec: Mapping[str, Any]) -> str | None:
    v = rec.get("valence")
    if _number(v):
        return sentiment_of_valence(float(v))
    label = rec.get("label")
    return POLARITY.get(label) if isinstance(label, str) else None


def _pred_sentiment(rec: Mapping[str, Any], pred_label: str | None) -> str | None:
    s = rec.get(KEY_SENTIMENT)
    if isinstance(s, Mapping) and isinstance(_predicted_label(s), str):
        return _predicted_label(s)
    return POLARITY.get(pred_label) if pred_label else None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(m: Any) -> dict[str, float]:
    """The entries of a ``{class: probability}`` mapping that are finite numbers (others are dropped)."""
    return {k: float(v) for k, v in m.items() if isinstance(k, str) and _number(v)} if isinstance(m, Mapping) else {}


def _distribution(m: Any) -> dict[str, float]:
    """The finite entries of a ``{class: weight}`` mapping when they can stand for a distribution
    (none negative, a positive finite sum); else empty: a top-1 or KL over them would mean nothing."""
    d = _numbers(m)
    total = sum(d.values())
    return d if d and min(d.values()) >= 0 and 0 < total < math.inf else {}


def _truth_label(rec: Mapping[str, Any]) -> str | None:
    if isinstance(rec.get("label"), str):
        return rec["label"]
    d = _distribution(rec.get("distribution"))
    return max(d, key=lambda k: d[k]) if d else None


def _scored(records: Iterable[Mapping[str, Any]], counts: dict[str, int], key: str,
            is_prediction: Callable[[Any], bool], truth_of: Callable[[Mapping[str, Any]], Any]
            ) -> Iterator[tuple[Mapping[str, Any], Any, Any]]:
    """Yield ``(record, prediction, truth)`` of the scorable records; count every other one by why."""
    for rec in records:
        counts["records"] += 1
        if rec.get(KEY_ERROR):
            counts["errors"] += 1
            continue
        pred = rec.get(key)
        if not is_prediction(pred):
            counts["no_prediction"] += 1
            continue
        truth = truth_of(rec)
        if truth is None:
            counts["no_truth"] += 1
            continue
        counts["scored"] += 1
        yield rec, pred, truth


def _is_emotion(pred: Any) -> bool:
    return isinstance(pred, Mapping) and isinstance(_predicted_label(pred), str)


def _predicted_label(emo: Mapping[str, Any]) -> Any:
    """The class a prediction names; for an uncertain one (``label`` null), its ``best`` class."""
    return emo.get("best") if emo.get("label") is None and emo.get("uncertain") else emo.get("label")


def _new_counts() -> dict[str, int]:
    return {"records": 0, "errors": 0, "no_prediction": 0, "no_truth": 0, "scored": 0}


def score_classify(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Score ``emotion`` predictions against ``label`` / ``distribution`` truth in the same records.

    Records with ``error``, without a prediction or without truth are counted, never dropped silently.
    """
    counts = _new_counts()
    pairs: list[tuple[str, str]] = []
    dists: list[tuple[Mapping[str, float], Mapping[str, float]]] = []
    sent_t, sent_p = [], []
    labels: list[str] = []
    uncertain = 0
    for rec, emo, truth in _scored(records, counts, KEY_EMOTION, _is_emotion, _truth_label):
        probs = _numbers(emo.get("probs"))
        pred = _predicted_label(emo)
        uncertain += bool(emo.get("uncertain"))
        for name in list(probs) + [truth, pred]:
            if name not in labels:
                labels.append(name)
        pairs.append((truth, pred))
        truth_d, pred_d = _distribution(rec.get("distribution")), _distribution(probs)
        if truth_d and pred_d:
            dists.append((truth_d, pred_d))
        st, sp = _truth_sentiment(rec), _pred_sentiment(rec, pred)
        if st is not None and sp is not None:
            sent_t.append(st), sent_p.append(sp)
    idx = {c: i for i, c in enumerate(labels)}
    # Uncertain predictions (below --min-prob) are scored on their best class, and counted here.
    out: dict[str, Any] = {"counts": counts, "uncertain": uncertain}
    out.update(classification_metrics([idx[t] for t, _ in pairs], [idx[p] for _, p in pairs], labels))
    if dists:
        T = np.array([[float(t.get(c, 0.0)) for c in labels] for t, _ in dists])
        P = np.array([[float(p.get(c, 0.0)) for c in labels] for _, p in dists])
        T = T / np.maximum(T.sum(1, keepdims=True), 1e-12)
        out["distribution"] = distribution_metrics(T, P)
    out["sentiment"] = {"n": len(sent_t),
                        "accuracy": float(np.mean([a == b for a, b in zip(sent_t, sent_p)])) if sent_t else None,
                        "unmapped": counts["scored"] - len(sent_t)}
    return out


def _truth_va(rec: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """``(valence, arousal)`` truth, None when neither is a number."""
    v, a = rec.get("valence"), rec.get("arousal")
    return None if not _number(v) and not _number(a) else (v, a)


def score_va(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Score ``va`` predictions against numeric ``valence`` / ``arousal`` truth."""
    counts = _new_counts()
    tv, pv, ta, pa = [], [], [], []
    for rec, va, (v, a) in _scored(records, counts, KEY_VA, lambda p: isinstance(p, Mapping), _truth_va):
        if _number(v) and _number(va.get("valence")):
            tv.append(v), pv.append(va["valence"])
        if _number(a) and _number(va.get("arousal")):
            ta.append(a), pa.append(va["arousal"])
    return {"counts": counts, "valence": regression_metrics(np.array(tv), np.array(pv)),
            "arousal": regression_metrics(np.array(ta), np.array(pa))}


def resolve_path(path: str, root: str | Path | None = None) -> str:
    """``path`` as the filters resolve an input (``~`` expanded, a relative path taken against
    ``root``, default the current folder), then made absolute with symbolic links followed."""
    p = Path(os.path.expanduser(path))
    if not p.is_absolute():
        p = Path(os.path.expanduser(str(root))) / p if root is not None else p
    return os.path.realpath(p)


def _resolved(path: Any, root: str | Path | None) -> str | None:
    """:func:`resolve_path` of a string path, None for anything that cannot name a file (a NUL
    byte, a name the system refuses)."""
    if not isinstance(path, str):
        return None
    try:
        return resolve_path(path, root)
    except (ValueError, OSError):
        return None


@dataclass
class JoinCounts:
    """How predictions met their truth in :func:`join_truth`.

    ``predictions``: records read; ``matched``: those that found a truth record; ``no_truth``: those whose path is in
    no truth record; ``no_prediction``: truth records no prediction named; ``truth_without_path``:
    truth records that name no file (no string ``path``, an invalid ``path_bytes``, a line that is
    not a record); ``prediction_without_path``: predictions that name no file (the same causes:
    they can meet no truth, so they count as neither matched nor ``no_truth``);
    ``duplicate_truth``: truth records whose resolved path an earlier one had (the last one wins). The ``example_*`` paths show how the sides were spelt.
    """

    predictions: int = 0
    truth: int = 0
    matched: int = 0
    no_truth: int = 0
    no_prediction: int = 0
    truth_without_path: int = 0
    prediction_without_path: int = 0
    duplicate_truth: int = 0
    example_prediction: str = ""
    example_truth: str = ""

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("example_")}


def join_truth(records: Iterable[dict[str, Any]], truth: Iterable[Mapping[str, Any]], root: str | Path | None = None,
               counts: JoinCounts | None = None) -> Iterator[dict[str, Any]]:
    """Copy the truth fields of ``truth`` records onto ``records`` that name the same file.

    Both sides name their file exactly (:func:`emo.io.records.record_name`: ``path_bytes`` for a
    name that is not UTF-8, else ``path``), so names that read alike are told apart.

    Truth paths are resolved against ``root`` (default the current folder), as the filters
    resolve inputs given with ``--root``. A prediction's path is absolute (``emo classify -r``) or
    relative: it is looked up resolved against ``root`` first (predictions made with the same
    ``--root``), then against the current folder. A record whose path is in no truth record loses
    any truth it had, so it counts as no truth. ``counts`` (filled once the iterator is exhausted)
    says how many met.
    """
    from emo.config import TRUTH_KEYS
    from emo.io.records import printable, record_name

    c = counts if counts is not None else JoinCounts()
    table: dict[str, Mapping[str, Any]] = {}
    for t in truth:
        c.truth += 1
        name = record_name(t)
        key = _resolved(name, root)
        if key is None:
            c.truth_without_path += 1
            continue
        c.duplicate_truth += key in table
        table[key] = t
        c.example_truth = c.example_truth or printable(name)
    used: set[str] = set()
    for rec in records:
        path = record_name(rec)
        t = None
        c.predictions += 1
        if isinstance(path, str):
            for base in dict.fromkeys((root, None)):
                key = _resolved(path, base)
                if key is not None and key in table:
                    t = table[key]
                    used.add(key)
                    break
        if t is not None:
            c.matched += 1
        elif isinstance(path, str):
            c.no_truth += 1
            c.example_prediction = c.example_prediction or printable(path)
        else:
            c.prediction_without_path += 1
        rec = {k: v for k, v in rec.items() if k not in TRUTH_KEYS}
        if t is not None:
            rec.update({k: t[k] for k in TRUTH_KEYS if k in t})
        yield rec
    c.no_prediction = len(table) - len(used)


def why_nothing_scored(result: Mapping[str, Mapping[str, Any]], join: JoinCounts | None = None,
                       root: str | Path | None = None) -> str | None:
    """One line that says why no record was scored, or None when some were.

    ``result``: ``{task: score_classify / score_va output}`` (empty when no record carries a
    prediction); ``join``: the counts of :func:`join_truth` when truth came from another file.
    """
    scored = sum(r["counts"]["scored"] for r in result.values())
    if scored:
        return None
    if not result:
        return "nothing scored: no record carries a prediction (emotion or va); pipe emo classify or emo va into emo score"
    c = next(iter(result.values()))["counts"]
    if not c["records"] and join is None:
        return "nothing scored: no prediction records came in (empty input?)"
    from emo.io.records import counted

    why = (f"nothing scored: {counted(c['records'], 'record')}, {c['errors']} with errors, "
           f"{c['no_prediction']} without a prediction, {c['no_truth']} without truth")
    if join is not None:
        base = f"--root {root}" if root is not None else "the current folder"
        why += (f"; {join.matched} of {counted(join.predictions, 'prediction path')} found in the truth file's "
                f"{counted(join.truth, 'record')} ({counted(join.no_prediction, 'truth record')} "
                f"{'has' if join.no_prediction == 1 else 'have'} no prediction)")
        if not join.matched and join.example_prediction and join.example_truth:
            why += (f"; paths differ, e.g. prediction {join.example_prediction!r} vs truth "
                    f"{join.example_truth!r} resolved against {base}")
    elif c["no_truth"]:
        why += "; give truth with --truth FILE or records that carry label / distribution / valence"
    return why
