"""Label sets, their sentiment mapping, Mikels' wheel distances, and emotion distributions.

Pure Python and numpy: importable without torch (the CLI completes label-set names from here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

POSITIVE, NEGATIVE = "positive", "negative"

# Polarity of every emotion name emo knows; a custom set made of these names inherits it.
# surprise and neutral have none (Emotion6's sentiment truth is valence above or below 5).
POLARITY: dict[str, str | None] = {
    "amusement": POSITIVE, "awe": POSITIVE, "contentment": POSITIVE, "excitement": POSITIVE,
    "joy": POSITIVE, "happiness": POSITIVE, "love": POSITIVE, POSITIVE: POSITIVE,
    "anger": NEGATIVE, "disgust": NEGATIVE, "fear": NEGATIVE, "sadness": NEGATIVE,
    "violence": NEGATIVE, NEGATIVE: NEGATIVE,
    "surprise": None, "neutral": None,
}

# Mikels' wheel (Mikels et al. 2005) in the order Rao et al. (Fig. 4, after Zhao et al., TMM 2017)
# draw it: the four positive emotions, then the four negative ones, around one circle. The emotion
# distance between two classes is 1 + the number of steps between them on the wheel (Yang, She and
# Sun, IJCAI 2017, used by Rao et al. eq. 4): 1 for the same class, 2 for neighbours, 5 opposite.
MIKELS_WHEEL = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")


def wheel_distance(a: str, b: str) -> int:
    """Emotion distance on Mikels' wheel: 1 + steps between ``a`` and ``b`` (1..5)."""
    i, j = MIKELS_WHEEL.index(a), MIKELS_WHEEL.index(b)
    steps = abs(i - j)
    return 1 + min(steps, len(MIKELS_WHEEL) - steps)


@dataclass(frozen=True)
class LabelSet:
    """An ordered tuple of class names; a head's output size is ``len(labels)``."""

    name: str
    labels: tuple[str, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        """Position of ``label``; a :class:`KeyError` names the set's classes."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"{label!r} is not a class of {self.name} ({', '.join(self.labels)})") from None

    def polarity(self, label: str) -> str | None:
        """``positive``, ``negative`` or None (no sentiment for this class)."""
        return POLARITY.get(label)

    @property
    def complete_sentiment(self) -> bool:
        """True when every class is positive or negative, so sentiment follows from the classes."""
        return all(self.polarity(c) is not None for c in self.labels)

    def positive_mask(self) -> np.ndarray:
        """``(C,) bool``: classes whose polarity is positive."""
        return np.array([self.polarity(c) == POSITIVE for c in self.labels])

    def p_positive(self, probs: np.ndarray) -> np.ndarray:
        """``(..., C)`` class probabilities -> ``(...)`` probability of a positive sentiment.

        Classes without polarity are left out and the rest renormalised; only meaningful when
        at least one class has a polarity.
        """
        pol = np.array([self.polarity(c) is not None for c in self.labels])
        pos = (probs * self.positive_mask()).sum(-1)
        tot = (probs * pol).sum(-1)
        return pos / np.maximum(tot, 1e-12)

    @property
    def on_wheel(self) -> bool:
        return all(c in MIKELS_WHEEL for c in self.labels)

    def distances(self) -> np.ndarray:
        """``(C, C)`` emotion distances: Mikels' wheel when every class is on it, else 1 off-diagonal
        (equal distances: eq. 4 then spreads the rest evenly, like label smoothing)."""
        if self.on_wheel:
            return np.array([[wheel_distance(a, b) for b in self.labels] for a in self.labels], dtype=np.float64)
        return np.ones((len(self.labels), len(self.labels)))


LABEL_SETS: dict[str, LabelSet] = {
    s.name: s
    for s in (
        LabelSet("mikels8", MIKELS_WHEEL, "Mikels' eight emotions (You et al.'s FI, Rao et al.)"),
        LabelSet("emotion6", ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"),
                 "Emotion6 (Peng et al.): Ekman's six and neutral"),
        LabelSet("five", ("love", "happiness", "violence", "fear", "sadness"), "the five-category study"),
        LabelSet("sentiment", (POSITIVE, NEGATIVE), "positive or negative"),
    )
}


def label_set(spec: str) -> LabelSet:
    """A named set (``mikels8``, ``emotion6``, ``five``, ``sentiment``) or ``a,b,c`` (custom)."""
    if spec in LABEL_SETS:
        return LABEL_SETS[spec]
    names = [s.strip() for s in spec.split(",")]
    if len(names) < 2:
        raise ValueError(f"unknown label set {spec!r}: name one of {', '.join(LABEL_SETS)} or give a,b,c")
    # A head's outputs are its labels: an empty or repeated one is a typo, not a class to train.
    if "" in names:
        raise ValueError(f"--labels {spec!r} has an empty label (two commas, or one at either end)")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--labels {spec!r} names {twice[0]!r} more than once")
    return LabelSet("custom", tuple(names))


def from_labels(labels: Sequence[str]) -> LabelSet:
    """The named set with exactly these labels in this order, else a custom one."""
    t = tuple(labels)
    for s in LABEL_SETS.values():
        if s.labels == t:
            return s
    return LabelSet("custom", t)


def wheel_distribution(label: int, p_star: float, distances: np.ndarray) -> np.ndarray:
    """Rao et al. eq. 4: the dominant class keeps ``p_star``; the rest, ``1 - p_star``, goes to
    the others in proportion to 1 / distance. ``distances``: ``(C, C)``; returns ``(C,)``, sums to 1."""
    inv = 1.0 / distances[label].astype(np.float64)
    inv[label] = 0.0
    f = inv / inv.sum() * (1.0 - p_star)
    f[label] = p_star
    return f


def distribution_vector(dist: Mapping[str, float], labels: LabelSet) -> np.ndarray:
    """A record's ``{class: probability}`` as a ``(C,)`` vector in the set's order, renormalised.

    Classes missing from the mapping count 0; a name the set lacks raises KeyError, a probability
    that is not a number (a string, a boolean) TypeError.
    """
    v = np.zeros(len(labels), dtype=np.float64)
    for k, p in dist.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)):  # float() would take True or "0.5"
            raise TypeError(f"probability of {k!r} is not a number")
        v[labels.index(k)] = float(p)
    s = v.sum()
    if not np.isfinite(s) or s <= 0 or (v < 0).any():
        raise ValueError("distribution must be non-negative and sum to more than 0")
    return v / s


def sentiment_of_valence(valence: float) -> str | None:
    """Sentiment truth from a 1-9 valence: above 5 positive, below 5 negative, exactly 5 none."""
    if valence > 5:
        return POSITIVE
    if valence < 5:
        return NEGATIVE
    return None
