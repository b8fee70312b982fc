"""emo.models.head_file: a head's temperature (applied at inference, saved, validated at load)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from emo.errors import ModelError
from emo.heads import SHIPPED, head_path
from emo.models.head_file import load_head, load_head_file, new_head, save_head
from emo.train import FitConfig, Targets, fit_head, member_logits, probs_at_temperature

LABELS = ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]


def _trained(task="classify"):
    rng = np.random.default_rng(0)
    X = rng.random((50, 6)).astype(np.float32)
    head = new_head(["deep"], {"deep": 6}, task, LABELS)
    if task == "classify":
        y = rng.integers(0, 7, 50)
        t = Targets(y=y, dist=np.eye(7, dtype=np.float32)[y], p_star=np.ones(50, np.float32))
        fit_head(X, t, FitConfig(hidden=(8,), epochs=3, members=2, lr=1e-2, threads=1), head.net)
    else:
        fit_head(X, Targets(va=rng.uniform(1, 9, (50, 2)).astype(np.float32)),
                 FitConfig(task="va", loss="mse", hidden=(), epochs=2, threads=1), head.net)
    head.header["name"] = "t"
    return head, X


def test_temperature_scales_the_logits_of_every_member(tmp_path):
    head, X = _trained()
    z = member_logits(head.net, X)
    p1 = head.predict(X)
    head.set_temperature(2.0)
    p2 = head.predict(X)
    assert np.allclose(p2, probs_at_temperature(z, 2.0), atol=1e-5)
    assert (p2.max(1) < p1.max(1)).all()  # softer
    assert np.allclose(head.predict(X, calibrated=False), p1, atol=1e-6)  # the probabilities as trained
    loaded = load_head_file(save_head(head, tmp_path / "h.safetensors"))
    assert loaded.temperature == 2.0
    assert json.loads((tmp_path / "h.safetensors.json").read_text())["temperature"] == 2.0
    assert np.allclose(loaded.predict(X), p2, atol=1e-6)


def test_a_head_without_temperature_is_as_trained(tmp_path):
    head, X = _trained()
    loaded = load_head_file(save_head(head, tmp_path / "h.safetensors"))
    assert loaded.temperature == 1.0 and np.allclose(loaded.predict(X), head.predict(X), atol=1e-6)


@pytest.mark.parametrize("task,bad", [("classify", "2"), ("classify", -1.0), ("classify", 0.0),
                                      ("classify", float("nan")), ("classify", 1e9), ("classify", True),
                                      ("va", 2.0)])
def test_a_bad_temperature_in_the_header_is_refused_at_load(tmp_path, task, bad):
    from safetensors.numpy import load_file, save_file

    head, _ = _trained(task)
    path = save_head(head, tmp_path / "h.safetensors")
    meta = json.loads((tmp_path / "h.safetensors.json").read_text())
    meta["temperature"] = bad
    save_file(load_file(str(path)), str(path), metadata={"emo_head": json.dumps(meta)})
    with pytest.raises(ModelError, match="temperature"):
        load_head_file(path)


def test_set_temperature_refuses_a_value_out_of_range():
    head, _ = _trained()
    with pytest.raises(ValueError, match="temperature"):
        head.set_temperature(0.0)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_heads_carry_calibration_and_no_folder_of_the_training_machine(name):
    head = load_head(name)
    text = json.dumps(head.header)
    assert not re.search(r'(?<![\w.])/(work|root|tmp|home)/|\.\./', text), "a training machine's folder leaked"
    assert json.loads(head_path(name).with_name(head_path(name).name + ".json").read_text()) == head.header
    for src in head.header["training"]["data"]["sources"]:
        assert not src["path"].startswith("/") and re.fullmatch(r"[0-9a-f]{64}", src["sha256"])
    if head.task == "classify":
        cal = head.header["metrics"]["calibration"]
        assert head.temperature == cal["temperature"] != 1.0 and cal["bins"] == 15 and cal["folds"] == 5
        assert 0 <= cal["ece_after"] < cal["ece_before"] <= 1
        assert head.net.temperature == head.temperature
    else:
        assert head.temperature == 1.0


def test_the_linear_layer_of_a_head_with_a_temperature_gives_its_probabilities():
    import torch

    rng = np.random.default_rng(0)
    X = rng.random((30, 6)).astype(np.float32)
    head = new_head(["deep"], {"deep": 6}, "classify", LABELS)
    y = rng.integers(0, 7, 30)
    fit_head(X, Targets(y=y, dist=np.eye(7, dtype=np.float32)[y], p_star=np.ones(30, np.float32)),
             FitConfig(hidden=(), epochs=3, lr=1e-2, threads=1), head.net)
    head.set_temperature(0.4)
    W, b = head.linear_layer()
    assert np.allclose(torch.softmax(torch.as_tensor(X @ W.T + b), 1).numpy(), head.predict(X), atol=1e-5)
