"""``-o FILE``: whole-file output through a temporary file, or ``--resume``: append and skip.

Without ``resume`` records go to a temporary file beside FILE that replaces FILE only when the
run ends, so FILE is always either the old one or a complete new one. With ``resume`` records
are appended to FILE as each batch finishes, so a run that is killed keeps its work, and the
next run skips every input FILE already holds: by ``path`` and, where the input gives one, by
its content hash (``sha256``). A partial last line (a kill mid-write, a full disk) is cut off
and that input is done again, so FILE never holds a line twice or half a line.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from emo.config import KEY_ERROR, KEY_PATH
from emo.errors import OutputError
from emo.io.records import Item
from emo.io.writer import JsonlWriter

# An input may carry its content hash under this key; --resume then matches path and hash.
KEY_HASH = "sha256"


def record_key(record: dict[str, Any]) -> Hashable:
    """What identifies an input across runs: its path (and hash), else the whole input record.

    Records without a string path (bad lines, JSON without "path") match only an output record
    equal to them apart from ``error``.
    """
    path = record.get(KEY_PATH)
    if isinstance(path, str):
        digest = record.get(KEY_HASH)
        return (path, digest if isinstance(digest, str) else None)
    rest = {k: v for k, v in record.items() if k != KEY_ERROR}
    return orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)


def _os_error(what: str, path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot {what} {path}: {e.strerror or e}")


def read_done(path: Path) -> set[Hashable]:
    """Keys of the records in ``path``, read line by line; a partial last line is cut off first."""
    done: set[Hashable] = set()
    try:
        with open(path, "r+b") as f:
            good = 0  # offset just past the last complete line
            for n, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    f.truncate(good)  # half a line from a killed run: that input is done again
                    break
                good += len(line)
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    rec = None
                if not isinstance(rec, dict):
                    raise OutputError(f"{path}:{n} is not a JSON record; --resume appends only to emo output")
                done.add(record_key(rec))
    except FileNotFoundError:
        return set()
    except OSError as e:
        raise _os_error("read", path, e) from None
    return done


def skip_done(items: Iterable[Item], done: set[Hashable]) -> Iterator[Item]:
    """``items`` without those whose key is in ``done``."""
    for item in items:
        if record_key(item.record) not in done:
            yield item


class OutputFile:
    """The ``-o FILE`` target: :meth:`open` gives a writer, :meth:`commit` or :meth:`abort` ends it."""

    def __init__(self, path: Path, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        self.tmp: Path | None = None
        self.fd: int | None = None
        self.done: set[Hashable] = set()

    def open(self) -> JsonlWriter:
        """Read what is done (resume) and open the file to write; raises :class:`OutputError`."""
        if self.path.is_dir():
            raise OutputError(f"-o {self.path}: is a directory")
        target = self.path
        if self.resume:
            self.done = read_done(self.path)
        else:
            self.tmp = target = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if self.resume else os.O_TRUNC)
        try:
            self.fd = os.open(target, flags, 0o666)
        except OSError as e:
            raise _os_error("open", target, e) from None
        return JsonlWriter(self.fd, name=str(self.path))

    def commit(self) -> None:
        """The run ended: make the file durable and, without resume, put it in place."""
        if self.fd is None:
            return
        try:
            os.fsync(self.fd)
        except OSError as e:
            self.abort()
            raise _os_error("write", self.path, e) from None
        os.close(self.fd)
        self.fd = None
        if self.tmp is not None:
            try:
                os.replace(self.tmp, self.path)
            except OSError as e:
                self.abort()
                raise _os_error("rename to", self.path, e) from None
            self.tmp = None

    def abort(self) -> None:
        """The run did not end: drop the temporary file (resume keeps what was appended)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None
