"""The filter subcommands as data: each names its options and the function that builds its stages.

A filter (``features``, ``classify``, ``va``, ``regions``) reads images or records and writes one
record per input. Its recipe module holds an options dataclass (the defaults, declared once) and
``build(options, settings, context) -> stages``. The command line and :class:`emo.Predictor` both
come here, so the two build exactly the same stages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from emo import config
from emo.errors import UsageError

# name -> recipe module; each module defines FILTER. Imported only when asked for (no torch).
FILTER_MODULES: dict[str, str] = {
    "features": "emo.assembly.features_recipe",
    "regions": "emo.assembly.regions_recipe",
    "classify": "emo.assembly.classify_recipe",
    "va": "emo.assembly.va_recipe",
}


@dataclass(frozen=True)
class BuildContext:
    """What building stages needs beyond settings: where relative paths resolve, and a voice."""

    root: Path | None = None
    say: Callable[[str], None] | None = None  # verbose runs: which network, engine and device

    @property
    def verbose(self) -> bool:
        return self.say is not None


@dataclass(frozen=True)
class Filter:
    """One filter subcommand: its options class and its stage builder."""

    name: str
    options: type
    build: Callable[[Any, config.Settings, BuildContext], list[Any]]


def get_filter(name: str) -> Filter:
    """The filter called ``name``; a UsageError for any other subcommand."""
    if name not in FILTER_MODULES:
        raise UsageError(f"emo {name} is not a filter subcommand (one of {', '.join(FILTER_MODULES)})")
    return importlib.import_module(FILTER_MODULES[name]).FILTER


def filter_stages(name: str, options: Any, settings: config.Settings, context: BuildContext | None = None) -> list[Any]:
    """The stages of filter ``name`` for ``options`` (its options dataclass) and ``settings``."""
    f = get_filter(name)
    if not isinstance(options, f.options):
        raise TypeError(f"emo {name} takes {f.options.__name__}, not {type(options).__name__}")
    return f.build(options, config.validate(settings), context or BuildContext())


def options_from(cls: type, given: Mapping[str, Any]) -> Any:
    """An options dataclass from ``given``, keeping defaults for absent or ``None`` values."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in given.items() if k in names and v is not None})


def settings_from(given: Mapping[str, Any], base: config.Settings | None = None) -> config.Settings:
    """Settings: ``base`` (default: defaults, then EMO_* variables), then the values in ``given``
    that are not ``None``."""
    s = config.from_env() if base is None else base
    names = {f.name for f in fields(config.Settings)}
    return config.validate(replace(s, **{k: v for k, v in given.items() if k in names and v is not None}))


# ---- flags as the command line spells them (emo.Predictor) ------------------------------------


@dataclass(frozen=True)
class _Flag:
    dest: str
    like: Any  # the default, whose type the value takes


def _flags_of(*classes: type) -> dict[str, _Flag]:
    out: dict[str, _Flag] = {}
    for cls in classes:
        for f in fields(cls):
            default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)  # type: ignore[misc]
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            out[flag] = _Flag(f.name, default)
    return out


def _coerce(flag: str, raw: str, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            return raw
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
        if isinstance(like, tuple):
            return tuple(v.strip() for v in raw.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{flag}: {raw!r} is not a {type(like).__name__}") from None
    return raw


def parse_flags(name: str, argv: Sequence[str], extra: type | None = None) -> dict[str, Any]:
    """``["--top-k", "3", "--device", "cpu"]`` -> ``{"top_k": 3, "device": "cpu"}`` for filter
    ``name``: its own options, the run settings, and ``extra`` (a dataclass of further fields)."""
    table = _flags_of(get_filter(name).options, config.Settings, *((extra,) if extra else ()))
    out: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        flag, eq, value = arg.partition("=")
        spec = table.get(flag)
        if spec is None:
            raise UsageError(f"emo {name}: no such option {flag}")
        if isinstance(spec.like, bool):
            if eq:
                raise UsageError(f"emo {name}: {flag} takes no value")
            out[spec.dest] = True
            continue
        if not eq:
            if not args:
                raise UsageError(f"emo {name}: {flag} needs a value")
            value = args.pop(0)
        out[spec.dest] = _coerce(flag, value, spec.like)
    return out


def flag(name: str, **kw: Any) -> Any:
    """A dataclass field whose command-line flag is ``name`` (when it differs from the field's)."""
    return field(metadata={"flag": name}, **kw)


def build_ahead(name: str, settings: config.Settings, context: BuildContext | None = None) -> list[Any]:
    """Build every network and engine filter ``name`` would use with its default options, now
    (``emo engines build --for``), so the first real run compiles nothing; the built stages."""
    stages = filter_stages(name, get_filter(name).options(), settings, context)
    return [built for s in stages for built in _built(s)]


def _built(stage: Any) -> list[Any]:
    """``stage`` built now; the members of a :class:`Together`, each built."""
    from emo.stages.head_stages import LazyStage
    from emo.stages.together import Together

    if isinstance(stage, Together):
        return [built for s in stage.stages for built in _built(s)]
    return [stage.build() if isinstance(stage, LazyStage) else stage]
