"""``emo classify`` end to end with heads fitted on the tiny network; lazy backbone; refusals."""

from __future__ import annotations

import re

import orjson
import pytest

from tests.cli.test_cmd_fit import COLORS, FAST, _feature_records, _write
from tests.cli.test_cmd_models import emo
from tests.conftest import make_image

E6 = "anger,disgust,fear,joy,sadness,surprise,neutral"


@pytest.fixture
def heads(monkeypatch, tiny_backbone, tmp_path):
    """A 7-class Emotion6-style head and a sentiment head on tiny_test deep features (8-d)."""
    recs = _feature_records(42)
    for i, r in enumerate(recs):
        r["label"] = E6.split(",")[i % 7]
    data = _write(tmp_path, recs)
    out = {}
    for name, labels in (("e6", E6), ("sent", "sentiment")):
        out[name] = str(tmp_path / f"{name}.head")
        r = emo(monkeypatch, "fit", "--labels", labels, *FAST, str(data), "-o", out[name], "-q")
        assert r.code == 0, r.err
    return out


def test_classify_images_adds_distribution_and_sentiment(monkeypatch, heads, tmp_path):
    imgs = [str(make_image(tmp_path / f"{c}.png", color=col)) for c, col in COLORS.items()]
    r = emo(monkeypatch, "classify", "--head", heads["e6"], "--sentiment-head", heads["sent"], "--backbone",
            "tiny_test", *imgs)
    assert r.code == 0, r.err
    recs = r.records()
    assert [x["path"] for x in recs] == imgs
    for rec in recs:
        assert set(rec) == {"path", "emotion", "sentiment"}  # no internal features leak out
        probs = rec["emotion"]["probs"]
        assert list(probs) == E6.split(",") and sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert rec["emotion"]["label"] == max(probs, key=probs.get)
        assert 0 <= rec["sentiment"]["p_positive"] <= 1
        assert rec["sentiment"]["label"] in ("positive", "negative")
    # --help names every key the records carry (it once left out "p").
    helped = emo(monkeypatch, "classify", "--help").out.decode()
    for key in ("emotion", "sentiment"):
        shown = re.search(rf'"{key}": {{([^}}]*)}}', " ".join(helped.split())).group(1)
        assert {k.strip().strip('"') for k in shown.split(",")} == set(recs[0][key]), (key, shown)


def test_records_with_features_never_load_the_backbone(monkeypatch, heads):
    import emo.assembly.feature_needs as needs

    def boom(*a, **k):
        raise AssertionError("backbone built although every record carries its features")

    monkeypatch.setattr(needs, "backbone_engine", boom)
    lines = b"".join(orjson.dumps(r) + b"\n" for r in _feature_records(5))
    r = emo(monkeypatch, "classify", "--head", heads["e6"], "--sentiment-head", "none", "--top-k", "3",
            "--backbone", "tiny_test", input=lines)
    assert r.code == 0, r.err
    recs = r.records()
    assert len(recs) == 5 and all(len(x["emotion"]["top"]) == 3 for x in recs)
    assert all("sentiment" not in x for x in recs)  # Emotion6 classes alone do not give a sentiment
    assert recs[0]["features"]["deep"] == _feature_records(5)[0]["features"]["deep"]  # input passes through


def test_bad_features_become_error_records_and_exit_1(monkeypatch, heads):
    recs = _feature_records(3)
    recs[1]["features"]["deep"] = [1.0, 2.0]
    lines = b"".join(orjson.dumps(r) + b"\n" for r in recs)
    r = emo(monkeypatch, "classify", "--head", heads["e6"], "--sentiment-head", "none", "--backbone", "tiny_test",
            input=lines)
    assert r.code == 1
    out = r.records()
    assert out[1]["error"]["kind"] == "bad_features" and "emotion" in out[0] and "emotion" in out[2]


def test_malformed_carried_groups_are_named_and_never_recomputed(monkeypatch, heads):
    import emo.assembly.feature_needs as needs

    def boom(*a, **k):
        raise AssertionError("backbone built for a record whose carried features are malformed")

    monkeypatch.setattr(needs, "backbone_engine", boom)
    recs = _feature_records(5)
    recs[1]["features"]["deep"] = {"0": 1.0}  # not a list: it once was dropped, and the picture looked for
    recs[3]["features"]["deep"] = ["x"] * 8
    lines = b"".join(orjson.dumps(r) + b"\n" for r in recs)
    r = emo(monkeypatch, "classify", "--head", heads["e6"], "--sentiment-head", "none", "--backbone", "tiny_test",
            input=lines)
    assert r.code == 1
    out = r.records()
    assert [x["path"] for x in out] == [x["path"] for x in recs]
    expected = "deep is a list of 8 numbers from tiny_test"
    assert [x.get("error") for x in out] == [
        None, {"kind": "bad_features", "message": f"features.deep is an object; {expected}"},
        None, {"kind": "bad_features", "message": f"features.deep[0] is a string; {expected}"},
        None]
    assert all("emotion" in out[i] for i in (0, 2, 4))


def test_mismatched_head_is_refused(monkeypatch, heads):
    r = emo(monkeypatch, "classify", "--head", heads["e6"], "--sentiment-head", heads["sent"], "--backbone",
            "mobilenet_v2", input=b"")
    assert r.code == 2 and "trained on tiny_test features" in r.err
    r = emo(monkeypatch, "va", "--head", heads["e6"], "--backbone", "tiny_test", input=b"")
    assert r.code == 2 and "needs a va head" in r.err
    r = emo(monkeypatch, "classify", "--head", "no-such-head", input=b"")
    assert r.code == 2 and "no head" in r.err


def test_classify_then_score_end_to_end(monkeypatch, heads):
    recs = _feature_records(21)
    lines = b"".join(orjson.dumps(r) + b"\n" for r in recs)
    r = emo(monkeypatch, "classify", "--head", heads["e6"], "--sentiment-head", heads["sent"], "--backbone",
            "tiny_test", input=lines)
    assert r.code == 0, r.err
    s = emo(monkeypatch, "score", input=r.out)
    assert s.code == 0, s.err
    res = orjson.loads(s.out)["classify"]
    assert res["counts"]["scored"] == 21 and res["sentiment"]["n"] == 21
    assert len(res["confusion"]) == 7


def test_shipped_heads_on_the_sample_photos(monkeypatch):
    """The default heads through the real MobileNetV2 on three shipped photos, then emo score."""
    from tests.conftest import SAMPLES

    truth = (("cat.jpg", "fear", 4.0, 5.0), ("coffee.jpg", "joy", 6.5, 4.0), ("hubble.jpg", "surprise", 6.0, 6.0))
    lines = [orjson.dumps({"path": p, "label": lab, "valence": v, "arousal": a}) for p, lab, v, a in truth]
    r = emo(monkeypatch, "classify", "--root", str(SAMPLES), "--top-k", "2", input=b"\n".join(lines) + b"\n")
    assert r.code == 0, r.err
    recs = r.records()
    for rec, line in zip(recs, lines):
        assert {k: rec[k] for k in orjson.loads(line)} == orjson.loads(line)
        assert list(rec["emotion"]["probs"]) == E6.split(",")
        assert sum(rec["emotion"]["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert rec["sentiment"]["label"] in ("positive", "negative")
    v = emo(monkeypatch, "va", "--root", str(SAMPLES), input=r.out)
    assert v.code == 0, v.err
    s = emo(monkeypatch, "score", input=v.out)
    res = orjson.loads(s.out)
    assert res["classify"]["counts"]["scored"] == 3 and res["va"]["counts"]["scored"] == 3


def test_the_console_command_decodes_in_a_process_forked_before_torch(tmp_path):
    """``emo classify`` as a user runs it: the shipped heads and MobileNetV2 (eager, so nothing
    compiles), images decoded by a worker forked before torch loaded; the same records, in the
    same order, as decoding on threads."""
    import subprocess
    import sys

    from tests.conftest import SAMPLES

    photos = sorted(SAMPLES.glob("*.jpg"))[:3]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    listing = b"".join(f"{p}\n".encode() for p in [photos[0], tmp_path / "broken.jpg", *photos[1:]])
    outs = {}
    for decoder in ("auto", "thread"):
        r = subprocess.run([sys.executable, "-m", "emo", "classify", "--backend", "eager", "-v", "--decoder", decoder],
                           input=listing, capture_output=True, timeout=300)
        err = r.stderr.decode()
        assert r.returncode == 1, err
        assert ("decoded by" in err and "worker process" in err) == (decoder == "auto"), err
        outs[decoder] = r.stdout
    recs = [orjson.loads(x) for x in outs["auto"].splitlines()]
    assert [r["path"] for r in recs] == [str(p) for p in [photos[0], tmp_path / "broken.jpg", *photos[1:]]]
    assert recs[1]["error"]["kind"] == "truncated" and all("emotion" in r for i, r in enumerate(recs) if i != 1)
    assert outs["auto"] == outs["thread"]
