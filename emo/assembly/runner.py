"""Run a filter: read inputs, run its stages through the pipeline, write JSONL, report.

This is everything between a filter's options and its exit code: where records come from (paths,
stdin, ``-r``), where they go (stdout, ``-o FILE``, ``--resume``), what people see on stderr
(progress, one line per bad input, ``-v``) and ``--fail-fast``.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emo import config
from emo.assembly.filters import BuildContext, filter_stages, get_filter
from emo.assembly.progress import Progress, is_terminal, say, stderr_is_terminal
from emo.errors import EXIT_OK, EXIT_SOME_FAILED, PipeClosed, UsageError


@dataclass(frozen=True)
class RunOptions:
    """Where a filter's inputs come from, where its records go, and what it says."""

    paths: tuple[str, ...] = ()  # none: read stdin
    recursive: bool = False
    null: bool = False
    root: Path | None = None
    quiet: bool = False
    verbose: bool = False
    output: Path | None = None  # None or "-": stdout
    resume: bool = False
    fail_fast: bool = False


class FailFast(Exception):
    """The first bad input was written and --fail-fast asks to stop there."""


def stdout_writer():
    """A writer on stdout's file descriptor, or on its binary stream when it has none (tests)."""
    from emo.io.writer import JsonlWriter

    if sys.stdout is None or getattr(sys.stdout, "emo_closed", False):  # emo was started with stdout closed
        raise UsageError("stdout is closed: give -o FILE for the records")
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return JsonlWriter(sys.stdout.buffer)
    sys.stdout.flush()
    return JsonlWriter(fd)


def _stdin(run: RunOptions):
    """The binary stdin to read inputs from, or None when paths were given."""
    if run.paths:
        return None
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise UsageError("no inputs: give image paths as arguments, or pipe them in (stdin is closed)")
    return stream


def count_inputs(run: RunOptions, stdin: Any) -> int | None:
    """How many inputs there are, when that can be known cheaply before the run, else None.

    Arguments (folders walked with ``-r``), or a regular file on stdin (its lines are counted
    through a second descriptor, so the run's reading is untouched).
    """
    from emo.io.records import walk

    try:
        if run.paths:
            if not run.recursive:
                return len(run.paths)
            n = 0
            for arg in run.paths:
                p = Path(arg) if run.root is None or Path(arg).is_absolute() else run.root / arg
                n += max(1, sum(1 for _ in walk(p))) if p.is_dir() else 1  # an empty folder is one error record
            return n
        if stdin is None or run.recursive:  # -r on stdin: a line may be a folder of unknown size
            return None
        fd = stdin.fileno()
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > 256 << 20:
            return None
        sep = b"\0" if run.null else b"\n"
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            f.seek(os.lseek(fd, 0, os.SEEK_CUR))
            parts = f.read().split(sep)
        return sum(1 for p in parts if (p if run.null else p.strip()))
    except (OSError, ValueError):
        return None


# Options that name a file a filter reads its model from (a head, a layer, a scene model).
MODEL_FILE_OPTIONS = ("sentiment_head", "region_head", "cam_file", "scene_model", "scene_labels")


def model_files(options: Any, settings: config.Settings) -> list[str]:
    """The files (or shipped names) a filter's options and settings name to load models from."""
    named = [settings.head, *(getattr(options, k, None) for k in MODEL_FILE_OPTIONS)]
    return [str(v) for v in named if v]


def run_filter(name: str, options: Any, settings: config.Settings, run: RunOptions) -> int:
    """Run filter ``name`` over the inputs ``run`` names; the process exit code (0, 1)."""
    from emo.io.output import OutputFile, refuse_inputs, skip_done
    from emo.io.records import read_inputs
    from emo.pipeline import run as run_pipeline

    get_filter(name)
    out_path = run.output if run.output is not None and str(run.output) != "-" else None
    if run.resume and out_path is None:
        raise UsageError("--resume needs -o FILE: it continues the run whose records FILE holds")
    # Before any network loads: -o naming a picture argument would replace the picture.
    refuse_inputs(out_path, run.paths or ("-",), "pictures given" if run.paths else "inputs", run.root)
    refuse_inputs(out_path, model_files(options, settings), "model files read")
    verbose_say: Callable[[str], None] | None = say if run.verbose else None
    stages = filter_stages(name, options, settings, BuildContext(root=run.root, say=verbose_say))
    stdin = _stdin(run)
    if stdin is not None and not run.null and is_terminal(sys.stdin):
        say("emo: reading paths from the terminal; end with Ctrl-D (emo --help for usage)")
    items = read_inputs(run.paths, stdin, null=run.null, recursive=run.recursive, root=run.root)
    out = OutputFile(out_path, run.resume) if out_path is not None else None
    writer = out.open() if out is not None else stdout_writer()
    if out is not None:
        items = out.guard(items)  # pictures named on stdin, in records or found by -r
    if out is not None and out.done:
        items = skip_done(items, out.done)
    progress = Progress(not run.quiet and stderr_is_terminal())
    if progress.enabled:
        total = count_inputs(run, stdin)
        skipped = len(out.done) if out is not None and out.done else 0
        progress.phase("emo " + name, None if total is None else max(0, total - skipped))
    reported = 0

    def on_error(item: Any) -> None:
        nonlocal reported
        reported += 1
        if run.quiet or (run.fail_fast and reported > 1):  # --fail-fast: only the one it stops at
            return
        progress.print(item.error_line())

    start = time.perf_counter()

    unwritable = 0

    def sink(batch: list[Any]) -> None:
        nonlocal unwritable
        bad = next((i for i, it in enumerate(batch) if not it.ok), None) if run.fail_fast else None
        keep = batch if bad is None else batch[: bad + 1]
        # With --fail-fast one at a time: a record the writer must replace is a bad input too.
        for part in ([[it] for it in keep] if run.fail_fast else [keep]):
            for pos, error in writer.write([it.record for it in part]):
                item = part[pos]
                item.fail(error["kind"], error["message"])
                unwritable += 1
                on_error(item)
                if run.fail_fast:
                    progress.advance(keep.index(item) + 1)
                    raise FailFast(item.label)
        progress.advance(len(keep))
        if bad is not None:
            raise FailFast(batch[bad].label)

    stopped_at = None
    try:
        with progress, _compile_phase(progress):
            try:
                summary = run_pipeline(items, stages, settings, sink, on_error)
            except FailFast as e:
                stopped_at = str(e)
    except BaseException as e:
        if out is not None:
            out.abort()
        if isinstance(e, BrokenPipeError):
            raise PipeClosed() from None
        raise
    if out is not None:
        out.commit()
    if stopped_at is not None:
        if not run.quiet:
            say(f"emo: stopped at the first bad input, {stopped_at} (--fail-fast)")
        return EXIT_SOME_FAILED
    if run.verbose:
        secs = time.perf_counter() - start
        from emo.io.records import counted

        skipped_text = f", {len(out.done)} already in {out_path}" if out is not None and out.done else ""
        how = f", decoded by {summary.decoder}" if summary.decoder else ""  # empty when nothing was decoded
        say(f"emo: {counted(summary.total, 'input')}, {summary.failed + unwritable} failed{skipped_text}, {secs:.1f} s{how}")
    return EXIT_SOME_FAILED if summary.failed or unwritable else EXIT_OK


class _compile_phase:
    """While a run is live, an engine compile is shown as its own phase of the progress line."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.saved: Any = None

    def __enter__(self) -> None:
        import emo.engine as engine

        self.saved = engine.compile_listener
        if self.progress.enabled:
            engine.compile_listener = self._on_compile

    def __exit__(self, *exc: object) -> None:
        import emo.engine as engine

        engine.compile_listener = self.saved

    def _on_compile(self, what: str, seconds: float | None) -> None:
        if seconds is None:
            self.progress.note(what + "…")
        else:
            self.progress.print(f"emo: {what}: {seconds:.0f} s (once; the engine is cached)")
            self.progress.note("emo")


def _split(name: str, values: dict[str, Any]) -> tuple[Any, config.Settings, RunOptions]:
    """A command's values as filter ``name``'s options, the run's settings and its run options."""
    from emo.assembly.filters import options_from, settings_from

    run = options_from(RunOptions, {**values, "paths": tuple(values.get("paths") or ())})
    return options_from(get_filter(name).options, values), settings_from(values), run


def run_command(name: str, given: dict[str, Any]) -> int:
    """Split a command line's values into a filter's options, settings and run options, and run it."""
    return run_filter(name, *_split(name, given))


def stages_for_flags(name: str, argv: Sequence[str], **given: Any) -> tuple[list[Any], config.Settings, RunOptions]:
    """The stages, settings and run options of ``emo NAME ARGV`` (flags only, no paths), as
    :class:`emo.Predictor` builds them."""
    from emo.assembly.filters import parse_flags

    values = {**parse_flags(name, argv, RunOptions), **{k: v for k, v in given.items() if v is not None}}
    options, settings, run = _split(name, values)
    stages = filter_stages(name, options, settings, BuildContext(root=run.root, say=say if run.verbose else None))
    return stages, settings, run
