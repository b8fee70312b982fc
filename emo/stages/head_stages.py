"""Head stages: turn an item's feature groups into ``emotion`` / ``sentiment`` / ``va`` keys.

They need no pixels (``views = ()``): the backbone and hand-crafted stages before them fill
``item.features``, or the input record carried them. Only the heads' outputs are written, never
the internal features.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from emo.config import KEY_EMOTION, KEY_SENTIMENT, KEY_VA
from emo.errors import EmoError, ModelError
from emo.emotions import NEGATIVE, POSITIVE, from_labels
from emo.forks import renew_in_child
from emo.io.decode import View
from emo.io.records import Item
from emo.models.head_file import Head


def _stack(head: Head, items: list[Item]) -> tuple[list[Item], np.ndarray]:
    """Rows of the items whose features fit ``head``; the others are marked ``bad_features``."""
    ok, rows = [], []
    for item in items:
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # 1e39 becomes inf, refused by stack
                rows.append(head.stack(item.features))
            ok.append(item)
        except (ValueError, TypeError, OverflowError) as e:
            item.fail("bad_features", f"{str(e)[:200]} (head {head.name})")
    X = np.stack(rows) if rows else np.zeros((0, head.in_dim), np.float32)
    return ok, X


def _predict(head: Head, ok: list[Item], X: np.ndarray, calibrated: bool = True) -> tuple[list[Item], np.ndarray]:
    """``head``'s outputs for the rows of ``X``, float64; a row that is not all finite (features
    so large the network overflows, such as 3e38) marks its item ``bad_features`` and is dropped."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = head.predict(X, calibrated).astype(np.float64) if len(ok) else np.zeros((0, 1))
    good = np.isfinite(out).all(1) if out.ndim == 2 else np.ones(len(ok), bool)
    if good.all():
        return ok, out
    for item, g in zip(ok, good):
        if not g:
            item.fail("bad_features", f"head {head.name} gives non-finite outputs for these features "
                      "(values out of any trained range)")
    keep = np.flatnonzero(good)
    return [ok[i] for i in keep], out[keep]


class _HeadStage:
    """What every head stage shares: no pixels, a head of the right task, every item wanted."""

    views: tuple[View, ...] = ()
    task = ""
    what = ""  # how a head of this task is named in the refusal

    def __init__(self, head: Head) -> None:
        if head.task != self.task:
            raise ValueError(f"head {head.name} is a {head.task} head, not {self.what}")
        self.head = head

    def wants(self, item: Item) -> bool:
        return True


class ClassifyStage(_HeadStage):
    """Adds ``emotion: {label, p, probs}`` and ``sentiment: {label, p, p_positive}``.

    Sentiment comes from the emotion probabilities when every class has a polarity (mikels8,
    five, sentiment); otherwise from ``sentiment_head`` (Emotion6's surprise and neutral have none).
    ``top_k`` > 0 adds ``emotion.top``: the k most probable classes, most probable first, each
    ``{"label", "p"}``. When the best class's probability ``p`` is below ``min_prob`` (for
    sentiment: ``sentiment_min_prob``) the key is uncertain: ``label`` is null, ``uncertain`` is
    true and ``best`` names the class that would have been given; ``probs`` stay numbers.
    ``calibrated=False`` ignores the heads' temperatures: the probabilities as trained (for the
    emotion6 heads, closer to the raters' vote distribution; see docs/confidence.md).
    """

    task, what = "classify", "a classifier"

    def __init__(self, head: Head, sentiment_head: Head | None = None, top_k: int = 0,
                 min_prob: float = 0.0, sentiment_min_prob: float = 0.0, calibrated: bool = True) -> None:
        super().__init__(head)
        for name, v in (("min_prob", min_prob), ("sentiment_min_prob", sentiment_min_prob)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {v}")
        self.labels = from_labels(head.labels)
        self.sentiment_head = None if self.labels.complete_sentiment else sentiment_head
        self.top_k = min(top_k, len(head.labels))
        self.min_prob = min_prob
        self.sentiment_min_prob = sentiment_min_prob
        self.calibrated = calibrated

    def run(self, items: list[Item]) -> None:
        ok, X = _stack(self.head, items)
        if not ok:
            return
        ok, probs = _predict(self.head, ok, X, self.calibrated)
        probs /= probs.sum(1, keepdims=True)
        if self.sentiment_head is not None:
            ok2, Xs = _stack(self.sentiment_head, ok)
            ok2, sp = _predict(self.sentiment_head, ok2, Xs, self.calibrated)
            keep = [ok.index(it) for it in ok2]
            ok, probs = ok2, probs[keep]
            p_pos = sp[:, list(self.sentiment_head.labels).index(POSITIVE)] / sp.sum(1)
        elif self.labels.complete_sentiment:
            p_pos = self.labels.p_positive(probs)
        else:
            p_pos = None
        names = self.head.labels
        for i, item in enumerate(ok):
            row = probs[i]
            j = int(row.argmax())
            emo = _decision(names[j], float(row[j]), self.min_prob)
            emo["probs"] = {c: round(float(p), 6) for c, p in zip(names, row)}
            if self.top_k:
                emo["top"] = [{"label": names[k], "p": round(float(row[k]), 6)}
                              for k in np.argsort(-row, kind="stable")[: self.top_k]]
            item.record[KEY_EMOTION] = emo
            if p_pos is not None:
                p = float(p_pos[i])
                best, p_best = (POSITIVE, p) if p >= 0.5 else (NEGATIVE, 1.0 - p)
                sent = _decision(best, p_best, self.sentiment_min_prob)
                sent["p_positive"] = round(p, 6)
                item.record[KEY_SENTIMENT] = sent
            else:  # a sentiment the input carried is not this run's: it must not pass as one
                item.record.pop(KEY_SENTIMENT, None)


def _decision(best: str, p: float, min_prob: float) -> dict[str, Any]:
    """``{label, p}``, or ``{label: None, uncertain: True, best, p}`` when ``p < min_prob``."""
    if p < min_prob:
        return {"label": None, "uncertain": True, "best": best, "p": round(p, 6)}
    return {"label": best, "p": round(p, 6)}


class VAStage(_HeadStage):
    """Adds ``va: {valence, arousal}`` on the 1-9 scale."""

    task, what = "va", "a valence/arousal head"

    def run(self, items: list[Item]) -> None:
        ok, X = _stack(self.head, items)
        if not ok:
            return
        ok, pred = _predict(self.head, ok, X)
        pred = np.clip(pred, 1.0, 9.0)
        for i, item in enumerate(ok):
            item.record[KEY_VA] = {"valence": round(float(pred[i, 0]), 4), "arousal": round(float(pred[i, 1]), 4)}


class LazyStage:
    """A stage built on first use, so a run whose records all carry their features never loads
    the network. ``views`` and ``groups`` are known up front (from the registry)."""

    def __init__(self, build: Callable[[], Any], views: tuple[View, ...], groups: Sequence[str],
                 wants: Callable[[Item], bool] | None = None) -> None:
        self._build = build
        self._stage: Any = None
        self._lock = threading.Lock()  # emo.Predictor may be called from several threads at once
        renew_in_child(self, LazyStage._new_lock)
        self.views = views
        self.groups = tuple(groups)
        self._wants = wants  # for a stage whose output is not a feature group (regions)

    def _new_lock(self) -> None:
        """In a forked child: a build another thread was running at the fork never ends there."""
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._stage is not None

    def wants(self, item: Item) -> bool:
        if self._wants is not None:
            return self._wants(item)
        return any(g not in item.features for g in self.groups)

    def build(self) -> Any:
        """The stage itself, built now if it was not yet (``emo engines build --for`` builds ahead)."""
        if self._stage is None:
            with self._lock:  # the second caller waits for the first one's network, not builds its own
                if self._stage is None:
                    try:
                        self._stage = self._build()
                    except EmoError:
                        raise
                    except Exception as e:  # a network that cannot be built stops the run, as at start-up
                        raise ModelError(f"cannot build the network: {type(e).__name__}: {str(e)[:300]}") from e
        return self._stage

    def run(self, items: list[Item]) -> None:
        self.build().run(items)


class OwnBackboneStage:
    """A fine-tuned head's own backbone: fills ``item.features[key]`` with its embedding."""

    def __init__(self, engine: Any, view: View, key: str) -> None:
        self.engine = engine
        self.view = view
        self.views = (view,)
        self.key = key

    def wants(self, item: Item) -> bool:
        return self.key not in item.features

    def run(self, items: list[Item]) -> None:
        from emo.stages.backbone_stage import to_batch

        _, emb = self.engine(to_batch(items, self.view))
        for i, item in enumerate(items):
            item.features[self.key] = emb[i].numpy()
