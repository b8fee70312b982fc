"""Find a weights file, check its hash, and load it safely.

Resolution order (docs/models.md): an explicit path, ``--weights-dir``, the cache, a pip
package installed here that carries the identical file, then the original URL. Every file is
hash-checked; a mismatch is an error, never a warning. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from emo.config import Settings, weights_cache
from emo.errors import ConfigError, HashMismatch, WeightsNotFound
from emo.models.registry import WeightsFile

_verified: dict[tuple[str, float, int], str] = {}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, remembered per (path, mtime, size) within a process."""
    st = path.stat()
    key = (str(path), st.st_mtime, st.st_size)
    if key not in _verified:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _verified[key] = h.hexdigest()
    return _verified[key]


def check_hash(path: Path, wf: WeightsFile) -> str:
    """Return the file's full sha256, or raise :class:`HashMismatch`."""
    digest = sha256_file(path)
    if not digest.startswith(wf.sha256):
        raise HashMismatch(
            f"{path}: sha256 {digest[:16]}… does not match the registry's {wf.sha256[:16]}…; "
            "delete the file and fetch it again (emo models pull)"
        )
    return digest


def package_file(wf: WeightsFile) -> Path | None:
    """The file inside an installed carrier package, if that package is installed here."""
    if not wf.package_path:
        return None
    top = wf.package_path.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc).parent / wf.package_path
        if p.is_file():
            return p
    return None


def weights_dir(settings: Settings) -> Path:
    """The ``--weights-dir`` / ``EMO_WEIGHTS_DIR`` folder; a :class:`ConfigError` when that names
    something that is there but is no folder (a file), which would be searched in vain, unsaid."""
    d = Path(settings.weights_dir).expanduser()
    try:
        st = os.stat(d)
    except (OSError, ValueError):
        return d  # not there (yet): the search finds nothing in it and says where else to put the file
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"weights folder {settings.weights_dir} (--weights-dir, EMO_WEIGHTS_DIR) is not a folder")
    return d


def candidates(wf: WeightsFile, settings: Settings, explicit: Path | None = None) -> list[tuple[str, Path]]:
    """Places the file may already be, in resolution order, as ``(source, path)``."""
    out: list[tuple[str, Path]] = []
    if explicit is not None:
        out.append(("explicit", explicit))
    if settings.weights_dir:
        out.append(("weights-dir", weights_dir(settings) / wf.filename))
    out.append(("cache", weights_cache(settings) / wf.filename))
    pkg = package_file(wf)
    if pkg is not None:
        out.append((f"package {wf.package}", pkg))
    return out


def locate(wf: WeightsFile, settings: Settings, explicit: Path | None = None) -> tuple[str, Path] | None:
    """The first present candidate as ``(source, path)``, without hashing; None if none is here."""
    for source, p in candidates(wf, settings, explicit):
        if p.is_file():
            return source, p
    return None


def _fix_hint(wf: WeightsFile, settings: Settings | None = None) -> str:
    hints = []
    if wf.pip_install:
        hints.append(wf.pip_install)
    if wf.url:
        hints.append(f"emo models pull on a machine that can reach {wf.url}")
    hints.append(f"or put {wf.filename} in the cache ({weights_cache(settings)}) or --weights-dir")
    return "; ".join(hints)


def download(wf: WeightsFile, dest: Path, progress: bool = True, settings: Settings | None = None) -> Path:
    """Fetch ``wf.url`` into ``dest`` atomically (temp file + rename), hash-checked."""
    if not wf.url:
        raise WeightsNotFound(f"{wf.filename} has no download URL; {_fix_hint(wf, settings)}")
    from torch.hub import download_url_to_file  # torch only when a download happens

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-")
    os.close(fd)
    try:
        download_url_to_file(wf.url, tmp, progress=progress and sys.stderr.isatty())
        check_hash(Path(tmp), wf)
        os.replace(tmp, dest)
    except HashMismatch:
        raise
    except Exception as e:
        raise WeightsNotFound(f"cannot download {wf.url} ({type(e).__name__}: {e}); {_fix_hint(wf, settings)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def resolve(wf: WeightsFile, settings: Settings, explicit: Path | None = None, fetch: bool = True) -> tuple[Path, str]:
    """Path of a verified copy of ``wf`` and its full sha256; downloads only if ``fetch``."""
    found = locate(wf, settings, explicit)
    if found is not None:
        _, p = found
        return p, check_hash(p, wf)
    if not fetch or not wf.url:
        raise WeightsNotFound(f"weights {wf.filename} are not on this machine; {_fix_hint(wf, settings)}")
    p = download(wf, weights_cache(settings) / wf.filename, settings=settings)
    return p, sha256_file(p)


def pull(wf: WeightsFile, settings: Settings) -> Path:
    """Copy or download ``wf`` into the cache, verified; the cached path."""
    dest = weights_cache(settings) / wf.filename
    found = locate(wf, settings)
    if found is not None and found[1] != dest:
        check_hash(found[1], wf)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(found[1], tmp)
        os.replace(tmp, dest)
        return dest
    p, _ = resolve(wf, settings)
    return p


def load_state_dict(path: Path) -> dict:
    """``torch.load`` with ``weights_only=True``: a pickle with code in it is refused."""
    import torch

    from emo.models.safe_load import no_pickled_code

    try:
        with no_pickled_code():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - untrusted bytes break the unpickler in any way (IndexError, KeyError, ...)
        from emo.errors import ModelError

        raise ModelError(f"{path}: not a safe weights file ({type(e).__name__}: {str(e)[:200]})") from None
