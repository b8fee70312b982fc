"""``emo engines``: list, build ahead or clear the compiled engines in the cache.

The cache itself (entries, sidecars, what a clear may remove) is :mod:`emo.engine.cache`; this
module is what the subcommands do with it: the rows and the table ``emo engines list`` shows, the
engines ``emo engines build`` compiles and the line it prints for each, and ``emo engines clear``'s
dry run, question and report.

Each subcommand's function takes its own options as the command line gives them (``given``: a
``None`` is an option not given) and the settings of the ``emo engines`` group (``base``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import click
import orjson

from emo import config
from emo.assembly.filters import settings_from
from emo.engine.cache import EngineCache
from emo.errors import EXIT_OK, ModelError, UsageError


def size_text(n: float) -> str:
    """``n`` bytes for people: whole bytes below 1 KB (``1000 B``), else one decimal in the largest
    unit of 1024 that fits, GB at most (``1.4 MB``, ``2048.0 GB``)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def age_text(seconds: float) -> str:
    """A span for people, rounded in the largest unit it fills (``9d``, ``3h``, ``12m``, ``5s``);
    a negative span (a clock set back) is ``0s``."""
    s = max(0.0, seconds)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= span:
            return f"{s / span:.0f}{unit}"
    return f"{s:.0f}s"


def _cache(settings: config.Settings) -> EngineCache:
    return EngineCache(config.engines_cache(settings))


def _settings(given: Mapping[str, Any], base: config.Settings | None) -> config.Settings:
    """The group's settings with this subcommand's own options on top (given after the subcommand)."""
    return settings_from(given, base)


def engine_rows(cache: EngineCache) -> list[dict[str, Any]]:
    """One row per cached engine, as ``emo engines list --json`` prints them: its key fields from
    the sidecar ("?" where it has none), the engine file's size, build and last-use times (epoch
    seconds), build seconds and the engine file."""
    rows = []
    for e in cache.entries():
        f = e.meta.get("fields", {}) if isinstance(e.meta.get("fields"), dict) else {}
        rows.append({
            "key": e.key, "network": f.get("network", "?"), "backend": f.get("backend", "?"),
            "precision": f.get("precision", "?"), "profile": f.get("profile", "?"),
            "device": f.get("device", "?"), "capability": f.get("capability", "?"), "torch": f.get("torch", "?"),
            "size": e.size, "created": e.created, "last_used": e.last_used,
            "build_seconds": e.meta.get("build_seconds"), "path": str(e.path),
        })
    return rows


def engines_table(rows: Sequence[Mapping[str, Any]], now: float) -> Any:
    """The rich table ``emo engines list`` prints: the key's first 12 characters, the key fields,
    size, age and time since last use at ``now`` (epoch seconds)."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for col in ("key", "network", "backend", "precision", "profile", "device", "size", "age", "last use"):
        t.add_column(col, no_wrap=col != "device")
    for r in rows:
        t.add_row(r["key"][:12], r["network"], r["backend"], r["precision"], r["profile"], r["device"],
                  size_text(r["size"]), age_text(now - r["created"]), age_text(now - r["last_used"]) + " ago")
    return t


def list_engines(given: Mapping[str, Any], base: config.Settings | None = None, as_json: bool = False) -> int:
    """``emo engines list``: the cached engines as a table on stdout and a total on stderr, or one
    JSON object per engine (``as_json``); the exit code."""
    from emo.assembly.progress import stdout_is_terminal

    cache = _cache(_settings(given, base))
    now = time.time()
    rows = engine_rows(cache)
    if as_json:
        for r in rows:
            click.echo(orjson.dumps(r).decode())
        return EXIT_OK
    if not rows:
        click.echo(f"no engines in {cache.root}", err=True)
        return EXIT_OK
    from emo.io.writer import table_console

    # A pipe gets the full table, not one cut to 80 columns.
    table_console(soft_wrap=True, width=None if stdout_is_terminal() else 200).print(engines_table(rows, now))
    total = sum(r["size"] for r in rows)
    click.echo(f"{len(rows)} engine(s), {size_text(total)} in {cache.root}", err=True)
    return EXIT_OK


def build_engines(names: Sequence[str], commands: Sequence[str], given: Mapping[str, Any],
                  base: config.Settings | None = None, verbose: bool = False) -> int:
    """``emo engines build``: compile (or load and check) the engines of backbones ``names`` and of
    every network the filter subcommands ``commands`` use with their default options, for the
    settings ``given``; one line per engine on stdout. The exit code."""
    from emo.assembly.feature_needs import backbone_engine
    from emo.assembly.filters import BuildContext, build_ahead
    from emo.assembly.progress import say
    from emo.models.registry import get

    # Checked before the options are: naming nothing is the mistake to report.
    if not names and not commands:
        raise UsageError("name backbones to build (emo engines build mobilenet_v2) or subcommands (--for classify,regions)")
    settings = _settings(given, base)
    for name in names:
        entry = get(name)
        if entry.task != "backbone":
            raise ModelError(f"{name} is a {entry.task} network; emo engines build takes backbones")
        start = time.perf_counter()
        _, _, engine = backbone_engine(replace(settings, backbone=name), say if verbose else None)
        click.echo(report_line(name, engine, time.perf_counter() - start))
    for command in commands:
        start = time.perf_counter()
        for stage in build_ahead(command, settings, BuildContext(say=say if verbose else None)):
            for engine in engines_of(stage):
                click.echo(report_line(command, engine, time.perf_counter() - start))
    return EXIT_OK


def engines_of(stage: Any) -> list[Any]:
    """The engines a built stage holds (a backbone, a region finder's feature map...)."""
    found = []
    for value in vars(stage).values():
        if hasattr(value, "backend") and hasattr(value, "device") and hasattr(value, "built"):
            found.append(value)
    return found


def report_line(name: str, engine: Any, seconds: float) -> str:
    """The line ``emo engines build`` prints for one engine: name, backend, device, the engine file
    ("-" when there is nothing to compile), and whether it was built or found cached, and in how long."""
    how = "built" if engine.built else "cached"
    where = str(engine.path) if engine.path else "-"
    state = f"{how} in {seconds:.1f} s" if engine.path else "nothing to compile"
    return f"{name}\t{engine.backend}\t{engine.device}\t{where}\t{state}"


def clear_engines(given: Mapping[str, Any], base: config.Settings | None = None, days: float | None = None,
                  dry_run: bool = False, yes: bool = False) -> int:
    """``emo engines clear``: delete the cached engines (all, or those unused for ``days``) and the
    cache's leftovers. ``dry_run`` lists them and deletes nothing. Without ``yes`` a terminal is
    asked first, and clearing every engine without a terminal is a UsageError. The exit code."""
    cache = _cache(_settings(given, base))
    age = None if days is None else days * 86400
    doomed, leftovers = cache.plan_clear(age)
    total = sum(e.size for e in doomed)
    if dry_run:
        for p in [e.path for e in doomed] + leftovers:
            click.echo(str(p))
        click.echo(f"would remove {len(doomed)} engine(s), {size_text(total)}, and {len(leftovers)} leftover file(s) "
                   f"from {cache.root}", err=True)
        return EXIT_OK
    if doomed and not yes:
        if sys.stdin is not None and sys.stdin.isatty():
            try:
                yes = click.confirm(f"remove {len(doomed)} engine(s), {size_text(total)} from {cache.root}?", err=True)
            except click.exceptions.Abort:  # end of input at the question: a no
                yes = False
            if not yes:
                click.echo("emo: nothing removed", err=True)
                return EXIT_OK
        elif days is None:
            raise UsageError(f"would remove every engine ({len(doomed)}) in {cache.root}: add --yes, or see --dry-run")
    removed = cache.clear(age)
    total = sum(e.size for e in removed)
    click.echo(f"removed {len(removed)} engine(s), {size_text(total)} from {cache.root}", err=True)
    return EXIT_OK
