"""The on-disk engine cache: one file per engine plus a JSON sidecar, built once under a file lock.

An entry is ``<key>.<ext>`` (the compiled engine) and ``<key>.json`` (its key fields, size,
sha256, build time). The key is the sha256 of the key fields (:func:`key_of`), so a change in
any of them (network, weights, input profile, precision, backend, device, library versions)
names a new entry and nothing stale is ever loaded. Writes go to a temporary file that is
fsynced and renamed, the engine before its sidecar, so a sidecar is the proof of a complete
engine; builders take ``<key>.lock`` so parallel processes build once. An entry whose file does
not match its sidecar (truncated, corrupt) is removed and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from emo.errors import ModelError

T = TypeVar("T")

SIDECAR = ".json"
LOCK = ".lock"
_LOCK_TIMEOUT_S = 3600  # a build can take minutes on a busy machine; never wait forever
# Engine file extensions emo writes (inductor, tensorrt); nothing else in the folder is ours.
ENGINE_EXTS = ("pt2", "ep")
_KEY = r"[0-9a-f]{32}"
_EXT = "|".join(ENGINE_EXTS)
# Every name the cache itself creates: engine, sidecar, lock, a mark of an engine that cannot load
# here (emo.engine.load_probe), and the temporaries of a build.
_OURS = re.compile(rf"(?:{_KEY}\.(?:{_EXT}|json|lock|unloadable)|\.{_KEY}\.\d+\.(?:tmp\.(?:{_EXT})|json\.tmp))")


def is_cache_name(name: str) -> bool:
    """Whether ``name`` (a file name, no folder) is one the cache makes; only those are read or removed."""
    return _OURS.fullmatch(name) is not None


def _whole(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def sidecar_problem(key: str, meta: Any) -> str:
    """What makes a sidecar's fields nonsense ("" when they are sound): a sidecar is read back
    from disk, so each field is checked before it sizes a batch or names a file."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    if meta.get("key", key) != key:
        return "its key is not its name"
    f = meta.get("file")
    if not isinstance(f, str) or re.fullmatch(rf"{re.escape(key)}\.(?:{_EXT})", f) is None:
        return "its file is not this entry's engine"
    if not _whole(meta.get("size"), 1):
        return "size is not a whole number of bytes"
    sha = meta.get("sha256")
    if not isinstance(sha, str) or re.fullmatch(r"[0-9a-f]{64}", sha) is None:
        return "sha256 is not a hex digest"
    fields = meta.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        return "fields is not an object of strings"
    for k in ("created", "build_seconds"):
        v = meta.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
            return f"{k} is not a time"
    lo, hi = meta.get("min_batch", 1), meta.get("max_batch", 0)
    if not _whole(lo, 1) or not _whole(hi, 0) or (hi and hi < lo):
        return f"batch bounds min_batch={lo!r} max_batch={hi!r} are nonsense"
    return ""


def key_of(fields: dict[str, str]) -> str:
    """The cache key: sha256 (hex, 32 chars) of the key fields in a canonical JSON form."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


class CorruptEntry(Exception):
    """An entry whose engine file does not match its sidecar, or cannot be loaded."""


@dataclass(frozen=True)
class Entry:
    """One cached engine as found on disk (what ``emo engines list`` shows): a regular file by the
    cache's own name, with its sidecar. ``size`` is the engine file's bytes when it was found."""

    key: str
    path: Path  # the engine file
    sidecar: Path
    meta: dict[str, Any]
    size: int = 0

    @property
    def created(self) -> float:
        """Build time (epoch seconds) from the sidecar, else the sidecar's mtime."""
        c = self.meta.get("created")
        if isinstance(c, (int, float)):
            return float(c)
        return self.sidecar.stat().st_mtime

    @property
    def last_used(self) -> float:
        """Last load (epoch seconds): each load touches the engine file's mtime."""
        try:
            return os.lstat(self.path).st_mtime
        except OSError:
            return self.created


class EngineCache:
    """A folder of engines; :meth:`get` loads an entry or builds it once across processes."""

    def __init__(self, root: Path, warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.warn = warn or (lambda msg: sys.stderr.write(msg + "\n"))

    def paths(self, key: str, ext: str) -> tuple[Path, Path, Path]:
        """(engine file, sidecar, lock file) of ``key``."""
        return self.root / f"{key}.{ext}", self.root / f"{key}{SIDECAR}", self.root / f"{key}{LOCK}"

    def _verified(self, path: Path, sidecar: Path) -> dict[str, Any] | None:
        """The sidecar's fields if the entry is complete; None if absent; raises CorruptEntry."""
        if not _lexists(sidecar):
            if _lexists(path):  # an engine without its sidecar was never committed
                raise CorruptEntry("engine file has no sidecar")
            return None
        if not _is_regular(sidecar, follow=False):  # a link could name any file on the machine
            raise CorruptEntry("sidecar is not a regular file")
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise CorruptEntry(f"unreadable sidecar ({type(e).__name__})") from None
        key = sidecar.name[: -len(SIDECAR)]
        problem = sidecar_problem(key, meta)
        if problem:
            raise CorruptEntry(f"sidecar {problem}")
        if meta["file"] != path.name:
            raise CorruptEntry("sidecar names another engine file")
        if not _is_regular(path, follow=False):
            raise CorruptEntry("engine file is missing or not a regular file")
        size = path.stat().st_size
        if size != meta["size"]:
            raise CorruptEntry(f"engine file is {size} bytes, sidecar says {meta['size']}")
        if _sha256(path) != meta["sha256"]:
            raise CorruptEntry("engine file sha256 does not match its sidecar")
        return meta

    def remove(self, key: str, ext: str) -> None:
        """Delete an entry's engine file and sidecar (not its lock, which others may hold).

        Only regular files and links by the cache's own names go; a folder standing at one of
        them is a :class:`ModelError`, since the entry can then never be written.
        """
        path, sidecar, _ = self.paths(key, ext)
        for p in (sidecar, path):
            if _lexists(p) and not _is_regular(p, follow=False) and not p.is_symlink():
                raise ModelError(f"engine cache {self.root}: {p.name} is not a file; remove it by hand")
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def _commit(self, key: str, ext: str, fields: dict[str, str], tmp: Path, build_s: float,
                extra: dict[str, Any]) -> dict[str, Any]:
        path, sidecar, _ = self.paths(key, ext)
        os.chmod(tmp, 0o644)  # never group- or world-writable, whatever the umask: see trust.py
        _fsync_file(tmp)
        os.replace(tmp, path)
        meta = {
            "key": key,
            "file": path.name,
            "fields": fields,
            "size": path.stat().st_size,
            "sha256": _sha256(path),
            "created": time.time(),
            "build_seconds": round(build_s, 3),
            **extra,
        }
        stmp = self.root / f".{key}.{os.getpid()}.json.tmp"
        with open(os.open(stmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "w") as f:
            os.fchmod(f.fileno(), 0o644)
            json.dump(meta, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(stmp, sidecar)
        _fsync_dir(self.root)
        return meta

    def get(
        self,
        fields: dict[str, str],
        ext: str,
        build: Callable[[Path], dict[str, Any] | None],
        load: Callable[[Path, dict[str, Any]], T],
        what: str = "engine",
    ) -> tuple[T, dict[str, Any], bool]:
        """Load the entry for ``fields``, building it first if needed: ``(loaded, sidecar, built)``.

        ``build(tmp_path)`` writes the engine to ``tmp_path`` and may return extra sidecar
        fields; ``load(path, sidecar)`` turns a file into a callable and raises on a bad file.
        A corrupt entry is removed, rebuilt, and reported in one line through ``warn``. A cache
        folder or entry that is not trusted to hold code (:mod:`emo.engine.trust`) raises
        :class:`ModelError` and nothing in it is loaded, rebuilt or removed.
        """
        from emo.engine.trust import check_trusted

        key = key_of(fields)
        path, sidecar, lock = self.paths(key, ext)
        check_trusted(self.root, sidecar, path, what=what)
        # Fast path, no lock: a committed sidecar means a complete engine (renames are atomic).
        try:
            meta = self._verified(path, sidecar)
            if meta is not None:
                out = load(path, meta)
                _touch(path)
                return out, meta, False
        except CorruptEntry:
            pass  # re-checked under the lock, where it is removed and reported once
        except Exception:
            pass  # a file that verifies but will not load: same path as corrupt
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        except OSError as e:
            raise ModelError(f"cannot make the engine cache {self.root}: {e.strerror or e}") from None
        try:
            with FileLock(str(lock), timeout=_LOCK_TIMEOUT_S):
                check_trusted(self.root, sidecar, path, what=what)  # again: it may have changed meanwhile
                reason = None
                try:
                    meta = self._verified(path, sidecar)
                    if meta is not None:
                        try:
                            out = load(path, meta)
                            _touch(path)
                            return out, meta, False
                        except Exception as e:
                            raise CorruptEntry(f"cannot load it ({type(e).__name__}: {_first_line(e)})") from None
                except CorruptEntry as e:
                    reason = str(e)
                if reason is not None:
                    self.warn(f"emo: cached {what} {path.name} is corrupt ({reason}); removed, rebuilding")
                    self.remove(key, ext)
                tmp = self.root / f".{key}.{os.getpid()}.tmp.{ext}"
                try:
                    t0 = time.perf_counter()
                    extra = build(tmp) or {}
                    meta = self._commit(key, ext, fields, tmp, time.perf_counter() - t0, extra)
                finally:
                    tmp.unlink(missing_ok=True)
                return load(path, meta), meta, True
        except OSError as e:  # a read-only shared cache, a full disk: one line, not a traceback
            raise ModelError(f"cannot build the {what} in {self.root}: {e.strerror or e}") from None

    def entries(self) -> Iterator[Entry]:
        """Every engine by the cache's own names (a sidecar ``<key>.json`` and a regular file
        ``<key>.pt2`` or ``<key>.ep``), sorted by key.

        A sidecar whose fields are nonsense gives an entry with empty ``meta`` and the engine
        file found by its own name; nothing outside the folder is ever named. A sidecar whose
        engine is missing, a folder or a link is no engine (``plan_clear`` counts it as a
        leftover of the cache's own; the folder or link stays).
        """
        for sc in self._own_files():
            if not sc.name.endswith(SIDECAR) or sc.name.startswith("."):
                continue
            key = sc.name[: -len(SIDECAR)]
            try:
                meta = json.loads(sc.read_text()) if _is_regular(sc) else None
            except (OSError, ValueError, RecursionError):
                meta = None
            if sidecar_problem(key, meta):
                meta = {}
            names = [meta["file"]] if meta.get("file") else [f"{key}.{x}" for x in ENGINE_EXTS]
            for name in names:
                # The cache writes engines as regular files only: a folder or link there is not one.
                st = _lstat(self.root / name)
                if st is not None and stat.S_ISREG(st.st_mode):
                    yield Entry(key=key, path=self.root / name, sidecar=sc, meta=meta, size=st.st_size)
                    break

    def _own_files(self) -> list[Path]:
        """The folder's files by the cache's own names, sorted; folders and other names left out."""
        try:
            names = sorted(os.listdir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise ModelError(f"cannot list the engine cache {self.root}: {e.strerror or e}") from None
        return [self.root / n for n in names if is_cache_name(n) and _is_regular(self.root / n, follow=False)]

    def plan_clear(self, older_than_s: float | None = None, now: float | None = None) -> tuple[list[Entry], list[Path]]:
        """What :meth:`clear` would remove, touching nothing: ``(entries, other files)``.

        Entries go whole (engine file and sidecar); the other files are the cache's own
        leftovers: temporaries of crashed builds (after an hour's grace, so a build in progress
        keeps its own) and engine files no sidecar commits. Locks stay (others may hold them);
        anything whose name the cache did not make stays, whatever its ``.json`` says.
        """
        now = time.time() if now is None else now
        entries = list(self.entries())
        gone = [e for e in entries if older_than_s is None or now - e.last_used >= older_than_s]
        kept = {p.name for e in entries if e not in gone for p in (e.path, e.sidecar)}
        taken = {p.name for e in gone for p in (e.path, e.sidecar)}
        others = []
        for p in self._own_files():
            if p.name in kept or p.name in taken or p.name.endswith(LOCK):
                continue
            temp = p.name.startswith(".")
            if now - _mtime(p) > 3600 or (older_than_s is None and not temp):
                others.append(p)
        return gone, others

    def clear(self, older_than_s: float | None = None, now: float | None = None) -> list[Entry]:
        """Remove entries (all, or those not used for ``older_than_s`` seconds); those removed.

        Removes exactly what :meth:`plan_clear` lists: names the cache made, inside its folder.
        """
        gone, others = self.plan_clear(older_than_s, now)
        for e in gone:
            for p in (e.sidecar, e.path):
                _unlink_own(p)
        for p in others:
            _unlink_own(p)
        return gone


def _lstat(p: Path) -> os.stat_result | None:
    """``os.lstat(p)``, None on any error (a link is not followed)."""
    try:
        return os.lstat(p)
    except (OSError, ValueError):
        return None


def _lexists(p: Path) -> bool:
    return _lstat(p) is not None


def _is_regular(p: Path, follow: bool = True) -> bool:
    """Whether ``p`` is a regular file (through a link when ``follow``); False on any error."""
    try:
        st = os.stat(p) if follow else os.lstat(p)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode)


def _unlink_own(p: Path) -> None:
    """Remove a regular file (or a link, never what it points at) by one of the cache's names."""
    if not is_cache_name(p.name):
        return
    try:
        st = os.lstat(p)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:  # a shared cache another user owns: one line, not a traceback
            raise ModelError(f"cannot remove {p}: {e.strerror or e}") from None


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache still serves engines


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""
