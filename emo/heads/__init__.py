"""The heads shipped with emo, as pure data (importable without torch, like the network registry).

Each entry names a file in this folder (``NAME.safetensors`` and its readable ``NAME.safetensors.json``).
The files themselves say how they were trained (the ``emo fit`` command, data, date, metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class HeadEntry:
    """A shipped head: its task, label set, feature groups and what it is the default for."""

    name: str
    task: str  # classify | va
    labels: str  # label set name
    groups: tuple[str, ...]
    description: str
    default_for: str = ""  # the subcommand that uses it when --head is not given


SHIPPED: dict[str, HeadEntry] = {
    e.name: e
    for e in (
        HeadEntry("emotion6", "classify", "emotion6", ("deep",),
                  "7-class Emotion6 distribution, MLP ensemble on mobilenet_v2 deep features", "classify"),
        HeadEntry("sentiment", "classify", "sentiment", ("deep",),
                  "positive / negative (Emotion6 valence above / below 5), on mobilenet_v2 deep features"),
        HeadEntry("va", "va", "va", ("deep",),
                  "valence and arousal on 1-9, MLP on mobilenet_v2 deep features (Kim et al.'s task)", "va"),
        HeadEntry("emotion6_linear", "classify", "emotion6", ("deep",),
                  "linear 7-class Emotion6 layer on mobilenet_v2 deep features (class activation maps)"),
    )
}

DEFAULT_HEAD = {e.default_for: e.name for e in SHIPPED.values() if e.default_for}
SENTIMENT_HEAD = "sentiment"
CAM_HEAD = "emotion6_linear"


def head_path(name: str) -> Path:
    """The file of shipped head ``name`` (which may be missing from a broken installation)."""
    return HERE / f"{name}.safetensors"


def names() -> list[str]:
    """Names of the shipped heads, for --head completion and ``emo models``."""
    return sorted(SHIPPED)
