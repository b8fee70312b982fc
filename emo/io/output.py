"""``-o FILE``: whole-file output through a temporary file, or ``--resume``: append and skip.

Without ``resume`` records go to a temporary file beside FILE that replaces FILE only when the
run ends, so FILE is always either the old one or a complete new one; the new file keeps the
old one's permission bits. A FILE that is not a regular file (a FIFO, ``/dev/null``, a
terminal) is written into directly and never replaced.

With ``resume`` records are appended to FILE as each batch finishes, so a run that is killed
keeps its work, and the next run skips the inputs FILE already holds. Inputs are counted, not
collected: an input given three times is done three times, and FILE's records are matched to
inputs in order (``a, b, a, c`` after a run killed after the first ``a`` goes on with ``b, a,
c``). A record matches its input by the exact name of its file (``path_bytes`` where a name is
not UTF-8, else ``path``; :func:`emo.io.records.record_name`) and content hash ``sha256`` where
the input gives one; a record without a path matches an input whose every field it holds
unchanged. A partial last line (a kill mid-write, a full disk) is cut off and that input is done
again, so FILE never holds a line twice or half a line. FILE must be emo output: a file holding any line that is not
an emo record is refused and left untouched. A resumed FILE is locked for the run: a second
``--resume`` run on it is refused at once rather than writing every record a second time.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import stat
import sys
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from emo.config import KEY_EMOTION, KEY_ERROR, KEY_FEATURES, KEY_HASH, KEY_REGIONS, KEY_SENTIMENT, KEY_VA
from emo.errors import OutputError
from emo.io.records import Item, record_name
from emo.io.writer import JsonlWriter

# Every record emo writes holds one of these; a line without any was not written by emo.
_EMO_KEYS = (KEY_ERROR, KEY_FEATURES, KEY_EMOTION, KEY_SENTIMENT, KEY_VA, KEY_REGIONS)


def record_key(record: dict[str, Any]) -> Hashable:
    """What identifies an input across runs: its file's exact name (and hash), else the whole
    input record.

    Records that name no file (bad lines, features alone, an invalid ``path_bytes``) are matched
    by :class:`Done` field by field; this key is only their exact form.
    """
    name = record_name(record)
    if name is not None:
        digest = record.get(KEY_HASH)
        return (name, digest if isinstance(digest, str) else None)
    rest = {k: v for k, v in record.items() if k != KEY_ERROR}
    return orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)


def _leaf_sig(value: Any) -> bytes:
    """A digest of one value that is equal for an input's value and the same value written back:
    numbers (and lists of them) are compared as float32, since feature groups are written so."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        blob = b"n" + np.float32(value).tobytes()
    elif isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in value):
        blob = b"l" + np.asarray(value, dtype=np.float32).tobytes()
    else:
        blob = b"j" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(blob, digest_size=16).digest()


def _leaves(record: dict[str, Any]) -> frozenset[tuple[tuple[str, ...], bytes]]:
    """``(key path, value digest)`` of every non-object value in ``record``, ``error`` left out."""
    out = []
    stack: list[tuple[tuple[str, ...], Any]] = [((k,), v) for k, v in record.items() if k != KEY_ERROR]
    while stack:
        where, v = stack.pop()
        if isinstance(v, dict) and v:
            stack.extend((where + (k,), x) for k, x in v.items())
        else:
            out.append((where, _leaf_sig(v)))
    return frozenset(out)


class Done:
    """The records a resumed file holds, as a multiset the inputs are taken out of in order.

    ``len()`` is how many records the file held.
    """

    def __init__(self) -> None:
        self.count = 0
        self.by_key: Counter[Hashable] = Counter()
        self._pathless: list[frozenset | None] = []  # leaf sets; None once matched
        self._index: dict[tuple[tuple[str, ...], bytes], list[int]] = {}
        self._bare = 0  # records with no field but ``error`` (the input was ``{}``)

    def add(self, record: dict[str, Any]) -> None:
        """Count one record read from the file."""
        self.count += 1
        if record_name(record) is not None:
            self.by_key[record_key(record)] += 1
            return
        leaves = _leaves(record)
        if not leaves:
            self._bare += 1
            return
        n = len(self._pathless)
        self._pathless.append(leaves)
        for leaf in leaves:
            self._index.setdefault(leaf, []).append(n)

    def take(self, record: dict[str, Any]) -> bool:
        """Whether an input record is done; if so, the record that holds it is taken out."""
        if record_name(record) is not None:
            key = record_key(record)
            if self.by_key[key] > 0:
                self.by_key[key] -= 1
                return True
            return False
        want = _leaves(record)
        if not want:
            # An input with no field (``{}``) is held by a record with nothing but its error.
            if self._bare:
                self._bare -= 1
                return True
            return False
        probe = min(want)
        for n in self._index.get(probe, ()):
            have = self._pathless[n]
            if have is not None and want <= have:
                self._pathless[n] = None
                return True
        return False

    def __len__(self) -> int:
        return self.count


def _os_error(what: str, path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot {what} {path}: {e.strerror or e}")


def _scan(f: IO[bytes], path: Path) -> tuple[Done, int, bool]:
    """Read a resume file: ``(records, offset past the last complete line, partial last line)``.

    Raises :class:`OutputError` on any line that is not an emo record, before anything is cut.
    """
    done = Done()
    good = 0  # offset just past the last complete line
    for n, line in enumerate(f, 1):
        if not line.endswith(b"\n"):
            # Half a record from a killed run is cut and done again; other bytes are not ours.
            if not line.lstrip().startswith(b"{"):
                raise OutputError(f"{path}:{n} is not a JSON record of emo output; --resume appends only to emo output "
                                  "(nothing was changed)")
            return done, good, True
        good += len(line)
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict) or not any(k in rec for k in _EMO_KEYS):
            raise OutputError(f"{path}:{n} is not a JSON record of emo output; --resume appends only to emo output "
                              "(nothing was changed)")
        done.add(rec)
    return done, good, False


def read_done(path: Path) -> Done:
    """The records in ``path``; a partial last line is cut off (only once the rest is valid)."""
    try:
        with open(path, "r+b") as f:
            done, good, partial = _scan(f, path)
            if partial:
                f.truncate(good)  # half a line from a killed run: that input is done again
    except FileNotFoundError:
        return Done()
    except OSError as e:
        raise _os_error("read", path, e) from None
    return done


def skip_done(items: Iterable[Item], done: Done) -> Iterator[Item]:
    """``items`` without those ``done`` holds, each record matching one input, in order."""
    for item in items:
        if not done.take(item.record):
            yield item


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(f"{path} is being written by another emo --resume run; "
                          "run again once it has ended (it will skip what that run did)") from None
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without locks
            raise _os_error("lock", path, e) from None


def _new_temporary(target: Path) -> tuple[Path, int]:
    """A temporary file beside ``target`` that this call made itself, and its descriptor.

    Created exclusively and never through a link, so a file or link someone left at the name is
    never written into; the name is cut so a long FILE name still leaves room for it. Mode 0666
    less the umask, as the shell's ``>`` would create FILE.
    """
    stem = os.fsdecode(os.fsencode(target.name)[:100])
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.with_name(f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "cannot make a temporary file beside it")


def file_id(path: str | Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the regular file ``path`` names (through links), else None: what
    tells that two names, links or hard links are one file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _stdin_id() -> tuple[int, int] | None:
    """:func:`file_id` of the file stdin reads, when it is a regular file."""
    try:
        st = os.fstat(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # closed, or no descriptor (tests)
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def refuse_inputs(out: Path | None, inputs: Iterable[str | Path], what: str = "inputs",
                  root: Path | None = None) -> None:
    """Raise :class:`OutputError` when the file ``-o out`` names is one of ``inputs`` (relative
    ones resolved against ``root``), before any work: writing the output would replace it."""
    if out is None or str(out) == "-":
        return
    target = file_id(out)
    if target is None:  # no file yet, or one written into rather than replaced (a FIFO, a device)
        return
    for src in inputs:
        if str(src) == "-":  # stdin redirected from FILE itself: `emo ... -o list < list`
            if _stdin_id() == target:
                raise OutputError(f"-o {out}: is also the file on stdin, which is being read; it would be "
                                  "replaced by the output (nothing was written)")
            continue
        p = Path(os.path.expanduser(str(src)))
        if root is not None and not p.is_absolute():
            p = root / p
        if file_id(p) == target:
            raise OutputError(f"-o {out}: is also one of the {what} ({src}); it would be replaced by the output "
                              "(nothing was written)")


class OutputFile:
    """The ``-o FILE`` target: :meth:`open` gives a writer, :meth:`commit` or :meth:`abort` ends it."""

    def __init__(self, path: Path, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume
        self.tmp: Path | None = None
        self.fd: int | None = None
        self.regular = True
        self.identity: tuple[int, int] | None = None  # FILE's (device, inode) when it is a regular file
        self.done = Done()

    def open(self) -> JsonlWriter:
        """Read what is done (resume) and open the file to write; raises :class:`OutputError`."""
        try:
            st: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except (OSError, ValueError) as e:
            raise OutputError(f"-o {self.path}: {getattr(e, 'strerror', None) or e}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"-o {self.path}: is a directory")
        self.regular = st is None or stat.S_ISREG(st.st_mode)
        self.identity = (st.st_dev, st.st_ino) if st is not None and self.regular else None
        if self.resume:
            self._open_resume()
        elif not self.regular:
            self._open_direct()
        else:
            self._open_replacement(st)
        return JsonlWriter(self.fd, name=str(self.path))

    def _open_resume(self) -> None:
        if not self.regular:
            raise OutputError(f"--resume needs a regular file; {self.path} is not one")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as e:
            raise _os_error("open", self.path, e) from None
        try:
            _lock(fd, self.path)
            with os.fdopen(os.dup(fd), "rb") as f:
                self.done, good, partial = _scan(f, self.path)
            if partial:
                os.ftruncate(fd, good)  # half a line from a killed run: that input is done again
        except OSError as e:
            os.close(fd)
            raise _os_error("read", self.path, e) from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def _open_direct(self) -> None:
        # A FIFO or a device is the reader's, not ours to replace (as root, -o /dev/null would
        # otherwise swap the system's for a file); opening a FIFO waits for its reader, as `>` does.
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as e:
            raise _os_error("open", self.path, e) from None

    def _open_replacement(self, st: os.stat_result | None) -> None:
        # Through a symlink to the file it names, as the shell's `>` writes.
        target = Path(os.path.realpath(self.path)) if st is not None else self.path
        self.target = target
        try:
            self.tmp, self.fd = _new_temporary(target)
        except OSError as e:
            self.tmp = None
            raise _os_error("open", self.path, e) from None
        if st is not None:
            try:
                os.fchmod(self.fd, stat.S_IMODE(st.st_mode))  # 0600 stays 0600
                if os.geteuid() == 0:
                    os.fchown(self.fd, st.st_uid, st.st_gid)
            except OSError:
                pass  # the old file's owner or mode cannot be given: the new one is still ours

    def guard(self, items: Iterable[Item]) -> Iterator[Item]:
        """``items``, stopping with :class:`OutputError` at one whose picture is this file:
        committing would replace that picture with records. Inputs on stdin or found by ``-r``
        are only known as they come, so each is checked then (one ``stat``, only while FILE
        already exists as a regular file)."""
        for item in items:
            if self.identity is not None and item.path is not None and file_id(item.path) == self.identity:
                raise OutputError(f"-o {self.path}: is also input {item.index + 1} ({item.label}); it would be "
                                  "replaced by the records (nothing was written)")
            yield item

    def commit(self) -> None:
        """The run ended: make the file durable and, without resume, put it in place."""
        if self.fd is None:
            return
        if self.regular:
            try:
                os.fsync(self.fd)
            except OSError as e:
                self.abort()
                raise _os_error("write", self.path, e) from None
        os.close(self.fd)
        self.fd = None
        if self.tmp is not None:
            try:
                os.replace(self.tmp, self.target)
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
