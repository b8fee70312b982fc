"""Options every filter subcommand shares, and the one function that runs a pipeline for them."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from emo import config
from emo.errors import EXIT_OK, EXIT_SOME_FAILED, ConfigError

F = Callable[..., Any]


def _opt(*decls: str, **kw: Any) -> F:
    return click.option(*decls, show_envvar=False, **kw)


def input_options(f: F) -> F:
    """Paths as arguments or stdin, ``-r``, ``-0``, ``--root``, ``-q``, ``-v``."""
    for deco in reversed(
        [
            click.argument("paths", nargs=-1, type=click.Path(path_type=str)),
            _opt("-r", "--recursive", is_flag=True, help="Walk folders given as inputs, taking image files (sorted)."),
            _opt("-0", "--null", is_flag=True, help="Read NUL-separated paths from stdin (find -print0)."),
            _opt("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Resolve relative paths against this folder [default: current folder]."),
            _opt("-q", "--quiet", is_flag=True, help="No progress and no per-input error lines on stderr."),
            _opt("-v", "--verbose", is_flag=True, help="Say on stderr which network, engine and device run."),
        ]
    ):
        f = deco(f)
    return f


def run_options(f: F) -> F:
    """Device, batching, engine and cache options; defaults from config.py, then EMO_* variables."""
    d = config.DEFAULTS
    for deco in reversed(
        [
            _opt("--device", default=None, help=f"auto, cpu, cuda or cuda:N [default: {d.device}; env EMO_DEVICE]."),
            _opt("--batch-size", type=click.IntRange(1), default=None,
                 help=f"Images per batch [default: {d.batch_size}; env EMO_BATCH_SIZE]."),
            _opt("--workers", type=click.IntRange(0), default=None,
                 help="Decode threads; 0 = one per core [default: 0; env EMO_WORKERS]."),
            _opt("--backend", type=click.Choice(config.BACKENDS), default=None,
                 help="Engine: auto picks tensorrt on CUDA, else inductor, else eager [env EMO_BACKEND]."),
            _opt("--precision", type=click.Choice(config.PRECISIONS), default=None,
                 help=f"Numeric precision [default: {d.precision}; env EMO_PRECISION]."),
            _opt("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="Cache for weights and engines [default: $XDG_CACHE_HOME/emo or ~/.cache/emo; env EMO_CACHE_DIR]."),
            _opt("--backbone", default=None, shell_complete=_complete_backbones,
                 help=f"Backbone network (see emo models) [default: {d.backbone}; env EMO_BACKBONE]."),
            _opt("--weights-dir", type=click.Path(file_okay=False), default=None,
                 help="Extra folder searched first for weights files [env EMO_WEIGHTS_DIR]."),
            _opt("--max-pixels", type=click.IntRange(0), default=None,
                 help=f"Refuse images with more pixels (decompression bombs); 0 = no limit [default: {d.max_pixels}; env EMO_MAX_PIXELS]."),
        ]
    ):
        f = deco(f)
    return f


def _complete_backbones(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.models.registry import names

    return [n for n in names("backbone") if n.startswith(incomplete)]


SETTINGS_KEYS = ("device", "batch_size", "workers", "backend", "precision", "cache_dir", "backbone", "weights_dir", "max_pixels")


def settings_from(opts: dict[str, Any]) -> config.Settings:
    """Settings: defaults, then EMO_* variables, then the options given on the command line."""
    s = config.from_env()
    given = {k: opts[k] for k in SETTINGS_KEYS if opts.get(k) is not None}
    if opts.get("head"):
        given["head"] = opts["head"]
    return config.validate(replace(s, **given))


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), transient=True,
                    console=__import__("rich.console").console.Console(stderr=True))


def run_stages(opts: dict[str, Any], build_stages: Callable[[config.Settings], Sequence[Any]]) -> int:
    """Read inputs, run the stages ``build_stages(settings)`` returns, write JSONL; the exit code."""
    import time

    from emo.io.records import read_inputs
    from emo.io.writer import JsonlWriter
    from emo.pipeline import run

    settings = settings_from(opts)
    stages = build_stages(settings)
    stdin = None if opts["paths"] else sys.stdin.buffer
    if stdin is not None and sys.stdin.isatty() and not opts.get("null"):
        click.echo("emo: reading paths from the terminal; end with Ctrl-D (emo --help for usage)", err=True)
    items = read_inputs(opts["paths"], stdin, null=opts["null"], recursive=opts["recursive"], root=opts["root"])
    writer = JsonlWriter(sys.stdout.fileno())
    quiet = opts.get("quiet", False)
    progress = _progress(not quiet and sys.stderr.isatty())
    on_error = (lambda item: None) if quiet else None
    start, done = time.perf_counter(), 0

    if progress is None:
        summary = run(items, stages, settings, lambda b: writer.write(it.record for it in b), on_error)
    else:
        with progress:
            task = progress.add_task("emo", total=None, rate="")

            def sink(batch):
                nonlocal done
                writer.write(it.record for it in batch)
                done += len(batch)
                rate = done / max(time.perf_counter() - start, 1e-9)
                progress.update(task, completed=done, rate=f"{rate:.1f} img/s")

            summary = run(items, stages, settings, sink, on_error)
    if opts.get("verbose"):
        secs = time.perf_counter() - start
        click.echo(f"emo: {summary.total} inputs, {summary.failed} failed, {secs:.1f} s", err=True)
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def not_built(what: str, issue: str) -> int:
    """Subcommands whose issue has not landed answer this, exit 2, never a fake result."""
    from emo.errors import NotBuiltYet

    raise NotBuiltYet(f"{what} is not built yet ({issue}); nothing was computed")


def pass_opts(f: F) -> F:
    """Hand the command body all its options as one dict (``opts``)."""

    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        return f(kwargs)

    return wrapper


def backbone_engine(settings: config.Settings, verbose: bool = False):
    """Build the backbone named in ``settings`` and its engine; returns (entry, model, engine)."""
    from emo.engine import Profile, load
    from emo.models import create, get

    try:
        entry = get(settings.backbone)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    model = create(settings.backbone, settings)
    engine = load(model, network_id=entry.name, weights_sha256=model.weights_sha256,
                  profile=Profile(entry.preprocess.crop, settings.batch_size), settings=settings, verbose=verbose)
    if verbose:
        click.echo(f"emo: {entry.name} on {engine.device} ({engine.backend}, {engine.precision})", err=True)
    return entry, model, engine
