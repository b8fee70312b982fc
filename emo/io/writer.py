"""Write records as JSONL: one object per line, whole lines only, flushed per batch."""

from __future__ import annotations

import errno
import math
import os
import signal
import stat
import threading
from collections.abc import Iterable
from typing import IO, Any

import numpy as np
import orjson

from emo.config import (KEY_EMOTION, KEY_ERROR, KEY_FEATURES, KEY_PATH, KEY_PATH_BYTES, KEY_REGIONS, KEY_SENTIMENT,
                        KEY_VA)
from emo.errors import OutputError, PipeClosed

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
_DEFERRED = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):  # torch tensors, without importing torch here
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


# Characters a reader that splits lines the way Python's str.splitlines() does would break a
# record at; JSON lets them stand raw inside strings, so orjson writes them raw. Their UTF-8
# bytes can only stand for these characters, so escaping them in the output bytes is exact.
_LINE_BREAKS = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"), (b"\xc2\x85", b"\\u0085"))


def _escape_breaks(data: bytes) -> bytes:
    for raw, escaped in _LINE_BREAKS:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def _finite(obj: Any) -> bool:
    """Whether every number in ``obj`` (nested dicts, lists, numpy arrays) is finite."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, float):
            if not math.isfinite(o):
                return False
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, np.ndarray):
            if o.dtype.kind in "fc" and not np.isfinite(o).all():
                return False
        elif isinstance(o, np.floating) and not np.isfinite(o):
            return False
    return True


# Keys whose values are emo's numbers: a NaN there would be written as null.
RESULT_KEYS = (KEY_FEATURES, KEY_EMOTION, KEY_SENTIMENT, KEY_VA, KEY_REGIONS)


def _unwritable(record: dict[str, Any], kind: str, message: str) -> dict[str, Any]:
    """The error record written in place of one that cannot be written as it is."""
    keep = {k: v for k, v in record.items() if k not in RESULT_KEYS and k != KEY_ERROR}
    try:
        orjson.dumps(keep, option=_OPTS, default=_default)
    except (TypeError, orjson.JSONEncodeError):
        # The fields that name the file stay, so the error record still says which input it is;
        # made valid UTF-8 (a lone surrogate as U+FFFD), as they may be what could not be written.
        from emo.io.records import printable

        keep = {KEY_PATH: printable(record[KEY_PATH])} if isinstance(record.get(KEY_PATH), str) else {}
        exact = record.get(KEY_PATH_BYTES)
        if isinstance(exact, str) and exact.isascii():  # base64; anything else names no file
            keep[KEY_PATH_BYTES] = exact
    return {**keep, KEY_ERROR: {"kind": kind, "message": message}}


def encode(record: dict[str, Any]) -> tuple[bytes, dict[str, str] | None]:
    """One record as a JSON line (with its newline), and the ``error`` written in its place when
    it could not be written as it is (None when it was); numpy arrays become lists of numbers.

    Whatever a record holds, the line is one whole JSON object on one line: U+2028, U+2029 and
    U+0085 are escaped; a result holding NaN or infinity (JSON has neither, and null is not a
    number) or a value JSON cannot hold becomes an error record for that input instead.
    """
    replaced = None
    try:
        data = orjson.dumps(record, option=_OPTS, default=_default)
    except (TypeError, orjson.JSONEncodeError) as e:
        replaced = _unwritable(record, "bad_record", f"cannot be written as JSON ({e})")
        data = orjson.dumps(replaced, option=_OPTS, default=_default)
    # orjson writes NaN and infinity as null: only a line holding a null needs the full walk.
    if b"null" in data and not all(_finite(record[k]) for k in RESULT_KEYS if k in record):
        replaced = _unwritable(record, "bad_features", "the result holds a non-finite number (NaN or infinity)")
        data = orjson.dumps(replaced, option=_OPTS, default=_default)
    return _escape_breaks(data), (replaced[KEY_ERROR] if replaced is not None else None)


def dumps(record: dict[str, Any]) -> bytes:
    """One record as a JSON line (with its newline), as :func:`encode` writes it."""
    return encode(record)[0]


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


class JsonlWriter:
    """Writes batches of records to a file descriptor or a binary stream.

    SIGINT, SIGTERM and SIGHUP that come while a batch goes out take effect right after it, so Ctrl-C or
    a kill stops the run between lines but never inside one: the reader only ever sees complete lines. When a regular file
    cannot take a whole batch (disk full), it is cut back to where the batch began, so it still
    ends with a complete line. A closed pipe raises :class:`BrokenPipeError` (the CLI exits
    quietly); any other write failure raises :class:`emo.errors.OutputError`.
    """

    def __init__(self, out: int | IO[bytes], name: str = "stdout") -> None:
        self.out = out
        self.name = name
        self.lines = 0
        self._regular = isinstance(out, int) and _is_regular(out)

    def write(self, records: Iterable[dict[str, Any]]) -> list[tuple[int, dict[str, str]]]:
        """Write ``records`` as lines, all or none of the batch (regular files).

        Returns ``(position in the batch, error written instead)`` for each record that could not
        be written as it was (:func:`encode`), so the caller can count that input as failed.
        """
        lines, replaced = [], []
        for n, r in enumerate(records):
            line, error = encode(r)
            lines.append(line)
            if error is not None:
                replaced.append((n, error))
        data = b"".join(lines)
        if not data:
            return replaced
        if threading.current_thread() is not threading.main_thread():
            self._write(data)  # only the main thread can hold signal handlers
            self.lines += data.count(b"\n")
            return replaced
        # A signal mask would not do: any other thread (decode workers) can take a process-wide
        # SIGINT and Python then raises in the main thread mid-write. So the handlers note the
        # signal while the batch goes out, and it is raised again right after.
        pending: list[int] = []
        old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in _DEFERRED}
        try:
            self._write(data)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self.lines += data.count(b"\n")
        if pending:
            signal.raise_signal(pending[0])
        return replaced

    def _write(self, data: bytes) -> None:
        if not isinstance(self.out, int):
            try:
                self.out.write(data)
                self.out.flush()
            except BrokenPipeError:
                raise
            except OSError as e:
                raise OutputError(f"cannot write {self.name}: {e.strerror or e}") from None
            return
        start = os.fstat(self.out).st_size if self._regular else None
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.out, view)
                view = view[n:]
        except BrokenPipeError:
            raise
        except OSError as e:
            if start is not None:
                try:
                    os.ftruncate(self.out, start)
                except OSError:
                    pass
            hint = " (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise OutputError(f"cannot write {self.name}: {e.strerror or e}{hint}") from None


def table_console(**kwargs: Any) -> Any:
    """A rich ``Console`` on stdout for tables (``emo models``, ``emo engines``, ``emo score
    --format table``) whose closed pipe raises :class:`emo.errors.PipeClosed`, as a JSONL run does.

    rich's own answer to a closed pipe is ``SystemExit(1)``, which would make ``emo models | head
    -1`` exit 1 (some inputs failed) instead of 141. Off a terminal, lines lose the spaces rich pads
    the last column with, so ``awk``, ``diff`` and ``grep 'yes$'`` see what a person sees.
    """
    from rich.console import Console

    class _TableConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more is written to the closed pipe
            raise PipeClosed() from None

        def _render_buffer(self, buffer: Any) -> str:  # rich's one place where segments become text
            text = super()._render_buffer(buffer)
            return text if self.is_terminal else "\n".join(line.rstrip(" ") for line in text.split("\n"))

    return _TableConsole(**kwargs)
