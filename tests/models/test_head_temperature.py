"""emo.models.head_file: a head's temperature (applied at inference, saved, validated at load)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emo.errors import ModelError
from emo.models.head_file import load_head_file, new_head, save_head
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
