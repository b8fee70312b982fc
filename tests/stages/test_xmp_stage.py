"""emo.stages.xmp_stage: keywords from classify records into sidecars; a bad sidecar fails only its record."""

from __future__ import annotations

import orjson
from PIL import Image

from emo.io.records import Item, item_from_record, name_fields
from emo.io.writer import dumps
from emo.io.xmp import read_keywords, sidecar_path
from emo.stages.xmp_stage import XmpStage
from tests.conftest import alike_images


def _item(i, path, emotion, sentiment=None):
    rec = {"path": path.name, "emotion": emotion}
    if sentiment is not None:
        rec["sentiment"] = sentiment
    return Item(i, rec, path=path)


def _pictures(folder, names):
    """A small real JPEG per name, ``folder/NAME.jpg``."""
    pics = []
    for n in names:
        p = folder / f"{n}.jpg"
        Image.new("RGB", (8, 8)).save(p)
        pics.append(p)
    return pics


def test_stage_writes_certain_labels_and_skips_uncertain_ones(tmp_path):
    pics = _pictures(tmp_path, "abc")
    sidecar_path(pics[1]).write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'><broken")
    items = [
        _item(0, pics[0], {"label": "joy", "p": 0.6, "probs": {}}, {"label": "positive", "p": 0.8, "p_positive": 0.8}),
        _item(1, pics[1], {"label": "anger", "p": 0.7, "probs": {}}),
        _item(2, pics[2], {"label": None, "uncertain": True, "best": "fear", "p": 0.19, "probs": {}},
              {"label": "negative", "p": 0.7, "p_positive": 0.3}),
    ]
    stage = XmpStage()
    assert all(stage.wants(it) for it in items) and not stage.wants(Item(3, {"path": "d.jpg"}))
    stage.run(items)
    assert read_keywords(sidecar_path(pics[0])) == (["emotion|joy", "sentiment|positive"], ["joy", "positive"])
    assert items[0].record["xmp"] == "a.jpg.xmp" and items[0].ok
    assert not items[1].ok and items[1].error.kind == "sidecar_error" and "not well-formed" in items[1].error.message
    assert items[1].record["emotion"]["label"] == "anger"  # the prediction is still written
    assert sidecar_path(pics[1]).read_text().endswith("<broken")
    assert read_keywords(sidecar_path(pics[2])) == (["sentiment|negative"], ["negative"])
    assert items[2].ok


def test_a_record_without_a_picture_path_gets_an_error(tmp_path):
    it = Item(0, {"emotion": {"label": "joy", "p": 0.5, "probs": {}}})
    XmpStage().run([it])
    assert it.error.kind == "sidecar_error" and list(tmp_path.iterdir()) == []


def test_no_sidecar_beside_a_file_that_is_not_a_picture_or_does_not_exist(tmp_path):
    text = tmp_path / "hostname"
    text.write_text("box\n")
    missing = tmp_path / "x0.jpg"
    items = [_item(0, text, "joy"), _item(1, missing, "joy")]
    XmpStage().run(items)
    assert [it.error.kind for it in items] == ["sidecar_error", "sidecar_error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostname"]


def test_a_sidecar_nested_too_deeply_is_left_alone(tmp_path):
    pic = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8)).save(pic)
    deep = "<x:xmpmeta xmlns:x='adobe:ns:meta/'>" + "<a>" * 20000 + "</a>" * 20000 + "</x:xmpmeta>"
    side = tmp_path / "a.jpg.xmp"
    side.write_text(deep)
    it = _item(0, pic, "joy")
    XmpStage().run([it])
    assert it.error.kind == "sidecar_error" and side.read_text() == deep


def test_pictures_whose_names_read_alike_each_get_their_own_sidecar(tmp_path):
    pics = alike_images(tmp_path)
    items = [item_from_record(i, {**name_fields(str(p)), "emotion": {"label": label, "p": 0.9, "probs": {}}}, None)
             for i, (p, label) in enumerate(zip(pics, ["joy", "fear"]))]
    XmpStage().run(items)
    assert all(it.ok for it in items)
    assert [read_keywords(sidecar_path(p))[1] for p in pics] == [["joy"], ["fear"]]
    assert items[0].record["xmp"] == items[1].record["xmp"] == str(tmp_path) + "/caf\ufffd.png.xmp"


def test_a_sidecar_error_on_a_name_that_is_not_utf8_is_still_a_written_record(tmp_path):
    (pic,) = alike_images(tmp_path, colors=((9, 9, 9),))
    sidecar_path(pic).symlink_to(tmp_path / "elsewhere")
    it = item_from_record(0, {**name_fields(str(pic)), "emotion": {"label": "joy", "p": 0.9, "probs": {}}}, None)
    XmpStage().run([it])
    out = orjson.loads(dumps(it.record))
    assert out["error"]["kind"] == "sidecar_error" and "caf\\xff.png" in out["error"]["message"]
    assert out["emotion"]["label"] == "joy"


def test_xmp_names_the_sidecar_written_when_path_and_path_bytes_disagree(tmp_path):
    import base64
    import os

    (pic,) = alike_images(tmp_path, colors=((9, 9, 9),))
    other = tmp_path / "other.png"
    Image.new("RGB", (8, 8)).save(other)
    exact = base64.b64encode(os.fsencode(pic)).decode()
    plain = base64.b64encode(os.fsencode(other)).decode()
    items = [item_from_record(0, {"path": str(other), "path_bytes": exact,
                                  "emotion": {"label": "joy", "p": 0.9, "probs": {}}}, None),
             item_from_record(1, {"path": 7, "path_bytes": plain, "emotion": {"label": "fear", "p": 0.9, "probs": {}}},
                              None)]
    XmpStage().run(items)
    assert all(it.ok for it in items)
    assert read_keywords(sidecar_path(pic))[1] == ["joy"]  # beside the exact file, not "path"
    assert read_keywords(sidecar_path(other))[1] == ["fear"]
    assert items[0].record["xmp"] == str(tmp_path) + "/caf\ufffd.png.xmp"
    assert items[1].record["xmp"] == str(other) + ".xmp"


def test_a_label_with_the_separator_or_a_control_is_that_records_sidecar_error(tmp_path):
    pics = _pictures(tmp_path, "abc")
    items = [_item(0, pics[0], {"label": "calm|joy", "p": 0.9, "probs": {}}),
             _item(1, pics[1], {"label": "joy", "p": 0.9, "probs": {}}),
             _item(2, pics[2], {"label": "joy\x07", "p": 0.9, "probs": {}})]
    XmpStage().run(items)
    assert [it.error.kind if it.error else None for it in items] == ["sidecar_error", None, "sidecar_error"]
    assert not sidecar_path(pics[0]).exists() and not sidecar_path(pics[2]).exists()
    assert read_keywords(sidecar_path(pics[1])) == (["emotion|joy"], ["joy"])
    out = [orjson.loads(dumps(it.record)) for it in items]
    assert out[0]["emotion"]["label"] == "calm|joy" and "separator" in out[0]["error"]["message"]
