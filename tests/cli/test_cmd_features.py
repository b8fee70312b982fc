"""``emo features`` end to end, in-process: dims, pass-through, order, errors, real networks."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from emo.features import HANDCRAFTED_DIMS
from emo.models import imagenet_labels
from tests.cli.test_cmd_models import emo
from tests.conftest import SAMPLES, make_image

TINY = ("--set", "object,deep", "--backbone", "tiny_test")


def test_object_and_deep_dims_from_arguments(monkeypatch, tiny_backbone, image_dir):
    paths = [str(image_dir / n) for n in ("red.jpg", "green.png", "blue.webp")]
    r = emo(monkeypatch, "features", *TINY, *paths)
    assert r.code == 0, r.err
    assert r.err == ""  # no progress bar and no chatter when stderr is not a terminal
    recs = r.records()
    assert [rec["path"] for rec in recs] == paths
    for rec in recs:
        assert set(rec) == {"path", "features"}
        f = rec["features"]
        assert set(f) == {"object", "deep", "object_top"}
        assert len(f["object"]) == tiny_backbone.num_classes == 10
        assert len(f["deep"]) == tiny_backbone.embed_dim == 8
        assert sum(f["object"]) == pytest.approx(1.0, abs=1e-5)
        assert len(f["object_top"]) == 5
    assert recs[0]["features"]["deep"] != recs[2]["features"]["deep"]  # each image its own numbers


def test_json_fields_pass_through_untouched_in_order(monkeypatch, tiny_backbone, tmp_path):
    imgs = [make_image(tmp_path / f"{n}.png", color=c) for n, c in (("z", (250, 0, 0)), ("a", (0, 0, 250)))]
    inputs = [
        {"id": 7, "path": str(imgs[0]), "label": "joy", "valence": 6.25, "note": "ünïcode ✓", "nested": {"k": [1, None, True]}},
        str(imgs[1]),
        {"arousal": 3, "path": str(imgs[1]), "distribution": [0.5, 0.5], "tags": []},
    ]
    stdin = b"".join((orjson.dumps(x) if isinstance(x, dict) else x.encode()) + b"\n" for x in inputs)
    r = emo(monkeypatch, "features", *TINY, input=stdin)
    assert r.code == 0, r.err
    recs = r.records()
    assert len(recs) == 3
    for rec, given in zip(recs, inputs):
        given = given if isinstance(given, dict) else {"path": given}
        assert list(rec)[:-1] == list(given)  # same keys, same order, "features" added last
        assert {k: rec[k] for k in given} == given
        assert len(rec["features"]["deep"]) == 8
    assert recs[1]["features"] == recs[2]["features"]  # the same image twice


def test_precomputed_features_are_kept_and_not_recomputed(monkeypatch, tiny_backbone, tmp_path):
    # The file does not exist: a record that carries its features never needs the pixels.
    deep = [0.25, -1.5, 2.0, 0.0, 1.0, 3.5, -0.125, 8.0]
    line = orjson.dumps({"path": str(tmp_path / "gone.jpg"), "features": {"deep": deep, "other": [1.0]}})
    r = emo(monkeypatch, "features", "--set", "deep", "--backbone", "tiny_test", input=line + b"\n")
    assert r.code == 0, r.err
    (rec,) = r.records()
    assert rec["features"] == {"deep": deep, "other": [1.0]}


# Carried groups that cannot stand for color (22 numbers) or tiny_test's deep (8), and the one
# error each must become; every one of them used to pass through or fail with another kind.
BAD_CARRIED = [
    ({"color": [1, 2, 3]}, "features.color has 3 values; color has 22"),
    ({"deep": ["a", "b"]}, "features.deep[0] is a string; deep is a list of 8 numbers from tiny_test"),
    ({"color": [None] * 22}, "features.color[0] is null; color is a list of 22 numbers"),
    ({"deep": {"a": 1}}, "features.deep is an object; deep is a list of 8 numbers from tiny_test"),
    ({"color": [1e308] * 22}, "features.color[0] is 1e+308, past float32's range (±3.4e+38); "
                              "color is a list of 22 numbers"),
    ({"color": []}, "features.color is empty; color has 22"),
    ({"deep": 3}, "features.deep is a number; deep is a list of 8 numbers from tiny_test"),
    ({"color": [[0.5] * 11, [0.5] * 11]}, "features.color[0] is a list; color is a list of 22 numbers"),
    ({"deep": [True] * 8}, "features.deep[0] is a boolean; deep is a list of 8 numbers from tiny_test"),
]


def test_malformed_carried_groups_fail_only_their_records(monkeypatch, tiny_backbone, image_dir, tmp_path):
    img = str(image_dir / "red.jpg")
    color = [i / 4 for i in range(22)]  # exact in float32: written back as carried
    deep = [i / 8 - 0.5 for i in range(8)]
    good = [
        {"id": "computed", "path": img},
        {"id": "carried", "path": str(tmp_path / "gone.jpg"), "features": {"color": color, "deep": deep}},
        {"id": "half carried", "path": str(image_dir / "blue.webp"), "features": {"color": color, "mood": "x"}},
        # a group the run does not use is never looked at, whatever it holds
        {"id": "others", "path": str(image_dir / "green.png"), "features": {"lbp": "junk", "gist": [None]}},
    ]
    inputs: list = []
    for i, (features, _) in enumerate(BAD_CARRIED):
        inputs += [good[i % len(good)], {"id": f"bad {i}", "path": img, "features": features}]
    inputs += [good[0], img]  # a plain path line too
    stdin = b"".join((orjson.dumps(x) if isinstance(x, dict) else x.encode()) + b"\n" for x in inputs)
    r = emo(monkeypatch, "features", "--set", "color,deep", "--backbone", "tiny_test", "--batch-size", "4",
            input=stdin)
    assert r.code == 1
    recs = r.records()
    assert [rec.get("id") for rec in recs] == [x.get("id") if isinstance(x, dict) else None for x in inputs]
    errors = [(rec["error"]["kind"], rec["error"]["message"]) for rec in recs if "error" in rec]
    assert errors == [("bad_features", message) for _, message in BAD_CARRIED]
    assert r.err.splitlines() == [f"emo: {img}: bad_features: {message}" for _, message in BAD_CARRIED]
    for rec, given in zip(recs, inputs):
        given = given if isinstance(given, dict) else {"path": given}
        if "error" in rec:  # an error record is its input, untouched, and the error
            assert rec == {**given, "error": rec["error"]}
            continue
        assert {k: rec[k] for k in given if k != "features"} == {k: v for k, v in given.items() if k != "features"}
        f = rec["features"]
        assert len(f["color"]) == 22 and len(f["deep"]) == 8
        assert all(np.isfinite(f["color"])) and all(np.isfinite(f["deep"]))
        if given.get("id") == "carried":
            assert f == {"color": color, "deep": deep}
        elif given.get("id") == "half carried":
            assert f["color"] == color and f["mood"] == "x"
        elif given.get("id") == "others":
            assert f["lbp"] == "junk" and f["gist"] == [None]
    computed = [rec for rec in recs if rec.get("id") == "computed"]
    # the same picture, the same numbers: to float32's rounding, since the network's kernels
    # (oneDNN's) may add in another order for a batch of another size, as they do on some CPUs
    first, last = computed[0]["features"], computed[-1]["features"]
    assert first.keys() == last.keys()
    for g in first:
        np.testing.assert_allclose(first[g], last[g], rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_carried_scene_has_the_scene_models_size(monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    from tests.features.test_segmentation import ColourSegmenter

    model = tmp_path / "seg.ts"
    torch.jit.script(ColourSegmenter()).save(str(model))
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    img = str(make_image(tmp_path / "a.png"))
    lines = [{"path": img, "features": {"scene": [0.5, 0.5]}}, {"path": img, "features": {"scene": [0.25, 0.5, 0.25]}},
             {"path": img}]
    r = emo(monkeypatch, "features", "--set", "scene", "--scene-model", str(model), "--scene-labels", str(labels),
            input=b"".join(orjson.dumps(x) + b"\n" for x in lines))
    assert r.code == 1
    bad, carried, computed = r.records()
    assert bad["error"] == {"kind": "bad_features", "message": "features.scene has 2 values; scene has 3 from seg.ts"}
    assert carried["features"] == {"scene": [0.25, 0.5, 0.25]} and len(computed["features"]["scene"]) == 3


def test_bad_inputs_keep_their_place_and_exit_1(monkeypatch, tiny_backbone, bad_files, image_dir):
    paths = [str(image_dir / "red.jpg"), str(bad_files["text"]), str(image_dir / "blue.webp"), str(bad_files["empty"])]
    r = emo(monkeypatch, "features", *TINY, *paths)
    assert r.code == 1
    recs = r.records()
    assert [rec["path"] for rec in recs] == paths
    assert ["error" in rec for rec in recs] == [False, True, False, True]
    assert recs[1]["error"]["kind"] == "not_an_image" and recs[3]["error"]["kind"] == "empty_file"
    assert "features" not in recs[1]
    lines = r.err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"emo: {paths[1]}: not_an_image")


def test_unknown_group_is_a_usage_error(monkeypatch):
    r = emo(monkeypatch, "features", "--set", "color,smell", "x.jpg")
    assert r.code == 2 and "unknown feature group smell;" in r.err and r.out == b""


def test_an_empty_set_says_it_names_no_group(monkeypatch):
    r = emo(monkeypatch, "features", "--set", "", "x.jpg")
    assert r.code == 2 and r.out == b""
    assert "--set '' names no feature group" in r.err and "leave --set out for color,lbp,gist,object,deep" in r.err
    assert "(none)" not in r.err
    fit = emo(monkeypatch, "fit", "--features", "", "-o", "x.head", "x.jsonl")
    assert fit.code == 2 and "--features '' names no feature group" in fit.err, fit.err


def test_groups_help_wraps_under_each_name():
    from emo.features import ALL_GROUPS, groups_help

    lines = groups_help().splitlines()
    assert all(len(ln) <= 76 for ln in lines)
    assert [ln.split()[0] for ln in lines if not ln.startswith(" " * 10)] == list(ALL_GROUPS)


def test_unknown_backbone_is_exit_2(monkeypatch, image_dir):
    r = emo(monkeypatch, "features", "--set", "deep", "--backbone", "nope", str(image_dir / "red.jpg"))
    assert r.code == 2 and "unknown network 'nope'" in r.err and r.out == b""


def test_help_documents_the_dims(monkeypatch):
    text = emo(monkeypatch, "features", "--help").out.decode()
    assert "color,lbp,gist,object,deep" in text  # the default set
    for group, dims in HANDCRAFTED_DIMS.items():
        assert f"{group:7s} {dims}:" in text
    assert "object  1000: ImageNet class probabilities" in text
    assert "1280 for mobilenet_v2" in text


def test_mobilenet_v2_object_top1_of_the_cat_is_a_cat(monkeypatch):
    r = emo(monkeypatch, "features", "--set", "object,deep", str(SAMPLES / "cat.jpg"), str(SAMPLES / "rocket.jpg"))
    assert r.code == 0, r.err
    cat, rocket = r.records()
    labels = imagenet_labels()
    top = int(np.argmax(cat["features"]["object"]))
    assert 281 <= top <= 285 and cat["features"]["object_top"][0] == labels[top]
    assert len(cat["features"]["object"]) == 1000 and len(cat["features"]["deep"]) == 1280
    assert not 281 <= int(np.argmax(rocket["features"]["object"])) <= 285


def _photo_sample() -> list[str]:
    found = sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    return found[1::2] + found[0::2]  # not sorted: order must follow the input


def test_find_pipe_features(monkeypatch):
    """``find photos -name '*.jpg' | emo features`` on the shipped photos."""
    paths = _photo_sample()
    r = emo(monkeypatch, "features", "-q", input="".join(p + "\n" for p in paths))
    assert r.code == 0, r.err
    recs = r.records()
    assert [rec["path"] for rec in recs] == paths
    dims = {**HANDCRAFTED_DIMS, "object": 1000, "deep": 1280, "object_top": 5}
    for rec in recs:
        assert {g: len(v) for g, v in rec["features"].items()} == dims
        assert all(np.isfinite(rec["features"][g]).all() for g in dims if g != "object_top")
