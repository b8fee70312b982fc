"""``emo engines``: list, build or clear the compiled engines in the cache."""

from __future__ import annotations

import time
from dataclasses import replace

import click
import orjson

from emo import config
from emo.assembly.progress import stdout_is_terminal
from emo.cli.options import backbone_option, cache_options, complete_backbones, engine_options


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _age(seconds: float) -> str:
    s = max(0.0, seconds)
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= span:
            return f"{s / span:.0f}{unit}"
    return f"{s:.0f}s"


def _cache(settings: config.Settings):
    from emo.engine.cache import EngineCache

    return EngineCache(config.engines_cache(settings))


def _settings(ctx: click.Context, given: dict) -> config.Settings:
    """The group's settings with this subcommand's own options on top (given after the subcommand)."""
    from emo.assembly.filters import settings_from

    return settings_from(given, ctx.obj)


@click.group(invoke_without_command=True)
@cache_options
@click.pass_context
def engines(ctx: click.Context, cache_dir: str | None, weights_dir: str | None) -> int:
    """List, build ahead or clear the compiled engines in the cache.

    An engine is a network (a backbone of emo models) compiled by a backend (tensorrt on CUDA,
    inductor, or eager: not compiled) for one input profile, precision and device. A run builds
    the engine it needs the first time (about a minute for mobilenet_v2 on 2 cores) and keeps it
    in the cache's engines/ folder; later runs load it in a fraction of a second. Its key hashes
    all of these and the torch / torch-tensorrt / TensorRT versions, so a change builds a new one.

    With no subcommand, lists the cache. --cache-dir may come before or after the subcommand.

    \b
    Examples:
      emo engines list --cache-dir /srv/emo-cache
      emo engines build --for classify,regions        # every engine those commands use, ahead of a cron job
      emo engines build --backend inductor --batch-size 64 mobilenet_v2
      emo engines clear --older-than 30
      emo engines clear --dry-run
    """
    from emo.assembly.filters import settings_from

    ctx.obj = settings_from({"cache_dir": cache_dir, "weights_dir": weights_dir})
    if ctx.invoked_subcommand is None:
        return ctx.invoke(list_engines)
    return 0


@engines.command("list", short_help="Show the cached engines (what a bare emo engines does).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per engine instead of a table.")
@cache_options
@click.pass_context
def list_engines(ctx: click.Context, as_json: bool = False, cache_dir: str | None = None,
                 weights_dir: str | None = None) -> int:
    """Show the cached engines: network, backend, precision, input profile, device, size, age, last use.

    \b
    Example:
      emo engines list --json | jq -r 'select(.backend == "inductor") | .path'
    """
    settings = _settings(ctx, {"cache_dir": cache_dir, "weights_dir": weights_dir})
    cache = _cache(settings)
    now = time.time()
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
    if as_json:
        for r in rows:
            click.echo(orjson.dumps(r).decode())
        return 0
    if not rows:
        click.echo(f"no engines in {cache.root}", err=True)
        return 0
    from rich.table import Table

    from emo.io.writer import table_console

    t = Table(box=None, pad_edge=False)
    for col in ("key", "network", "backend", "precision", "profile", "device", "size", "age", "last use"):
        t.add_column(col, no_wrap=col != "device")
    for r in rows:
        t.add_row(r["key"][:12], r["network"], r["backend"], r["precision"], r["profile"], r["device"],
                  _size(r["size"]), _age(now - r["created"]), _age(now - r["last_used"]) + " ago")
    # A pipe gets the full table, not one cut to 80 columns.
    table_console(soft_wrap=True, width=None if stdout_is_terminal() else 200).print(t)
    total = sum(r["size"] for r in rows)
    click.echo(f"{len(rows)} engine(s), {_size(total)} in {cache.root}", err=True)
    return 0


def _for(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    from emo.assembly.filters import FILTER_MODULES

    if not value:
        return ()
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in FILTER_MODULES]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}: not a filter subcommand (one of {', '.join(FILTER_MODULES)})")
    return names


def _complete_for(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.assembly.filters import FILTER_MODULES

    done, _, last = incomplete.rpartition(",")
    return [(done + "," if done else "") + n for n in FILTER_MODULES if n.startswith(last)]


@engines.command(short_help="Compile engines before a run needs them (ahead of a cron job).")
@click.argument("names", nargs=-1, shell_complete=complete_backbones)
@click.option("--for", "commands", callback=_for, default=None, shell_complete=_complete_for,
              help="Build every engine these subcommands use with their default options "
                   "(features, regions, classify, va; comma-separated), e.g. --for classify,regions.")
@engine_options()
@cache_options
@backbone_option
@click.option("-v", "--verbose", is_flag=True, help="Say on stderr what is compiled or loaded.")
@click.pass_context
def build(ctx: click.Context, names: tuple[str, ...], commands: tuple[str, ...], verbose: bool, **given) -> int:
    """Compile engines before a run needs them, so its first batch does not wait for a compile.

    Builds the engines of backbone NAMES, or of every network the subcommands named by --for use
    (at least one of the two), for the --batch-size, --precision, --backend and --device the runs
    will take: an engine is built for those exactly. An engine already cached is loaded and
    checked, not rebuilt.

    Prints one line per engine: name, backend, device, and the engine file (or "-": nothing to
    compile, as with --backend eager).

    \b
    Examples:
      emo engines build mobilenet_v2 efficientnet_lite0
      emo engines build --for classify,regions --batch-size 64
    """
    from emo.assembly.feature_needs import backbone_engine
    from emo.assembly.filters import BuildContext, build_ahead
    from emo.assembly.progress import say
    from emo.errors import ModelError, UsageError
    from emo.models.registry import get

    if not names and not commands:
        raise UsageError("name backbones to build (emo engines build mobilenet_v2) or subcommands (--for classify,regions)")
    settings = _settings(ctx, given)
    for name in names:
        entry = get(name)
        if entry.task != "backbone":
            raise ModelError(f"{name} is a {entry.task} network; emo engines build takes backbones")
        start = time.perf_counter()
        _, _, engine = backbone_engine(replace(settings, backbone=name), say if verbose else None)
        _report(name, engine, start)
    for command in commands:
        start = time.perf_counter()
        for stage in build_ahead(command, settings, BuildContext(say=say if verbose else None)):
            for engine in _engines_of(stage):
                _report(command, engine, start)
    return 0


def _engines_of(stage) -> list:
    """The engines a built stage holds (a backbone, a region finder's feature map...)."""
    found = []
    for value in vars(stage).values():
        if hasattr(value, "backend") and hasattr(value, "device") and hasattr(value, "built"):
            found.append(value)
    return found


def _report(name: str, engine, start: float) -> None:
    how = "built" if engine.built else "cached"
    where = str(engine.path) if engine.path else "-"
    state = f"{how} in {time.perf_counter() - start:.1f} s" if engine.path else "nothing to compile"
    click.echo(f"{name}\t{engine.backend}\t{engine.device}\t{where}\t{state}")


@engines.command(short_help="Delete cached engines; a run rebuilds what it needs.")
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=None,
              help="Only engines not used for this many days.")
@click.option("-n", "--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask (scripts); without it a terminal is asked first, and "
                                               "clearing every engine without a terminal is refused.")
@cache_options
@click.pass_context
def clear(ctx: click.Context, days: float | None, dry_run: bool, yes: bool, cache_dir: str | None = None,
          weights_dir: str | None = None) -> int:
    """Delete cached engines (all, or those unused for --older-than DAYS); a run rebuilds what it needs.

    \b
    Examples:
      emo engines clear --dry-run
      emo engines clear --older-than 30
      emo engines clear --yes                      # in a script: every engine
    """
    import sys

    from emo.errors import UsageError

    settings = _settings(ctx, {"cache_dir": cache_dir, "weights_dir": weights_dir})
    cache = _cache(settings)
    age = None if days is None else days * 86400
    doomed, leftovers = cache.plan_clear(age)
    total = sum(e.size for e in doomed)
    if dry_run:
        for p in [e.path for e in doomed] + leftovers:
            click.echo(str(p))
        click.echo(f"would remove {len(doomed)} engine(s), {_size(total)}, and {len(leftovers)} leftover file(s) "
                   f"from {cache.root}", err=True)
        return 0
    if doomed and not yes:
        if sys.stdin is not None and sys.stdin.isatty():
            try:
                yes = click.confirm(f"remove {len(doomed)} engine(s), {_size(total)} from {cache.root}?", err=True)
            except click.exceptions.Abort:  # end of input at the question: a no
                yes = False
            if not yes:
                click.echo("emo: nothing removed", err=True)
                return 0
        elif days is None:
            raise UsageError(f"would remove every engine ({len(doomed)}) in {cache.root}: add --yes, or see --dry-run")
    removed = cache.clear(age)
    total = sum(e.size for e in removed)
    click.echo(f"removed {len(removed)} engine(s), {_size(total)} from {cache.root}", err=True)
    return 0
