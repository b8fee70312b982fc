"""emo.assembly.filters: filter recipes as data, their options, and flags as the CLI spells them."""

from __future__ import annotations

from pathlib import Path

import pytest

from emo.assembly.classify_recipe import ClassifyOptions
from emo.assembly.features_recipe import FeaturesOptions
from emo.assembly.filters import FILTER_MODULES, filter_stages, get_filter, options_from, parse_flags, settings_from
from emo.assembly.regions_recipe import RegionsOptions
from emo.errors import ModelError, UsageError
from emo.io.records import Item


def test_every_filter_names_its_own_options():
    for name in FILTER_MODULES:
        f = get_filter(name)
        assert f.name == name and callable(f.build)
        f.options()  # the defaults alone are valid


def test_flags_are_spelt_as_on_the_command_line():
    got = parse_flags("features", ["--set", "color,lbp", "--batch-size=8", "--device", "cpu"])
    assert got == {"groups": ("color", "lbp"), "batch_size": 8, "device": "cpu"}
    got = parse_flags("classify", ["--regions", "--top-k", "3", "--head", "va"])
    assert got == {"with_regions": True, "top_k": 3, "head": "va"}
    assert parse_flags("regions", ["--cam", "c.layer", "--iou", "0.3"]) == {"cam_file": "c.layer", "iou": 0.3}


@pytest.mark.parametrize("argv, says", [
    (["--no-such"], "no such option --no-such"),
    (["--top-k"], "needs a value"),
    (["--top-k", "many"], "is not a int"),
    (["--regions=yes"], "takes no value"),
])
def test_bad_flags_are_usage_errors(argv, says):
    with pytest.raises(UsageError, match=says):
        parse_flags("classify", argv)


def test_options_check_their_values():
    with pytest.raises(UsageError, match="unknown feature group|not a feature group|scenery"):
        FeaturesOptions(groups=("color", "scenery"))
    with pytest.raises(UsageError, match="--top-k"):
        ClassifyOptions(top_k=-1)
    with pytest.raises(UsageError, match="--proposals"):
        RegionsOptions(proposals="sift")
    with pytest.raises(UsageError, match="--iou"):
        RegionsOptions(iou=1.5)


def test_options_keep_their_defaults_for_values_not_given():
    o = options_from(RegionsOptions, {"top_k": None, "iou": 0.25, "paths": ("a.jpg",)})
    assert o == RegionsOptions(iou=0.25) and o.top_k == 10


def test_settings_take_the_given_values_over_the_environment(monkeypatch):
    monkeypatch.setenv("EMO_BATCH_SIZE", "7")
    assert settings_from({}).batch_size == 7
    assert settings_from({"batch_size": 3, "device": None}).batch_size == 3


def test_a_filter_refuses_another_filters_options():
    with pytest.raises(TypeError, match="ClassifyOptions"):
        filter_stages("classify", FeaturesOptions(), settings_from({}))
    with pytest.raises(UsageError, match="not a filter"):
        get_filter("fit")


def test_classify_refuses_heads_of_another_task_at_start():
    with pytest.raises(UsageError, match="needs a classify head"):
        filter_stages("classify", ClassifyOptions(), settings_from({"head": "va"}))
    with pytest.raises(UsageError, match="--sentiment-head needs a classify head"):
        filter_stages("classify", ClassifyOptions(sentiment_head="va"), settings_from({}))
    with pytest.raises(UsageError, match="needs a va head"):
        filter_stages("va", get_filter("va").options(), settings_from({"head": "emotion6"}))


def test_a_wrong_head_from_emo_head_names_the_variable(monkeypatch):
    # emo classify and emo va read one EMO_HEAD: exported for classify it reached emo va in a
    # chain, whose refusal did not say where the head came from.
    monkeypatch.setenv("EMO_HEAD", "emotion6")
    with pytest.raises(UsageError, match=r"needs a va head \(EMO_HEAD=emotion6 set it.*unset EMO_HEAD\)"):
        filter_stages("va", get_filter("va").options(), settings_from({}))
    monkeypatch.setenv("EMO_HEAD", "va")
    with pytest.raises(UsageError, match=r"needs a classify head \(EMO_HEAD=va"):
        filter_stages("classify", ClassifyOptions(), settings_from({}))
    # --head given on the line, not from the variable: no word about it.
    monkeypatch.setenv("EMO_HEAD", "sentiment")
    with pytest.raises(UsageError) as e:
        filter_stages("va", get_filter("va").options(), settings_from({"head": "emotion6"}))
    assert "EMO_HEAD" not in str(e.value)


def test_features_stages_follow_the_groups_asked_for():
    stages = filter_stages("features", FeaturesOptions(groups=("color", "deep")), settings_from({}))
    kinds = [type(s).__name__ for s in stages]
    # carried groups are checked first; hand-crafted and network groups share the cores
    assert kinds == ["CheckCarried", "Together", "EmitFeatures"]
    assert list(stages[0].shapes) == ["color", "deep"]
    hand, net = stages[1].stages
    assert hand.groups == ("color",) and net.groups == ("deep",)
    assert not hand.built and not net.built  # nothing is built before the first batch
    only = filter_stages("features", FeaturesOptions(groups=("lbp",)), settings_from({}))
    assert [type(s).__name__ for s in only] == ["CheckCarried", "LazyStage", "EmitFeatures"]
    assert list(only[0].shapes) == ["lbp"]


def test_region_options_reach_the_stage(tmp_path: Path, tiny_backbone):
    pytest.importorskip("torch")
    stages = filter_stages("regions", RegionsOptions(top_k=2, iou=0.3, size=96),
                           settings_from({"backbone": "mobilenet_v2", "device": "cpu", "backend": "eager"}))
    (lazy,) = stages
    assert not lazy.built and lazy.views[0].size == 96  # torch and the engine load with the first batch
    assert lazy.wants(Item(0, {"path": "a.jpg"})) and not lazy.wants(Item(1, {"path": "b.jpg", "regions": []}))
    stage = lazy.build()
    assert stage.views == lazy.views
    assert stage.finder.top_k == 2 and stage.finder.iou == 0.3


def test_region_files_are_checked_before_any_input_is_read(tmp_path: Path):
    junk = tmp_path / "cam.safetensors"
    junk.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ModelError, match="not a regions layer file"):
        filter_stages("regions", RegionsOptions(cam_file=junk), settings_from({}))
    with pytest.raises(ModelError, match="not a regions layer file"):
        filter_stages("regions", RegionsOptions(cam_file=tmp_path / "missing"), settings_from({}))
