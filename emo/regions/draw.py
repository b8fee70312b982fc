"""``--draw DIR``: one JPEG per picture with its regions drawn, so a person can look at them."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from emo.errors import OutputError

# Best region red, then orange, yellow, and the rest in a pale green.
COLOURS = [(230, 30, 30), (255, 140, 0), (250, 220, 0)]
REST = (120, 230, 120)
LONGEST = 1024  # drawings are scaled down to this longer side


# Bytes of the input's name kept in a drawing's name: with the number, the ".jpg" and the
# temporary file's extra characters it stays under the 255 bytes a file name may have.
STEM_BYTES = 200


def out_name(index: int, path: Path) -> str:
    """``000012_cat.jpg``: the input's number keeps two pictures with one file name apart.

    A long name is cut (at a character boundary) so the drawing can always be written.
    """
    raw = os.fsencode(path.stem)[:STEM_BYTES]
    stem = raw.decode("utf-8", "ignore") if not _has_escapes(path.stem) else os.fsdecode(raw)
    return f"{index:06d}_{stem}.jpg"


def _has_escapes(text: str) -> bool:
    return any(0xDC80 <= ord(c) <= 0xDCFF for c in text)


def draw_regions(path: Path, regions: list[dict], out: Path, title: str = "") -> Path:
    """Draw ``regions`` (``box`` in the upright original's pixels, ``score``, ``label``) on ``path``.

    The worst region is drawn first so the best lies on top; each box carries its rank and
    S_emo. Writes ``out`` (JPEG) and returns it.
    """
    with Image.open(path) as im:  # the pipeline decoded this file already; its errors are the caller's
        img = ImageOps.exif_transpose(im).convert("RGB")
    scale = min(1.0, LONGEST / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    pen = ImageDraw.Draw(img)
    line = max(2, round(max(img.size) / 250))
    for rank in range(len(regions) - 1, -1, -1):
        r = regions[rank]
        colour = COLOURS[rank] if rank < len(COLOURS) else REST
        x0, y0, x1, y1 = (v * scale for v in r["box"])
        pen.rectangle((x0, y0, x1, y1), outline=colour, width=line if rank < len(COLOURS) else max(1, line // 2))
        text = f"{rank + 1} {r['score']:.2f}" + (f" {r['label']}" if r.get("label") else "")
        tx, ty = x0 + line, y0 + line
        bbox = pen.textbbox((tx, ty), text)
        pen.rectangle(bbox, fill=(0, 0, 0))
        pen.text((tx, ty), text, fill=colour)
    if title:
        bbox = pen.textbbox((4, img.height - 14), title)
        pen.rectangle(bbox, fill=(0, 0, 0))
        pen.text((4, img.height - 14), title, fill=(255, 255, 255))
    _write_jpeg(img, out)
    return out


def _write_jpeg(img: Image.Image, out: Path) -> None:
    """Write ``out`` through a new temporary file beside it (created here, never an existing
    one or a link someone left) renamed over it; any failure is an :class:`OutputError`."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                img.save(f, "JPEG", quality=90)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise OutputError(f"--draw: cannot write {out}: {e.strerror or e}") from None
