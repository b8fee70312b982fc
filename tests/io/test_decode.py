"""decode(): views, mode conversion, draft decoding, and the kinds of bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from emo.errors import InputError
from emo.io.decode import View, decode
from tests.robustness.files import noise


def _reference_crop(img: Image.Image, v: View) -> np.ndarray:
    """torchvision's eval transform, the slow way: resize the whole image, then crop."""
    w, h = img.size
    scale = (v.resize or v.size) / min(w, h)
    nw, nh = max(v.size, round(w * scale)), max(v.size, round(h * scale))
    big = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - v.size) // 2, (nh - v.size) // 2
    return np.asarray(big.crop((left, top, left + v.size, top + v.size)))


@pytest.mark.parametrize("size", [(400, 300), (300, 400), (257, 256), (1000, 90)])
def test_crop_view_equals_resize_then_crop(tmp_path, size):
    img = Image.fromarray(noise(size[1], size[0], seed=3))
    img.save(tmp_path / "a.png")
    v = View(224, 256)
    got = decode(tmp_path / "a.png", (v,), 0).views[v].astype(int)
    assert np.abs(got - _reference_crop(img, v)).max() <= 1


def test_squash_view_keeps_the_whole_picture(tmp_path):
    a = np.zeros((50, 200, 3), np.uint8)
    a[:, 100:] = 255  # right half white
    Image.fromarray(a).save(tmp_path / "a.png")
    v = View(64, mode="squash")
    out = decode(tmp_path / "a.png", (v,), 0).views[v]
    assert out.shape == (64, 64, 3)
    assert out[:, :30].max() == 0 and out[:, 34:].min() == 255


def test_16_bit_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    v = View(3, mode="squash")
    out = decode(tmp_path / "g16.png", (v,), 0).views[v]
    # Nearest source pixel of each column: 0, 32896/65535*255 = 128, 255.
    assert list(out[1, :, 0]) == [0, 128, 255]


def test_transparency_is_laid_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    v = View(8, mode="squash")
    assert (decode(tmp_path / "a.png", (v,), 0).views[v] == 255).all()
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "p.png", transparency=0)
    out = decode(tmp_path / "p.png", (v,), 0).views[v]
    assert (out[0, 0] == (10, 200, 10)).all() and (out[4, 4] == 255).all()


def test_jpeg_draft_decodes_big_photos_near_the_view_size(tmp_path):
    smooth = np.kron(noise(30, 40, seed=5), np.ones((50, 50, 1), np.uint8))  # 1500 x 2000, blocky
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    v = View(224, 256)
    got = decode(tmp_path / "big.jpg", (v,), 0)
    assert got.size == (2000, 1500)
    ref = _reference_crop(Image.open(tmp_path / "big.jpg").convert("RGB"), v).astype(int)
    assert np.abs(got.views[v].astype(int) - ref).mean() < 3


@pytest.mark.parametrize(
    "data, kind",
    [(b"", "empty_file"), (b"hello", "not_an_image"), (b"\xff\xd8\xff\xe0\x00\x10JF", "truncated"),
     (b"\x89PNG\r\n\x1a\n\x00", "truncated")],
    ids=["empty", "text", "jpeg_header_only", "png_signature_only"],
)
def test_bad_bytes_give_their_kind(tmp_path, data, kind):
    (tmp_path / "x.jpg").write_bytes(data)
    with pytest.raises(InputError) as e:
        decode(tmp_path / "x.jpg", (View(32, 36),), 0)
    assert e.value.kind == kind


@pytest.mark.parametrize("keep", [100, 500, 0.5], ids=["inside_the_first_chunk", "500_bytes", "half"])
def test_a_webp_cut_short_is_truncated(tmp_path, keep):
    Image.fromarray(noise(120, 160)).save(tmp_path / "whole.webp")
    data = (tmp_path / "whole.webp").read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    (tmp_path / "cut.webp").write_bytes(data[:n])
    with pytest.raises(InputError) as e:
        decode(tmp_path / "cut.webp", (View(32, 36),), 0)
    assert e.value.kind == "truncated"
    assert decode(tmp_path / "whole.webp", (View(32, 36),), 0).size == (160, 120)


def test_a_whole_webp_with_junk_headers_is_called_corrupt_not_cut(tmp_path):
    Image.fromarray(noise(120, 160)).save(tmp_path / "whole.webp")
    data = (tmp_path / "whole.webp").read_bytes()
    (tmp_path / "junk.webp").write_bytes(data[:12] + bytes(len(data) - 12))  # its size, no chunks
    (tmp_path / "cut.webp").write_bytes(data[:12])
    with pytest.raises(InputError) as e:
        decode(tmp_path / "junk.webp", (View(32, 36),), 0)
    assert e.value.kind == "truncated" and e.value.message == "its headers are corrupt"
    with pytest.raises(InputError) as e:
        decode(tmp_path / "cut.webp", (View(32, 36),), 0)
    assert e.value.kind == "truncated" and "ends inside its headers" in e.value.message


def test_a_png_with_a_large_icc_profile_decodes(tmp_path):
    # Printer and camera profiles of a few MiB are real; the picture must not be refused for one.
    profile = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    Image.fromarray(noise(40, 60)).save(tmp_path / "icc.png", icc_profile=profile)
    got = decode(tmp_path / "icc.png", (View(32, 36),), 0)
    assert got.size == (60, 40)


def test_missing_folder_and_limit(tmp_path):
    with pytest.raises(InputError) as e:
        decode(tmp_path / "none.jpg", (View(32),), 0)
    assert e.value.kind == "not_found"
    with pytest.raises(InputError) as e:
        decode(tmp_path, (View(32),), 0)
    assert e.value.kind == "is_directory"
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    with pytest.raises(InputError) as e:
        decode(tmp_path / "a.png", (View(32),), 9999)
    assert e.value.kind == "too_large" and "10000" in e.value.message


_POSTSCRIPT = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
               b"0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")


@pytest.fixture
def ghostscript_spy(tmp_path, monkeypatch):
    """A ``gs`` first on PATH that only notes it was started; Pillow looks for it afresh."""
    from PIL import EpsImagePlugin

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "gs-ran"
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 1\n")
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)
    return marker


@pytest.mark.parametrize("name", ["photo.jpg", "drawing.eps"])
def test_postscript_is_no_image_and_ghostscript_never_runs(tmp_path, ghostscript_spy, name):
    path = tmp_path / name
    path.write_bytes(_POSTSCRIPT)
    with pytest.raises(InputError) as e:
        decode(path, (View(8, mode="squash"),), 0)
    assert e.value.kind == "not_an_image"
    assert not ghostscript_spy.exists()


def test_drawing_regions_never_hands_postscript_to_ghostscript(tmp_path, ghostscript_spy):
    from emo.regions.draw import draw_regions

    path = tmp_path / "photo.jpg"
    path.write_bytes(_POSTSCRIPT)
    regions = [{"box": [0, 0, 5, 5], "score": 1.0, "label": "joy"}]
    with pytest.raises(OSError):
        draw_regions(path, regions, tmp_path / "out.jpg", size=(10, 10))
    assert not ghostscript_spy.exists()
    assert not (tmp_path / "out.jpg").exists()
