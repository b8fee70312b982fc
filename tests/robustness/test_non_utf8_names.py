"""File names that are not UTF-8 keep their identity: ``path`` shows them readably, ``path_bytes``
holds their exact bytes, and every step that names a file by its record (a record fed back,
``--resume``, ``emo score``) uses the exact name, so two names that read alike stay two files."""

from __future__ import annotations

import base64
import os

import orjson
import pytest

from tests.cli.test_cmd_fit import FAST, _feature_records, _write
from tests.conftest import alike_images, make_image
from tests.robustness.conftest import TINY, assert_clean, check_contract, emo

SHOWN = "/caf\ufffd.png"  # how both names read


def _b64(path) -> str:
    return base64.b64encode(os.fsencode(path)).decode()


def _lines(paths) -> bytes:
    return b"".join(os.fsencode(p) + b"\n" for p in paths)


def _strict_json(out: bytes) -> None:
    """Every line is UTF-8 JSON that strict parsers take: no lone surrogate escapes."""
    out.decode("utf-8")
    assert b"\\ud" not in out.lower()


def test_two_pictures_whose_names_read_alike_give_two_records(tiny, tmp_path):
    pics = alike_images(tmp_path)
    other = make_image(tmp_path / "plain.png")
    for how, run in [("lines", emo(TINY, _lines([*pics, other]))),
                     ("args", emo(TINY + [*map(str, pics), str(other)])),
                     ("walk", emo(TINY + ["-r", str(tmp_path)]))]:
        assert run.code == 0, (how, run.err)
        _strict_json(run.out)
        recs = {r.get("path_bytes"): r for r in run.records}
        assert set(recs) == {_b64(pics[0]), _b64(pics[1]), None}, how
        assert recs[None] == {"path": str(other), "features": recs[None]["features"]}, how  # UTF-8: no new field
        a, b = recs[_b64(pics[0])], recs[_b64(pics[1])]
        assert a["path"] == b["path"] == str(tmp_path) + SHOWN
        assert a["features"]["object"] != b["features"]["object"], how  # each record is its own picture


def test_bad_pictures_whose_names_read_alike_are_told_apart_on_stderr(tiny, tmp_path):
    pics = alike_images(tmp_path)
    for p in pics:
        p.write_bytes(b"not a picture")
    run = emo(TINY, _lines(pics))
    _strict_json(run.out)
    assert [r["error"]["kind"] for r in run.records] == ["not_an_image"] * 2
    said = [ln for ln in run.err.splitlines() if ": not_an_image: " in ln]
    assert [ln.split(": not_an_image: ")[0] for ln in said] == [f"emo: {tmp_path}/caf\\xff.png",
                                                               f"emo: {tmp_path}/caf\\xfe.png"]


def test_a_features_record_fed_to_classify_opens_its_own_file(tiny, tmp_path):
    head = str(tmp_path / "h.head")
    data = _write(tmp_path, _feature_records(30))
    fitted = emo(["fit", "--labels", "joy,sadness,fear", *FAST, str(data), "-o", head, "-q"])
    assert fitted.code == 0, fitted.err
    pics = alike_images(tmp_path / "pics", colors=((250, 250, 20), (10, 10, 60)))
    classify = ["classify", "--head", head, "--sentiment-head", "none", "--backbone", "tiny_test",
                "--batch-size", "2", "--workers", "2"]
    # emo features | emo classify: the color records carry no deep features, so classify opens each file.
    feats = emo(["features", "--set", "color", "--workers", "2"], _lines(pics))
    assert feats.code == 0, feats.err
    chained = emo(classify, feats.out)
    direct = emo(classify, _lines(pics))
    assert chained.code == direct.code == 0, chained.err + direct.err
    _strict_json(chained.out)
    got, want = chained.records, direct.records
    assert [r["path_bytes"] for r in got] == [_b64(p) for p in pics]
    assert [r["emotion"]["probs"] for r in got] == [r["emotion"]["probs"] for r in want]
    assert got[0]["emotion"]["probs"] != got[1]["emotion"]["probs"]
    assert got[0]["features"]["color"] == orjson.loads(feats.out.splitlines()[0])["features"]["color"]
    # The readable name alone names neither file.
    alone = emo(classify, orjson.dumps({"path": got[0]["path"]}) + b"\n")
    assert alone.code == 1 and alone.records[0]["error"]["kind"] == "not_found"


def test_resume_skips_exactly_the_picture_already_done(tiny, tmp_path):
    a, b = alike_images(tmp_path)
    out = tmp_path / "out.jsonl"
    first = emo(TINY + ["-o", str(out), "--resume"], _lines([a]))
    assert first.code == 0, first.err
    second = emo(TINY + ["-o", str(out), "--resume"], _lines([a, b]))
    assert second.code == 0, second.err
    assert [orjson.loads(x)["path_bytes"] for x in out.read_bytes().splitlines()] == [_b64(a), _b64(b)]
    before = out.read_bytes()
    third = emo(TINY + ["-o", str(out), "--resume"], _lines([b, a]))
    assert third.code == 0 and out.read_bytes() == before, third.err


def test_score_joins_pictures_whose_names_read_alike(tiny, tmp_path):
    pics = alike_images(tmp_path)
    feats = emo(TINY, _lines(pics))
    assert feats.code == 0, feats.err
    preds = tmp_path / "preds.jsonl"
    preds.write_bytes(b"".join(orjson.dumps({**r, "emotion": {"label": label, "probs": {label: 0.9}}}) + b"\n"
                               for r, label in zip(feats.records, ["joy", "fear"])))
    truth = tmp_path / "truth.jsonl"
    truth.write_bytes(b"".join(orjson.dumps({"path": str(p).encode("utf-8", "replace").decode(), "path_bytes": _b64(p),
                                             "label": label}) + b"\n"
                               for p, label in zip(reversed(pics), ["fear", "joy"])))
    r = emo(["score", "--truth", str(truth), str(preds)])
    assert r.code == 0, r.err
    res = orjson.loads(r.out)
    assert res["join"]["matched"] == 2 and res["join"]["duplicate_truth"] == 0
    assert res["classify"]["accuracy"] == 1.0


@pytest.mark.parametrize("bad", [
    5, True, "not base64!", "Zg", "Zh==", "", base64.b64encode(b"a\0b").decode(),
    base64.b64encode(b"x" * 5000).decode(), ["Zg=="], {"b": 1},
], ids=["number", "true", "junk", "unpadded", "loose-bits", "empty", "nul", "too-long", "list", "object"])
def test_a_hostile_path_bytes_is_one_bad_record_and_its_neighbours_are_intact(tiny, tmp_path, bad):
    a, b = alike_images(tmp_path)
    good = str(make_image(tmp_path / "good.png"))
    body = [os.fsencode(a),
            orjson.dumps({"path": good, "path_bytes": bad, "note": "kept"}),
            orjson.dumps({"path": "ignored.png", "path_bytes": _b64(b)}),  # a valid one wins over path
            good.encode()]
    run = emo(TINY, b"".join(x + b"\n" for x in body))
    shown = str(tmp_path) + SHOWN
    recs = check_contract(run, [(shown, None), (good, "bad_record"), ("ignored.png", None), (good, None)])
    assert_clean(run)
    _strict_json(run.out)
    assert "path_bytes" in recs[1]["error"]["message"] and recs[1]["note"] == "kept"
    assert recs[0]["path_bytes"] == _b64(a) and recs[2]["path_bytes"] == _b64(b)
    assert recs[0]["features"]["object"] != recs[2]["features"]["object"]
