"""Write records as JSONL: one object per line, whole lines only, flushed per batch."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):  # torch tensors, without importing torch here
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def dumps(record: dict[str, Any]) -> bytes:
    """One record as a JSON line (with its newline); numpy arrays become lists of numbers."""
    return orjson.dumps(record, option=_OPTS, default=_default)


class JsonlWriter:
    """Writes batches of records to a file descriptor.

    A batch goes out with signals blocked, so Ctrl-C or SIGTERM can stop the run between lines
    but never inside one: the reader only ever sees complete lines.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines = 0

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        data = b"".join(dumps(r) for r in records)
        if not data:
            return
        blocked = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self.lines += data.count(b"\n")
