"""emo.assembly.fit_recipe: what a head's header records, the training batch apart from the
engine's, and progress that never goes back."""

from __future__ import annotations

import os
import sys

import pytest

from emo.assembly import fit_recipe
from emo.assembly.progress import Progress
from emo.models.head_file import load_head
from tests.cli.test_cmd_fit import FAST, _feature_records, _write
from tests.cli.test_cmd_models import emo


def test_a_header_names_no_folder_of_the_training_machine(monkeypatch, tiny_backbone, tmp_path):
    data_dir = tmp_path / "private" / "data"
    data_dir.mkdir(parents=True)
    data = _write(data_dir, _feature_records(30))
    out = tmp_path / "m.head"
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", *FAST, "--root", str(tmp_path / "private"),
            str(data), "-o", str(out))
    assert r.code == 0, r.err
    h = load_head(str(out)).header
    text = str(h["training"])
    assert str(tmp_path) not in text and "/private" not in text.replace("private/data", "")
    (src,) = h["training"]["data"]["sources"]
    assert src["path"] == "data/train.jsonl" and len(src["sha256"]) == 64
    assert "data/train.jsonl" in h["training"]["command"]


def test_portable_names_outside_the_root_keep_only_the_file_name(tmp_path):
    assert fit_recipe._portable(str(tmp_path / "a" / "t.jsonl"), tmp_path) == "a/t.jsonl"
    assert fit_recipe._portable(str(tmp_path / "t.jsonl"), tmp_path / "elsewhere") == "t.jsonl"
    assert fit_recipe._portable("../up/t.jsonl", None) == "t.jsonl"
    assert fit_recipe._portable("rel/t.jsonl", None) == "rel/t.jsonl"


def test_names_that_are_not_utf8_stay_json_any_parser_takes(tmp_path, monkeypatch):
    import json

    odd = os.fsdecode(b"caf\xff.jsonl")
    name = fit_recipe._portable(str(tmp_path / odd), tmp_path)
    assert name == "caf\ufffd.jsonl"
    monkeypatch.setattr(sys, "argv", ["emo", "fit", odd, "-o", str(tmp_path / odd)])
    line = fit_recipe._command_line(tmp_path)
    assert "\ufffd" in line and "\udcff" not in line
    json.dumps({"command": line, "path": name}).encode("ascii").decode("utf-8")
    assert "\\ud" not in json.dumps({"command": line, "path": name})  # no lone surrogate escapes


def test_fit_batch_size_is_the_training_batch_not_the_engines(monkeypatch, tiny_backbone, tmp_path):
    import emo.assembly.feature_needs as needs

    seen = []
    real = needs.backbone_engine

    def spy(settings, say=None):
        seen.append(settings.batch_size)
        return real(settings, say)

    monkeypatch.setattr(needs, "backbone_engine", spy)
    from tests.conftest import make_image

    recs = []
    for i in range(9):
        p = make_image(tmp_path / f"{i}.png", color=(25 * i, 100, 200 - 20 * i))
        recs.append({"path": str(p), "label": ["joy", "sadness", "fear"][i % 3]})
    data = _write(tmp_path, recs)
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", "--features", "deep", *FAST, "--batch-size", "1000",
            "--device", "cpu", "--backend", "eager", str(data), "-o", str(tmp_path / "h.head"))
    assert r.code == 0, r.err
    assert seen == [32]  # the engine keeps its own batch (EMO_BATCH_SIZE's default)
    assert load_head(str(tmp_path / "h.head")).header["training"]["config"]["batch_size"] == 1000


def test_training_progress_never_goes_back():
    p = Progress(False)
    steps = fit_recipe._TrainSteps(p, epochs=3, members=1, folds=2, verbose=False)
    seen = []
    for _ in range(2):  # two folds, each counted from 1 by emo.train
        for e in (1, 2, 3):
            steps(e, 3, {"epoch": e, "loss": 1.0})
            seen.append(p.done)
    steps.final()
    for e in (1, 2):  # early stopping: the final head ends before its last epoch
        steps(e, 3, {"epoch": e, "loss": 1.0})
        seen.append(p.done)
    assert seen == sorted(seen) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert p.total == 9


def test_fit_with_folds_stores_a_fitted_temperature(monkeypatch, tiny_backbone, tmp_path):
    data = _write(tmp_path, _feature_records(45))
    out = tmp_path / "t.head"
    r = emo(monkeypatch, "fit", "--labels", "joy,sadness,fear", "--folds", "3", *FAST, str(data), "-o", str(out))
    assert r.code == 0, r.err
    assert "calibration: temperature" in r.err
    h = load_head(str(out)).header
    cal = h["metrics"]["calibration"]
    assert h["temperature"] == pytest.approx(cal["temperature"]) and cal["temperature"] != 1.0
    assert 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1


def test_a_folder_where_the_heads_readable_copy_goes_is_refused_before_training(monkeypatch, tiny_backbone, tmp_path):
    # The head was written (an old one replaced), then its .json copy failed: "cannot write the head", exit 2.
    data = _write(tmp_path, _feature_records())
    out = tmp_path / "m.head"
    out.write_bytes(b"an older head")
    (tmp_path / "m.head.json").mkdir()
    r = emo(monkeypatch, "fit", "--task", "va", *FAST, str(data), "-o", str(out))
    assert r.code == 2 and r.err.splitlines() == [
        f"emo: error: -o {out}: m.head.json beside it, where the head's readable copy goes, is not a regular file"]
    assert out.read_bytes() == b"an older head"
