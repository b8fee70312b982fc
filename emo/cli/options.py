"""Options every filter subcommand shares, and the one function that runs a pipeline for them."""

from __future__ import annotations

import functools
import sys
from contextvars import ContextVar
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from emo import config
from emo.errors import EXIT_OK, EXIT_SOME_FAILED, UsageError

F = Callable[..., Any]


def _opt(*decls: str, **kw: Any) -> F:
    return click.option(*decls, show_envvar=False, **kw)


def input_options(f: F) -> F:
    """Paths as arguments or stdin, ``-r``, ``-0``, ``--root``, ``-q``, ``-v``."""
    for deco in reversed(
        [
            # readable=False: an unreadable input is that input's error record, not a usage error.
            click.argument("paths", nargs=-1, type=click.Path(path_type=str, readable=False)),
            _opt("-r", "--recursive", is_flag=True, help="Walk folders given as inputs, taking image files (sorted)."),
            _opt("-0", "--null", is_flag=True, help="Read NUL-separated paths from stdin (find -print0)."),
            _opt("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Resolve relative paths against this folder [default: current folder]."),
            _opt("-q", "--quiet", is_flag=True, help="No progress and no per-input error lines on stderr."),
            _opt("-v", "--verbose", is_flag=True, help="Say on stderr which network, engine and device run."),
            _opt("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Write records to FILE instead of stdout; FILE is replaced only when the run ends."),
            _opt("--resume", is_flag=True,
                 help="With -o: skip inputs FILE already holds (by path, and sha256 where the input gives one) "
                      "and append, so a killed run continues where it stopped."),
            _opt("--fail-fast", is_flag=True,
                 help="Stop at the first bad input (after writing its error record), exit 1. "
                      "Default: write an error record for each bad input and go on."),
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
                 help="Decode workers; 0 = automatic: processes on all cores but one, or threads one per core "
                      "[default: 0; env EMO_WORKERS]."),
            _opt("--decoder", type=click.Choice(config.DECODERS), default=None,
                 help="Decode in worker processes (forked before torch loads, so they start at once) or threads; "
                      "auto: processes where fork is safe [default: auto; env EMO_DECODER]."),
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


SETTINGS_KEYS = ("device", "batch_size", "workers", "decoder", "backend", "precision", "cache_dir", "backbone", "weights_dir", "max_pixels")


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


class _FailFast(Exception):
    """The first bad input was written and --fail-fast asks to stop there."""


def _stdout_writer():
    """A writer on stdout's file descriptor, or on its binary stream when it has none (tests)."""
    from emo.io.writer import JsonlWriter

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return JsonlWriter(sys.stdout.buffer)
    sys.stdout.flush()
    return JsonlWriter(fd)


# Set by stages_for(): run_stages then hands back what it was given instead of running.
_capture: ContextVar[list | None] = ContextVar("emo_capture", default=None)


def stages_for(argv: Sequence[str]) -> tuple[dict[str, Any], Callable[[config.Settings], Sequence[Any]]]:
    """Parse ``argv`` (``["classify", "--top-k", "3"]``) exactly as ``emo`` does, run nothing, and
    return that subcommand's options and stage builder (what :class:`emo.Predictor` runs)."""
    from emo.cli import cli

    got: list = []
    token = _capture.set(got)
    try:
        cli.main(args=list(argv), prog_name="emo", standalone_mode=False)
    except click.ClickException as e:
        raise UsageError(e.format_message()) from None
    finally:
        _capture.reset(token)
    if not got:
        raise UsageError(f"emo {' '.join(argv[:1])} is not a filter subcommand: it reads no images")
    return got[0]


def run_stages(opts: dict[str, Any], build_stages: Callable[[config.Settings], Sequence[Any]]) -> int:
    """Read inputs, run the stages ``build_stages(settings)`` returns, write JSONL; the exit code."""
    import time

    captured = _capture.get()
    if captured is not None:
        captured.append((opts, build_stages))
        return EXIT_OK

    from emo.io.output import OutputFile, skip_done
    from emo.io.records import read_inputs
    from emo.pipeline import _stderr_error, run

    out_path: Path | None = opts.get("output")
    if out_path is not None and str(out_path) == "-":
        out_path = None  # -o - is stdout, as usual for filters
    resume, fail_fast = opts.get("resume", False), opts.get("fail_fast", False)
    if resume and out_path is None:
        raise UsageError("--resume needs -o FILE: it continues the run whose records FILE holds")
    settings = settings_from(opts)
    stages = build_stages(settings)
    stdin = None if opts["paths"] else sys.stdin.buffer
    if stdin is not None and sys.stdin.isatty() and not opts.get("null"):
        click.echo("emo: reading paths from the terminal; end with Ctrl-D (emo --help for usage)", err=True)
    items = read_inputs(opts["paths"], stdin, null=opts["null"], recursive=opts["recursive"], root=opts["root"])
    out = OutputFile(out_path, resume) if out_path is not None else None
    writer = out.open() if out is not None else _stdout_writer()
    if out is not None and out.done:
        items = skip_done(items, out.done)
    quiet, verbose = opts.get("quiet", False), opts.get("verbose", False)
    reported = 0

    def on_error(item: Any) -> None:
        nonlocal reported
        reported += 1
        if quiet or (fail_fast and reported > 1):  # --fail-fast: only the one it stops at
            return
        if progress is not None:  # above the live bar, not through it
            progress.console.print(f"emo: {item.label}: {item.error.kind}: {item.error.message}",
                                   markup=False, highlight=False, soft_wrap=True)
        else:
            _stderr_error(item)

    start, done = time.perf_counter(), 0
    progress = _progress(not quiet and sys.stderr.isatty())
    task = progress.add_task("emo", total=None, rate="") if progress is not None else None

    def sink(batch: list[Any]) -> None:
        nonlocal done
        bad = next((i for i, it in enumerate(batch) if not it.ok), None) if fail_fast else None
        keep = batch if bad is None else batch[: bad + 1]
        writer.write(it.record for it in keep)
        done += len(keep)
        if progress is not None:
            rate = done / max(time.perf_counter() - start, 1e-9)
            progress.update(task, completed=done, rate=f"{rate:.1f} img/s")
        if bad is not None:
            raise _FailFast(batch[bad].label)

    stopped_at = None
    try:
        if progress is not None:
            progress.start()
        try:
            summary = run(items, stages, settings, sink, on_error)
        except _FailFast as e:
            stopped_at = str(e)
    except BaseException as e:
        if out is not None:
            out.abort()
        if isinstance(e, BrokenPipeError):
            from emo.cli.exits import PipeClosed

            raise PipeClosed() from None
        raise
    finally:
        if progress is not None:
            progress.stop()
    if out is not None:
        out.commit()
    if stopped_at is not None:
        if not quiet:
            click.echo(f"emo: stopped at the first bad input, {stopped_at} (--fail-fast)", err=True)
        return EXIT_SOME_FAILED
    if verbose:
        secs = time.perf_counter() - start
        skipped = f", {len(out.done)} already in {out_path}" if out is not None and out.done else ""
        how = f", decoded by {summary.decoder}" if summary.decoder else ""
        click.echo(f"emo: {summary.total} inputs, {summary.failed} failed{skipped}, {secs:.1f} s{how}", err=True)
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
    """The engine of the backbone named in ``settings``; returns (entry, weights sha256, engine).

    The network itself is built only when the engine is not in the cache yet.
    """
    from emo.engine import Profile, load
    from emo.models import create, get, weights_digest

    entry = get(settings.backbone)
    digest = weights_digest(settings.backbone, settings)
    engine = load(lambda: create(settings.backbone, settings), network_id=entry.name, weights_sha256=digest,
                  profile=Profile(entry.preprocess.crop, settings.batch_size), settings=settings, verbose=verbose)
    if verbose:
        click.echo(f"emo: {entry.name} on {engine.device} ({engine.backend}, {engine.precision})", err=True)
    return entry, digest, engine
