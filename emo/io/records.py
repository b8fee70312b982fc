"""Turn command-line arguments and stdin into :class:`Item` objects, one per input, in order.

Input forms (docs/architecture.md, "The contract"): paths as arguments (folders walked with ``-r``), or stdin
lines where a line starting with ``{`` is a JSON object with at least ``"path"`` and any other
line is a path; ``-0`` reads NUL-separated paths. A line that cannot be read becomes an
:class:`Item` with its error set, so the output keeps one line per input, in order.

A file name that is not UTF-8 is written in ``"path"`` readably (U+FFFD for the bytes that are
not) and exactly in ``"path_bytes"`` (base64 of its bytes); a record carrying ``"path_bytes"``
opens exactly that file. :func:`record_name` is the one reading of which file a record names.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from emo.config import KEY_ERROR, KEY_FEATURES, KEY_PATH, KEY_PATH_BYTES, PICTURE_KEYS
from emo.errors import InputError, UsageError, os_error_kind, os_error_message

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
        # A message may quote a name that is not UTF-8, which JSON cannot hold as it is.
        self.error = InputError(kind, shown(message))
        self.record[KEY_ERROR] = self.error.as_dict()
        self.views.clear()

    @property
    def ok(self) -> bool:
        return self.error is None

    def error_line(self, suffix: str = "") -> str:
        """The one stderr line that reports this bad input: ``emo: NAME: KIND: MESSAGE``, with
        the control characters a name or message may hold escaped (:func:`one_line`)."""
        assert self.error is not None
        return one_line(f"emo: {self.label}: {self.error.kind}: {self.error.message}{suffix}")

    @property
    def label(self) -> str:
        """How this input is named in messages: its exact name, bytes that are not UTF-8 as
        ``\\xNN``, so two names that read alike in ``path`` are told apart on stderr too."""
        name = record_name(self.record)
        if name is None:
            p = self.record.get(KEY_PATH)
            return p if isinstance(p, str) and p else f"<input {self.index + 1}>"
        return shown(name)


def _resolve(path: str, root: Path | None) -> Path:
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and root is not None:
        p = root / p
    return p


def _exists(p: Path) -> bool:
    """``p.exists()`` that answers False where the system refuses the lookup (too long, NUL...)."""
    try:
        os.stat(p)
    except (OSError, ValueError):
        return False
    return True


def _dir_or_error(p: Path) -> tuple[bool, InputError | None]:
    """Whether ``p`` is a folder, or the error its lookup raised (a missing path is no error
    here: the decoder names it, with the other file errors)."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return False, None
    except (OSError, ValueError) as e:
        return False, InputError(os_error_kind(e), os_error_message(e))
    return stat.S_ISDIR(st.st_mode), None


# Longest path Linux accepts (PATH_MAX); a longer plain line cannot name a file.
MAX_PATH_BYTES = 4096
# Longest stdin line kept: a JSON record with every feature group is well under 1 MB, so a line
# past this is junk (or an attack on memory) and becomes a ``bad_line`` without being gathered.
MAX_LINE_BYTES = 64 << 20
# JSON nested deeper than this cannot be written back (orjson's writer stops at 255 levels).
MAX_JSON_DEPTH = 200
UTF8_BOM = b"\xef\xbb\xbf"


# Longest base64 text of a name of MAX_PATH_BYTES bytes: longer text is refused before decoding.
_MAX_PATH_B64 = 4 * ((MAX_PATH_BYTES + 2) // 3)


# Characters that would break a stderr line or steer the terminal showing it: C0 (newline,
# carriage return, ESC), DEL, C1, and the separators str.splitlines() breaks at.
_ONE_LINE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_ONE_LINE.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def counted(n: int, noun: str, plural: str = "") -> str:
    """``n`` with ``noun`` in the number it takes: ``1 input``, ``2 inputs``, ``0 inputs``."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def one_line(text: str) -> str:
    """``text`` as one line for a terminal: a file named ``a<newline>b.jpg`` is shown ``a\\nb.jpg``."""
    return text.translate(_ONE_LINE)


def printable(name: str) -> str:
    """``name`` as valid UTF-8 text for records and messages: bytes of a file name that are not
    UTF-8 (Python's surrogate escapes) become U+FFFD, so two such names may read alike."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate no file name holds (a Python caller's string)
        return name.encode("utf-8", "replace").decode("utf-8")


def shown(text: str) -> str:
    """``text`` for people (messages, stderr): bytes of a file name that are not UTF-8 (surrogate
    escapes) are written ``\\xNN``, so names that :func:`printable` makes alike stay apart."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name holds (a Python caller's string)
        return printable(text)


def name_fields(name: str) -> dict[str, str]:
    """The record fields that name the file ``name`` (as Python spells file names, surrogate
    escapes for bytes that are not UTF-8): ``path``, readable, and for a name that is not UTF-8
    also ``path_bytes``, the base64 (standard alphabet) of its exact bytes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return {KEY_PATH: printable(name)}  # not a name the system could hold either
        return {KEY_PATH: printable(name), KEY_PATH_BYTES: base64.b64encode(raw).decode("ascii")}
    return {KEY_PATH: name}


def name_from_path_bytes(value: Any) -> str:
    """The file name a ``path_bytes`` value holds, as Python spells file names (surrogate escapes
    for bytes that are not UTF-8); raises ``ValueError`` saying why it holds none."""
    if not isinstance(value, str):
        raise ValueError("is not a string")
    if len(value) > _MAX_PATH_B64:
        raise ValueError(f"names more than {MAX_PATH_BYTES} bytes, too long for a path")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 (standard alphabet, padded)") from None
    # One spelling per name, so records that name the same file carry the same text.
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("is not base64 (standard alphabet, padded)")
    if not raw:
        raise ValueError("is empty")
    if b"\0" in raw:
        raise ValueError("holds a NUL byte, which no file name can")
    if len(raw) > MAX_PATH_BYTES:
        raise ValueError(f"names more than {MAX_PATH_BYTES} bytes, too long for a path")
    return raw.decode("utf-8", "surrogateescape")


def record_name(record: Mapping[str, Any]) -> str | None:
    """The exact name of the file a record names, as Python spells file names: its ``path_bytes``
    when it carries one (null counts as none), else its string ``path``. None when it names no
    file (an empty ``path`` names none either), or its ``path_bytes`` is invalid (such an input
    is a ``bad_record``)."""
    if record.get(KEY_PATH_BYTES) is not None:
        try:
            return name_from_path_bytes(record[KEY_PATH_BYTES])
        except ValueError:
            return None
    path = record.get(KEY_PATH)
    return path if isinstance(path, str) and path else None


def _preview(raw: bytes, limit: int = 80) -> str:
    text = raw[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(raw) > limit else "")


def _bad(index: int, kind: str, message: str) -> Item:
    item = Item(index, {"line": index + 1})
    item.fail(kind, message)
    return item


def _too_deep(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``obj`` nests dicts and lists more than ``limit`` levels (walked without recursion)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values() if isinstance(v, (dict, list)))
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o if isinstance(v, (dict, list)))
    return False


def _repeats_path(raw: bytes, key: str = KEY_PATH) -> bool:
    """Whether the top-level object names ``key`` twice (JSON keeps the last one silently)."""
    import json

    seen = 0

    def pairs(kv: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen
        seen = max(seen, sum(1 for k, _ in kv if k == key))
        return dict(kv)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return False
    return seen > 1


def item_from_line(index: int, raw: bytes, root: Path | None) -> Item:
    """Parse one stdin line (without its terminator) into an :class:`Item`."""
    if len(raw) > MAX_LINE_BYTES:
        return _bad(index, "bad_line", f"line {index + 1} is over {MAX_LINE_BYTES >> 20} MiB: {_preview(raw)}")
    stripped = raw.strip()
    if stripped.startswith(b"{"):
        try:
            obj = orjson.loads(stripped)
        except orjson.JSONDecodeError as e:
            return _bad(index, "bad_line", f"line {index + 1} is not valid JSON ({e}): {_preview(raw)}")
        if not isinstance(obj, dict):
            return _bad(index, "bad_record", f"line {index + 1} is not a JSON object")
        if stripped.count(b"{") + stripped.count(b"[") > MAX_JSON_DEPTH and _too_deep(obj):
            return _bad(index, "bad_record", f"line {index + 1} nests JSON deeper than {MAX_JSON_DEPTH} levels")
        for key in (KEY_PATH, KEY_PATH_BYTES):
            if stripped.count(b'"%s"' % key.encode()) > 1 and _repeats_path(stripped, key):
                return _bad(index, "bad_record", f'line {index + 1} gives "{key}" more than once')
        return item_from_record(index, obj, root)
    if len(raw) > MAX_PATH_BYTES:
        return _bad(index, "bad_line", f"line {index + 1} is {len(raw)} bytes, too long for a path: {_preview(raw)}")
    text = raw.decode("utf-8", errors="surrogateescape")  # round-trips any bytes to a real file name
    if stripped[:1] in (b"[", b'"') and not _exists(_resolve(text, root)):
        try:
            orjson.loads(stripped)
        except orjson.JSONDecodeError:
            pass  # not JSON: an ordinary (missing) path
        else:
            return _bad(index, "bad_record", f'line {index + 1} is JSON but not an object with a "path": {_preview(raw)}')
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        p = _resolve(text, root)
        if _exists(p):
            return Item(index, name_fields(text), path=p)
        return _bad(index, "bad_line", f"line {index + 1} is not valid UTF-8: {_preview(raw)}")
    return Item(index, {KEY_PATH: text}, path=_resolve(text, root))


def item_from_record(index: int, obj: dict[str, Any], root: Path | None) -> Item:
    """An :class:`Item` from a JSON object; precomputed ``features`` are taken as they are.

    Every value under ``features`` is taken, lists or not: a group the run uses is checked
    (:mod:`emo.stages.carried_check`), so a value that is no list of numbers becomes that record's
    ``bad_features`` error rather than being recomputed over; the others are never read.
    """
    item = Item(index, obj)
    obj.pop(KEY_ERROR, None)  # an upstream error is re-derived here, never silently inherited
    feats = obj.get(KEY_FEATURES)
    if isinstance(feats, dict):
        item.features.update(feats)
    if obj.get(KEY_PATH_BYTES) is not None:  # the exact name wins over the readable one
        try:
            name = name_from_path_bytes(obj[KEY_PATH_BYTES])
        except ValueError as e:
            item.fail("bad_record", f'record {index + 1}: "{KEY_PATH_BYTES}" {e}')
            return item
        obj.setdefault(KEY_PATH, printable(name))
        item.path = _resolve(name, root)
        return item
    path = obj.get(KEY_PATH)
    if path is None:
        if item.features:
            return item  # features alone are enough for stages that need no pixels
        item.fail("bad_record", f'record {index + 1} has no "path"')
    elif not isinstance(path, str):
        item.fail("bad_record", f'record {index + 1}: "path" is not a string')
    elif not path:  # Path("") is the working folder: it would be read as a directory
        item.fail("bad_path", f'record {index + 1}: "path" is empty')
    else:
        item.path = _resolve(path, root)
    return item


class LongPiece(bytes):
    """A piece cut off at the line limit: its first bytes (for the message); the rest was skipped."""

    total = 0


def split_pieces(stream: IO[bytes], sep: bytes, chunk: int = 1 << 16, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """Yield ``sep``-terminated pieces of a binary stream, without the separator.

    A long piece is gathered chunk by chunk and joined once, so a 10 MB line costs 10 MB; past
    ``limit`` bytes the rest of it is skipped unread-into-memory and a :class:`LongPiece` says so.
    """
    pending: list[bytes] = []  # chunks of a piece whose separator has not come yet
    size = 0  # bytes of the pending piece, counted past the limit too
    def piece() -> bytes:
        if size <= limit:
            return b"".join(pending)
        out = LongPiece(b"".join(pending)[:80])
        out.total = size
        return out

    while True:
        data = stream.read1(chunk) if hasattr(stream, "read1") else stream.read(chunk)
        if not data:
            break
        if sep not in data:
            size += len(data)
            if size <= limit:
                pending.append(data)
            continue
        first, *parts, rest = data.split(sep)
        size += len(first)
        if size <= limit:
            pending.append(first)
        yield piece()
        yield from parts
        pending, size = ([rest], len(rest)) if rest else ([], 0)
    if pending or size:
        yield piece()


def _stdin_pieces(stdin: IO[bytes], sep: bytes) -> Iterator[bytes]:
    """:func:`split_pieces` of stdin; a stdin that cannot be read (a folder, an I/O error) is a
    :class:`UsageError` for the run, after the inputs read before it."""
    try:
        yield from split_pieces(stdin, sep)
    except OSError as e:
        raise UsageError(f"cannot read stdin: {e.strerror or e}") from None


def walk(folder: Path, errors: list[tuple[Path, OSError]] | None = None) -> Iterator[Path]:
    """Image files under ``folder``, sorted, not following symlinked folders (no loops).

    A folder that cannot be listed is added to ``errors`` (when given) as the walk reaches it.
    """
    def failed(e: OSError) -> None:
        if errors is not None:
            errors.append((Path(e.filename) if e.filename else folder, e))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=failed):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


def _walk_items(folder: Path, index: int, carried: Mapping[str, Any] | None = None) -> Iterator[Item]:
    """One :class:`Item` per image under ``folder`` and one error item per folder that cannot
    be listed, in walk order, numbered from ``index``; a folder that gives none of these is one
    ``no_images`` item, so the input that named it still has its record.

    ``carried``: the other fields of the JSON record that named the folder, given to every item.
    """
    carried = carried or {}
    errors: list[tuple[Path, OSError]] = []
    start = index
    for f in walk(folder, errors):
        while errors:
            yield _folder_error(index, *errors.pop(0), carried)
            index += 1
        yield Item(index, _with(name_fields(str(f)), carried), path=f)
        index += 1
    for folder_path, e in errors:
        yield _folder_error(index, folder_path, e, carried)
        index += 1
    if index == start:
        item = Item(index, _with(name_fields(str(folder)), carried), path=folder)
        kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
        item.fail("no_images", f"no image files in this folder or below it (names ending in {kinds})")
        yield item


def _with(fields: dict[str, Any], carried: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` (the name) first, then the carried fields it does not already hold."""
    for k, v in carried.items():
        fields.setdefault(k, v)
    return fields


def _folder_error(index: int, folder: Path, e: OSError, carried: Mapping[str, Any]) -> Item:
    item = Item(index, _with(name_fields(str(folder)), carried), path=folder)
    item.fail(os_error_kind(e), f"cannot list folder: {os_error_message(e)}")
    return item


def _path_item(index: int, text: str, root: Path | None, recursive: bool) -> Iterator[Item]:
    """The item(s) of one path: a folder's images with ``-r``, else the path itself."""
    p = _resolve(text, root)
    if recursive:
        is_dir, err = _dir_or_error(p)
        if err is not None:
            item = Item(index, name_fields(text), path=p)
            item.fail(err.kind, err.message)
            yield item
            return
        if is_dir:
            yield from _walk_items(p, index)
            return
    yield Item(index, name_fields(text), path=p)


def read_inputs(
    args: Iterable[str],
    stdin: IO[bytes] | None,
    *,
    null: bool = False,
    recursive: bool = False,
    root: Path | None = None,
) -> Iterator[Item]:
    """Every input as an :class:`Item`, numbered in order: arguments first, else stdin.

    No path operation raises out of here: a path the system refuses (too long, a loop, a folder
    that cannot be listed) becomes that input's error record, and the inputs after it go on.
    """
    index = 0
    args = list(args)
    if args:
        for arg in args:
            for item in _path_item(index, arg, root, recursive):
                yield item
                index = item.index + 1
        return
    if stdin is None:
        return
    sep = b"\0" if null else b"\n"
    first = True
    for raw in _stdin_pieces(stdin, sep):
        if first:
            first = False
            if raw.startswith(UTF8_BOM):  # editors on Windows start files with one
                raw = raw[len(UTF8_BOM):] if not isinstance(raw, LongPiece) else raw
        if isinstance(raw, LongPiece):
            yield _bad(index, "bad_line", f"line {index + 1} is over {MAX_LINE_BYTES >> 20} MiB ({raw.total} bytes): {_preview(raw)}")
            index += 1
            continue
        if not null:
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue  # blank lines carry no input
        elif not raw:
            continue
        if null:
            if len(raw) > MAX_PATH_BYTES:
                yield _bad(index, "bad_line", f"input {index + 1} is {len(raw)} bytes, too long for a path: {_preview(raw)}")
                index += 1
                continue
            text = raw.decode("utf-8", errors="surrogateescape")
            items: Iterable[Item] = _path_item(index, text, root, recursive)
        else:
            item = item_from_line(index, raw, root)
            if recursive and item.ok and item.path is not None:
                is_dir, err = _dir_or_error(item.path)
                if err is not None:
                    item.fail(err.kind, err.message)
                elif is_dir and (clash := [k for k in PICTURE_KEYS if k in item.record]):
                    item.fail("bad_record", f'a record naming a folder (-r) cannot carry "{clash[0]}": '
                              "it describes one picture, not every picture in the folder")
                elif is_dir:
                    carried = {k: v for k, v in item.record.items() if k not in (KEY_PATH, KEY_PATH_BYTES)}
                    items = _walk_items(item.path, index, carried)
                    for it in items:
                        yield it
                        index = it.index + 1
                    continue
            items = (item,)
        for it in items:
            yield it
            index = it.index + 1
