"""Write records as JSONL: one object per line, whole lines only, flushed per batch."""

from __future__ import annotations

import errno
import os
import signal
import stat
import threading
from collections.abc import Iterable
from typing import IO, Any

import numpy as np
import orjson

from emo.errors import OutputError

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
_DEFERRED = (signal.SIGINT, signal.SIGTERM)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):  # torch tensors, without importing torch here
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def dumps(record: dict[str, Any]) -> bytes:
    """One record as a JSON line (with its newline); numpy arrays become lists of numbers."""
    return orjson.dumps(record, option=_OPTS, default=_default)


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


class JsonlWriter:
    """Writes batches of records to a file descriptor or a binary stream.

    SIGINT and SIGTERM that come while a batch goes out take effect right after it, so Ctrl-C or
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

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Write ``records`` as lines, all or none of the batch (regular files)."""
        data = b"".join(dumps(r) for r in records)
        if not data:
            return
        if threading.current_thread() is not threading.main_thread():
            self._write(data)  # only the main thread can hold signal handlers
            self.lines += data.count(b"\n")
            return
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
