"""Real image files, good and bad, written with Pillow (and by hand where Pillow will not)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


# EXIF orientation -> the stored pixels of an upright (H, W, 3) array, per the EXIF spec
# (written with numpy, independently of Pillow's exif_transpose).
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],  # mirrored horizontally
    3: lambda u: u[::-1, ::-1],  # rotated 180
    4: lambda u: u[::-1, :],  # mirrored vertically
    5: lambda u: u.transpose(1, 0, 2),  # mirrored horizontally, then rotated 270 CW
    6: lambda u: np.rot90(u, 1),  # display rotates it 90 CW
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),  # mirrored horizontally, then rotated 90 CW
    8: lambda u: np.rot90(u, -1),  # display rotates it 90 CCW
}


def noise(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 noise: compresses badly, so cut points land inside the image data."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def quadrants(h: int = 48, w: int = 64) -> np.ndarray:
    """(h, w, 3) uint8 with four distinct flat quadrants: every flip or turn changes it."""
    u = np.zeros((h, w, 3), np.uint8)
    u[: h // 2, : w // 2] = (230, 20, 20)
    u[: h // 2, w // 2 :] = (20, 230, 20)
    u[h // 2 :, : w // 2] = (20, 20, 230)
    u[h // 2 :, w // 2 :] = (240, 240, 30)
    return u


def with_orientation(path: Path, upright: np.ndarray, orientation: int, fmt: str) -> Path:
    """Save the stored form of ``upright`` with EXIF ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = Image.fromarray(np.ascontiguousarray(STORED[orientation](upright)), "RGB")
    opts = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    img.save(path, format=fmt, exif=exif.tobytes(), **opts)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int = 100_000) -> Path:
    """A valid-looking PNG declaring side x side RGB pixels, a few hundred bytes long."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))
    return path


def good_and_bad(d: Path) -> list[tuple[str, str | None]]:
    """Write every image case into ``d``; (file name, expected error kind or None), in order."""
    d.mkdir(parents=True, exist_ok=True)
    arr = noise()
    img = Image.fromarray(arr)
    img.save(d / "src.jpg", quality=90)
    img.save(d / "src.png")
    jpg, png = (d / "src.jpg").read_bytes(), (d / "src.png").read_bytes()
    cases: list[tuple[str, str | None]] = []

    def put(name: str, kind: str | None, data: bytes | None = None) -> None:
        if data is not None:
            (d / name).write_bytes(data)
        cases.append((name, kind))

    put("zero_bytes.jpg", "empty_file", b"")
    for frac in (0.001, 0.1, 0.5, 0.9):
        put(f"jpeg_cut_at_{frac}.jpg", "truncated", jpg[: max(3, int(len(jpg) * frac))])
    put("jpeg_without_last_2_bytes.jpg", "truncated", jpg[:-2])
    for frac in (0.01, 0.1, 0.5, 0.9):
        put(f"png_cut_at_{frac}.png", "truncated", png[: max(9, int(len(png) * frac))])
    put("random_bytes.jpg", "not_an_image", np.random.default_rng(1).bytes(4000))
    put("text.jpg", "not_an_image", b"this is not an image\n")
    img.save(d / "png_named.jpg", format="PNG")
    put("png_named.jpg", None)
    img.convert("CMYK").save(d / "cmyk.jpg")
    put("cmyk.jpg", None)
    Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(d / "gray16.png")
    put("gray16.png", None)
    pal = img.convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.save(d / "palette_transparent.png", transparency=0)
    put("palette_transparent.png", None)
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    put("animated.gif", None)
    img.save(d / "photo.webp")
    put("photo.webp", None)
    png_bomb(d / "bomb.png")
    put("bomb.png", "too_large")
    Image.new("RGB", (1, 1), (9, 99, 199)).save(d / "one_pixel.png")
    put("one_pixel.png", None)
    Image.new("RGB", (20000, 20), (50, 60, 70)).save(d / "strip_20000x20.png")
    put("strip_20000x20.png", None)
    for o in (3, 6):
        with_orientation(d / f"exif_{o}.jpg", quadrants(), o, "JPEG")
        put(f"exif_{o}.jpg", None)
    (d / "src.jpg").unlink()
    (d / "src.png").unlink()
    return cases


def image_set(d: Path, n: int) -> list[str]:
    """``n`` distinct image paths, made here."""
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"img{i:03d}.jpg"
        Image.fromarray(noise(40 + i % 7, 50, seed=i)).save(p)
        out.append(str(p))
    return out
