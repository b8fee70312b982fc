"""The stage that checks the feature groups records carry in, before any stage uses them as they are.

A group a record already carries is kept instead of computed: ``emo features`` writes it back out,
heads and ``emo fit`` read it. So a carried group the run uses must be what a stage would have
made: a flat list of finite numbers of the group's size. Anything else (a string, a boolean, null,
a nested list, a number or an object in place of the list, an empty list, the wrong count, a
value float32 cannot hold) makes that record one ``bad_features`` error that names the group,
what it holds and what it should hold. Groups the run does not use are never looked at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from emo.io.records import Item

# Features are float32 everywhere after this check: a larger number would turn into infinity.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class GroupShape:
    """What a carried group must be: ``size`` numbers (None where the run cannot know the size
    without loading a network: any count but none), and ``origin``, the network whose output the
    group stands for, named in messages (empty for groups of a fixed size)."""

    size: int | None
    origin: str = ""


def _kind(value: Any) -> str:
    """How ``value`` is named in a message, in JSON's words where JSON has them."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, np.ndarray):
        return f"an array of {value.ndim} dimensions"
    return f"a {type(value).__name__}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _not_float32(v: Any) -> str:
    """A number float32 cannot hold, and why, for a message."""
    try:
        f = float(v)
    except OverflowError:  # an integer past float64 (only a Python caller can give one)
        return f"an integer past float32's range (±{FLOAT32_MAX:.3g})"
    if math.isfinite(f):
        return f"{f:g}, past float32's range (±{FLOAT32_MAX:.3g})"
    return f"{f:g}, not a finite number"


def carried_values(key: str, value: Any, shape: GroupShape) -> np.ndarray:
    """The carried group ``key`` as ``(size,) float32``, or ``ValueError`` whose message names the
    group (``features.<key>``), what it holds and what it should hold.

    ``value`` is what the record holds under ``features.<key>``: a list (a tuple or a one-dimensional
    numeric array from a Python caller) of numbers, none of them booleans, all within float32's range.
    """
    group = key.split("@", 1)[0]  # a fine-tuned head's own group (deep@<id>) is still deep
    origin = f" from {shape.origin}" if shape.origin else ""
    expected = f"{group} is a list of {shape.size} numbers{origin}" if shape.size else f"{group} is a list of numbers"
    numeric = isinstance(value, np.ndarray) and value.dtype.kind in "iuf"
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise ValueError(f"features.{key} is {_kind(value)}; {expected}")
    if isinstance(value, np.ndarray) and not numeric:  # booleans, strings, objects: named one by one below
        value = value.tolist()
    if not numeric:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"features.{key} is {_kind(value)}; {expected}")
        # One pass in C for the usual list of plain numbers; the slow walk only names an offender.
        if not set(map(type, value)) <= {int, float}:
            for i, v in enumerate(value):
                if not _is_number(v):
                    raise ValueError(f"features.{key}[{i}] is {_kind(v)}; {expected}")
    n = len(value)
    if n == 0:
        has = f"{group} has {shape.size}{origin}" if shape.size else expected
        raise ValueError(f"features.{key} is empty; {has}")
    if shape.size and n != shape.size:
        # a network's group of another size most often came from another network: say how to pick it
        hint = " (computed by another --backbone?)" if shape.origin and group in ("object", "deep") else ""
        raise ValueError(f"features.{key} has {n} value{'s' if n != 1 else ''}; {group} has {shape.size}{origin}{hint}")
    with np.errstate(over="ignore", invalid="ignore"):  # a number past float32 becomes inf, named below
        try:
            out = value.astype(np.float32) if numeric else np.fromiter(value, np.float32, n)
        except OverflowError:  # an integer past float64 (only a Python caller can give one)
            out = np.array([np.inf if isinstance(v, int) and abs(v) > FLOAT32_MAX else v for v in value], np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"features.{key}[{i}] is {_not_float32(value[i])}; {expected}")
    return out


class CheckCarried:
    """Fails, record by record, the carried groups that do not fit ``shapes`` (group key ->
    :class:`GroupShape`) as ``bad_features``; a carried group that fits is kept as float32, the
    numbers every later stage reads. It needs no pixels and runs before the stages that compute."""

    views = ()

    def __init__(self, shapes: Mapping[str, GroupShape]) -> None:
        self.shapes = dict(shapes)

    def wants(self, item: Item) -> bool:
        return any(key in item.features for key in self.shapes)

    def run(self, items: list[Item]) -> None:
        for item in items:
            for key, shape in self.shapes.items():
                if key not in item.features:
                    continue
                try:
                    item.features[key] = carried_values(key, item.features[key], shape)
                except ValueError as e:
                    item.fail("bad_features", str(e))
                    break
