"""``emo fit`` end to end: records with features or image paths, folds, val split, seed, refusals."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from emo.models.head_file import load_head
from tests.cli.test_cmd_models import emo
from tests.conftest import make_image

COLORS = {"joy": (230, 200, 40), "sadness": (30, 40, 120), "fear": (20, 20, 20)}


def _feature_records(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(0, 3, d) for c in COLORS}
    recs = []
    for i in range(n):
        c = list(COLORS)[i % 3]
        deep = (centres[c] + rng.normal(0, 1, d)).round(4).tolist()
        recs.append({"path": f"img{i}.jpg", "label": c, "valence": 7.0 if c == "joy" else 3.0,
                     "arousal": 4.0 + (i % 5) * 0.5, "features": {"deep": deep}})
    return recs


def _write(tmp_path, recs, name="train.jsonl"):
    p = tmp_path / name
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return p


FAST = ("--epochs", "8", "--hidden", "16", "--lr", "0.01", "--backbone", "tiny_test", "--threads", "1")


def test_fit_with_folds_writes_a_head_with_cv_metrics(monkeypatch, tiny_backbone, tmp_path):
    data = _write(tmp_path, _feature_records() + [{"path": "x.jpg", "features": {"deep": [0.0] * 8}}, {"oops": 1}])
    out = tmp_path / "m.head"
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", "--folds", "3", *FAST, str(data), "-o", str(out))
    assert r.code == 0, r.err
    assert r.out == b""  # nothing on stdout, no progress bar when stderr is not a terminal
    assert "3-fold cross-validation" in r.err and "top1" in r.err
    head = load_head(str(out))
    h = head.header
    assert h["labels"] == ["joy", "sadness", "fear"] and h["groups"] == ["deep"] and h["dims"] == {"deep": 8}
    assert h["backbone"]["id"] == "tiny_test" and h["backbone"]["sha256"] == tiny_backbone.weights.sha256
    assert h["training"]["data"]["counts"]["used"] == 60 and h["training"]["data"]["counts"]["no_target"] == 2
    assert h["training"]["command"].startswith("emo fit --labels joy,sadness,fear")
    assert h["metrics"]["cv"]["top1"]["mean"] > 0.9
    assert json.loads((tmp_path / "m.head.json").read_text())["metrics"] == h["metrics"]


def test_same_seed_same_head(monkeypatch, tiny_backbone, tmp_path):
    data = _write(tmp_path, _feature_records())
    outs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / f"{name}.head"
        r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", "--seed", seed, "--dropout", "0.3", *FAST,
                str(data), "-o", str(out), "-q")
        assert r.code == 0 and r.err == ""
        outs.append(load_head(str(out)).net.state_dict())
    assert all(np.array_equal(outs[0][k], outs[1][k]) for k in outs[0])
    assert not all(np.array_equal(outs[0][k], outs[2][k]) for k in outs[0])


def test_va_head_with_val_split(monkeypatch, tiny_backbone, tmp_path):
    data = _write(tmp_path, _feature_records())
    out = tmp_path / "va.head"
    r = emo(monkeypatch, "fit", "--task", "va", "--val-split", "0.25", *FAST, str(data), "-o", str(out))
    assert r.code == 0, r.err
    h = load_head(str(out)).header
    assert h["task"] == "va" and h["metrics"]["validation"]["n"] == 15
    assert h["metrics"]["validation"]["valence_mse"] < 4.0


def test_fit_computes_features_from_images(monkeypatch, tiny_backbone, tmp_path):
    recs = []
    for i in range(12):
        c = list(COLORS)[i % 3]
        make_image(tmp_path / f"{i}.png", color=COLORS[c])
        recs.append({"path": f"{i}.png", "label": c})
    recs.append({"path": "missing.png", "label": "joy"})
    data = _write(tmp_path, recs)
    out = tmp_path / "img.head"
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", *FAST, "--root", str(tmp_path), str(data), "-o", str(out))
    assert r.code == 0, r.err
    assert "missing.png" in r.err and "1 whose features failed" in r.err
    assert load_head(str(out)).header["training"]["data"]["counts"]["used"] == 12


def test_refusals(monkeypatch, tiny_backbone, tmp_path):
    data = _write(tmp_path, _feature_records())
    out = str(tmp_path / "x.head")
    r = emo(monkeypatch, "fit", "--labels", "awe,anger", *FAST, str(data), "-o", out)
    assert r.code == 2 and "none of the 60 records" in r.err
    r = emo(monkeypatch, "fit", "--task", "va", "--loss", "ce", *FAST, str(data), "-o", out)
    assert r.code == 2 and "--task va takes --loss mse" in r.err
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", "--backbone", "mobilenet_v2", str(data), "-o", out)
    assert r.code == 2
    assert "features.deep has 8 values; deep has 1280 from mobilenet_v2 (computed by another --backbone?)" in r.err
    r = emo(monkeypatch, "fit", *FAST, "--hidden", "abc", str(data), "-o", out)
    assert r.code == 2


def test_malformed_carried_features_are_skipped_and_named(monkeypatch, tiny_backbone, tmp_path):
    recs = _feature_records()
    bad = {0: ([1.0, 2.0, 3.0], "features.deep has 3 values; deep has 8 from tiny_test "
                                "(computed by another --backbone?)"),
           5: (["a"] * 8, "features.deep[0] is a string; deep is a list of 8 numbers from tiny_test"),
           9: ([None] * 8, "features.deep[0] is null; deep is a list of 8 numbers from tiny_test"),
           13: ({"a": 1.0}, "features.deep is an object; deep is a list of 8 numbers from tiny_test"),
           20: ([1e308] * 8, "features.deep[0] is 1e+308, past float32's range (±3.4e+38); "
                             "deep is a list of 8 numbers from tiny_test")}
    for i, (value, _) in bad.items():
        recs[i]["features"]["deep"] = value
    data = _write(tmp_path, recs)
    out = tmp_path / "m.head"
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", *FAST, str(data), "-o", str(out))
    assert r.code == 0, r.err
    for i, (_, message) in bad.items():
        assert f"emo: img{i}.jpg: bad_features: {message} (skipped)" in r.err.splitlines()
    assert "55 records used" in r.err and "5 whose features failed, 0 with other dims" in r.err
    h = load_head(str(out)).header
    assert h["dims"] == {"deep": 8}
    counts = h["training"]["data"]["counts"]
    assert (counts["used"], counts["failed_features"], counts["wrong_dims"]) == (55, 5, 0)


def test_fit_without_a_usable_record_says_why_even_when_quiet(monkeypatch, tiny_backbone, tmp_path):
    recs = _feature_records(6)
    for r in recs:
        r["features"]["deep"] = [1.0, 2.0]
    out = tmp_path / "m.head"
    data = _write(tmp_path, recs)
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", *FAST, "-q", str(data), "-o", str(out))
    assert r.code == 2 and not out.exists()
    assert r.err.splitlines() == ["emo: error: no record has usable features; 6 failed, the first: img0.jpg: "
                                  "bad_features: features.deep has 2 values; deep has 8 from tiny_test"
                                  " (computed by another --backbone?)"]


def test_a_group_of_unknown_size_takes_the_size_most_records_have(monkeypatch, tiny_backbone, tmp_path):
    recs = _feature_records(30, d=3)
    for r in recs:
        r["features"] = {"scene": [abs(v) for v in r["features"]["deep"]]}
    recs[0]["features"]["scene"] = [0.5, 0.5]  # one odd record first no longer sets the size for all
    recs[7]["features"]["scene"] = [0.5, 0.25, "x"]
    out = tmp_path / "s.head"
    data = _write(tmp_path, recs)
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", "--features", "scene", *FAST, str(data), "-o", str(out))
    assert r.code == 0, r.err
    assert "emo: img7.jpg: bad_features: features.scene[2] is a string; scene is a list of numbers (skipped)" in r.err
    h = load_head(str(out)).header
    assert h["dims"] == {"scene": 3}
    counts = h["training"]["data"]["counts"]
    assert (counts["used"], counts["failed_features"], counts["wrong_dims"]) == (28, 1, 1)


def _color_photos(tmp_path):
    """12 small pictures, 4 of each colour in COLORS, labelled by colour; the JSONL file naming them."""
    recs = []
    for i in range(12):
        c = list(COLORS)[i % 3]
        make_image(tmp_path / f"{i}.png", size=(48, 40), color=COLORS[c])
        recs.append({"path": f"{i}.png", "label": c})
    return _write(tmp_path, recs)


def test_finetune_trains_the_backbone_and_classify_uses_its_own_features(monkeypatch, tiny_backbone, tmp_path):
    from emo.models import create

    data = _color_photos(tmp_path)
    out = tmp_path / "ft.head"
    r = emo(monkeypatch, "fit", "--finetune", "--labels", "joy,sadness,fear", "--epochs", "2", "--batch-size", "4", "--threads", "1",
            "--lr", "0.01", "--val-split", "0.25", "--backbone", "tiny_test", "--root", str(tmp_path), str(data),
            "-o", str(out))
    assert r.code == 0, r.err
    head = load_head(str(out))
    assert head.finetuned and head.backbone_state is not None
    assert head.header["metrics"]["validation"]["n"] == 3
    stock = create("tiny_test").state_dict()
    assert any(not np.array_equal(stock[k].numpy(), head.backbone_state[k].numpy()) for k in stock)
    # A record carrying stock deep features is not fed to the fine-tuned head: its own backbone runs.
    line = orjson.dumps({"path": str(tmp_path / "0.png"), "features": {"deep": [0.0] * 8}}) + b"\n"
    r = emo(monkeypatch, "classify", "--head", str(out), "--backbone", "tiny_test", input=line)
    assert r.code == 0, r.err
    (rec,) = r.records()
    assert set(rec["emotion"]["probs"]) == set(COLORS) and "sentiment" in rec
    r2 = emo(monkeypatch, "classify", "--head", str(out), "--backbone", "tiny_test", str(tmp_path / "0.png"))
    assert r2.records()[0]["emotion"] == rec["emotion"]



def test_finetune_cross_validates_k_backbones(monkeypatch, tiny_backbone, tmp_path):
    data = _color_photos(tmp_path)
    out = tmp_path / "ft.head"
    from emo import train as emo_train

    trained = []
    real = emo_train.finetune
    monkeypatch.setattr(emo_train, "finetune", lambda images, *a, **k: (trained.append(len(images)), real(images, *a, **k))[1])
    r = emo(monkeypatch, "fit", "--finetune", "--folds", "3", "--labels", "joy,sadness,fear", "--epochs", "1",
            "--batch-size", "4", "--threads", "1", "--backbone", "tiny_test", "--root", str(tmp_path), str(data),
            "-o", str(out))
    assert r.code == 0, r.err
    assert trained == [8, 8, 8, 12]  # three backbones on two folds each, then the head's own on all
    cv = load_head(str(out)).header["metrics"]["cv"]
    assert cv["folds"] == 3 and 0.0 <= cv["top1"]["mean"] <= 1.0
    assert "fold 3/3: top1" in r.err and "3-fold cross-validation" in r.err


def test_a_rate_that_is_not_a_usable_number_is_a_usage_error(monkeypatch, tiny_backbone, tmp_path):
    # --lr inf trained a head of NaNs and exit 0; nan and -1 failed inside torch as "emo's fault".
    data = _write(tmp_path, _feature_records(n=12))
    out = tmp_path / "m.head"
    for opt, value in [("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "1e300"),
                       ("--weight-decay", "inf"), ("--weight-decay", "nan")]:
        args = [a for a in FAST if a not in ("--lr", "0.01")]
        r = emo(monkeypatch, "fit", "-o", str(out), *args, opt, value, str(data))
        assert r.code == 2 and "Invalid value" in r.err and "emo's fault" not in r.err, (opt, value, r.err)
        assert not out.exists()


def test_training_that_diverges_writes_no_head(monkeypatch, tiny_backbone, tmp_path):
    # A finite but absurd rate gives NaN weights: the head emo could never load was written, exit 0.
    data = _write(tmp_path, _feature_records(n=12))
    out = tmp_path / "m.head"
    args = [a for a in FAST if a not in ("--lr", "0.01")]
    r = emo(monkeypatch, "fit", "-o", str(out), *args, "--lr", "1e30", "--weight-decay", "1e30", str(data))
    assert r.code == 2 and "diverged" in r.err, r.err
    assert not out.exists() and not (tmp_path / "m.head.json").exists()


def test_va_ratings_all_alike_still_give_a_head(monkeypatch, tiny_backbone, tmp_path):
    # Pearson r is undefined on folds whose ratings are all alike: null in the header, not a refusal.
    recs = [{**r, "valence": 5.0, "arousal": 5.0} for r in _feature_records(12)]
    data = _write(tmp_path, recs)
    for extra in (("--folds", "2"), ("--val-split", "0.5")):
        out = tmp_path / "flat.head"
        r = emo(monkeypatch, "fit", "--task", "va", *extra, *FAST, str(data), "-o", str(out))
        assert r.code == 0, r.err
        metrics = load_head(str(out)).header["metrics"]
        if "cv" in metrics:
            assert "valence_r" not in metrics["cv"] and metrics["out_of_fold"]["valence_r"] is None
        else:
            assert metrics["validation"]["valence_r"] is None


def test_targets_of_the_wrong_json_type_are_refused_per_record(monkeypatch, tiny_backbone, tmp_path):
    recs = _feature_records()
    recs[0]["valence"] = "5"
    recs[1]["valence"] = True
    recs[2]["arousal"] = "4.5"
    data = _write(tmp_path, recs)
    out = tmp_path / "va.head"
    r = emo(monkeypatch, "fit", "--task", "va", *FAST, str(data), "-o", str(out))
    assert r.code == 0, r.err
    lines = r.err.splitlines()
    assert 'emo: img0.jpg: bad_record: "valence" is a string, not a number (skipped)' in lines
    assert 'emo: img1.jpg: bad_record: "valence" is a boolean, not a number (skipped)' in lines
    assert 'emo: img2.jpg: bad_record: "arousal" is a string, not a number (skipped)' in lines
    counts = load_head(str(out)).header["training"]["data"]["counts"]
    assert (counts["used"], counts["wrong_target"], counts["no_target"]) == (57, 3, 0)
    recs = _feature_records(6)
    for rec in recs:
        rec["label"] = True
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", *FAST, str(_write(tmp_path, recs, "b.jsonl")),
            "-o", str(tmp_path / "b.head"))
    assert r.code == 2 and "Traceback" not in r.err
    assert 'emo: img0.jpg: bad_record: "label" is a boolean, not a class name (skipped)' in r.err.splitlines()


def test_finetune_names_skipped_pictures_escaped_one_line_each(monkeypatch, tiny_backbone, tmp_path):
    # A name holding a newline and a terminal escape forged an "emo fit: wrote ..." line and coloured the terminal.
    forged = "nope\x1b[31m\nemo fit: wrote forged.head\u0085.png"
    recs = [{"path": forged, "label": "joy"}, {"features": {"deep": [0.0] * 8}, "label": "fear"}]
    data = _write(tmp_path, recs)
    r = emo(monkeypatch, "fit", "--finetune", "--labels", "joy,sadness,fear", "--backbone", "tiny_test",
            "--root", str(tmp_path), str(data), "-o", str(tmp_path / "ft.head"))
    assert r.code == 2 and "\x1b" not in r.err and "\x85" not in r.err
    lines = r.err.splitlines()
    assert lines[0] == ("emo: nope\\x1b[31m\\nemo fit: wrote forged.head\\x85.png: not_found: "
                        "no such file (skipped)")
    assert lines[1] == "emo: <input 2>: bad_record: --finetune needs the picture, and this record names none (skipped)"
    assert len(lines) == 3 and lines[2].startswith("emo: error: --finetune needs images")


def test_a_records_argument_that_is_a_fifo_without_a_writer_is_not_waited_on(monkeypatch, tiny_backbone, tmp_path):
    import os

    import threading

    fifo = tmp_path / "train.json"
    os.mkfifo(fifo)
    # Should emo wait on the FIFO after all, a late writer that sends nothing ends the wait.
    done = threading.Event()

    def late_writer():
        if not done.wait(5):
            fd = os.open(fifo, os.O_RDWR)  # never blocks, and counts as a writer
            os.close(fd)

    threading.Thread(target=late_writer, daemon=True).start()
    r = emo(monkeypatch, "fit", "--task", "va", *FAST, str(fifo), "-o", str(tmp_path / "m.head"))
    done.set()
    assert r.code == 2 and r.err.splitlines() == [f"emo: error: no records in {fifo}"]
    assert not (tmp_path / "m.head").exists()


@pytest.mark.parametrize("task", ["va", "regions"])
def test_o_naming_a_training_picture_is_refused_before_training(monkeypatch, tiny_backbone, tmp_path, task):
    pics = [make_image(tmp_path / f"{i}.png", color=COLORS[c]) for i, c in enumerate(COLORS)]
    before = pics[1].read_bytes()
    recs = [{"path": p.name, "valence": 3.0, "arousal": 4.0, "regions": [{"box": [0, 0, 8, 8]}]} for p in pics]
    data = _write(tmp_path, recs)
    r = emo(monkeypatch, "fit", "--task", task, *FAST, "--root", str(tmp_path), str(data), "-o", str(pics[1]))
    assert r.code == 2 and r.err.splitlines() == [
        f"emo: error: -o {pics[1]}: is also one of the training pictures (1.png); it would be replaced by the "
        "output (nothing was written)"]
    assert pics[1].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["0.png", "1.png", "2.png", "train.jsonl"]


def test_labels_with_a_repeated_or_empty_entry_are_a_usage_error(monkeypatch, tiny_backbone, tmp_path):
    data = _write(tmp_path, _feature_records())
    for spec in ("joy,sadness,joy", "joy,,fear"):
        r = emo(monkeypatch, "fit", "--labels", spec, *FAST, str(data), "-o", str(tmp_path / "m.head"))
        assert r.code == 2 and len(r.err.splitlines()) == 1 and r.err.startswith(f"emo: error: --labels '{spec}'")
    assert not (tmp_path / "m.head").exists()


def test_text_that_is_not_utf8_in_a_name_or_description_gives_a_head_emo_can_load(monkeypatch, tiny_backbone, tmp_path):
    # A name given in bytes that are not UTF-8 (a Latin-1 terminal, an -o named so) wrote a head
    # whose header held lone surrogates, which loading it then refused.
    import os

    data = _write(tmp_path, _feature_records(), name=os.fsdecode(b"train\xff.jsonl"))
    out = tmp_path / os.fsdecode(b"caf\xe9.head")
    r = emo(monkeypatch, "fit", "--task", "va", *FAST, "--data-description", os.fsdecode(b"photos \xfe"),
            str(data), "-o", str(out))
    assert r.code == 0, r.err
    h = load_head(str(out)).header
    assert h["name"] == "caf\ufffd" and h["training"]["data"]["description"] == "photos \ufffd"
    source = h["training"]["data"]["sources"][0]["path"]  # relative to the current folder when inside it
    assert source.split("/")[-1] == "train\ufffd.jsonl" and not source.startswith("/")
    r = emo(monkeypatch, "fit", "--task", "va", *FAST, "--name", os.fsdecode(b"n\xff"), str(data),
            "-o", str(tmp_path / "b.head"))
    assert r.code == 0 and load_head(str(tmp_path / "b.head")).header["name"] == "n\ufffd"


def test_o_naming_a_record_file_by_any_name_is_refused_and_the_file_kept(monkeypatch, tiny_backbone, tmp_path):
    import os

    data = _write(tmp_path, _feature_records())
    before = data.read_bytes()
    link, hard = tmp_path / "link.jsonl", tmp_path / "hard.jsonl"
    link.symlink_to(data)
    os.link(data, hard)
    for out in (data, link, hard):
        r = emo(monkeypatch, "fit", "--task", "va", *FAST, str(data), "-o", str(out))
        assert r.code == 2 and r.err.startswith(f"emo: error: -o {out}: is also one of the record files read")
    assert data.read_bytes() == before and link.is_symlink()
