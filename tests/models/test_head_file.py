"""emo.models.head_file: head files (save -> load -> same outputs), refusals, the CAM layer, shipped heads."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from emo.errors import ModelError
from emo.heads import SHIPPED, head_path
from emo.models.head_file import cam_layer, load_head, load_head_file, new_head, save_head
from emo.models.registry import get
from emo.train import FitConfig, Targets, fit_head

LABELS = ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]


def _trained(groups=("deep",), dims=None, hidden=(8,), members=2, task="classify"):
    dims = dims or {"deep": 6, "object": 4}
    rng = np.random.default_rng(0)
    D = sum(dims[g] for g in groups)
    X = rng.random((60, D)).astype(np.float32)
    head = new_head(groups, dims, task, LABELS, "tiny_test", "ab" * 32)
    if task == "classify":
        y = rng.integers(0, 7, 60)
        t = Targets(y=y, dist=np.eye(7, dtype=np.float32)[y], p_star=np.ones(60, np.float32))
        cfg = FitConfig(hidden=hidden, epochs=3, members=members, threads=1)
    else:
        t = Targets(va=rng.uniform(1, 9, (60, 2)).astype(np.float32))
        cfg = FitConfig(task="va", loss="mse", hidden=hidden, epochs=3, members=members, threads=1)
    fit_head(X, t, cfg, head.net)
    head.header["name"] = "test"
    return head, X


@pytest.mark.parametrize("task", ["classify", "va"])
def test_save_load_same_outputs(tmp_path, task):
    head, X = _trained(("object", "deep"), task=task)
    p = save_head(head, tmp_path / "my.head")
    assert p.stat().st_mode & 0o044  # readable by others, like any file the user writes
    back = load_head(str(p))
    assert back.labels == head.labels and back.groups == ("object", "deep") and back.dims == {"object": 4, "deep": 6}
    assert back.header["transforms"] == {"object": "log"}
    assert np.array_equal(back.predict(X), head.predict(X))
    side = json.loads((tmp_path / "my.head.json").read_text())
    assert side == back.header and side["backbone"] == {"id": "tiny_test", "sha256": "ab" * 32}


def test_head_files_hold_no_pickle(tmp_path):
    head, _ = _trained()
    p = save_head(head, tmp_path / "h.safetensors")
    assert b"\x80\x04" not in p.read_bytes()[:64]  # a safetensors header, not a pickle stream
    evil = tmp_path / "evil.head"
    evil.write_bytes(pickle.dumps({"w": torch.zeros(2)}))
    with pytest.raises(ModelError, match="not a safetensors head file"):
        load_head(str(evil))


def test_missing_and_foreign_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(ModelError, match="no head"):
        load_head(str(tmp_path / "nope.head"))
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ModelError, match="without an emo head header"):
        load_head_file(plain)


def test_mismatched_backbone_is_refused():
    head, _ = _trained()
    head.check_backbone("tiny_test", "ab" * 32)
    with pytest.raises(ModelError, match="trained on tiny_test features, this run uses mobilenet_v2"):
        head.check_backbone("mobilenet_v2", get("mobilenet_v2").weights.sha256)
    with pytest.raises(ModelError, match="refit"):
        head.check_backbone("tiny_test", "cd" * 32)


def test_stack_checks_groups_and_dims():
    head, X = _trained(("object", "deep"))
    row = head.stack({"deep": list(X[0, 4:]), "object": X[0, :4]})
    assert np.array_equal(row, X[0])
    with pytest.raises(ValueError, match="'deep' has 5 values; head test needs 6"):
        head.stack({"deep": [0.0] * 5, "object": [0.0] * 4})
    with pytest.raises(ValueError, match="no 'object'"):
        head.stack({"deep": [0.0] * 6})
    with pytest.raises(ValueError, match="not finite"):
        head.stack({"deep": [float("nan")] * 6, "object": [0.0] * 4})


def test_linear_layer_folds_standardisation_and_averages_members(tmp_path):
    head, X = _trained(hidden=(), members=3)
    W, b = head.linear_layer()
    logits = X @ W.T + b
    raw = head.net.raw(torch.as_tensor(X)).mean(0).detach().numpy()
    assert np.allclose(logits, raw, atol=1e-4)
    save_head(head, tmp_path / "lin.head")
    W2, b2, labels, _ = cam_layer(str(tmp_path / "lin.head"))
    assert np.allclose(W2, W) and labels == tuple(LABELS)
    mlp, _ = _trained(hidden=(8,))
    with pytest.raises(ModelError, match="hidden layers"):
        mlp.linear_layer()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_heads_load_and_match_the_default_backbone(name):
    if not head_path(name).is_file():
        pytest.skip(f"{name} not trained in this checkout")
    head = load_head(name)
    entry = SHIPPED[name]
    assert head.task == entry.task and head.groups == entry.groups
    mb = get("mobilenet_v2")
    head.check_backbone("mobilenet_v2", mb.weights.sha256)
    assert head.dims["deep"] == mb.embed_dim
    assert head.header["training"]["command"].startswith("emo fit ")
    assert "cv" in head.header["metrics"]
    if entry.task == "classify":
        assert len(head.labels) == {"emotion6": 7, "sentiment": 2}[entry.labels]


def test_cam_layer_of_the_shipped_linear_head():
    if not head_path("emotion6_linear").is_file():
        pytest.skip("emotion6_linear not trained in this checkout")
    W, b, labels, head = cam_layer()
    assert W.shape == (7, 1280) and b.shape == (7,) and labels[3] == "joy"
    x = np.random.default_rng(0).random((2, 1280)).astype(np.float32)
    p = torch.softmax(torch.as_tensor(x @ W.T + b), 1).numpy()
    if len(head.net.members) == 1:
        assert np.allclose(p, head.predict(x), atol=1e-4)


@pytest.mark.parametrize("hidden, members", [((), 1), ((8,), 1), ((8, 4), 3)])
def test_state_shapes_by_arithmetic_match_the_network(hidden, members):
    """Head files are checked without torch, by these shapes: they must be the real network's."""
    from emo.models.head_file import state_count, state_shapes

    head = new_head(["deep", "object"], {"deep": 6, "object": 4}, "classify", LABELS)
    for _ in range(members):
        head.net.add_member(head.net.new_member(hidden))
    arch = {"in_dim": 10, "n_out": 7, "hidden": list(hidden), "members": members}
    assert state_shapes(arch) == {k: tuple(v.shape) for k, v in head.net.state_dict().items()}
    assert state_count(arch) == len(head.net.state_dict())


def test_a_head_with_float64_tensors_is_refused(tmp_path):
    from safetensors.numpy import load_file, save_file

    head, _ = _trained()
    path = save_head(head, tmp_path / "h.head")
    meta = json.loads((tmp_path / "h.head.json").read_text())
    tensors = {k: (v.astype(np.float64) if k == "in_mean" else v) for k, v in load_file(str(path)).items()}
    save_file(tensors, str(path), metadata={"emo_head": json.dumps(meta)})
    with pytest.raises(ModelError, match="float32"):
        load_head_file(path)


def test_loading_heads_and_building_stages_imports_no_torch():
    """A command's decode workers are forked before torch loads, so reading heads and building the
    classify, va, features and regions stages must not load it; networks come with the first batch."""
    import subprocess
    import sys

    code = """
import sys
import numpy as np
from dataclasses import replace
from emo.assembly.runner import stages_for_flags
from emo.models.head_file import load_head
for argv in (["classify"], ["va"], ["classify", "--head", "emotion6_linear", "--sentiment-head", "none"],
             ["features"], ["features", "--set", "object,deep"], ["regions"], ["regions", "--proposals", "rcnn"]):
    stages_for_flags(argv[0], argv[1:])
h = load_head("va")
assert "torch" not in sys.modules, "torch was imported"
x = np.full((2, h.in_dim), 0.5, np.float32)
va = h.predict(x)
assert "torch" in sys.modules and va.shape == (2, 2) and ((va > 1) & (va < 9)).all()
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.mark.parametrize("hidden", [["8"], [8.5], [True], [float("inf")]])
def test_a_header_with_sizes_that_are_not_whole_numbers_is_refused_at_load(tmp_path, hidden):
    from safetensors.numpy import load_file, save_file

    head, _ = _trained()
    path = save_head(head, tmp_path / "h.head")
    meta = json.loads((tmp_path / "h.head.json").read_text())
    meta["architecture"]["hidden"] = hidden
    save_file(load_file(str(path)), str(path), metadata={"emo_head": json.dumps(meta)})
    with pytest.raises(ModelError, match="broken head file"):
        load_head_file(path)


@pytest.mark.parametrize("dtype", ["F8_E4M3", "BF16"])
def test_a_head_with_tensors_numpy_cannot_hold_is_refused_by_name(tmp_path, dtype):
    import struct

    head, _ = _trained()
    path = save_head(head, tmp_path / "h.head")
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    index, body = json.loads(data[8:8 + n]), data[8 + n:]
    width = {"F8_E4M3": 1, "BF16": 2}[dtype]
    out, new = b"", {"__metadata__": index.pop("__metadata__")}
    for k, v in sorted(index.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        chunk = body[slice(*v["data_offsets"])]
        if v["dtype"] == "F32":  # the same shape in the narrower type
            chunk, v["dtype"] = bytes(len(chunk) // 4 * width), dtype
        new[k] = {**v, "data_offsets": [len(out), len(out) + len(chunk)]}
        out += chunk
    blob = json.dumps(new).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + out)
    with pytest.raises(ModelError, match=f"float32, not {dtype}") as e:
        load_head_file(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("field, value", [("members", 2 * 10**6), ("hidden", [8] * 10**6)])
def test_a_header_claiming_a_huge_architecture_is_refused_at_once(tmp_path, field, value):
    # A tiny file whose header claimed 10^9 members made the check list every layer: minutes, gigabytes.
    import time

    from safetensors.numpy import load_file, save_file

    head, _ = _trained()
    path = save_head(head, tmp_path / "h.head")
    meta = json.loads((tmp_path / "h.head.json").read_text())
    meta["architecture"][field] = value
    save_file(load_file(str(path)), str(path), metadata={"emo_head": json.dumps(meta)})
    start = time.monotonic()
    with pytest.raises(ModelError, match="does not match the stored tensors"):
        load_head_file(path)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("where", ["labels", "name", "training", "key"])
def test_a_header_holding_a_lone_surrogate_is_refused_at_load(tmp_path, where):
    # "\ud800" is valid JSON that no UTF-8 can hold: every record of the run became a bad_record.
    from safetensors.numpy import load_file, save_file

    head, _ = _trained()
    path = save_head(head, tmp_path / "h.head")
    meta = json.loads((tmp_path / "h.head.json").read_text())
    if where == "labels":
        meta["labels"][0] = "anger\ud800"
    elif where == "name":
        meta["name"] = "n\ud800"
    elif where == "training":
        meta["training"] = {"command": "emo fit \udcff"}
    else:
        meta["metrics"] = {"k\ud800": 1}
    save_file(load_file(str(path)), str(path), metadata={"emo_head": json.dumps(meta)})
    with pytest.raises(ModelError, match="lone surrogate") as e:
        load_head_file(path)
    str(e.value).encode("utf-8")  # the message itself is text a terminal can show
    assert "\n" not in str(e.value)
