"""emo.assembly.feature_needs: what a carried group must hold, and that it is checked before any stage."""

from __future__ import annotations

from emo.assembly.feature_needs import GroupsOnly, carried_shape, carried_shapes, feature_stages
from emo.config import Settings
from emo.models import get
from emo.models.head_file import new_head
from emo.stages.carried_check import CheckCarried, GroupShape


def test_sizes_come_from_the_fixed_dims_and_the_registry(tiny_backbone):
    assert carried_shape("color", "tiny_test") == GroupShape(22)
    assert carried_shape("gist", "tiny_test") == GroupShape(512)
    assert carried_shape("object", "tiny_test") == GroupShape(10, "tiny_test")
    assert carried_shape("deep", "tiny_test") == GroupShape(8, "tiny_test")
    assert carried_shape("deep", "resnet50") == GroupShape(2048, "resnet50")  # from the registry: nothing loaded
    assert carried_shape("scene", "tiny_test") == GroupShape(None)  # no scene network in these runs
    assert carried_shape("regions", "tiny_test") == GroupShape(None)


def test_every_key_a_head_reads_and_a_fine_tuned_heads_own_deep(tiny_backbone):
    plain = new_head(["color", "deep", "scene"], {"color": 22, "deep": 8, "scene": 21}, "classify", ["a", "b"],
                     "tiny_test")
    own = new_head(["deep"], {"deep": 1280}, "classify", ["a", "b"], "efficientnet_lite0")
    own.header["finetuned"] = {"id": "ab12"}
    shapes = carried_shapes([plain, own], Settings(backbone="tiny_test"))
    assert shapes == {"color": GroupShape(22), "deep": GroupShape(8, "tiny_test"), "scene": GroupShape(None),
                      "deep@ab12": GroupShape(get("efficientnet_lite0").embed_dim, "efficientnet_lite0")}


def test_the_check_is_the_first_stage_and_covers_only_the_groups_asked_for(tiny_backbone):
    stages = feature_stages([GroupsOnly(("color", "deep"))], Settings(backbone="tiny_test", device="cpu"))
    check = stages[0]
    assert isinstance(check, CheckCarried)
    assert check.shapes == {"color": GroupShape(22), "deep": GroupShape(8, "tiny_test")}
    assert not any(isinstance(s, CheckCarried) for s in stages[1:])
