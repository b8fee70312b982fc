"""Feature groups: what each is, its size, and which ones ``emo features`` computes by default.

Hand-crafted groups (Kim et al. section IV) live in :mod:`emo.features.color` and
:mod:`emo.features.texture` and run batched on torch tensors; ``object`` and ``deep`` come from
the backbone; ``scene`` from a segmentation network (:mod:`emo.features.segmentation`).
"""

from __future__ import annotations

# Fixed sizes of the hand-crafted groups; object/deep/scene sizes come from the network.
HANDCRAFTED_DIMS = {"color": 22, "lbp": 59, "gist": 512}
NETWORK_GROUPS = ("object", "deep")
ALL_GROUPS = ("color", "lbp", "gist", "object", "deep", "scene")
DEFAULT_GROUPS = ("color", "lbp", "gist", "object", "deep")

# Side of the square view hand-crafted features are computed on (GIST's customary 256 x 256).
HANDCRAFTED_SIZE = 256

DESCRIPTIONS = {
    "color": "22: mean R,G,B; mean H,S,V; HSV histogram (8x3x3 bins) peak: bin index, share; shares of "
    "11 colour names (black blue brown grey green orange pink purple red white yellow); "
    "Valdez-Mehrabian pleasure, arousal, dominance",
    "lbp": "59: uniform LBP histogram (square 8-neighbourhood, radius 1), sums to 1",
    "gist": "512: Gabor energy, 4 scales x 8 orientations x 4x4 grid",
    "object": "1000: ImageNet class probabilities (+ object_top: top-5 names)",
    "deep": "backbone penultimate embedding (1280 for mobilenet_v2)",
    "scene": "share of pixels per class of a segmentation network: 21 VOC classes "
    "(deeplabv3_mobilenet_v3_large), or your own (--scene-model, --scene-labels)",
}


def parse_groups(spec: str, flag: str = "--set", default: tuple[str, ...] = DEFAULT_GROUPS) -> tuple[str, ...]:
    """``"color,deep"`` -> ``("color", "deep")``; an unknown name, or none (``flag ""``), raises
    ValueError naming ``flag`` and the ``default`` it has when left out."""
    groups = tuple(dict.fromkeys(g.strip() for g in spec.split(",") if g.strip()))
    if not groups:
        raise ValueError(f"{flag} {spec!r} names no feature group; give one or more of {', '.join(ALL_GROUPS)} "
                         f"(comma-separated), or leave {flag} out for {','.join(default)}")
    bad = [g for g in groups if g not in ALL_GROUPS]
    if bad:
        raise ValueError(f"unknown feature group{'s' if len(bad) > 1 else ''} {', '.join(bad)}; known: {', '.join(ALL_GROUPS)}")
    return groups


def groups_help(width: int = 76) -> str:
    """The feature groups and what each holds, one entry each, wrapped under its name (for --help)."""
    import textwrap

    lines = []
    for g in ALL_GROUPS:
        lines += textwrap.wrap(DESCRIPTIONS[g], width=width, initial_indent=f"  {g:7s} ", subsequent_indent=" " * 10,
                             break_on_hyphens=False)
    return "\n".join(lines)
