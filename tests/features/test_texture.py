"""LBP and GIST against their definitions, on images made with Pillow and numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import emo
from emo.features import HANDCRAFTED_DIMS, texture
from emo.features.texture import LBP_BINS, gist, lbp_codes, lbp_histogram, to_gray


def _gray(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(arr, dtype=np.float32))[None, None]


def _uniform_rank(code: int) -> int:
    """Bin of a uniform code, counted independently: uniform codes below it, by string rotation."""
    def uniform(c: int) -> bool:
        s = format(c, "08b")
        return sum(a != b for a, b in zip(s, s[1:] + s[0])) <= 2

    assert uniform(code)
    return sum(uniform(c) for c in range(code))


def test_lbp_constant_image_is_all_code_255():
    img = Image.new("L", (20, 15), 77)
    h = lbp_histogram(_gray(np.asarray(img)) / 255.0)[0]
    assert h.shape == (LBP_BINS,) == (HANDCRAFTED_DIMS["lbp"],)
    assert h[57].item() == pytest.approx(1.0)  # every neighbour >= centre: code 255, last uniform bin


def test_lbp_checkerboard_half_nonuniform():
    cb = (np.add.outer(np.arange(10), np.arange(12)) % 2).astype(np.float32)
    h = lbp_histogram(_gray(cb))[0]
    # value-1 centres see 0,1,0,1,... around them (8 transitions: bin 58); value-0 centres code 255
    assert h[58].item() == pytest.approx(0.5) and h[57].item() == pytest.approx(0.5)
    assert h.sum().item() == pytest.approx(1.0)


def test_lbp_step_edge_code_and_bin():
    img = Image.new("L", (12, 9), 0)
    ImageDraw.Draw(img).rectangle((6, 0, 11, 8), fill=255)  # right half bright
    g = _gray(np.asarray(img)) / 255.0
    codes = lbp_codes(g)[0]
    # a bright pixel next to the edge has its three left neighbours (p = 3, 4, 5) darker
    assert int(codes[3, 5]) == 255 - (8 + 16 + 32)
    h = lbp_histogram(g)[0]
    assert h[_uniform_rank(199)].item() == pytest.approx(1 / 10)  # one column of 10 interior ones
    assert h[57].item() == pytest.approx(9 / 10)


def test_lbp_accepts_bhw_and_batches():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.random((3, 16, 16), dtype=np.float32))
    torch.testing.assert_close(lbp_histogram(a), lbp_histogram(a[:, None]))
    torch.testing.assert_close(lbp_histogram(a)[2], lbp_histogram(a[2:3])[0])


def _stripes(period: float, direction: tuple[float, float], size: int = 256) -> torch.Tensor:
    """Sinusoidal stripes whose intensity varies along ``direction`` = (dx, dy)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = 2 * np.pi * (direction[0] * x + direction[1] * y) / period
    img = Image.fromarray((127.5 + 127.5 * np.sin(phase)).astype(np.uint8), "L")
    return _gray(np.asarray(img)) / 255.0


def _peak(descriptor: torch.Tensor) -> tuple[int, int]:
    """(scale, orientation) with the most energy summed over the 4 x 4 grid."""
    return divmod(int(descriptor.view(4, 8, 16).sum(-1).argmax()), 8)


@pytest.mark.parametrize("scale, period", [(0, 3.4), (1, 6.2), (2, 11.4), (3, 21.0)])
def test_gist_stripes_land_in_their_scale_and_orientation(scale, period):
    vertical = _stripes(period, (1.0, 0.0))
    assert _peak(gist(vertical)[0]) == (scale, 0)
    # rotating the picture by 90 degrees moves the energy to the orthogonal orientation
    assert _peak(gist(torch.rot90(vertical, 1, (-2, -1)))[0]) == (scale, 4)


def test_gist_diagonal_orientations():
    r = 2 ** -0.5
    assert _peak(gist(_stripes(8.0, (r, r)))[0])[1] == 6
    assert _peak(gist(_stripes(8.0, (r, -r)))[0])[1] == 2


def test_gist_grid_follows_where_the_texture_is():
    img = np.full((256, 256), 0.5, dtype=np.float32)
    img[:64, 192:] = _stripes(6.2, (1.0, 0.0))[0, 0, :64, 192:].numpy()  # top-right cell only
    d = gist(_gray(img))[0].view(32, 4, 4)  # (filter, col, row)
    energy = d.sum(0)
    assert divmod(int(energy.argmax()), 4) == (3, 0)  # column 3, row 0


def test_gist_dims_deterministic_finite():
    rng = np.random.default_rng(0)
    rgb = torch.from_numpy(rng.random((2, 3, 256, 256), dtype=np.float32))
    a, b = gist(to_gray(rgb)), gist(to_gray(rgb))
    assert a.shape == (2, HANDCRAFTED_DIMS["gist"])
    assert torch.equal(a, b) and torch.isfinite(a).all()
    torch.testing.assert_close(a[1], gist(to_gray(rgb[1:]))[0])
    assert torch.count_nonzero(gist(torch.full((1, 1, 256, 256), 0.4))) == 0  # a flat picture has no texture


@pytest.mark.parametrize("n", [1, 2, 7, 16, 266, 331])
def test_prefilter_basis_spans_the_gaussian_filter_by_fft(n):
    from emo.features.texture import _prefilter_basis

    basis = _prefilter_basis(n, torch.device("cpu")).double().numpy()
    f = np.fft.fftfreq(n, 1.0 / n)
    gain = np.exp(-(f**2) / (4.0 / np.sqrt(np.log(2))) ** 2)
    x = np.random.default_rng(n).random((n, n))
    by_fft = np.fft.ifft2(np.fft.fft2(x) * gain[:, None] * gain[None, :]).real
    by_basis = basis @ (basis.T @ x @ basis) @ basis.T
    np.testing.assert_allclose(by_basis, by_fft, atol=1e-6 * np.abs(by_fft).max())
    assert basis.shape[1] <= min(n, 49)  # a low rank is the point: 47 for the 266-pixel padded view


def _reference_gist(img: np.ndarray) -> np.ndarray:
    """GIST of one ``(H, W)`` grey image in [0, 1], written out plainly in float64 numpy.

    The same formula as :func:`emo.features.texture.gist` (LMgist: prefilter, symmetric padding,
    complex FFTs, 32 Gabor filters, 4 x 4 cell means), one filter and one cell at a time.
    """
    h, w = img.shape
    img = img - img.min()
    img = 255.0 * img / max(img.max(), 1e-8)
    x = np.pad(np.log(img + 1.0), 5, mode="symmetric")
    n = max(x.shape) + max(x.shape) % 2
    x = np.pad(x, ((0, n - x.shape[0]), (0, n - x.shape[1])), mode="symmetric")
    f = np.fft.fftfreq(n, 1.0 / n)
    gauss = np.exp(-(f[None, :] ** 2 + f[:, None] ** 2) / (4.0 / np.sqrt(np.log(2))) ** 2)
    out = x - np.fft.ifft2(np.fft.fft2(x) * gauss).real
    out = out / (0.2 + np.sqrt(np.abs(np.fft.ifft2(np.fft.fft2(out * out) * gauss))))
    x = np.pad(out[5:5 + h, 5:5 + w], 32, mode="symmetric")
    hp, wp = x.shape
    fy, fx = np.fft.fftfreq(hp, 1.0 / hp)[:, None], np.fft.fftfreq(wp, 1.0 / wp)[None, :]
    fr, theta = np.sqrt(fx**2 + fy**2) / max(hp, wp), np.arctan2(fy, fx)
    spectrum = np.fft.fft2(x)
    rows = [(i * h // 4, -(-(i + 1) * h // 4)) for i in range(4)]
    cols = [(i * w // 4, -(-(i + 1) * w // 4)) for i in range(4)]
    desc = []
    for s in range(4):
        for o in range(8):
            tr = np.mod(theta + np.pi * o / 8 + np.pi, 2 * np.pi) - np.pi
            gabor = np.exp(-3.5 * (fr / (0.3 / 1.85**s) - 1) ** 2 - 2 * np.pi * tr**2)
            energy = np.abs(np.fft.ifft2(spectrum * gabor))[32:32 + h, 32:32 + w]
            desc += [energy[r0:r1, c0:c1].mean() for c0, c1 in cols for r0, r1 in rows]
    return np.array(desc)


def _sample_gray(name: str, size: tuple[int, int]) -> np.ndarray:
    path = Path(emo.__file__).parent / "data" / "samples" / name
    return np.asarray(Image.open(path).convert("L").resize(size, Image.BILINEAR), dtype=np.float32) / 255.0


def test_gist_matches_plain_reference_on_photos():
    names = ("cat.jpg", "hubble.jpg")
    imgs = np.stack([_sample_gray(n, (256, 256)) for n in names])
    got = gist(torch.from_numpy(imgs)).double().numpy()
    want = np.stack([_reference_gist(im.astype(np.float64)) for im in imgs])
    assert np.abs(want).max() > 0.05  # real texture, not a degenerate all-zero case
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("chunk, images, boxed", [(1, None, False), (3, 2, False), (4, None, True)])
def test_gist_non_square_any_step_matches_reference(chunk, images, boxed):
    img = _sample_gray("rocket.jpg", (150, 97))  # odd, non-square: squaring and uneven cells
    batch = torch.from_numpy(np.stack((img, img[::-1, ::-1].copy())))
    got = gist(batch, chunk=chunk, images=images, boxed=boxed).double().numpy()
    want = [_reference_gist(im.astype(np.float64)) for im in batch.numpy()]
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("size", [(13, 20), (4, 3), (1, 1)])
@pytest.mark.parametrize("boxed", [True, False])
def test_gist_of_a_picture_smaller_than_its_padding_matches_reference(size, boxed):
    # padarray mirrors again and again where the 32-pixel pad exceeds the picture
    img = _sample_gray("coffee.jpg", size)
    if size == (1, 1):
        img = np.array([[0.3]], np.float32)
    got = gist(torch.from_numpy(img[None]), boxed=boxed).double().numpy()[0]
    want = _reference_gist(img.astype(np.float64))
    assert got.shape == (512,) and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-6)


def test_gist_boxed_and_whole_filtering_agree_to_float32_rounding():
    imgs = np.stack([_sample_gray(n, (256, 256)) for n in ("cat.jpg", "coffee.jpg", "hubble.jpg")])
    for batch in (torch.from_numpy(imgs), torch.from_numpy(imgs[:, :200, :120].copy())):
        whole, boxed = gist(batch, boxed=False), gist(batch, boxed=True)
        assert whole.abs().max() > 0.05
        torch.testing.assert_close(boxed, whole, rtol=0, atol=5e-7)


def test_a_filter_box_holds_every_value_that_is_not_negligible():
    bank = texture.gabor_bank(320, 227).double().numpy()
    for g, box in zip(bank, texture._boxes(320, 227)):
        if box.flip:
            g = g.T
        rolled = np.roll(g, (-box.r0, -box.c0), (0, 1))
        outside = rolled.copy()
        outside[:box.rows, :box.cols] = 0
        assert outside.max() <= texture.GIST_NEGLIGIBLE * g.max()
        assert box.rows <= box.cols
        np.testing.assert_allclose(box.gain.real.numpy(), rolled[:box.rows, :box.cols].astype(np.float32))
    coarse = texture._boxes(320, 320)[-1]
    assert coarse.rows * coarse.cols < 0.1 * 320 * 320  # the coarsest scale is a small part of the plane


@pytest.mark.parametrize("mask, want", [
    ([0, 1, 1, 0, 0], (1, 2)), ([1, 0, 0, 0, 1], (4, 2)), ([0, 0, 1, 0, 0], (2, 1)),
    ([1, 1, 1], (0, 3)), ([1, 0, 1, 0, 0, 0, 1], (6, 4)),
])
def test_cover_is_the_shortest_run_around_the_circle(mask, want):
    assert texture._cover(np.array(mask, dtype=bool)) == want


def test_lbp_photo_matches_plain_count():
    img = _sample_gray("coffee.jpg", (61, 47))
    c = img[1:-1, 1:-1]
    h, w = img.shape
    ring = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))
    code = sum((img[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] >= c).astype(int) << p for p, (dy, dx) in enumerate(ring))
    transitions = [sum(a != b for a, b in zip(s, s[1:] + s[0])) for s in (format(k, "08b") for k in range(256))]
    bins = np.array([_uniform_rank(k) if transitions[k] <= 2 else 58 for k in code.ravel()])
    want = np.bincount(bins, minlength=LBP_BINS) / bins.size
    assert np.count_nonzero(want) > 20
    np.testing.assert_allclose(lbp_histogram(torch.from_numpy(img)[None])[0].numpy(), want, atol=1e-7)
