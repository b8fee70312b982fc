"""Bad and unusual image files, mixed among good ones: each gets its record, in order."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emo.io.decode import View, decode
from tests.robustness.conftest import TINY, check_contract, emo
from tests.robustness.files import STORED, good_and_bad, png_bomb, quadrants, with_orientation


def test_folder_of_bad_files_among_good_ones(tiny, tmp_path):
    """The 'Shown by' of issue 2: every good image gets features, every bad one its error, exit 1."""
    cases = good_and_bad(tmp_path / "mix")
    good = tmp_path / "mix" / "photo.webp"
    # Interleave a known-good image between the bad ones so order mistakes show.
    order = []
    for name, kind in cases:
        order += [(name, kind), ("photo.webp", None)]
    paths = [str(tmp_path / "mix" / n) for n, _ in order]
    run = emo(TINY + paths)
    recs = check_contract(run, [(p, k) for p, (_, k) in zip(paths, order)])
    # The same good image gives the same numbers wherever it sits in the stream.
    goods = [r["features"]["object"] for r, (n, _) in zip(recs, order) if n == good.name]
    assert all(g == goods[0] for g in goods)


def test_folder_walked_with_r_gives_sorted_records(tiny, tmp_path):
    cases = dict(good_and_bad(tmp_path / "mix"))
    run = emo(TINY + ["-r", str(tmp_path / "mix")])
    names = sorted(cases)
    check_contract(run, [(str(tmp_path / "mix" / n), cases[n]) for n in names])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_image(tmp_path, orientation, fmt):
    upright = quadrants()
    ext = "png" if fmt == "PNG" else "jpg"
    ref = tmp_path / f"upright.{ext}"
    Image.fromarray(upright).save(ref, format=fmt, **({"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}))
    path = with_orientation(tmp_path / f"o{orientation}.{ext}", upright, orientation, fmt)
    views = (View(32, 36), View(40, mode="squash"))
    got, want = decode(path, views, 0), decode(ref, views, 0)
    assert got.size == want.size == (64, 48)
    for v in views:
        diff = np.abs(got.views[v].astype(int) - want.views[v].astype(int))
        # Lossless: identical. JPEG: the same picture up to compression noise; a wrong turn or
        # flip would move whole quadrants (differences of ~200).
        assert diff.max() == 0 if fmt == "PNG" else diff.mean() < 4, (orientation, diff.mean())


def test_exif_stored_forms_are_all_different():
    """The test above means something only if each orientation stores different pixels."""
    u = quadrants(48, 48)
    forms = {o: f(u).tobytes() for o, f in STORED.items()}
    assert len(set(forms.values())) == 8


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = png_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 1000
    with pytest.raises(Exception) as e:
        decode(path, (View(32, 36),), 89_478_485)
    assert getattr(e.value, "kind", None) == "too_large"


def test_max_pixels_option_turns_a_big_image_into_too_large(tiny, tmp_path):
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (300, 200)).save(big)
    Image.new("RGB", (100, 50)).save(small)
    run = emo(TINY + ["--max-pixels", "10000", str(big), str(small)])
    check_contract(run, [(str(big), "too_large"), (str(small), None)])


def test_one_pixel_and_20000x20_strip_give_full_views(tmp_path):
    one, strip = tmp_path / "one.png", tmp_path / "strip.png"
    Image.new("RGB", (1, 1), (9, 99, 199)).save(one)
    Image.new("RGB", (20000, 20), (50, 60, 70)).save(strip)
    crop, squash = View(224, 256), View(64, mode="squash")
    d = decode(one, (crop, squash), 0)
    assert d.views[crop].shape == (224, 224, 3) and (d.views[crop] == (9, 99, 199)).all()
    s = decode(strip, (crop, squash), 0)
    assert s.size == (20000, 20)
    assert s.views[crop].shape == (224, 224, 3) and (s.views[crop] == (50, 60, 70)).all()
    assert (s.views[squash] == (50, 60, 70)).all()
