"""Decode one image file into the pixel views the pipeline's stages ask for.

Every bad file becomes an :class:`emo.errors.InputError` with a kind from
:data:`emo.errors.ERROR_KINDS`; nothing else escapes. Decoding runs on worker threads (Pillow
releases the GIL while it decodes and resizes).
"""

from __future__ import annotations

import errno
import math
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from emo.errors import InputError, os_error_kind, os_error_message

# The pixel limit is ours to enforce (per call); Pillow's global check would only warn below 2x.
Image.MAX_IMAGE_PIXELS = None
warnings.simplefilter("ignore", Image.DecompressionBombWarning)
# A cut file must be an error, never a picture padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow inflates a PNG's ICC profile under its text-chunk limit (1 MiB): printers' and cameras'
# profiles of a few MiB would make a good picture unreadable. Still bounded, per chunk and in all.
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, 16 << 20)

# JPEG headers (everything before the first scan) past these sizes are junk, not a picture: Pillow
# would step through such junk one byte per call (about 3 s for 16 MiB), so they are refused first.
JPEG_MAX_HEADER_BYTES = 64 << 20
JPEG_MAX_JUNK_BYTES = 1 << 16
JPEG_MAX_SEGMENTS = 1 << 16


# Bytes Pillow may read to parse a file's headers, and beyond a picture's raw size to decode it.
# Pillow parses chunks (PNG), blocks (GIF) and tags in Python, a few microseconds each, so a file
# of nothing but empty chunks would take minutes; real headers are far under these.
HEADER_BUDGET = 4 << 20
LOAD_SLACK = 4 << 20


# Pillow readers that hand the file to another program: EPS goes to Ghostscript, a PostScript
# interpreter, so opening one would run the program the file holds.
_RUNS_PROGRAMS = frozenset({"EPS"})
_FORMATS: tuple[str, ...] | None = None


def readable_formats() -> tuple[str, ...]:
    """The Pillow formats emo opens: every reader Pillow has, less those that run another program."""
    global _FORMATS
    if _FORMATS is None:
        Image.init()
        _FORMATS = tuple(f for f in Image.OPEN if f not in _RUNS_PROGRAMS)
    return _FORMATS


def open_image(fp: str | Path | BinaryIO) -> Image.Image:
    """``Image.open`` restricted to :func:`readable_formats`: a PostScript file, whatever its name,
    is an :class:`UnidentifiedImageError` rather than a program for Ghostscript."""
    return Image.open(fp, formats=readable_formats())


class _OverBudget(Exception):
    """Raised by :class:`_Budget`; not an OSError, so no Pillow plugin mistakes it for a cut file."""


class _Budget:
    """A read-only binary file that refuses to give more than ``limit`` bytes in all."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self.f = f
        self.limit = limit
        self.used = 0

    def _count(self, data: bytes) -> bytes:
        self.used += len(data)
        if self.used > self.limit:
            raise _OverBudget(f"more bytes than any picture of its size needs (over {self.limit >> 20} MiB read)")
        return data

    def read(self, n: int | None = -1) -> bytes:
        left = self.limit - self.used + 1  # one past the limit is enough to know it is crossed
        return self._count(self.f.read(left if n is None or n < 0 else min(n, left)))

    def readline(self, n: int | None = -1) -> bytes:
        left = self.limit - self.used + 1
        return self._count(self.f.readline(left if n is None or n < 0 else min(n, left)))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def default_max_bytes() -> int:
    """``EMO_MAX_BYTES`` or the default (read once per process; 0 means no limit)."""
    global _MAX_BYTES
    if _MAX_BYTES is None:
        from emo.config import DEFAULTS, ENV_PREFIX

        raw = os.environ.get(ENV_PREFIX + "MAX_BYTES", "")
        try:
            _MAX_BYTES = max(0, int(raw)) if raw else DEFAULTS.max_bytes
        except ValueError:
            _MAX_BYTES = DEFAULTS.max_bytes  # the command line reports the bad value at start
    return _MAX_BYTES


_MAX_BYTES: int | None = None


@dataclass(frozen=True)
class View:
    """A square uint8 view of an image, ``(size, size, 3)``.

    ``mode="crop"``: resize the shorter side to ``resize`` then take the centre ``size`` square
    (torchvision's eval transform). ``mode="squash"``: resize to ``size`` x ``size`` ignoring
    the aspect ratio (hand-crafted features that want the whole picture). ``mode="fit"``: the
    whole picture with its aspect kept, the longer side resized to ``size``, laid at the top-left
    of a ``size`` x ``size`` canvas of the ImageNet mean colour (regions, whose boxes map back to
    the original by :func:`fit_size` alone).
    """

    size: int
    resize: int = 0
    mode: str = "crop"

    def draft_side(self) -> int:
        """Shorter side the decoder must deliver for this view to lose nothing."""
        return (self.resize or self.size) if self.mode == "crop" else self.size


@dataclass(frozen=True)
class Decoded:
    """Result of :func:`decode`: upright original size and one array per requested view."""

    size: tuple[int, int]
    views: dict[View, np.ndarray]


def _path_error_message(e: OSError | ValueError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, OSError) and e.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return os_error_message(e)


def _check_file(path: Path, max_bytes: int = 0) -> int:
    """Stat before opening, so a FIFO never blocks a worker and each OS error gets its kind;
    a file over ``max_bytes`` (0: no limit) is ``too_large`` before a byte of it is read."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte inside a JSON "path"
        raise InputError(os_error_kind(e), _path_error_message(e)) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is_directory", "is a directory (use -r to walk folders)")
    if not stat.S_ISREG(st.st_mode):
        raise InputError("not_a_file", "not a regular file")
    if st.st_size == 0:
        raise InputError("empty_file", "file is empty (0 bytes)")
    if max_bytes and st.st_size > max_bytes:
        raise InputError("too_large", f"file is {st.st_size} bytes, over the limit of {max_bytes} (--max-bytes)")
    return st.st_size


def _check_jpeg_headers(path: Path) -> None:
    """Walk a JPEG's markers up to its first scan, fast; junk where markers belong is refused.

    Files that do not start like a JPEG pass untouched. Raises :class:`InputError`
    (``not_an_image``) for headers Pillow would otherwise crawl through for minutes.
    """
    try:
        f = open(path, "rb")
    except OSError:
        return  # the open that follows names the error
    with f:
        if f.read(2) != b"\xff\xd8":
            return
        junk = segments = 0
        while True:
            if f.tell() > JPEG_MAX_HEADER_BYTES or segments > JPEG_MAX_SEGMENTS:
                raise InputError("not_an_image", "JPEG headers go on past any real picture's")
            b = f.read(1)
            if not b:
                return  # cut inside the headers: Pillow names it
            if b != b"\xff":
                junk += 1
                while True:  # skip to the next marker in blocks, as Pillow would byte by byte
                    block = f.read(1 << 16)
                    if not block:
                        return
                    at = block.find(b"\xff")
                    if at >= 0:
                        junk += at
                        f.seek(at - len(block), 1)
                        break
                    junk += len(block)
                    if junk > JPEG_MAX_JUNK_BYTES:
                        raise InputError("not_an_image", f"JPEG headers hold over {JPEG_MAX_JUNK_BYTES} bytes of junk")
                if junk > JPEG_MAX_JUNK_BYTES:
                    raise InputError("not_an_image", f"JPEG headers hold over {JPEG_MAX_JUNK_BYTES} bytes of junk")
                continue
            m = f.read(1)
            while m == b"\xff":  # fill bytes
                m = f.read(1)
            if not m or m == b"\xda":  # cut short, or the first scan: headers are done
                return
            segments += 1
            if m in (b"\x00", b"\x01", b"\xd8", b"\xd9") or b"\xd0" <= m <= b"\xd7":
                continue  # markers without a length
            size = f.read(2)
            if len(size) < 2:
                return
            f.seek(max(0, int.from_bytes(size, "big") - 2), 1)


# Leading bytes of the formats emo meets most: a file that starts like one but that Pillow
# cannot identify was cut short, not some other kind of file.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")


def _file_head(path: Path) -> tuple[bytes, int]:
    """The first 12 bytes of ``path`` (enough for any signature below) and its size; empty on error."""
    try:
        with open(path, "rb") as f:
            return f.read(12), os.fstat(f.fileno()).st_size
    except OSError:
        return b"", 0


def _has_image_signature(path: Path) -> bool:
    head, _ = _file_head(path)
    webp = head.startswith(b"RIFF") and head[8:12] == b"WEBP"
    return webp or any(head.startswith(sig) for sig in _SIGNATURES)


def _riff_cut_short(path: Path) -> bool:
    """A RIFF file (WebP) shorter than the size its own header gives: its end is missing."""
    head, size = _file_head(path)
    return len(head) == 12 and head.startswith(b"RIFF") and size < 8 + int.from_bytes(head[4:8], "little")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is laid on white, 16-bit scaled not clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img).astype(np.float32)  # float32, not 64: a 89 MP scan stays ~360 MB
        top = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a *= 255.0 / top
        a += 0.5
        a = np.clip(a, 0, 255, out=a).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


# Padding of ``fit`` views: the ImageNet mean, which normalises to about zero.
FIT_FILL = (124, 116, 104)


def fit_size(w: int, h: int, size: int) -> tuple[int, int]:
    """``(width, height)`` of a ``w`` x ``h`` picture inside a ``fit`` view of ``size``."""
    scale = size / max(w, h)
    return min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))


def _view(img: Image.Image, v: View, upright: tuple[int, int] | None = None) -> np.ndarray:
    w, h = img.size
    if v.mode == "squash":
        out = img.resize((v.size, v.size), Image.BILINEAR)
    elif v.mode == "fit":
        # Sized from the upright original, not the drafted decode, so boxes map back exactly.
        nw, nh = fit_size(*(upright or (w, h)), v.size)
        out = Image.new("RGB", (v.size, v.size), FIT_FILL)
        out.paste(img.resize((nw, nh), Image.BILINEAR), (0, 0))
    else:
        side = v.resize or v.size
        scale = side / min(w, h)
        nw, nh = max(v.size, round(w * scale)), max(v.size, round(h * scale))
        left, top = (nw - v.size) // 2, (nh - v.size) // 2
        # Resize only the source box the centre crop covers: a 20000 x 20 strip would otherwise
        # be blown up to 256000 x 256 first (same pixels as resize-then-crop, within 1 level).
        sx, sy = w / nw, h / nh
        box = (left * sx, top * sy, (left + v.size) * sx, (top + v.size) * sy)
        out = img.resize((v.size, v.size), Image.BILINEAR, box=box)
    return np.asarray(out, dtype=np.uint8)


def decode(path: Path, views: tuple[View, ...], max_pixels: int, max_bytes: int | None = None) -> Decoded:
    """Open ``path``, apply EXIF orientation, and return the requested views.

    Raises :class:`InputError` for every kind of bad file; ``max_pixels`` (width x height,
    0 for no limit) turns a decompression bomb into ``too_large`` before any pixel is decoded,
    and ``max_bytes`` (default :func:`default_max_bytes`, 0 for no limit) a huge file before
    any byte is read.
    """
    _check_file(path, default_max_bytes() if max_bytes is None else max_bytes)
    _check_jpeg_headers(path)
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # another library in this process may have set it
    try:
        f = open(path, "rb")
    except FileNotFoundError:  # deleted between the listing (or the stat) and the open
        raise InputError("not_found", "no such file") from None
    except PermissionError:
        raise InputError("permission_denied", "permission denied") from None
    except OSError as e:
        raise InputError("read_error", e.strerror or str(e)) from None
    with f:
        budget = _Budget(f, HEADER_BUDGET)
        try:
            return _decode_open(path, budget, views, max_pixels)
        except _OverBudget as e:
            raise InputError("not_an_image", str(e)) from None


def _decode_open(path: Path, budget: _Budget, views: tuple[View, ...], max_pixels: int) -> Decoded:
    try:
        img = open_image(budget)
    except UnidentifiedImageError:
        if _has_image_signature(path):
            # A RIFF (WebP) header gives the file's size, so there a whole file is known to be corrupt.
            whole = _file_head(path)[0].startswith(b"RIFF") and not _riff_cut_short(path)
            why = "its headers are corrupt" if whole else "image data ends inside its headers, or they are corrupt"
            raise InputError("truncated", why) from None
        raise InputError("not_an_image", "not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise InputError("too_large", str(e)) from None
    except FileNotFoundError:  # deleted between the listing (or the stat) and the open
        raise InputError("not_found", "no such file") from None
    except PermissionError:
        raise InputError("permission_denied", "permission denied") from None
    except OSError as e:
        # Pillow reads the headers on open: a file cut inside them is truncated, not unreadable
        # (WebP's decoder says only that it could not start: the RIFF size tells).
        kind = "truncated" if "truncat" in str(e).lower() or _riff_cut_short(path) else "read_error"
        raise InputError(kind, e.strerror or str(e)) from None
    with img:
        w, h = img.size
        if max_pixels and w * h > max_pixels:
            raise InputError("too_large", f"{w}x{h} = {w * h} pixels is over the limit of {max_pixels}")
        if w == 0 or h == 0:
            raise InputError("not_an_image", "image has no pixels")
        # Pixel data worth reading is bounded by the picture's size; junk past that is not read.
        budget.limit = budget.used + 8 * w * h * max(1, len(img.getbands())) + LOAD_SLACK
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:  # a broken EXIF block should not cost the picture
            orientation = 1
        upright = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
        need = max((v.draft_side() for v in views), default=0)
        if need and img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK", "YCbCr"):
            # Decode at a reduced DCT scale, never below what the largest view needs.
            scale = need / min(w, h)
            if scale < 1:
                img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))
        try:
            img.load()
            img = ImageOps.exif_transpose(img) if orientation != 1 else img
            rgb = _to_rgb(img)
        except Image.DecompressionBombError as e:
            raise InputError("too_large", str(e)) from None
        except (OSError, SyntaxError, ValueError, IndexError, struct.error) as e:
            msg = str(e) or type(e).__name__
            kind = "truncated" if "truncat" in msg.lower() or isinstance(e, (OSError, SyntaxError)) else "read_error"
            raise InputError(kind, f"cannot decode image: {msg}") from None
        return Decoded(upright, {v: _view(rgb, v, upright) for v in views})



def from_pixels(image: np.ndarray | Image.Image, views: tuple[View, ...]) -> Decoded:
    """The requested views of a picture already in memory, taken as upright.

    ``image``: a Pillow image of any mode, or a uint8 array ``(H, W, 3)`` RGB or ``(H, W)`` gray.
    Raises :class:`InputError` (``not_an_image``) for anything else.
    """
    if not isinstance(image, Image.Image):
        a = np.asarray(image)
        if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or 0 in a.shape:
            raise InputError("not_an_image", f"array of shape {a.shape} and type {a.dtype} is not (H, W, 3) uint8")
        image = Image.fromarray(np.ascontiguousarray(a))
    rgb = _to_rgb(image)
    return Decoded(rgb.size, {v: _view(rgb, v, rgb.size) for v in views})
