"""``--draw DIR``: one JPEG per picture with its regions drawn, so a person can look at them."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

# Best region red, then orange, yellow, and the rest in a pale green.
COLOURS = [(230, 30, 30), (255, 140, 0), (250, 220, 0)]
REST = (120, 230, 120)
LONGEST = 1024  # drawings are scaled down to this longer side


def out_name(index: int, path: Path) -> str:
    """``000012_cat.jpg``: the input's number keeps two pictures with one file name apart."""
    return f"{index:06d}_{path.stem}.jpg"


def draw_regions(path: Path, regions: list[dict], out: Path, title: str = "") -> Path:
    """Draw ``regions`` (``box`` in the upright original's pixels, ``score``, ``label``) on ``path``.

    The worst region is drawn first so the best lies on top; each box carries its rank and
    S_emo. Writes ``out`` (JPEG) and returns it.
    """
    with Image.open(path) as im:
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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    img.save(tmp, "JPEG", quality=90)
    tmp.replace(out)
    return out
