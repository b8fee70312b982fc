"""Colour features against inputs whose answer is known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import emo
from emo.features import HANDCRAFTED_DIMS
from emo.features.color import COLOR_TERMS, color_features, color_name_lut, color_name_shares, rgb_to_hsv


def _batch(*images: Image.Image) -> torch.Tensor:
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


def _solid(rgb, size=(32, 24)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def test_pure_red_image():
    f = color_features(_batch(_solid((255, 0, 0))))[0]
    assert f.shape == (HANDCRAFTED_DIMS["color"],)
    torch.testing.assert_close(f[0:3], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(f[3:6], torch.tensor([0.0, 1.0, 1.0]))  # hue 0, full S and V
    assert f[6].item() == 9 * 0 + 3 * 2 + 2  # hue bin 0, top saturation and value bins
    assert f[7].item() == pytest.approx(1.0)
    assert f[8 + COLOR_TERMS.index("red")].item() == pytest.approx(1.0)
    # Valdez-Mehrabian with brightness 1 and saturation 1
    torch.testing.assert_close(f[19:22], torch.tensor([0.69 + 0.22, -0.31 + 0.60, -0.76 + 0.32]))


def test_half_white_half_blue_shares_and_means():
    im = Image.new("RGB", (40, 20), (255, 255, 255))
    im.paste((0, 0, 255), (0, 0, 20, 20))
    f = color_features(_batch(im))[0]
    torch.testing.assert_close(f[0:3], torch.tensor([0.5, 0.5, 1.0]))
    names = dict(zip(COLOR_TERMS, f[8:19].tolist()))
    assert names["white"] == pytest.approx(0.5) and names["blue"] == pytest.approx(0.5)
    assert f[7].item() == pytest.approx(0.5)  # two bins tie at half the pixels each
    assert f[4].item() == pytest.approx(0.5)  # mean saturation: 1 (blue) and 0 (white)


@pytest.mark.parametrize(
    "rgb, term",
    [((0, 0, 0), "black"), ((128, 128, 128), "grey"), ((250, 250, 250), "white"), ((0, 128, 0), "green"),
     ((255, 255, 0), "yellow"), ((255, 140, 0), "orange"), ((130, 65, 20), "brown"), ((255, 160, 190), "pink"),
     ((120, 0, 140), "purple"), ((30, 60, 200), "blue"), ((150, 200, 255), "blue"), ((190, 20, 20), "red")],
)
def test_colour_names_of_typical_colours(rgb, term):
    shares = color_name_shares(_batch(_solid(rgb, (4, 4))))[0]
    assert COLOR_TERMS[int(shares.argmax())] == term
    assert shares.sum().item() == pytest.approx(1.0)


def test_hsv_matches_colorsys():
    import colorsys

    rng = np.random.default_rng(0)
    px = rng.random((50, 3)).astype(np.float32)
    hsv = rgb_to_hsv(torch.from_numpy(px).T.reshape(1, 3, 50, 1))[0, :, :, 0].T.numpy()
    want = np.array([colorsys.rgb_to_hsv(*p) for p in px])
    np.testing.assert_allclose(hsv, want, atol=1e-5)


def test_batch_rows_are_independent():
    a, b = _solid((10, 200, 30)), _solid((240, 240, 10))
    both = color_features(_batch(a, b))
    torch.testing.assert_close(both[1], color_features(_batch(b))[0])
    assert torch.isfinite(both).all()


def test_a_batch_taken_in_steps_gives_each_image_its_own_row():
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)) for _ in range(5)]
    images[2] = _solid((0, 0, 0), (28, 20))  # black and grey pixels: the hue and saturation of 0
    images[3] = _solid((128, 128, 128), (28, 20))
    batch = _batch(*images).contiguous(memory_format=torch.channels_last)  # as the stage passes it
    rows = color_features(batch)
    assert rows.shape == (5, HANDCRAFTED_DIMS["color"])
    for i, im in enumerate(images):  # bit for bit: each step computes exactly what one image alone does
        assert torch.equal(rows[i], color_features(_batch(im))[0])
    assert rows[2, 3:6].tolist() == [0.0, 0.0, 0.0] and rows[3, 3:5].tolist() == [0.0, 0.0]


def _reference_color(px: np.ndarray) -> np.ndarray:
    """The 22 colour features of ``(N, 3)`` float32 RGB pixels in [0, 1], one pixel at a time.

    HSV in float32 as the definition computes it (colorsys, in float64, can put a pixel that sits
    exactly on a bin edge such as S = 2/3 into the next bin).
    """
    f32, hsv = np.float32, []
    for r, g, b in px:
        v, c = max(r, g, b), max(r, g, b) - min(r, g, b)
        s = c / v if v > 0 else f32(0)
        if c == 0:
            h = f32(0)
        else:
            sector = (g - b) / c if r == v else (b - r) / c + f32(2) if g == v else (r - g) / c + f32(4)
            h = f32(np.remainder(sector, f32(6)) / f32(6))
        hsv.append((h, s, v))
    hsv = np.array(hsv, dtype=np.float32)
    hist = np.zeros(72)
    for h, s, v in hsv:
        hist[9 * min(int(h * f32(8)), 7) + 3 * min(int(s * f32(3)), 2) + min(int(v * f32(3)), 2)] += 1
    q = np.minimum((px * f32(32)).astype(int), 31)
    terms = color_name_lut().numpy()[q[:, 0] + 32 * q[:, 1] + 1024 * q[:, 2]]
    names = np.bincount(terms, minlength=len(COLOR_TERMS)) / len(px)
    mean = hsv.astype(np.float64).mean(0)
    v, s = mean[2], mean[1]
    pad = [0.69 * v + 0.22 * s, -0.31 * v + 0.60 * s, -0.76 * v + 0.32 * s]
    return np.concatenate((px.mean(0), mean, [hist.argmax(), hist.max() / len(px)], names, pad))


def test_photo_matches_pixel_by_pixel_reference():
    path = Path(emo.__file__).parent / "data" / "samples" / "coffee.jpg"
    im = Image.open(path).convert("RGB").resize((48, 32))
    batch = torch.from_numpy(np.array(im)[None]).permute(0, 3, 1, 2)  # uint8, channels_last as decoded
    got = color_features(batch.float() / 255.0)[0].double().numpy()
    want = _reference_color(np.asarray(im, dtype=np.float32).reshape(-1, 3) / np.float32(255))
    assert len(set(want[8:19].round(6))) > 3  # several colour names present: the test sees the counting
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
