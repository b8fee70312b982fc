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
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

T = TypeVar("T")

SIDECAR = ".json"
LOCK = ".lock"
_LOCK_TIMEOUT_S = 3600  # a build can take minutes on a busy machine; never wait forever


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
    """One cached engine as found on disk (what ``emo engines list`` shows)."""

    key: str
    path: Path  # the engine file
    sidecar: Path
    meta: dict[str, Any]

    @property
    def size(self) -> int:
        """Bytes of the engine file (0 when it is missing)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

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
            return self.path.stat().st_mtime
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
        if not sidecar.exists():
            if path.exists():  # an engine without its sidecar was never committed
                raise CorruptEntry("engine file has no sidecar")
            return None
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            raise CorruptEntry(f"unreadable sidecar ({type(e).__name__})") from None
        if not isinstance(meta, dict):
            raise CorruptEntry("sidecar is not a JSON object")
        try:
            size = path.stat().st_size
        except OSError:
            raise CorruptEntry("engine file is missing") from None
        if size != meta.get("size"):
            raise CorruptEntry(f"engine file is {size} bytes, sidecar says {meta.get('size')}")
        if _sha256(path) != meta.get("sha256"):
            raise CorruptEntry("engine file sha256 does not match its sidecar")
        return meta

    def remove(self, key: str, ext: str) -> None:
        """Delete an entry's engine file and sidecar (not its lock, which others may hold)."""
        path, sidecar, _ = self.paths(key, ext)
        for p in (sidecar, path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def _commit(self, key: str, ext: str, fields: dict[str, str], tmp: Path, build_s: float,
                extra: dict[str, Any]) -> dict[str, Any]:
        path, sidecar, _ = self.paths(key, ext)
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
        with open(stmp, "w") as f:
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
        A corrupt entry is removed, rebuilt, and reported in one line through ``warn``.
        """
        key = key_of(fields)
        path, sidecar, lock = self.paths(key, ext)
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
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock), timeout=_LOCK_TIMEOUT_S):
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
                if tmp.exists():
                    tmp.unlink()
            return load(path, meta), meta, True

    def entries(self) -> Iterator[Entry]:
        """Every committed entry (a sidecar whose engine file is named in it), sorted by key."""
        if not self.root.is_dir():
            return
        for sc in sorted(self.root.glob(f"*{SIDECAR}")):
            try:
                meta = json.loads(sc.read_text())
            except (OSError, ValueError):
                meta = {}
            if not isinstance(meta, dict):
                meta = {}
            key = sc.name[: -len(SIDECAR)]
            name = meta.get("file") if isinstance(meta.get("file"), str) else ""
            yield Entry(key=key, path=self.root / (name or f"{key}.missing"), sidecar=sc, meta=meta)

    def clear(self, older_than_s: float | None = None, now: float | None = None) -> list[Entry]:
        """Remove entries (all, or those not used for ``older_than_s`` seconds); those removed.

        Stray temporary files of crashed builds go too, unless a build may still be writing them.
        """
        now = time.time() if now is None else now
        removed = []
        for e in list(self.entries()):
            if older_than_s is not None and now - e.last_used < older_than_s:
                continue
            for p in (e.sidecar, e.path):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
            removed.append(e)
        if self.root.is_dir():
            kept = {e.path.name for e in self.entries()} | {e.sidecar.name for e in self.entries()}
            for p in self.root.iterdir():
                if p.name in kept or p.suffix == LOCK or not p.is_file():
                    continue
                # Leftovers of crashed builds (temp files, an engine never committed by its
                # sidecar); an hour's grace so a build in progress keeps its temp file.
                if now - _mtime(p) > 3600 or (older_than_s is None and not p.name.startswith(".")):
                    p.unlink(missing_ok=True)
        return removed


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
