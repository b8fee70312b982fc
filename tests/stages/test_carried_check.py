"""emo.stages.carried_check: carried feature groups are flat lists of finite numbers of their size."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from emo.io.records import Item, item_from_record
from emo.stages.carried_check import CheckCarried, GroupShape, carried_values

COLOR = GroupShape(22)
DEEP = GroupShape(8, "tiny_test")
SCENE = GroupShape(None)

# What JSON can carry in place of a group of 22 numbers, and what the message must say.
BAD = {
    "short": ([1, 2, 3], "features.color has 3 values; color has 22"),
    "long": ([0.5] * 23, "features.color has 23 values; color has 22"),
    "empty": ([], "features.color is empty; color has 22"),
    "string": (["a"] * 22, "features.color[0] is a string; color is a list of 22 numbers"),
    "null": ([0.0] * 5 + [None] * 17, "features.color[5] is null; color is a list of 22 numbers"),
    "boolean": ([1.0] * 21 + [True], "features.color[21] is a boolean; color is a list of 22 numbers"),
    "nested": ([[1.0, 2.0]] * 11, "features.color[0] is a list; color is a list of 22 numbers"),
    "object in the list": ([{"a": 1}] * 22, "features.color[0] is an object; color is a list of 22 numbers"),
    "object": ({"a": 1}, "features.color is an object; color is a list of 22 numbers"),
    "number": (5, "features.color is a number; color is a list of 22 numbers"),
    "string instead": ("0.5,0.5", "features.color is a string; color is a list of 22 numbers"),
    "null instead": (None, "features.color is null; color is a list of 22 numbers"),
    "boolean instead": (False, "features.color is a boolean; color is a list of 22 numbers"),
    "past float32": ([1.0] * 3 + [1e308] + [1.0] * 18,
                     "features.color[3] is 1e+308, past float32's range (±3.4e+38); color is a list of 22 numbers"),
    "past float32, negative": ([-3.5e38] * 22, "features.color[0] is -3.5e+38, past float32's range"),
}


@pytest.mark.parametrize("value,message", list(BAD.values()), ids=list(BAD))
def test_every_kind_of_bad_value_is_named(value, message):
    with pytest.raises(ValueError) as e:
        carried_values("color", value, COLOR)
    assert str(e.value).startswith(message)


def test_values_arrive_as_json_parses_them():
    # orjson turns an integer too big for 64 bits into a float: 1e30 fits float32, 1e39 does not
    ok = orjson.loads(b"[" + b",".join([b"1" + b"0" * 30] * 22) + b"]")
    assert carried_values("color", ok, COLOR).dtype == np.float32
    big = orjson.loads(b"[" + b",".join([b"1" + b"0" * 39] * 22) + b"]")
    with pytest.raises(ValueError, match=r"features.color\[0\] is 1e\+39, past float32's range"):
        carried_values("color", big, COLOR)


def test_good_values_become_float32_of_the_same_numbers():
    ints = list(range(22))
    out = carried_values("color", ints, COLOR)
    assert out.dtype == np.float32 and out.tolist() == [float(i) for i in ints]
    assert carried_values("color", [0.1] * 22, COLOR).tolist() == np.full(22, 0.1, np.float32).tolist()
    assert carried_values("color", [-3.4e38] + [0.0] * 21, COLOR)[0] == np.float32(-3.4e38)  # float32's edge is fine


def test_a_python_caller_may_give_arrays_tuples_and_numpy_numbers():
    assert carried_values("deep", np.arange(8, dtype=np.int64), DEEP).tolist() == list(range(8))
    assert carried_values("deep", tuple([0.5] * 8), DEEP).shape == (8,)
    assert carried_values("deep", [np.float32(1.5)] * 4 + [np.int16(2)] * 4, DEEP)[-1] == 2.0
    for value, message in (
        (np.zeros((2, 4)), "features.deep is an array of 2 dimensions"),
        (np.ones(8, bool), "features.deep[0] is a boolean"),
        ([np.bool_(True)] + [0.0] * 7, "features.deep[0] is a boolean"),
        (np.array([1.0] * 7 + [np.nan]), "features.deep[7] is nan, not a finite number"),
        ([float("inf")] * 8, "features.deep[0] is inf, not a finite number"),
        ([10 ** 400] * 8, "features.deep[0] is an integer past float32's range"),
        ({1.0, 2.0}, "features.deep is a set"),
    ):
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            carried_values("deep", value, DEEP)


def test_a_network_group_names_its_network_and_a_fine_tuned_key_its_group():
    with pytest.raises(ValueError, match=r"^features.deep has 2 values; deep has 8 from tiny_test \(computed by another --backbone\?\)$"):
        carried_values("deep", [1.0, 2.0], DEEP)
    with pytest.raises(ValueError, match=r"^features.deep@ab12\[1\] is a string; deep is a list of 8 numbers from tiny"):
        carried_values("deep@ab12", [1.0, "x"], DEEP)


def test_a_group_of_unknown_size_takes_any_count_but_none():
    assert carried_values("scene", [0.25] * 3, SCENE).shape == (3,)
    assert carried_values("scene", [0.5] * 150, SCENE).shape == (150,)
    for value, message in (([], "features.scene is empty; scene is a list of numbers"),
                           ([0.5, None], "features.scene[1] is null; scene is a list of numbers"),
                           ({"sky": 0.5}, "features.scene is an object; scene is a list of numbers")):
        with pytest.raises(ValueError, match=f"^{message}$".replace("[1]", r"\[1\]")):
            carried_values("scene", value, SCENE)


def _item(index: int, features: dict) -> Item:
    return item_from_record(index, {"path": f"{index}.jpg", "features": features}, None)


def test_the_stage_fails_only_the_bad_records_and_keeps_the_rest():
    good = [0.5] * 22
    items = [_item(0, {"color": good}), _item(1, {"color": [1, 2, 3]}), _item(2, {"deep": [0.0] * 8}),
             _item(3, {"color": good, "deep": "oops"}), _item(4, {"color": {"a": 1}})]
    stage = CheckCarried({"color": COLOR, "deep": DEEP})
    assert all(stage.wants(it) for it in items) and stage.views == ()
    stage.run(items)
    assert [it.error.kind if it.error else None for it in items] == [None, "bad_features", None, "bad_features",
                                                                    "bad_features"]
    assert items[1].error.message == "features.color has 3 values; color has 22"
    assert items[3].error.message == "features.deep is a string; deep is a list of 8 numbers from tiny_test"
    assert items[4].error.message == "features.color is an object; color is a list of 22 numbers"
    assert items[0].features["color"].dtype == np.float32 and items[0].features["color"].tolist() == good
    assert items[2].features["deep"].tolist() == [0.0] * 8
    # the record itself is never rewritten: what was carried is what is written back
    assert items[0].record["features"]["color"] is good and items[1].record["features"] == {"color": [1, 2, 3]}
    assert items[1].record["error"] == {"kind": "bad_features", "message": "features.color has 3 values; color has 22"}


def test_groups_the_run_does_not_use_are_never_looked_at():
    item = _item(0, {"color": [0.5] * 22, "lbp": "not mine", "object_top": ["cat", "dog"], "mood": {"x": 1}})
    stage = CheckCarried({"color": COLOR})
    stage.run([item])
    assert item.ok
    assert item.features["lbp"] == "not mine" and item.features["object_top"] == ["cat", "dog"]
    assert not CheckCarried({"deep": DEEP}).wants(item)  # nothing carried for it: no work, no error


def test_one_error_per_record_the_first_group_checked():
    item = _item(0, {"color": [1], "deep": [2]})
    CheckCarried({"color": COLOR, "deep": DEEP}).run([item])
    assert item.error.message == "features.color has 1 value; color has 22"
