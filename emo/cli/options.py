"""The option groups subcommands share, each declared once: input, engine, decode, cache, model.

A command stacks the groups it takes (``@input_options @run_options``); every option defaults to
``None``, so a value the user did not give falls back to the EMO_* variable, then to the default
in :mod:`emo.config` or the command's options dataclass in :mod:`emo.assembly`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from emo import config

F = Callable[..., Any]
D = config.DEFAULTS


def _opt(*decls: str, **kw: Any) -> F:
    return click.option(*decls, show_envvar=False, **kw)


def _stack(decorators: list[F]) -> F:
    def apply(f: F) -> F:
        for deco in reversed(decorators):
            f = deco(f)
        return f

    return apply


def complete_backbones(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.models.registry import names

    return [n for n in names("backbone") if n.startswith(incomplete)]


def heads_completer(task: str, extra: tuple[str, ...] = ()) -> Callable[..., list[Any]]:
    """Completion for a head option: the shipped heads of ``task``, then ``extra`` words, then files."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from emo.heads import SHIPPED

        words = [n for n, e in sorted(SHIPPED.items()) if e.task == task] + list(extra)
        return [CompletionItem(n) for n in words if n.startswith(incomplete)] + [CompletionItem(incomplete, type="file")]

    return complete


def complete_devices(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [d for d in ("auto", "cpu", "cuda", "cuda:0", "cuda:1") if d.startswith(incomplete)]


FILE = click.Path(dir_okay=False, path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)

input_options = _stack([
    # readable=False: an unreadable input is that input's error record, not a usage error.
    click.argument("paths", nargs=-1, type=click.Path(path_type=str, readable=False)),
    _opt("-r", "--recursive", is_flag=True, help="Walk folders given as inputs, taking image files (sorted)."),
    _opt("-0", "--null", is_flag=True, help="Read NUL-separated paths from stdin (find -print0)."),
    _opt("--root", type=FOLDER, default=None, help="Resolve relative paths against this folder [default: current folder]."),
    _opt("-q", "--quiet", is_flag=True, help="No progress and no per-input error lines on stderr."),
    _opt("-v", "--verbose", is_flag=True, help="Say on stderr which network, engine and device run."),
    _opt("-o", "--output", type=FILE, default=None,
         help="Write records to FILE instead of stdout; FILE is replaced only when the run ends."),
    _opt("--resume", is_flag=True,
         help="With -o: skip inputs FILE already holds (by path, and sha256 where the input gives one) "
              "and append, so a killed run continues where it stopped."),
    _opt("--fail-fast", is_flag=True,
         help="Stop at the first bad input (after writing its error record), exit 1. "
              "Default: write an error record for each bad input and go on."),
])
input_options.__doc__ = "Paths as arguments or stdin, -r, -0, --root, -q, -v, -o, --resume, --fail-fast."


def engine_options(batch_flag: str = "--batch-size") -> F:
    """Device, engine batch, backend and precision. ``emo fit`` spells the batch ``--engine-batch-size``,
    since its ``--batch-size`` is the training batch."""
    return _stack([
        _opt("--device", default=None, shell_complete=complete_devices,
             help=f"auto, cpu, cuda or cuda:N [default: {D.device}; env EMO_DEVICE]."),
        _opt(batch_flag, "batch_size", type=click.IntRange(1, config.MAX_BATCH_SIZE), default=None,
             help=f"Images per engine batch [default: {D.batch_size}; env EMO_BATCH_SIZE]."),
        _opt("--backend", type=click.Choice(config.BACKENDS), default=None,
             help=f"Engine: auto picks tensorrt on CUDA, else inductor, else eager [default: {D.backend}; env EMO_BACKEND]."),
        _opt("--precision", type=click.Choice(config.PRECISIONS), default=None,
             help=f"Numeric precision [default: {D.precision}; env EMO_PRECISION]."),
    ])


decode_options = _stack([
    _opt("--workers", type=click.IntRange(0, config.MAX_WORKERS), default=None,
         help="Decode workers; 0 = automatic: as many decode processes as the run measures it needs, up to one "
              "per core; N fixes the number [default: 0; env EMO_WORKERS]."),
    _opt("--decoder", type=click.Choice(config.DECODERS), default=None,
         help="Decode in worker processes (forked before torch loads, so they start at once) or threads; "
              "auto: processes where fork is safe, and the main process decodes too while it would wait; "
              "process: only worker processes, so a decoder crash costs one record [default: auto; env EMO_DECODER]."),
    _opt("--max-pixels", type=click.IntRange(0), default=None,
         help=f"Refuse images with more pixels (decompression bombs); 0 = no limit [default: {D.max_pixels}; env EMO_MAX_PIXELS]."),
    _opt("--max-bytes", type=click.IntRange(0), default=None,
         help=f"Refuse image files larger than this many bytes, before reading them; 0 = no limit "
              f"[default: {D.max_bytes} (512 MiB); env EMO_MAX_BYTES]."),
])

cache_options = _stack([
    _opt("--cache-dir", type=click.Path(file_okay=False), default=None,
         help="Cache for weights and engines [default: $XDG_CACHE_HOME/emo or ~/.cache/emo; env EMO_CACHE_DIR]."),
    _opt("--weights-dir", type=click.Path(file_okay=False), default=None,
         help="Extra folder searched first for weights files [env EMO_WEIGHTS_DIR]."),
])

backbone_option = _opt("--backbone", default=None, shell_complete=complete_backbones,
                       help=f"Backbone network (see emo models) [default: {D.backbone}; env EMO_BACKBONE].")


def run_options(f: F) -> F:
    """Every setting of a run: engine, decode, cache and backbone (defaults: config.py, then EMO_*)."""
    return engine_options()(decode_options(cache_options(backbone_option(f))))


def head_option(default_name: str, task: str) -> F:
    return click.option("--head", default=None, shell_complete=heads_completer(task),
                        help=f"Head: a shipped name (see emo models) or a file from emo fit [default: {default_name}; env EMO_HEAD].")


def pass_opts(f: F) -> F:
    """Hand the command body all its options as one dict (``opts``)."""

    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        return f(kwargs)

    return wrapper

