"""Model files emo did not make: head headers and CAM layers with wrong types, a scene model whose
archive carries a pickle with code, label files that never end. One line, exit 2, nothing run."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file

from emo.errors import ModelError, UsageError
from emo.models.head_file import META_KEY, load_head_file, new_head, save_head
from emo.regions.layers import LinearLayer, load_layer
from tests.conftest import make_image
from tests.robustness.conftest import assert_clean, emo


@pytest.fixture
def head_file(tmp_path) -> Path:
    head = new_head(["deep"], {"deep": 4}, "classify", ["joy", "fear", "anger"])
    head.net.add_member(head.net.new_member([]))  # an untrained linear member: a loadable head
    return save_head(head, tmp_path / "good.head")


def _with_header(src: Path, dst: Path, change) -> Path:
    from safetensors import safe_open

    with safe_open(str(src), framework="numpy") as f:
        header = json.loads(f.metadata()[META_KEY])
    tensors = {k: torch.from_numpy(v) for k, v in load_file(str(src)).items()}
    header = change(header)
    text = header if isinstance(header, str) else json.dumps(header)
    save_file(tensors, str(dst), metadata={META_KEY: text})
    return dst


def _set(key, value):
    def change(h):
        h = dict(h)
        if value is KeyError:
            h.pop(key)
        else:
            h[key] = value
        return h
    return change


HEADER_ATTACKS = {
    "backbone_string": _set("backbone", "mobilenet_v2"),
    "backbone_list": _set("backbone", ["a"]),
    "dims_list": _set("dims", [4]),
    "dims_string_size": _set("dims", {"deep": "4"}),
    "dims_float": _set("dims", {"deep": 4.5}),
    "dims_bool": _set("dims", {"deep": True}),
    "dims_other_group": _set("dims", {"color": 4}),
    "groups_int": _set("groups", 1),
    "groups_empty": _set("groups", []),
    "groups_objects": _set("groups", [{"g": 1}]),
    "groups_repeated": _set("groups", ["deep", "deep"]),
    "labels_objects": _set("labels", [{"a": 1}, {"b": 2}, {"c": 3}]),
    "labels_string": _set("labels", "joy"),
    "labels_null": _set("labels", None),
    "labels_repeated": _set("labels", ["joy", "joy", "fear"]),
    "task_other": _set("task", "segment"),
    "task_list": _set("task", ["classify"]),
    "architecture_list": _set("architecture", [1]),
    "architecture_infinity": lambda h: json.dumps({**h, "architecture": {**h["architecture"], "in_dim": 1}})
    .replace('"in_dim": 1', '"in_dim": Infinity'),
    "finetuned_string": _set("finetuned", "yes"),
    "name_number": _set("name", 5),
    "transforms_list": _set("transforms", ["log"]),
    "missing_labels": _set("labels", KeyError),
    "missing_dims": _set("dims", KeyError),
    "missing_task": _set("task", KeyError),
    "header_array": lambda h: "[1]",
    "header_number": lambda h: "7",
    "header_null": lambda h: "null",
    "header_nan": lambda h: "NaN",
    "header_deep": lambda h: "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("attack", list(HEADER_ATTACKS))
def test_head_header_with_wrong_types_is_a_model_error(tmp_path, head_file, attack):
    bad = _with_header(head_file, tmp_path / "bad.head", HEADER_ATTACKS[attack])
    with pytest.raises(ModelError) as e:
        load_head_file(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_the_unchanged_header_still_loads(head_file, tmp_path):
    ok = _with_header(head_file, tmp_path / "same.head", lambda h: h)
    assert load_head_file(ok).labels == ("joy", "fear", "anger")


@pytest.mark.parametrize("attack", ["backbone_string", "dims_list", "groups_int", "labels_objects", "header_array"])
def test_cli_says_one_line_and_exits_2_for_a_broken_head(tiny, tmp_path, head_file, attack):
    bad = _with_header(head_file, tmp_path / "bad.head", HEADER_ATTACKS[attack])
    run = emo(["classify", "--head", str(bad), "--backbone", "tiny_test", str(make_image(tmp_path / "a.png"))])
    assert_clean(run)
    assert run.code == 2 and run.out == b""
    assert len([ln for ln in run.err.splitlines() if ln.strip()]) == 1


def test_head_tensors_that_are_not_finite_are_refused(tmp_path, head_file):
    tensors = {k: torch.from_numpy(v) for k, v in load_file(str(head_file)).items()}
    key = next(k for k in tensors if k.endswith("weight"))
    tensors[key][0, 0] = float("nan")
    from safetensors import safe_open

    with safe_open(str(head_file), framework="numpy") as f:
        meta = f.metadata()
    bad = tmp_path / "nan.head"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ModelError, match="not finite"):
        load_head_file(bad)


def test_a_head_name_too_long_is_a_model_error_not_a_traceback():
    from emo.models.head_file import load_head

    with pytest.raises(ModelError, match="no head"):
        load_head("h" * 300)


# --- CAM and region-head layers -------------------------------------------------------------------

def _layer(path: Path, header_text: str, weight=None, bias=None) -> Path:
    weight = torch.zeros(3, 8) if weight is None else weight
    bias = torch.zeros(weight.shape[0]) if bias is None else bias
    save_file({"weight": weight, "bias": bias}, str(path), metadata={"emo": header_text})
    return path


@pytest.mark.parametrize("header", ["[1]", "7", "null", '"cam"', "{", "NaN", '{"kind": ["cam"]}',
                                    '{"kind": "cam", "labels": "abc"}', '{"kind": "cam", "labels": [1, 2, 3]}',
                                    '{"kind": "cam", "labels": ["a"]}', '{"kind": "cam", "backbone": 5}',
                                    '{"kind": "cam", "x": Infinity}', "[" * 50_000 + "]" * 50_000],
                         ids=["array", "number", "null", "string", "broken", "nan", "kind_list", "labels_string",
                              "labels_numbers", "labels_count", "backbone_number", "infinity", "deep"])
def test_cam_layer_with_a_bad_header_is_one_model_error(tmp_path, header):
    path = _layer(tmp_path / "cam.safetensors", header)
    with pytest.raises(ModelError) as e:
        load_layer(path, "cam", 8)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("weight, bias", [
    (torch.zeros(3, 8, dtype=torch.int32), torch.zeros(3, dtype=torch.int32)),
    (torch.full((3, 8), float("inf")), torch.zeros(3)),
    (torch.zeros(3, 8), torch.zeros(4)),
    (torch.zeros(3, 8, 1), torch.zeros(3)),
], ids=["integers", "infinite", "bias_size", "weight_3d"])
def test_cam_layer_with_bad_tensors_is_one_model_error(tmp_path, weight, bias):
    path = _layer(tmp_path / "cam.safetensors", '{"kind": "cam"}', weight, bias)
    with pytest.raises(ModelError):
        load_layer(path, "cam", 8)


def test_cam_layer_files_that_are_not_safetensors(tmp_path):
    for i, blob in enumerate([b"", os.urandom(500), pickle.dumps({"weight": 1}), b"\xff" * 8 + b"{}"]):
        path = tmp_path / f"bad{i}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(ModelError):
            load_layer(path, "cam", 8)


def test_a_good_layer_round_trips(tmp_path):
    layer = LinearLayer(torch.ones(3, 8), torch.zeros(3), {"kind": "cam", "labels": ["a", "b", "c"]})
    layer.save(tmp_path / "cam.safetensors")
    assert load_layer(tmp_path / "cam.safetensors", "cam", 8).labels == ["a", "b", "c"]


# --- scene models and their label lists -----------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_pt2(tmp_path: Path, marker: Path) -> Path:
    """A real ExportedProgram archive whose weight is marked pickled and holds code."""

    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    good = tmp_path / "good.pt2"
    torch.export.save(torch.export.export(M(), (torch.ones(3),)), str(good))
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("model_weights_config.json"):
                cfg = json.loads(data)
                for v in cfg["config"].values():
                    v["use_pickle"] = True
                data = json.dumps(cfg).encode()
            elif "/data/weights/weight_" in info.filename:
                data = pickle.dumps(_Payload(marker))
            out.writestr(info, data)
    return evil


def test_a_scene_model_with_a_pickle_inside_is_refused_and_not_run(tmp_path):
    from emo.features.segmentation import load_user_network

    marker = tmp_path / "pwned"
    evil = _evil_pt2(tmp_path, marker)
    with pytest.raises(ModelError, match="not a loadable ExportedProgram"):
        load_user_network(evil)
    assert not marker.exists()


def test_a_torch_force_override_in_the_environment_does_not_reopen_pickles(tmp_path, monkeypatch):
    from emo.features.segmentation import load_user_network

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    with pytest.raises(ModelError):
        load_user_network(_evil_pt2(tmp_path, marker))
    assert not marker.exists()
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == "1"  # put back after the load


def test_cli_scene_model_with_code_is_exit_2_and_never_runs(tiny, tmp_path):
    marker = tmp_path / "pwned"
    evil = _evil_pt2(tmp_path, marker)
    labels = tmp_path / "labels.txt"
    labels.write_text("sky\ngrass\n")
    run = emo(["features", "--set", "scene", "--scene-model", str(evil), "--scene-labels", str(labels),
               str(make_image(tmp_path / "a.png"))])
    assert_clean(run)
    assert run.code == 2 and run.out == b"" and not marker.exists(), run.err


@pytest.mark.parametrize("labels", ["/dev/zero", "big", "binary", "missing", "long_name"])
def test_scene_labels_that_are_not_a_label_list(tmp_path, labels):
    from emo.features.segmentation import read_labels

    path = {"/dev/zero": Path("/dev/zero"), "big": tmp_path / "big.txt", "binary": tmp_path / "bin.txt",
            "missing": tmp_path / "none.txt", "long_name": tmp_path / ("x" * 300)}[labels]
    if labels == "big":
        with open(path, "wb") as f:
            f.truncate(64 << 20)  # sparse: no disk used
    if labels == "binary":
        path.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(UsageError) as e:
        read_labels(path)
    assert "\n" not in str(e.value)


def test_writing_a_head_replaces_a_link_beside_it_never_follows_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "new.head.json").symlink_to(victim)
    head = new_head(["deep"], {"deep": 4}, "classify", ["joy", "fear"])
    head.net.add_member(head.net.new_member([]))
    save_head(head, tmp_path / "new.head")
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "new.head.json").is_symlink()
    assert json.loads((tmp_path / "new.head.json").read_text())["labels"] == ["joy", "fear"]


def test_a_head_whose_index_claims_gigabytes_is_refused_before_reading(tmp_path, head_file):
    """A sparse file: its index is honest about a 2**29-value backbone tensor, the disk holds nothing."""
    import struct

    from safetensors import safe_open

    with safe_open(str(head_file), framework="numpy") as f:
        meta = f.metadata()
    arrays = load_file(str(head_file))
    index, blobs, at = {}, [], 0
    for k, v in arrays.items():
        data = v.tobytes()
        index[k] = {"dtype": "F32" if v.dtype.kind == "f" else "U8", "shape": list(v.shape),
                    "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    n = 1 << 29
    index["backbone.w"] = {"dtype": "F32", "shape": [n], "data_offsets": [at, at + 4 * n]}
    index["__metadata__"] = {**meta, META_KEY: json.dumps({**json.loads(meta[META_KEY]), "finetuned": {"id": "x"}})}
    head = json.dumps(index).encode()
    path = tmp_path / "huge.head"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))
        f.truncate(8 + len(head) + at + 4 * n)
    with pytest.raises(ModelError, match="at most"):
        load_head_file(path)
