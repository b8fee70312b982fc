"""Read JSONL record files (``emo fit``, ``emo score``, ``--truth``): one reader for all of them."""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from emo.errors import UsageError

STDIN = "-"


def _open(src: str):
    """A binary stream for ``src`` ('-' is stdin); a missing or unreadable file is a UsageError,
    and so is anything but a regular file or a pipe (:func:`_readable_kind`)."""
    if src == STDIN:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # emo was started with stdin closed
            raise UsageError("stdin is closed: give record files as arguments")
        return stream
    try:
        # Without waiting: opening a FIFO would otherwise block until a writer comes. Read after
        # that, a FIFO nobody writes to ends at once; one with a writer (<(jq ...)) is read whole.
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {src}: {getattr(e, 'strerror', None) or e}") from None
    try:
        _readable_kind(src, fd)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _readable_kind(src: str, fd: int) -> None:
    """Refuse a record file that is neither a regular file nor a pipe: a device such as /dev/zero
    never ends, a socket is no file, and a folder holds no lines. A pipe or FIFO (``emo score
    <(emo classify ...)``) is read to its writer's end; one without a writer reads as empty."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        raise UsageError(f"cannot read {src}: {e.strerror or e}") from None
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode):
        return
    if stat.S_ISDIR(mode):
        raise UsageError(f"cannot read {src}: it is a folder, not a file of records")
    what = "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise UsageError(f"cannot read {src}: it is {what}, not a file of records "
                     "(pipe records in on stdin, as '-', instead)")


def iter_jsonl(sources: Sequence[str], on_bad: Callable[[str, int, bytes], None] | None = None
               ) -> Iterator[tuple[str, int, dict[str, Any] | None]]:
    """``(source, line number, object or None)`` for each non-blank line of JSONL files ('-': stdin).

    A line that is not a JSON object yields ``None`` (the caller counts it) and, first, is given
    to ``on_bad(source, line number, line)`` so the caller can say which it was; so does a line
    over :data:`emo.io.records.MAX_LINE_BYTES`, given by its start only and never held whole. A
    UTF-8 byte order mark before the first line is ignored. Every file is opened before the first is read,
    so a missing one fails the run before any work is done.
    """
    import orjson

    from emo.io import records

    streams = [(src, _open(src)) for src in (sources or (STDIN,))]
    try:
        for src, f in streams:
            try:
                # Lines past records.MAX_LINE_BYTES are skipped, not gathered: junk without newlines is not held whole.
                for n, line in enumerate(records.split_pieces(f, b"\n", limit=records.MAX_LINE_BYTES), 1):
                    if isinstance(line, records.LongPiece):
                        if on_bad is not None:
                            on_bad(src, n, bytes(line))
                        yield src, n, None
                        continue
                    if n == 1 and line.startswith(b"\xef\xbb\xbf"):
                        line = line[3:]
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        obj = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        obj = None
                    if not isinstance(obj, dict):
                        obj = None
                        if on_bad is not None:
                            on_bad(src, n, line)
                    yield src, n, obj
            except OSError as e:  # a folder given as a file, an I/O error mid-file
                raise UsageError(f"cannot read {src}: {e.strerror or e}") from None
    finally:
        for src, f in streams:
            if src != STDIN:
                f.close()


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def may_hold_surrogate(text: str) -> bool:
    """Whether JSON ``text`` may parse to a string holding a lone surrogate: only an escape
    ``\\uD800``-``\\uDFFF`` (or a surrogate in ``text`` itself) can make one."""
    return _SURROGATE_ESCAPE.search(text) is not None or _has_surrogate(text)


def surrogate_at(value: Any) -> str | None:
    """Where in a parsed JSON value a string or key holds a lone surrogate (``"\\ud800"`` is valid
    JSON that no UTF-8 text can hold), as ``labels[0]`` or ``training.command``; None if nowhere.

    Such text cannot be written to a record, a terminal or an XML sidecar, so a file that carries
    it (a head header) is refused where it is read rather than failing wherever it is used.
    """
    import json

    try:  # the common case, in C: a header of a million numbers is not walked in Python
        json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass  # there is one: find where, for the message
    except (TypeError, ValueError, RecursionError):
        pass  # not plain JSON data: walk it
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if _has_surrogate(v):
                return where or "the text"
        elif isinstance(v, dict):
            for k, x in v.items():
                key = str(k)
                if _has_surrogate(key):
                    return f"{where}.<key>" if where else "a key"
                stack.append((f"{where}.{key}" if where else key, x))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v) if isinstance(x, (str, dict, list)))
    return None


def surrogate_problem(value: Any, text: str | None = None) -> str:
    """Why a parsed JSON header cannot be used ("" when it can): a string or key holding a lone
    surrogate, which no record, terminal or sidecar can write. ``text``: the JSON it was parsed
    from, when known; without a ``\\uD800``-``\\uDFFF`` escape in it, nothing is walked."""
    from emo.io.records import one_line, shown

    where = surrogate_at(value) if text is None or may_hold_surrogate(text) else None
    return "" if where is None else f"{one_line(shown(where))[:80]} holds a lone surrogate, text no UTF-8 can hold"


def read_records(sources: Sequence[str]) -> tuple[list[dict[str, Any]], int]:
    """Every record of ``sources`` and the number of lines that were not JSON objects."""
    records, bad = [], 0
    for _, _, obj in iter_jsonl(sources):
        if obj is None:
            bad += 1
        else:
            records.append(obj)
    return records, bad
