"""``--draw DIR``: one JPEG per picture with its best regions drawn, so a person can read them.

The picture is scaled (large ones down to :data:`LONGEST` pixels, tiny ones up by a whole factor,
strips stretched across to :data:`THINNEST`) and framed by a margin. Each of the best ``k`` boxes
is drawn in its rank's colour with a caption ``rank score [label]``; the picture's emotion is the
title, bottom left. Captions never overlap each other or the title: each takes the first free
place outside its box (above or below it, left- or right-aligned, then beside it), else inside it
(at its top or bottom), else the nearest free row above or below it, else a row of a legend band
added under the picture.

Drawing names keep the source's identity (:func:`drawing_name`): the path relative to the run's
root with ``/`` turned into ``__``, plus ``.jpg``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from emo.io.decode import open_image

# Best region red, then orange, yellow, and the rest in a pale green.
# Written into every drawing as its JPEG comment: what lets a rerun tell emo's own drawing, which
# it may replace, from a file of the user's that happens to have the same name.
DRAWING_MARK = b"emo regions drawing"
MARK_WITHIN = 1 << 16  # the comment follows the JPEG's first headers, well inside this

COLOURS = [(230, 30, 30), (255, 140, 0), (250, 220, 0)]
REST = (120, 230, 120)
BACKGROUND = (40, 40, 40)
LONGEST = 1024  # drawings are scaled down to this longer side
SMALLEST = 480  # smaller pictures are enlarged by a whole factor towards this longer side
THINNEST = 48  # a thinner strip is stretched across to this, or its boxes would hide it
MIN_CANVAS = 320  # a thin strip still gets a canvas wide and high enough for its captions
PAD = 2  # pixels between a caption's text and the edge of its label
SEP = "__"  # stands for "/" in drawing names
NAME_BYTES = 200  # longer names are cut (file systems allow 255 bytes)
_CONTINUATION = bytes(range(0x80, 0xC0))  # UTF-8 bytes that never start a character


@dataclass(frozen=True)
class Rect:
    """A rectangle on the canvas, ``x1`` and ``y1`` exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    def overlaps(self, other: Rect) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass
class Layout:
    """Where everything of one drawing goes: canvas ``size``, the scaled picture's place ``picture``,
    each drawn region's ``boxes`` and ``captions`` (rectangles) and ``texts``, best first, the
    ``title`` rectangle, the box ``line`` width and the font."""

    size: tuple[int, int]
    picture: Rect
    boxes: list[Rect] = field(default_factory=list)
    captions: list[Rect] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    title: Rect | None = None
    line: int = 2
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None


def picture_size(width: int, height: int) -> tuple[int, int]:
    """Size of a ``width`` x ``height`` picture in its drawing: down to :data:`LONGEST`, tiny ones up
    by a whole factor, and a strip thinner than :data:`THINNEST` stretched across to it."""
    longest = max(width, height)
    if longest > LONGEST:
        scale = LONGEST / longest
    else:
        scale = max(1, SMALLEST // longest)  # whole factors keep enlarged pixels square and sharp
    return max(THINNEST, round(width * scale)), max(THINNEST, round(height * scale))


def caption_font(longest: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at a size that reads at a glance on a drawing of ``longest`` pixels."""
    size = max(12, min(22, round(longest / 48)))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()


def caption(rank: int, region: dict, title: str) -> str:
    """``1 0.97`` or ``1 0.97 dog``: the label is left out when it only repeats the title."""
    text = f"{rank + 1} {region['score']:.2f}"
    label = region.get("label")
    return f"{text} {label}" if label and label != title else text


# Letters that reach the highest and the lowest: every label is as high as this line.
_TALLEST = "Hgjpy|0"


def _text_size(font, text: str) -> tuple[int, int]:
    """Label size of ``text``: its width and the font's full line height, plus padding."""
    left, _, right, _ = font.getbbox(text)
    _, top, _, bottom = font.getbbox(_TALLEST)
    return right - min(0, left) + 2 * PAD, bottom - min(0, top) + 2 * PAD


def _write(pen: ImageDraw.ImageDraw, r: Rect, text: str, font, fill: tuple[int, int, int],
           ink: tuple[int, int, int]) -> None:
    """A filled label ``r`` with ``text`` inside it."""
    pen.rectangle((r.x0, r.y0, r.x1 - 1, r.y1 - 1), fill=fill)
    left = font.getbbox(text)[0]
    top = font.getbbox(_TALLEST)[1]
    pen.text((r.x0 + PAD - min(0, left), r.y0 + PAD - min(0, top)), text, fill=ink, font=font)


def _free(r: Rect, placed: list[Rect], width: int, height: int) -> bool:
    return r.x0 >= 0 and r.y0 >= 0 and r.x1 <= width and r.y1 <= height and not any(r.overlaps(p) for p in placed)


def _place(box: Rect, w: int, h: int, line: int, placed: list[Rect], width: int, height: int) -> Rect | None:
    """The first free spot for a ``w`` x ``h`` caption of ``box``, or None."""

    def at(x: int, y: int) -> Rect:
        x = max(0, min(x, width - w))  # slid sideways into the canvas
        return Rect(x, y, x + w, y + h)

    left, right = box.x0, box.x1 - w
    spots = [at(left, box.y0 - h), at(left, box.y1), at(right, box.y0 - h), at(right, box.y1),  # outside
             Rect(box.x1 + 1, box.y0, box.x1 + 1 + w, box.y0 + h), Rect(box.x0 - 1 - w, box.y0, box.x0 - 1, box.y0 + h),
             at(left + line, box.y0 + line), at(left + line, box.y1 - line - h),  # inside
             at(right - line, box.y0 + line), at(right - line, box.y1 - line - h)]
    for r in spots:
        if _free(r, placed, width, height):
            return r
    # Stacked: the nearest free row above the box, then below it.
    for step in range(1, height // h + 1):
        for y in (box.y0 - h - step * h, box.y1 + step * h):
            r = at(box.x0, y)
            if _free(r, placed, width, height):
                return r
    return None


def layout(size: tuple[int, int], regions: list[dict], k: int = 3, title: str = "") -> Layout:
    """The drawing of a ``size = (W, H)`` picture with its best ``k`` of ``regions`` (``box`` in its pixels).

    Captions that find no free place are stacked in a legend band under the picture, so no two
    captions, nor a caption and the title, ever overlap.
    """
    w, h = size
    pw, ph = picture_size(w, h)
    font = caption_font(max(pw, ph))
    line = max(2, round(max(pw, ph) / 300))
    text_h = _text_size(font, _TALLEST)[1]
    margin = text_h + line + 2
    width, height = max(pw + 2 * margin, MIN_CANVAS), max(ph + 2 * margin, MIN_CANVAS)
    ox, oy = (width - pw) // 2, (height - ph) // 2
    out = Layout((width, height), Rect(ox, oy, ox + pw, oy + ph), line=line, font=font)
    placed: list[Rect] = []
    if title:
        tw, th = _text_size(font, title)
        out.title = Rect(0, height - th, tw, height)
        placed.append(out.title)
    sx, sy = pw / w, ph / h
    legend: list[tuple[int, int, int]] = []  # (region number, caption w, h) without a place yet
    for rank, r in enumerate(regions[: max(0, k)]):
        x0, y0, x1, y1 = r["box"]
        box = Rect(ox + math.floor(x0 * sx), oy + math.floor(y0 * sy), ox + math.ceil(x1 * sx), oy + math.ceil(y1 * sy))
        text = caption(rank, r, title)
        cw, ch = _text_size(font, text)
        spot = _place(box, cw, ch, line, placed, width, height)
        out.boxes.append(box)
        out.texts.append(text)
        out.captions.append(spot or Rect(0, 0, 0, 0))
        if spot is None:
            legend.append((rank, cw, ch))
        else:
            placed.append(spot)
    y = height
    for rank, cw, ch in legend:  # a band under everything: rows there cannot meet anything else
        out.captions[rank] = Rect(0, y, cw, y + ch)
        y += ch
    out.size = (width, y)
    return out


def _ink(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black text on light labels, white on dark ones."""
    return (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140 else (255, 255, 255)


def _upright_size(im: Image.Image) -> tuple[int, int]:
    return (im.height, im.width) if im.getexif().get(0x0112, 1) in (5, 6, 7, 8) else im.size


def _open_upright(path: Path, target: tuple[int, int], size: tuple[int, int] | None,
                  max_pixels: int) -> Image.Image:
    """The picture upright in RGB, decoded no larger than needed for ``target`` (JPEG DCT scaling).

    Refuses a picture over ``max_pixels`` (0: no limit) or, when ``size`` is given, of another
    size: the file changed since its regions were found, and they would not fit it.
    """
    with open_image(path) as im:
        if max_pixels and im.width * im.height > max_pixels:
            raise ValueError(f"{im.width}x{im.height} pixels is over the limit of {max_pixels}")
        upright = _upright_size(im)
        if size is not None and upright != tuple(size):
            raise ValueError(f"the picture is now {upright[0]}x{upright[1]}, not {size[0]}x{size[1]} as when read")
        want = (target[1], target[0]) if upright != im.size else target
        if im.format == "JPEG" and want[0] < im.width and want[1] < im.height:
            im.draft("RGB", want)
        return ImageOps.exif_transpose(im).convert("RGB")


def is_drawing(path: Path) -> bool:
    """Whether the regular file ``path`` is a drawing emo wrote (it carries :data:`DRAWING_MARK`)."""
    try:
        with open(path, "rb") as f:
            return DRAWING_MARK in f.read(MARK_WITHIN)
    except OSError:
        return False


def _check_replaceable(out: Path) -> None:
    """Refuse to replace a file at ``out`` that is not one of emo's drawings: ``--draw .`` beside a
    user's own ``a.jpg.jpg`` must not turn that photo into a drawing of ``a.jpg``. Nothing there,
    a link (replaced, never followed) or an earlier drawing may be replaced."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or (stat.S_ISREG(st.st_mode) and is_drawing(out)):
        return
    what = "a file that is not an emo drawing" if stat.S_ISREG(st.st_mode) else "something that is not a file"
    raise FileExistsError(errno.EEXIST, f"{what} has that name; it is left as it is")


def _save_whole(img: Image.Image, out: Path) -> None:
    """Write ``out`` as a JPEG through a new temporary file beside it, then rename it into place.

    The temporary file is created exclusively: a name planted in the folder (a link to another
    file) is never written through. A file of the user's at ``out`` is never replaced
    (:func:`_check_replaceable`).
    """
    _check_replaceable(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name[:100]}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            img.save(f, "JPEG", quality=90, comment=DRAWING_MARK)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def draw_regions(path: Path, regions: list[dict], out: Path, title: str = "", k: int = 3,
                 size: tuple[int, int] | None = None, max_pixels: int = 0) -> Path:
    """Draw the best ``k`` of ``regions`` (``box`` in the upright original's pixels, ``score``, ``label``).

    ``size``: the upright original's ``(W, H)`` the boxes refer to (read from the file when None);
    ``max_pixels``: refuse a larger picture (0: no limit). The worst drawn box is drawn first so
    the best lies on top. Writes ``out`` (JPEG) and returns it; raises OSError or ValueError.
    """
    if size is None:
        with open_image(path) as im:
            size = _upright_size(im)
    plan = layout(size, regions, k, title)
    pic = plan.picture
    pw, ph = pic.x1 - pic.x0, pic.y1 - pic.y0
    img = _open_upright(path, (pw, ph), size, max_pixels)
    img = img.resize((pw, ph), Image.NEAREST if pw > img.width else Image.BILINEAR)
    canvas = Image.new("RGB", plan.size, BACKGROUND)
    canvas.paste(img, (pic.x0, pic.y0))
    pen = ImageDraw.Draw(canvas)
    for rank in range(len(plan.boxes) - 1, -1, -1):
        colour = COLOURS[rank] if rank < len(COLOURS) else REST
        b = plan.boxes[rank]
        width = plan.line if rank < len(COLOURS) else max(1, plan.line // 2)
        pen.rectangle((b.x0, b.y0, max(b.x0, b.x1 - 1), max(b.y0, b.y1 - 1)), outline=colour, width=width)
    for rank, (c, text) in enumerate(zip(plan.captions, plan.texts)):
        colour = COLOURS[rank] if rank < len(COLOURS) else REST
        _write(pen, c, text, plan.font, colour, _ink(colour))
    if plan.title is not None:
        _write(pen, plan.title, title, plan.font, (0, 0, 0), (255, 255, 255))
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_whole(canvas, out)
    return out


def drawing_name(path: Path, root: Path) -> str:
    """The drawing's file name: ``path`` relative to ``root``, ``/`` as ``__``, plus ``.jpg``.

    ``photos/2024/a.jpg`` under the root gives ``photos__2024__a.jpg.jpg``. A path outside the
    root keeps its whole absolute path, whose leading ``/`` makes the name start with ``__``
    (``/mnt/b.png`` gives ``__mnt__b.png.jpg``). A name over :data:`NAME_BYTES` bytes keeps its
    end, after a short hash of the whole path that keeps it unique.
    """
    full = Path(os.path.abspath(path))
    base = Path(os.path.abspath(root))
    try:
        parts = full.relative_to(base).parts
    except ValueError:
        parts = ("",) + full.parts[1:]
    name = SEP.join(parts) + ".jpg"
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= NAME_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    tail = raw[-(NAME_BYTES - len(digest) - len(SEP)):].lstrip(_CONTINUATION)  # cut on a character
    # Bytes that are not UTF-8 stay as they are (surrogate escapes), as in a short name.
    return f"{digest}{SEP}{tail.decode('utf-8', 'surrogateescape')}"


class DrawingNames:
    """Names for one run's drawings: :func:`drawing_name`, and for a name already given in this run
    (``a/b.jpg`` and ``a__b.jpg`` flatten alike; an input listed twice) the input's number is added
    before ``.jpg``: ``a__b.jpg.000007.jpg``. Inputs come in order, so the names are the same every run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.taken: set[str] = set()

    def __call__(self, path: Path, index: int) -> str:
        name = drawing_name(path, self.root)
        stem, extra = name[: -len(".jpg")], 0
        while name in self.taken:
            extra += 1
            name = f"{stem}.{index:06d}.jpg" if extra == 1 else f"{stem}.{index:06d}-{extra}.jpg"
        self.taken.add(name)
        return name
