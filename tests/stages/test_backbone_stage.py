"""emo.stages.backbone_stage: batching views, object probabilities, top-5 names and the embedding."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from emo.config import from_env
from emo.engine import Profile, load
from emo.io.decode import View
from emo.io.records import Item
from emo.models import create
from emo.stages.backbone_stage import BackboneStage, to_batch

LABELS = [f"class{i}" for i in range(10)]


@pytest.fixture
def tiny(tiny_backbone):
    settings = replace(from_env(), device="cpu", backend="eager")
    model = create("tiny_test", settings)
    engine = load(model, network_id="tiny_test", weights_sha256=model.weights_sha256,
                  profile=Profile(32, 4), settings=settings)
    return tiny_backbone, model, engine


def _items(view: View, n: int = 3) -> list[Item]:
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        it = Item(i, {"path": f"{i}.jpg"})
        it.views[view] = rng.integers(0, 256, (view.size, view.size, 3), dtype=np.uint8)
        items.append(it)
    return items


def test_to_batch_is_nchw_uint8_of_each_view():
    view = View(5, mode="squash")
    items = _items(view, 2)
    b = to_batch(items, view)
    assert b.shape == (2, 3, 5, 5) and b.dtype == torch.uint8
    assert torch.equal(b[1, 2], torch.from_numpy(items[1].views[view][..., 2]))  # channel 2 = blue


def test_the_view_comes_from_the_entry(tiny):
    entry, _, engine = tiny
    stage = BackboneStage(engine, entry, ("object", "deep"))
    assert stage.views == (View(32, 36, "crop"),)  # crop 32 after resizing the short side to 36


def test_object_and_deep_equal_the_networks_outputs(tiny):
    entry, model, engine = tiny
    stage = BackboneStage(engine, entry, ("color", "object", "deep"), LABELS)
    assert stage.groups == ("object", "deep")
    items = _items(stage.view)
    stage.run(items)
    with torch.inference_mode():
        logits, emb = model(to_batch(items, stage.view))
    probs = torch.softmax(logits, 1).numpy()
    for i, it in enumerate(items):
        assert it.features["object"].shape == (10,) and it.features["deep"].shape == (8,)
        assert np.allclose(it.features["object"], probs[i], atol=1e-6)
        assert it.features["object"].sum() == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(it.features["deep"], emb[i].numpy(), atol=1e-6)
        order = np.argsort(-probs[i])[:5]
        assert it.scratch["object_top"] == [LABELS[j] for j in order]


def test_each_item_gets_its_own_row(tiny):
    entry, _, engine = tiny
    stage = BackboneStage(engine, entry, ("deep",))
    items = _items(stage.view)
    stage.run(items)
    single = _items(stage.view)[2:]
    stage.run(single)
    assert np.allclose(items[2].features["deep"], single[0].features["deep"], atol=1e-5)
    assert not np.allclose(items[0].features["deep"], items[2].features["deep"])


def test_only_the_chosen_groups(tiny):
    entry, _, engine = tiny
    stage = BackboneStage(engine, entry, ("deep",), LABELS)
    items = _items(stage.view, 1)
    stage.run(items)
    assert set(items[0].features) == {"deep"} and "object_top" not in items[0].scratch


def test_no_names_without_labels(tiny):
    entry, _, engine = tiny
    stage = BackboneStage(engine, entry, ("object",))
    items = _items(stage.view, 1)
    stage.run(items)
    assert "object" in items[0].features and "object_top" not in items[0].scratch


def test_wants_only_what_is_missing(tiny):
    entry, _, engine = tiny
    stage = BackboneStage(engine, entry, ("object", "deep"))
    it = Item(0, {"path": "a.jpg"})
    assert stage.wants(it)
    it.features["deep"] = [0.0] * 8
    assert stage.wants(it)
    it.features["object"] = [0.1] * 10
    assert not stage.wants(it)


def test_a_carried_group_is_kept_when_the_network_runs_for_the_other(tiny):
    entry, _, engine = tiny
    stage = BackboneStage(engine, entry, ("object", "deep"), LABELS)
    items = _items(stage.view, 2)
    carried = np.arange(8, dtype=np.float32)
    items[0].features["deep"] = carried  # only "object" is missing: the network runs for it
    stage.run(items)
    assert items[0].features["deep"] is carried
    assert items[0].features["object"].shape == (10,) and "object_top" in items[0].scratch
    assert not np.array_equal(items[1].features["deep"], carried)
