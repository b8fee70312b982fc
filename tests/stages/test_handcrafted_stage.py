"""emo.stages.handcrafted_stage: worker threads share out a batch without changing any value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import emo
from emo.features import HANDCRAFTED_DIMS, HANDCRAFTED_SIZE
from emo.features.color import color_features
from emo.features.texture import gist, lbp_histogram, to_gray
from emo.io.records import Item
from emo.stages.handcrafted_stage import HandcraftedStage

GROUPS = ("color", "lbp", "gist")


def _photos(n: int) -> list[np.ndarray]:
    """``n`` (256, 256, 3) uint8 views cut from the packaged sample photos."""
    folder = Path(emo.__file__).parent / "data" / "samples"
    out = []
    for i, path in enumerate(sorted(folder.glob("*.jpg"))[:n]):
        im = Image.open(path).convert("RGB").resize((HANDCRAFTED_SIZE, HANDCRAFTED_SIZE))
        out.append(np.asarray(im.rotate(90 * i)))
    return out


def _items(stage: HandcraftedStage, views: list[np.ndarray]) -> list[Item]:
    items = []
    for i, v in enumerate(views):
        it = Item(i, {"path": f"{i}.jpg"})
        it.views[stage.view] = v
        items.append(it)
    return items


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_give_the_values_of_the_plain_functions(threads):
    views = _photos(3)
    stage = HandcraftedStage(GROUPS, "cpu", threads=threads)
    items = _items(stage, views)
    stage.run(items)
    rgb = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float() / 255.0
    want = {"color": color_features(rgb), "lbp": lbp_histogram(to_gray(rgb)), "gist": gist(to_gray(rgb))}
    for g in GROUPS:
        got = np.stack([it.features[g] for it in items])
        assert got.shape == (3, HANDCRAFTED_DIMS[g]) and got.dtype == np.float32
        # rows stay with their image: each photo is different, so a shuffle would not match
        np.testing.assert_allclose(got, want[g].numpy(), rtol=1e-5, atol=1e-6)


def test_only_missing_groups_are_computed_and_the_main_thread_keeps_its_threads():
    before = torch.get_num_threads()
    stage = HandcraftedStage(GROUPS, "cpu", threads=2)
    items = _items(stage, _photos(3))
    kept = np.arange(512, dtype=np.float32)
    items[1].features["gist"] = kept
    stage.run(items)
    assert items[1].features["gist"] is kept
    assert all(set(GROUPS) <= set(it.features) for it in items)
    assert torch.get_num_threads() == before
