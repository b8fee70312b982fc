"""Texture features of Kim et al. section IV-B: uniform LBP (59 bins) and GIST (512 dims).

Both run batched on torch tensors, on whatever device the input is on.

LBP (Ojala et al. 2002, ``u2`` mapping): the square 8-neighbourhood at radius 1 (no
interpolation), neighbour ``p`` at angle ``45 * p`` degrees counter-clockwise from the right
(right, up-right, up, up-left, left, down-left, down, down-right) weighs ``2**p``; a neighbour
counts 1 when it is >= the centre. The 58 uniform codes (at most two 0/1 transitions around
the circle) get bins 0..57 in increasing code order (code 0 -> bin 0, code 255 -> bin 57);
every other code goes to bin 58. Border pixels, which lack neighbours, are not counted.

GIST (Oliva and Torralba 2001), following their reference ``LMgist.m``: the grey image is
scaled to [0, 255], prefiltered (log, whitening by a Gaussian of ``fc = 4`` cycles/image,
local contrast normalisation), padded symmetrically by 32 pixels, and filtered in the
frequency domain by 32 Gabor filters, 4 scales x 8 orientations (``createGabor``: centre
frequency ``0.3 / 1.85**s`` cycles/pixel for scale ``s``, orientation ``pi * o / 8``). The
magnitude of each response is averaged over a 4 x 4 grid of the image. Output index:
``16 * (8 * s + o) + 4 * col + row`` (scale 0 finest; the grid in MATLAB's column order).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

LBP_BINS = 59
GIST_SCALES = 4
GIST_ORIENTATIONS = 8
GIST_GRID = 4
GIST_DIMS = GIST_SCALES * GIST_ORIENTATIONS * GIST_GRID * GIST_GRID
GIST_PAD = 32  # LMgist's boundaryExtension
# A Gabor filter's values below this share of its peak are taken as zero: float32's own rounding
# of the products at the peak (1.2e-7 relative) is as large. Over 64 Emotion6 pictures the 512
# values moved by at most one unit in the last place against a threshold of 1e-10 (boxes 22% larger).
GIST_NEGLIGIBLE = 1e-7
PREFILTER_FC = 4.0
_PREFILTER_PAD = 5

# (dy, dx) of neighbour p = 0..7, counter-clockwise from the right (image rows grow downwards).
LBP_OFFSETS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))

_cache: dict[tuple, Any] = {}
_cache_lock = threading.RLock()  # re-entrant: one table is made from another (boxes from the bank)


def _new_cache_lock() -> None:
    """In a forked child: a table another thread was making at the fork is never finished there."""
    global _cache_lock
    _cache_lock = threading.RLock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_new_cache_lock)


def _cached(key: tuple, make: Callable[[], Any]) -> Any:
    """``_cache[key]``, made once: worker threads that ask at the same time wait for the first."""
    value = _cache.get(key)
    if value is None:
        with _cache_lock:
            value = _cache.get(key)
            if value is None:
                value = _cache[key] = make()
    return value


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 1, H, W)`` luma in [0, 1] (ITU-R BT.601 weights)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    r, g, b = rgb.unbind(1)
    # the weighted sum written out, in the order a sum over channels adds: the same values, but
    # summing over the channels of a channels_last batch steps through memory three floats apart
    gray = r * w[0]
    gray.add_(g * w[1]).add_(b * w[2])
    return gray.unsqueeze(1)


def _as_b1hw(gray: torch.Tensor) -> torch.Tensor:
    if gray.dim() == 3:
        gray = gray.unsqueeze(1)
    if gray.dim() != 4 or gray.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) or (B, H, W) grey batch, got {tuple(gray.shape)}")
    return gray.float()


def _transitions(code: int) -> int:
    bits = [(code >> p) & 1 for p in range(8)]
    return sum(bits[p] != bits[(p + 1) % 8] for p in range(8))


def lbp_mapping(device: torch.device | str = "cpu") -> torch.Tensor:
    """``(256,)`` int64: the 59-bin ``u2`` bin of each 8-bit LBP code."""
    key = ("lbp", torch.device(device))

    def make() -> Any:
        table, nxt = [], 0
        for code in range(256):
            if _transitions(code) <= 2:
                table.append(nxt)
                nxt += 1
            else:
                table.append(LBP_BINS - 1)
        return torch.tensor(table, device=device)

    return _cached(key, make)


def _lbp_codes_u8(gray: torch.Tensor) -> torch.Tensor:
    g = _as_b1hw(gray)[:, 0]
    h, w = g.shape[-2:]
    if h < 3 or w < 3:
        raise ValueError(f"LBP needs an image of at least 3 x 3 pixels, got {h} x {w}")
    centre = g[:, 1:-1, 1:-1]
    code = torch.zeros(centre.shape, dtype=torch.uint8, device=g.device)
    bit = torch.empty(centre.shape, dtype=torch.bool, device=g.device)
    for p, (dy, dx) in enumerate(LBP_OFFSETS):
        torch.ge(g[:, 1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx], centre, out=bit)
        code.add_(bit.view(torch.uint8), alpha=1 << p)  # one byte per pixel: bits never carry
    return code


def lbp_codes(gray: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` grey -> ``(B, H-2, W-2)`` int64 LBP codes in [0, 255] of the interior pixels."""
    return _lbp_codes_u8(gray).long()


def _lbp_bin_matrix(device: torch.device) -> torch.Tensor:
    """``(256, 59)`` float32 one-hot rows: code -> its ``u2`` bin."""
    key = ("lbp-onehot", device)
    return _cached(key, lambda: F.one_hot(lbp_mapping(device), LBP_BINS).float())


def lbp_histogram(gray: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` or ``(B, H, W)`` grey in [0, 1] -> ``(B, 59)`` uniform LBP histogram, sums to 1."""
    codes = _lbp_codes_u8(gray).flatten(1)
    b, n = codes.shape
    # one bincount over all images (image i's codes offset by 256 i), then codes -> bins as a matmul
    offset = torch.arange(b, device=codes.device).mul_(256).unsqueeze(1)
    counts = torch.bincount((codes + offset).flatten(), minlength=256 * b).view(b, 256)
    return (counts.float() @ _lbp_bin_matrix(codes.device)) / n


def _mirror_index(n: int, p: int, device: torch.device) -> torch.Tensor:
    """Indices of ``padarray``'s symmetric padding of a length-``n`` axis by ``p``: the axis
    mirrored, edge included, again and again where ``p`` exceeds ``n``."""
    i = torch.arange(-p, n + p, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def _symmetric_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """MATLAB ``padarray(x, [p p], 'symmetric')``: mirror including the edge pixel."""
    h, w = x.shape[-2:]
    if p > min(h, w):  # a picture smaller than the pad: the mirror repeats (rare, so by index)
        x = x.index_select(-2, _mirror_index(h, p, x.device))
        return x.index_select(-1, _mirror_index(w, p, x.device))
    x = torch.cat((x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)), -2)
    return torch.cat((x[..., :p].flip(-1), x, x[..., -p:].flip(-1)), -1)


def _freq_grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer frequencies in FFT order: ``fy`` along rows ``(h, 1)``, ``fx`` along columns ``(1, w)``."""
    fy = torch.fft.fftfreq(h, 1.0 / h, device=device, dtype=torch.float64).view(h, 1)
    fx = torch.fft.fftfreq(w, 1.0 / w, device=device, dtype=torch.float64).view(1, w)
    return fy, fx


def _prefilter_basis(n: int, device: torch.device) -> torch.Tensor:
    """``(n, r)`` float32 ``B`` with ``B @ B.T`` = the circulant matrix of LMgist's Gaussian filter.

    The filter ``exp(-(fx**2 + fy**2) / s1**2)`` is separable and even, so its circular convolution
    (what filtering by FFT does) is ``C @ x @ C`` with ``C`` the 1-D kernel's circulant matrix.
    ``C`` is the sum over frequencies ``k`` of ``g(k)`` times the cosine and sine of ``k`` (each
    times itself, over ``n``); only about 25 frequencies have a gain above ``GIST_NEGLIGIBLE``, so
    ``C`` has rank ~50 and ``B @ ((B.T @ x) @ B) @ B.T`` is a fifth of the products of ``C @ x @ C``.
    """
    key = ("prefilter", n, device)

    def make() -> Any:
        s1 = PREFILTER_FC / math.sqrt(math.log(2))
        i = torch.arange(n, dtype=torch.float64)
        cols = [torch.full((n,), math.sqrt(1.0 / n), dtype=torch.float64)]
        for k in range(1, n // 2 + 1):
            gain = math.exp(-(k**2) / s1**2)
            if gain <= GIST_NEGLIGIBLE * 1e-3:  # its share of any output is below float32's rounding
                break
            if 2 * k == n:  # the Nyquist frequency has a cosine only, counted once
                cols.append(math.sqrt(gain / n) * torch.cos(math.pi * i))
                break
            w = math.sqrt(2 * gain / n)
            cols += [w * torch.cos(2 * math.pi * k * i / n), w * torch.sin(2 * math.pi * k * i / n)]
        return torch.stack(cols, 1).float().to(device)

    return _cached(key, make)


def _gaussian(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``C @ x @ C`` for the prefilter's circulant ``C = basis @ basis.T``, through the low rank."""
    return basis @ ((basis.T @ x) @ basis) @ basis.T


def gabor_bank(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(32, h, w)`` float32 Gabor transfer functions in FFT order (LMgist's ``createGabor``).

    Filter ``8 * s + o`` peaks at radial frequency ``0.3 / 1.85**s`` cycles/pixel and at the
    angle ``-pi * o / 8`` of the frequency vector ``(fx, fy)``; it is one-sided, so the
    magnitude of its response is the local energy (amplitude envelope) of that band.
    """
    device = torch.device(device)
    key = ("gabor", h, w, device)

    def make() -> Any:
        fy, fx = _freq_grid(h, w, device)
        fr = torch.sqrt(fx**2 + fy**2) / max(h, w)  # cycles per pixel
        t = torch.atan2(fy, fx)
        s = torch.arange(GIST_SCALES, device=device, dtype=torch.float64).repeat_interleave(GIST_ORIENTATIONS)
        o = torch.arange(GIST_ORIENTATIONS, device=device, dtype=torch.float64).repeat(GIST_SCALES)
        f0 = (0.3 / 1.85**s).view(-1, 1, 1)
        sigma_t = 16 * GIST_ORIENTATIONS**2 / 32**2
        tr = t + (math.pi / GIST_ORIENTATIONS * o).view(-1, 1, 1)
        tr = torch.remainder(tr + math.pi, 2 * math.pi) - math.pi  # wrap to [-pi, pi)
        bank = torch.exp(-10 * 0.35 * (fr / f0 - 1) ** 2 - 2 * sigma_t * math.pi * tr**2)
        return bank.float()

    return _cached(key, make)


def prefilter(img: torch.Tensor) -> torch.Tensor:
    """LMgist's ``prefilt(img, 4)``: ``(B, H, W)`` values in [0, 255] -> whitened, contrast-normalised."""
    h, w = img.shape[-2:]
    p = _PREFILTER_PAD
    x = _symmetric_pad(torch.log(img + 1.0), p)
    sn, sm = x.shape[-2:]
    n = max(sn, sm)
    n += n % 2
    if (sn, sm) != (n, n):  # square it, as LMgist does, mirroring at the bottom/right
        x = torch.cat((x, x.flip(-2)[..., : n - sn, :]), -2)
        x = torch.cat((x, x.flip(-1)[..., : n - sm]), -1)
    basis = _prefilter_basis(n, img.device)
    out = x - _gaussian(x, basis)
    local_std = _gaussian(out * out, basis).abs_().sqrt_()
    out = out / (0.2 + local_std)
    return out[..., p:p + h, p:p + w]


def _cell_weights(n: int, device: torch.device) -> torch.Tensor:
    """``(GIST_GRID, n)``: row ``i`` averages the pixels of cell ``i``, bins as ``adaptive_avg_pool``."""
    key = ("cells", n, device)

    def make() -> Any:
        m = torch.zeros(GIST_GRID, n, device=device)
        for i in range(GIST_GRID):
            lo, hi = (i * n) // GIST_GRID, -(-((i + 1) * n) // GIST_GRID)
            m[i, lo:hi] = 1.0 / (hi - lo)
        return m

    return _cached(key, make)


def _complex_bank(h: int, w: int, device: torch.device) -> torch.Tensor:
    key = ("gabor-complex", h, w, device)
    # complex x complex multiplies several times faster than complex x real
    return _cached(key, lambda: gabor_bank(h, w, device).to(torch.complex64))


def _cover(mask: np.ndarray) -> tuple[int, int]:
    """``(start, length)`` of the shortest circular run of indices holding every True of ``mask``."""
    n = len(mask)
    if mask.all() or not mask.any():
        return 0, n
    off = np.flatnonzero(mask)
    gaps = np.diff(np.append(off, off[0] + n))  # gap after each set index, around the circle
    k = int(gaps.argmax())
    return int(off[(k + 1) % len(off)]), n - int(gaps[k]) + 1


@dataclass(frozen=True)
class _Box:
    """One Gabor filter's support, ``rows x cols`` from ``(r0, c0)`` on the circle (FFT order),
    oriented so that ``rows <= cols`` (``flip``: rows are x frequencies); ``gain``: the filter there."""

    r0: int
    c0: int
    rows: int
    cols: int
    flip: bool
    gain: torch.Tensor


def _boxes(hp: int, wp: int) -> list[_Box]:
    """Each filter of the bank for a ``hp x wp`` padded image, cut to where it is not negligible."""
    key = ("boxes", hp, wp)

    def make() -> Any:
        bank = gabor_bank(hp, wp).double().numpy()
        boxes = []
        for g in bank:
            (r0, rows), (c0, cols) = (_cover(m) for m in _keep(g))
            flip = rows > cols
            if flip:
                g, r0, rows, c0, cols = g.T, c0, cols, r0, rows
            gain = np.roll(g, (-r0, -c0), (0, 1))[:rows, :cols]
            boxes.append(_Box(r0, c0, rows, cols, flip, torch.from_numpy(gain).to(torch.complex64)))
        return boxes

    return _cached(key, make)


def _keep(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns where filter ``g`` reaches ``GIST_NEGLIGIBLE`` of its peak."""
    big = g > GIST_NEGLIGIBLE * g.max()
    return big.any(1), big.any(0)


def _gist_boxed(spectrum: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(B, Hp, Wp)`` spectra of padded images -> ``(B, 32, 4, 4)`` cell means, on the CPU.

    Each filter's product with the spectrum is non-zero only in its box, so the inverse FFT runs
    its first pass over the box's lines only (zero-padded to full length) and its second over
    the ``h`` or ``w`` lines the crop keeps. Rolling a spectrum moves no energy, only the phase, so
    the box is rolled to the origin and ``|z|`` is the same.
    """
    b, hp, wp = spectrum.shape
    p = GIST_PAD
    boxes = _boxes(hp, wp)
    rows_h, rows_w = _cell_weights(h, spectrum.device), _cell_weights(w, spectrum.device)
    out = torch.empty((b, len(boxes), GIST_GRID, GIST_GRID))
    energy = {False: torch.empty(w, h), True: torch.empty(h, w)}  # by flip: (x, y) or (y, x)
    # the second pass's input, padded: a filter's first pass goes in (transposed) at the start of
    # each line, one copy where transposing and then padding made two
    padded = {False: torch.zeros(w, hp, dtype=spectrum.dtype), True: torch.zeros(h, wp, dtype=spectrum.dtype)}
    filled = {False: 0, True: 0}  # lines of each buffer that hold a filter's values, the rest are zeros
    for i in range(b):
        s = spectrum[i]
        tiled = s.repeat(2, 2)  # a box that wraps around the edge is a plain slice of this
        sides = {False: tiled, True: tiled.T}
        for f, box in enumerate(boxes):
            n1, keep1, keep2 = (hp, h, w) if box.flip else (wp, w, h)
            prod = sides[box.flip][box.r0:box.r0 + box.rows, box.c0:box.c0 + box.cols] * box.gain
            first = torch.fft.ifft(prod, n=n1, dim=-1)[:, p:p + keep1]
            lines = padded[box.flip]
            lines[:, :box.rows].copy_(first.T)
            if filled[box.flip] > box.rows:  # clear only what an earlier, longer box left behind
                lines[:, box.rows:filled[box.flip]].zero_()
            filled[box.flip] = box.rows
            z = torch.fft.ifft(lines, dim=-1)[:, p:p + keep2]
            e = energy[box.flip]
            np.abs(z.numpy(), out=e.numpy())  # numpy's complex abs is vectorised; torch's is not
            # cells in column-major order, as MATLAB reshapes: (x cell, y cell)
            out[i, f] = (rows_h @ e @ rows_w.T).T if box.flip else rows_w @ e @ rows_h.T
    return out


def gist(gray: torch.Tensor, chunk: int = 4, images: int | None = None, boxed: bool | None = None) -> torch.Tensor:
    """``(B, 1, H, W)`` or ``(B, H, W)`` grey in [0, 1] -> ``(B, 512)`` GIST descriptor (float32).

    Meant for the 256 x 256 view (LMgist's ``imageSize``); other sizes work with a filter bank
    built for them. Deterministic; a constant image gives all zeros. On the CPU each filter is
    applied only where it reaches ``GIST_NEGLIGIBLE`` of its peak (:func:`_gist_boxed`; ``boxed``
    False turns that off); otherwise each step filters ``images`` images (default: one on the
    CPU, the whole batch elsewhere) by ``chunk`` filters. None of these changes the result
    beyond float32 rounding.
    """
    g = _as_b1hw(gray)[:, 0]
    lo = g.amin((-2, -1), keepdim=True)
    g = g - lo
    g = 255.0 * g / g.amax((-2, -1), keepdim=True).clamp_min(1e-8)
    x = _symmetric_pad(prefilter(g), GIST_PAD)
    b, h, w = g.shape
    hp, wp = x.shape[-2:]
    spectrum = torch.fft.fft2(x)
    if g.device.type == "cpu" and boxed is not False:
        return _gist_boxed(spectrum, h, w).flatten(1)
    spectrum = spectrum.unsqueeze(1)  # (B, 1, Hp, Wp)
    bank = _complex_bank(hp, wp, g.device)
    rows, cols = _cell_weights(h, g.device), _cell_weights(w, g.device).T
    p, n = GIST_PAD, bank.shape[0]
    chunk = max(1, min(chunk, n))
    images = max(1, min(images or (1 if g.device.type == "cpu" else b), b))
    # buffers reused across steps (the FFT itself allocates: its out= costs an extra copy)
    filtered = torch.empty((images, chunk, hp, wp), dtype=spectrum.dtype, device=g.device)
    energy = torch.empty((images, chunk, h, w), device=g.device)
    on_cpu = g.device.type == "cpu"
    parts = None if on_cpu else torch.empty((images, chunk, h, w, 2), device=g.device)
    out = torch.empty((b, n, GIST_GRID, GIST_GRID), device=g.device)
    for i in range(0, b, images):
        m = min(images, b - i)
        for f in range(0, n, chunk):
            k = min(chunk, n - f)
            torch.mul(spectrum[i:i + m], bank[f:f + k], out=filtered[:m, :k])
            response = torch.fft.ifft2(filtered[:m, :k])
            e = energy[:m, :k]
            if on_cpu:  # numpy's complex abs is vectorised; torch's goes through a scalar hypot
                np.abs(response.numpy()[..., p:p + h, p:p + w], out=e.numpy())
            else:
                z = torch.view_as_real(response[..., p:p + h, p:p + w])
                sq = torch.mul(z, z, out=parts[:m, :k])
                torch.add(sq[..., 0], sq[..., 1], out=e).sqrt_()
            out[i:i + m, f:f + k] = (rows @ e @ cols).transpose(-1, -2)  # column-major, as MATLAB reshapes
    return out.flatten(1)
