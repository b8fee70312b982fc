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

import torch
import torch.nn.functional as F

LBP_BINS = 59
GIST_SCALES = 4
GIST_ORIENTATIONS = 8
GIST_GRID = 4
GIST_DIMS = GIST_SCALES * GIST_ORIENTATIONS * GIST_GRID * GIST_GRID
GIST_PAD = 32  # LMgist's boundaryExtension
PREFILTER_FC = 4.0
_PREFILTER_PAD = 5

# (dy, dx) of neighbour p = 0..7, counter-clockwise from the right (image rows grow downwards).
LBP_OFFSETS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))

_cache: dict[tuple, torch.Tensor] = {}


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 1, H, W)`` luma in [0, 1] (ITU-R BT.601 weights)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)


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
    if key not in _cache:
        table, nxt = [], 0
        for code in range(256):
            if _transitions(code) <= 2:
                table.append(nxt)
                nxt += 1
            else:
                table.append(LBP_BINS - 1)
        _cache[key] = torch.tensor(table, device=device)
    return _cache[key]


def lbp_codes(gray: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` grey -> ``(B, H-2, W-2)`` int64 LBP codes in [0, 255] of the interior pixels."""
    g = _as_b1hw(gray)[:, 0]
    h, w = g.shape[-2:]
    if h < 3 or w < 3:
        raise ValueError(f"LBP needs an image of at least 3 x 3 pixels, got {h} x {w}")
    centre = g[:, 1:-1, 1:-1]
    code = torch.zeros_like(centre, dtype=torch.int64)
    for p, (dy, dx) in enumerate(LBP_OFFSETS):
        neighbour = g[:, 1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
        code |= (neighbour >= centre).long() << p
    return code


def lbp_histogram(gray: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` or ``(B, H, W)`` grey in [0, 1] -> ``(B, 59)`` uniform LBP histogram, sums to 1."""
    bins = lbp_mapping(gray.device)[lbp_codes(gray).flatten(1)]
    hist = torch.zeros(bins.shape[0], LBP_BINS, device=gray.device)
    hist.scatter_add_(1, bins, torch.ones_like(bins, dtype=hist.dtype))
    return hist / bins.shape[1]


def _symmetric_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """MATLAB ``padarray(x, [p p], 'symmetric')``: mirror including the edge pixel."""
    x = torch.cat((x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)), -2)
    return torch.cat((x[..., :p].flip(-1), x, x[..., -p:].flip(-1)), -1)


def _freq_grid(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer frequencies in FFT order: ``fy`` along rows ``(h, 1)``, ``fx`` along columns ``(1, w)``."""
    fy = torch.fft.fftfreq(h, 1.0 / h, device=device, dtype=torch.float64).view(h, 1)
    fx = torch.fft.fftfreq(w, 1.0 / w, device=device, dtype=torch.float64).view(1, w)
    return fy, fx


def _prefilter_gaussian(n: int, device: torch.device) -> torch.Tensor:
    key = ("gauss", n, device)
    if key not in _cache:
        fy, fx = _freq_grid(n, n, device)
        s1 = PREFILTER_FC / math.sqrt(math.log(2))
        _cache[key] = torch.exp(-(fx**2 + fy**2) / s1**2).float()
    return _cache[key]


def gabor_bank(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(32, h, w)`` float32 Gabor transfer functions in FFT order (LMgist's ``createGabor``).

    Filter ``8 * s + o`` peaks at radial frequency ``0.3 / 1.85**s`` cycles/pixel and at the
    angle ``-pi * o / 8`` of the frequency vector ``(fx, fy)``; it is one-sided, so the
    magnitude of its response is the local energy (amplitude envelope) of that band.
    """
    device = torch.device(device)
    key = ("gabor", h, w, device)
    if key not in _cache:
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
        _cache[key] = bank.float()
    return _cache[key]


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
    gf = _prefilter_gaussian(n, img.device)
    out = x - torch.fft.ifft2(torch.fft.fft2(x) * gf).real
    local_std = torch.sqrt(torch.fft.ifft2(torch.fft.fft2(out * out) * gf).abs())
    out = out / (0.2 + local_std)
    return out[..., p:p + h, p:p + w]


def gist(gray: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` or ``(B, H, W)`` grey in [0, 1] -> ``(B, 512)`` GIST descriptor (float32).

    Meant for the 256 x 256 view (LMgist's ``imageSize``); other sizes work with a filter bank
    built for them. Deterministic; a constant image gives all zeros.
    """
    g = _as_b1hw(gray)[:, 0]
    lo = g.amin((-2, -1), keepdim=True)
    g = g - lo
    g = 255.0 * g / g.amax((-2, -1), keepdim=True).clamp_min(1e-8)
    x = _symmetric_pad(prefilter(g), GIST_PAD)
    h, w = g.shape[-2:]
    spectrum = torch.fft.fft2(x)
    key = ("gabor-complex", x.shape[-2], x.shape[-1], g.device)
    if key not in _cache:  # complex x complex multiplies several times faster than complex x real
        _cache[key] = gabor_bank(x.shape[-2], x.shape[-1], g.device).to(torch.complex64)
    bank = _cache[key]
    p = GIST_PAD
    out = []
    for filt in bank:  # one filter at a time keeps memory at one batch of spectra
        energy = torch.fft.ifft2(spectrum * filt).abs()[:, p:p + h, p:p + w]
        cells = F.adaptive_avg_pool2d(energy.unsqueeze(1), GIST_GRID)[:, 0]  # (B, row, col)
        out.append(cells.transpose(1, 2).flatten(1))  # column-major, as MATLAB reshapes
    return torch.cat(out, 1)
