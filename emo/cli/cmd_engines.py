"""``emo engines``: list, build or clear the compiled engines in the cache."""

from __future__ import annotations

import time
from dataclasses import replace

import click
import orjson

from emo import config


def _complete_backbones(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.models.registry import names

    return [n for n in names("backbone") if n.startswith(incomplete)]


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


@click.group(invoke_without_command=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Cache folder [default: $XDG_CACHE_HOME/emo or ~/.cache/emo; env EMO_CACHE_DIR].")
@click.pass_context
def engines(ctx: click.Context, cache_dir: str | None) -> int:
    """List, build or clear the compiled engines in the cache (ENGINES is the folder).

    An engine is a network compiled for one input profile, precision, backend and device;
    its cache key hashes all of these and the torch / torch-tensorrt / TensorRT versions, so a
    change builds a new one. With no subcommand, lists the cache.

    \b
    Examples:
      emo engines list
      emo engines build mobilenet_v2            # ahead of a cron job
      emo engines build --backend inductor --batch-size 64 mobilenet_v2
      emo engines clear --older-than 30
    """
    from emo.cli.options import settings_from

    ctx.obj = settings_from({"cache_dir": cache_dir})
    if ctx.invoked_subcommand is None:
        return ctx.invoke(list_engines)
    return 0


@engines.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per engine instead of a table.")
@click.pass_obj
def list_engines(settings: config.Settings, as_json: bool = False) -> int:
    """List cached engines: network, backend, precision, input profile, device, size, age, last use.

    \b
    Example:
      emo engines list --json | jq -r 'select(.backend == "inductor") | .path'
    """
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
    from rich.console import Console
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for col in ("key", "network", "backend", "precision", "profile", "device", "size", "age", "last use"):
        t.add_column(col, no_wrap=col != "device")
    for r in rows:
        t.add_row(r["key"][:12], r["network"], r["backend"], r["precision"], r["profile"], r["device"],
                  _size(r["size"]), _age(now - r["created"]), _age(now - r["last_used"]) + " ago")
    import sys

    # A pipe gets the full table, not one cut to 80 columns.
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200).print(t)
    total = sum(r["size"] for r in rows)
    click.echo(f"{len(rows)} engine(s), {_size(total)} in {cache.root}", err=True)
    return 0


@engines.command()
@click.argument("names", nargs=-1, required=True, shell_complete=_complete_backbones)
@click.option("--device", default=None, help="auto, cpu, cuda or cuda:N [env EMO_DEVICE].")
@click.option("--backend", type=click.Choice(config.BACKENDS), default=None,
              help="auto picks tensorrt on CUDA, else inductor [env EMO_BACKEND].")
@click.option("--precision", type=click.Choice(config.PRECISIONS), default=None, help="[env EMO_PRECISION].")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Largest batch the engine takes; must match the runs that will use it [env EMO_BATCH_SIZE].")
@click.option("--weights-dir", type=click.Path(file_okay=False), default=None, help="Extra folder searched first for weights.")
@click.option("-v", "--verbose", is_flag=True, help="Say on stderr what is compiled or loaded.")
@click.pass_obj
def build(settings: config.Settings, names: tuple[str, ...], device: str | None, backend: str | None,
          precision: str | None, batch_size: int | None, weights_dir: str | None, verbose: bool) -> int:
    """Build (or verify) the engines of backbone NAMES, as a run with the same options would.

    Prints one line per network: name, backend, and the engine file (or "eager": nothing to
    compile). Building ahead means the first real run starts at once.

    \b
    Example:
      emo engines build mobilenet_v2 efficientnet_lite0
    """
    from emo.cli.options import backbone_engine
    from emo.errors import ModelError
    from emo.models.registry import get

    given = {"device": device, "backend": backend, "precision": precision, "batch_size": batch_size,
             "weights_dir": weights_dir}
    settings = config.validate(replace(settings, **{k: v for k, v in given.items() if v is not None}))
    for name in names:
        entry = get(name)
        if entry.task != "backbone":
            raise ModelError(f"{name} is a {entry.task} network; emo engines build takes backbones")
        start = time.perf_counter()
        _, _, engine = backbone_engine(replace(settings, backbone=name), verbose)
        how = "built" if engine.built else "cached"
        where = str(engine.path) if engine.path else "-"
        state = f"{how} in {time.perf_counter() - start:.1f} s" if engine.path else "nothing to compile"
        click.echo(f"{name}\t{engine.backend}\t{engine.device}\t{where}\t{state}")
    return 0


@engines.command()
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=None,
              help="Only engines not used for this many days.")
@click.pass_obj
def clear(settings: config.Settings, days: float | None) -> int:
    """Delete cached engines (all, or those unused for --older-than DAYS); they rebuild on demand.

    \b
    Example:
      emo engines clear --older-than 30
    """
    cache = _cache(settings)
    removed = cache.clear(None if days is None else days * 86400)
    total = sum(e.meta.get("size", 0) or 0 for e in removed)
    click.echo(f"removed {len(removed)} engine(s), {_size(total)} from {cache.root}", err=True)
    return 0
