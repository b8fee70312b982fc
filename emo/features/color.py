"""Colour features of Kim et al. section IV-A, batched on torch tensors (CPU or GPU).

``color_features(rgb)`` returns 22 numbers per image, in this order:

====  ==========================================================================
0-2   mean R, G, B, in [0, 1]
3-5   mean H, S, V of HSV, in [0, 1] (H is the plain mean of hue in [0, 1), as in
      the paper's "mean values of HSV"; hue of a grey pixel counts as 0)
6     index of the HSV histogram's largest bin, 0..71: 8 hue x 3 saturation x 3
      value bins, index = 9 * h_bin + 3 * s_bin + v_bin (equal-width bins)
7     that bin's share of the pixels, in (0, 1]
8-18  share of the pixels named black, blue, brown, grey, green, orange, pink,
      purple, red, white, yellow (the 11 basic colour terms, van de Weijer's order)
19    pleasure  = 0.69 V + 0.22 S   (Valdez and Mehrabian 1994; V = mean brightness,
20    arousal   = -0.31 V + 0.60 S  S = mean saturation, both in [0, 1])
21    dominance = -0.76 V + 0.32 S
====  ==========================================================================

Colour names approximate van de Weijer et al.'s learned colour naming (whose table is not
available here): every pixel takes the term of its nearest prototype in CIELAB, and the
prototypes are CSS Color Module Level 4 named colours grouped under the basic term their name
says (``_PROTOTYPES``). Like van de Weijer's ``w2c`` table, the assignment is a lookup on RGB
quantised to 32 levels per channel, so a pixel costs one gather.
"""

from __future__ import annotations

import torch

COLOR_DIMS = 22
HSV_BINS = (8, 3, 3)
COLOR_TERMS = ("black", "blue", "brown", "grey", "green", "orange", "pink", "purple", "red", "white", "yellow")

# CSS named colours (sRGB hex, W3C CSS Color Module Level 4) grouped by the basic term their
# name says or is read as (navy: blue, maroon: red); names that straddle two terms (teal,
# turquoise, lavender, beige, salmon, plum, orchid) are left out.
_PROTOTYPES: dict[str, tuple[int, ...]] = {
    "black": (0x000000,),
    "blue": (0x0000FF, 0x000080, 0x00008B, 0x0000CD, 0x4169E1, 0x4682B4, 0x1E90FF, 0x00BFFF, 0x87CEEB,
             0x87CEFA, 0xADD8E6, 0x6495ED, 0xB0C4DE, 0x191970, 0x5F9EA0, 0xB0E0E6, 0x00FFFF, 0x6A5ACD),
    "brown": (0xA52A2A, 0x8B4513, 0xA0522D, 0xD2691E, 0xCD853F, 0xF4A460, 0xD2B48C, 0xDEB887, 0xBC8F8F),
    "grey": (0x696969, 0x808080, 0xA9A9A9, 0xC0C0C0, 0xD3D3D3, 0xDCDCDC, 0x708090, 0x778899, 0x2F4F4F),
    "green": (0x008000, 0x00FF00, 0x006400, 0x228B22, 0x2E8B57, 0x808000, 0x6B8E23, 0x9ACD32, 0x90EE90,
              0x98FB98, 0x3CB371, 0x32CD32, 0x7CFC00, 0x556B2F, 0x00FF7F, 0x8FBC8F),
    "orange": (0xFFA500, 0xFF8C00, 0xFF7F50, 0xFF4500),
    "pink": (0xFFC0CB, 0xFFB6C1, 0xFF69B4, 0xFF1493, 0xDB7093, 0xC71585, 0xFF00FF),
    "purple": (0x800080, 0x4B0082, 0x9400D3, 0x8A2BE2, 0x9370DB, 0x9932CC, 0x8B008B, 0x663399, 0xEE82EE),
    "red": (0xFF0000, 0x8B0000, 0xB22222, 0xDC143C, 0xCD5C5C, 0x800000, 0xFF6347),
    "white": (0xFFFFFF, 0xFFFAFA, 0xF5F5F5, 0xFFFFF0, 0xF8F8FF, 0xFFFAF0),
    "yellow": (0xFFFF00, 0xFFD700, 0xF0E68C, 0xFFFFE0, 0xFFFACD, 0xEEE8AA),
}

_LEVELS = 32  # RGB quantisation of the colour-name lookup, as in van de Weijer's w2c table
_lut_cache: dict[object, torch.Tensor] = {}


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 3, H, W)`` HSV in [0, 1] (hue as a turn fraction)."""
    r, g, b = rgb.unbind(1)
    out = torch.empty(rgb.shape, dtype=rgb.dtype, device=rgb.device)
    h, s, v = out.unbind(1)
    torch.maximum(torch.maximum(r, g, out=v), b, out=v)
    c = v - torch.minimum(torch.minimum(r, g), b)
    torch.div(c, v.clamp_min(1e-12), out=s)  # v == 0 only where c == 0: s is 0 there
    # the first largest channel picks the sector: red (g - b), green (b - r) + 2, blue (r - g) + 4
    red, green = r == v, g == v
    num = torch.where(red, g - b, torch.where(green, b - r, r - g))
    num.div_(c.clamp_min(1e-12)).add_(torch.where(red, 0.0, torch.where(green, 2.0, 4.0)))
    torch.remainder(num, 6.0, out=h).div_(6.0)  # a grey pixel is red's sector with g - b == 0: hue 0
    return out


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` sRGB in [0, 1] -> ``(..., 3)`` CIELAB (D65 white)."""
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                      [0.2126729, 0.7151522, 0.0721750],
                      [0.0193339, 0.1191920, 0.9503041]], dtype=rgb.dtype, device=rgb.device)
    xyz = lin @ m.T / torch.tensor([0.95047, 1.0, 1.08883], dtype=rgb.dtype, device=rgb.device)
    eps = 216 / 24389
    f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (1 / 3), (24389 / 27 * xyz + 16) / 116)
    return torch.stack((116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])), -1)


def _prototypes() -> tuple[torch.Tensor, torch.Tensor]:
    """Prototype colours ``(K, 3)`` in [0, 1] and their term index ``(K,)``."""
    cols, terms = [], []
    for t, name in enumerate(COLOR_TERMS):
        for hexv in _PROTOTYPES[name]:
            cols.append(((hexv >> 16) & 255, (hexv >> 8) & 255, hexv & 255))
            terms.append(t)
    return torch.tensor(cols, dtype=torch.float64) / 255.0, torch.tensor(terms)


def color_name_lut(device: torch.device | str = "cpu") -> torch.Tensor:
    """``(32**3,)`` int64: basic-term index of each quantised RGB cell, index ``r + 32 g + 1024 b``."""
    device = torch.device(device)
    if device not in _lut_cache:
        cols, terms = _prototypes()
        q = (torch.arange(_LEVELS, dtype=torch.float64) + 0.5) / _LEVELS  # cell centres
        b, g, r = torch.meshgrid(q, q, q, indexing="ij")
        cells = srgb_to_lab(torch.stack((r, g, b), -1).reshape(-1, 3))
        nearest = torch.cdist(cells, srgb_to_lab(cols)).argmin(1)
        _lut_cache[device] = terms[nearest].to(device)
    return _lut_cache[device]


def _counts(index: torch.Tensor, n: int) -> torch.Tensor:
    """``(B, P)`` integer labels in [0, n) -> ``(B, n)`` float32 counts: one bincount for the batch."""
    rows = index.shape[0]
    offset = torch.arange(rows, device=index.device).mul_(n).unsqueeze(1)
    return torch.bincount((index + offset).flatten(), minlength=rows * n).view(rows, n).float()


def _name_matrix(device: torch.device) -> torch.Tensor:
    """``(32**3, 11)`` float32 one-hot rows: quantised RGB cell -> its basic colour term."""
    device = torch.device(device)
    key = ("onehot", device)
    if key not in _lut_cache:
        _lut_cache[key] = torch.nn.functional.one_hot(color_name_lut(device), len(COLOR_TERMS)).float()
    return _lut_cache[key]


def color_name_shares(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 11)`` share of pixels per basic colour term."""
    q = (rgb * _LEVELS).floor_().clamp_(0, _LEVELS - 1)
    # cell index computed in float32 (exact below 2**24) so only one tensor becomes int64
    cell = q[:, 0] + _LEVELS * q[:, 1] + _LEVELS * _LEVELS * q[:, 2]
    counts = _counts(cell.flatten(1).long(), _LEVELS**3)
    return (counts @ _name_matrix(rgb.device)).to(rgb.dtype) / cell[0].numel()


def hsv_histogram(hsv: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` HSV in [0, 1] -> ``(B, 72)`` normalised histogram (8 x 3 x 3 bins)."""
    nh, ns, nv = HSV_BINS
    bins = torch.tensor([nh, ns, nv], dtype=hsv.dtype, device=hsv.device).view(1, 3, 1, 1)
    q = (hsv * bins).floor_()
    q = torch.minimum(q, bins - 1).clamp_min_(0)
    index = q[:, 0] * (ns * nv) + q[:, 1] * nv + q[:, 2]
    return (_counts(index.flatten(1).long(), nh * ns * nv) / index[0].numel()).to(hsv.dtype)


def valdez_mehrabian(brightness: torch.Tensor, saturation: torch.Tensor) -> torch.Tensor:
    """Pleasure, arousal, dominance ``(..., 3)`` from brightness and saturation in [0, 1].

    Valdez and Mehrabian (1994), as cited by Kim et al. eq. 1-3. The paper's text lost the minus
    signs of the brightness terms of arousal and dominance; the original has them (brighter
    colours are calmer and less dominant), and so do Machajdik and Hanbury (2010).
    """
    return torch.stack((0.69 * brightness + 0.22 * saturation,
                        -0.31 * brightness + 0.60 * saturation,
                        -0.76 * brightness + 0.32 * saturation), -1)


# Images per step on the CPU: a pair of 256 x 256 views and its HSV planes stay in a core's cache
# between the twenty-odd passes over them; a whole batch's planes came from memory at every pass.
_CPU_IMAGES = 2


def color_features(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` float32 RGB in [0, 1] -> ``(B, 22)`` float32; order in the module docstring."""
    if rgb.device.type == "cpu" and rgb.shape[0] > _CPU_IMAGES:
        return torch.cat([_color_features(part) for part in rgb.split(_CPU_IMAGES)])
    return _color_features(rgb)


def _color_features(rgb: torch.Tensor) -> torch.Tensor:
    rgb = rgb.float().clamp(0.0, 1.0).contiguous()  # planes, not channels_last: per-channel ops stream
    hsv = rgb_to_hsv(rgb)
    mean_rgb = rgb.mean((2, 3))
    mean_hsv = hsv.mean((2, 3))
    peak_share, peak_index = hsv_histogram(hsv).max(1)
    names = color_name_shares(rgb)
    pad = valdez_mehrabian(mean_hsv[:, 2], mean_hsv[:, 1])
    return torch.cat((mean_rgb, mean_hsv, peak_index[:, None].float(), peak_share[:, None], names, pad), 1)
