"""Turn command-line arguments and stdin into :class:`Item` objects, one per input, in order.

Input forms (docs/architecture.md, "The contract"): paths as arguments (folders walked with ``-r``), or stdin
lines where a line starting with ``{`` is a JSON object with at least ``"path"`` and any other
line is a path; ``-0`` reads NUL-separated paths. A line that cannot be read becomes an
:class:`Item` with its error set, so the output keeps one line per input, in order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from emo.config import KEY_ERROR, KEY_FEATURES, KEY_PATH
from emo.errors import InputError

# Extensions taken when a folder is walked with -r; explicit paths are tried whatever their name.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".jfif"}
)


@dataclass
class Item:
    """One input on its way through the pipeline.

    ``record`` is what will be written (input fields untouched, results added); ``features``
    holds arrays by group name, from the input record or computed by a stage; ``views`` holds
    decoded pixels by :class:`emo.io.decode.View`, dropped once the batch is done.
    """

    index: int
    record: dict[str, Any]
    path: Path | None = None
    error: InputError | None = None
    size: tuple[int, int] | None = None  # (width, height) of the upright original
    views: dict[Any, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)  # stage-to-stage values not written

    def fail(self, kind: str, message: str) -> None:
        """Mark this input bad; its record gets ``error`` and later stages skip it."""
        self.error = InputError(kind, message)
        self.record[KEY_ERROR] = self.error.as_dict()
        self.views.clear()

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        """How this input is named in messages."""
        p = self.record.get(KEY_PATH)
        return p if isinstance(p, str) else f"<input {self.index + 1}>"


def _resolve(path: str, root: Path | None) -> Path:
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and root is not None:
        p = root / p
    return p


# Longest path Linux accepts (PATH_MAX); a longer plain line cannot name a file.
MAX_PATH_BYTES = 4096


def _printable(path: str) -> str:
    """A path for the record: bytes that are not UTF-8 (surrogate escapes) become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _preview(raw: bytes, limit: int = 80) -> str:
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > limit else "")


def item_from_line(index: int, raw: bytes, root: Path | None) -> Item:
    """Parse one stdin line (without its terminator) into an :class:`Item`."""
    stripped = raw.strip()
    if stripped.startswith(b"{"):
        try:
            obj = orjson.loads(stripped)
        except orjson.JSONDecodeError as e:
            item = Item(index, {"line": index + 1})
            item.fail("bad_line", f"line {index + 1} is not valid JSON ({e}): {_preview(raw)}")
            return item
        if not isinstance(obj, dict):
            item = Item(index, {"line": index + 1})
            item.fail("bad_record", f"line {index + 1} is not a JSON object")
            return item
        return item_from_record(index, obj, root)
    if len(raw) > MAX_PATH_BYTES:
        item = Item(index, {"line": index + 1})
        item.fail("bad_line", f"line {index + 1} is {len(raw)} bytes, too long for a path: {_preview(raw)}")
        return item
    if stripped[:1] in (b"[", b'"') and not _resolve(raw.decode("utf-8", "surrogateescape"), root).exists():
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass  # not JSON: an ordinary (missing) path
        else:
            item = Item(index, {"line": index + 1})
            item.fail("bad_record", f'line {index + 1} is JSON but not an object with a "path": {_preview(raw)}')
            return item
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Keep the bytes recoverable: surrogateescape round-trips them to a real file name.
        text = raw.decode("utf-8", errors="surrogateescape")
        p = _resolve(text, root)
        if p.exists():
            return Item(index, {KEY_PATH: raw.decode("utf-8", errors="replace")}, path=p)
        item = Item(index, {"line": index + 1})
        item.fail("bad_line", f"line {index + 1} is not valid UTF-8: {_preview(raw)}")
        return item
    return Item(index, {KEY_PATH: text}, path=_resolve(text, root))


def item_from_record(index: int, obj: dict[str, Any], root: Path | None) -> Item:
    """An :class:`Item` from a JSON object; precomputed ``features`` are taken as arrays."""
    item = Item(index, obj)
    obj.pop(KEY_ERROR, None)  # an upstream error is re-derived here, never silently inherited
    feats = obj.get(KEY_FEATURES)
    if isinstance(feats, dict):
        item.features.update({k: v for k, v in feats.items() if isinstance(v, list)})
    path = obj.get(KEY_PATH)
    if path is None:
        if item.features:
            return item  # features alone are enough for stages that need no pixels
        item.fail("bad_record", f'record {index + 1} has no "path"')
    elif not isinstance(path, str):
        item.fail("bad_record", f'record {index + 1}: "path" is not a string')
    else:
        item.path = _resolve(path, root)
    return item


def _split(stream: IO[bytes], sep: bytes, chunk: int = 1 << 16) -> Iterator[bytes]:
    """Yield ``sep``-terminated pieces of a binary stream, without the separator.

    A long piece is gathered chunk by chunk and joined once, so a 10 MB line costs 10 MB.
    """
    pending: list[bytes] = []  # chunks of a piece whose separator has not come yet
    while True:
        data = stream.read1(chunk) if hasattr(stream, "read1") else stream.read(chunk)
        if not data:
            break
        if sep not in data:
            pending.append(data)
            continue
        first, *parts, rest = data.split(sep)
        pending.append(first)
        yield b"".join(pending)
        yield from parts
        pending = [rest] if rest else []
    if pending:
        yield b"".join(pending)


def walk(folder: Path) -> Iterator[Path]:
    """Image files under ``folder``, sorted, not following symlinked folders (no loops)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


def read_inputs(
    args: Iterable[str],
    stdin: IO[bytes] | None,
    *,
    null: bool = False,
    recursive: bool = False,
    root: Path | None = None,
) -> Iterator[Item]:
    """Every input as an :class:`Item`, numbered in order: arguments first, else stdin."""
    index = 0
    args = list(args)
    if args:
        for arg in args:
            p = _resolve(arg, root)
            if recursive and p.is_dir():
                for f in walk(p):
                    yield Item(index, {KEY_PATH: _printable(str(f))}, path=f)
                    index += 1
                continue
            yield Item(index, {KEY_PATH: _printable(arg)}, path=p)
            index += 1
        return
    if stdin is None:
        return
    sep = b"\0" if null else b"\n"
    for raw in _split(stdin, sep):
        if not null:
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue  # blank lines carry no input
        elif not raw:
            continue
        if null:
            text = raw.decode("utf-8", errors="surrogateescape")
            item = Item(index, {KEY_PATH: raw.decode("utf-8", errors="replace")}, path=_resolve(text, root))
        else:
            item = item_from_line(index, raw, root)
        if recursive and item.ok and item.path is not None and item.path.is_dir():
            for f in walk(item.path):
                yield Item(index, {KEY_PATH: _printable(str(f))}, path=f)
                index += 1
            continue
        yield item
        index += 1
