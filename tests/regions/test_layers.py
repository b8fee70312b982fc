"""emo.regions.layers.read_layer: a layer file is checked with numpy before a run reads any
input; whatever stands at its path (a FIFO, a device, a folder, tensors of any type) is one
ModelError line, never a wait, a crash inside the reader or a traceback."""

from __future__ import annotations

import json
import os
import struct
import threading

import numpy as np
import pytest

from emo.errors import ModelError
from emo.regions.layers import read_layer

HEADER = {"kind": "cam", "labels": ["a", "b", "c"]}


def _raw(path, dtype: str, width: int, header=HEADER):
    """A safetensors file written by hand, so any type name (bf16, float8...) can be stored."""
    w_bytes, b_bytes = 3 * 8 * width, 3 * width
    index = {"weight": {"dtype": dtype, "shape": [3, 8], "data_offsets": [0, w_bytes]},
             "bias": {"dtype": dtype, "shape": [3], "data_offsets": [w_bytes, w_bytes + b_bytes]},
             "__metadata__": {"emo": json.dumps(header)}}
    blob = json.dumps(index).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(w_bytes + b_bytes))
    return path


@pytest.mark.parametrize("dtype, width", [("BF16", 2), ("F8_E4M3", 1), ("F8_E5M2", 1), ("I32", 4), ("U8", 1),
                                          ("BOOL", 1), ("I64", 8)])
def test_tensors_that_are_not_float16_32_or_64_are_refused_by_name(tmp_path, dtype, width):
    path = _raw(tmp_path / "cam.safetensors", dtype, width)
    with pytest.raises(ModelError, match=f"not {dtype}") as e:
        read_layer(path, "cam", 8)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("dtype, width", [("F16", 2), ("F32", 4), ("F64", 8)])
def test_float16_32_and_64_are_read_as_float32(tmp_path, dtype, width):
    weight, bias, header = read_layer(_raw(tmp_path / "cam.safetensors", dtype, width), "cam", 8)
    assert weight.dtype == bias.dtype == np.float32 and weight.shape == (3, 8)
    assert header["labels"] == ["a", "b", "c"]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "cam.safetensors"
    os.mkfifo(fifo)
    # Should the reader open it, this writer lets it go on (to a different message) instead of hanging.
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"junk"), daemon=True)
    writer.start()
    try:
        with pytest.raises(ModelError, match="not a regular file"):
            read_layer(fifo, "cam", 8)
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # releases the writer when nothing read
        writer.join(10)
        os.close(fd)


@pytest.mark.parametrize("make", ["folder", "device", "link_to_device", "missing", "loop"])
def test_what_is_not_a_regular_file_is_one_model_error(tmp_path, make):
    path = tmp_path / "cam.safetensors"
    if make == "folder":
        path.mkdir()
    elif make == "device":
        path = type(path)("/dev/zero")
    elif make == "link_to_device":
        path.symlink_to("/dev/zero")
    elif make == "loop":
        path.symlink_to(path)
    with pytest.raises(ModelError) as e:
        read_layer(path, "cam", 8)
    assert "\n" not in str(e.value)


def _sized(path, rows: int, cols: int, header):
    """A sparse layer file whose index claims ``weight (rows, cols)`` float32: no bytes on disk."""
    w_bytes, b_bytes = 4 * rows * cols, 4 * rows
    index = {"weight": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, w_bytes]},
             "bias": {"dtype": "F32", "shape": [rows], "data_offsets": [w_bytes, w_bytes + b_bytes]},
             "__metadata__": {"emo": json.dumps(header)}}
    blob = json.dumps(index).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        f.truncate(8 + len(blob) + w_bytes + b_bytes)
    return path


def test_a_sparse_layer_claiming_too_much_is_refused_before_it_is_read(tmp_path, monkeypatch):
    # Tensors were read whole before their shapes were checked: 5 GB for a file claiming 500,000 outputs.
    import safetensors

    reads, real = [], safetensors.safe_open

    class Counting:
        def __init__(self, *a, **k):
            self.f = real(*a, **k)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def get_tensor(self, k):
            reads.append(k)
            return self.f.get_tensor(k)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(safetensors, "safe_open", Counting)
    for rows, header, why in [(5000, {"kind": "cam"}, "labels"),
                              (5000, {"kind": "cam", "labels": ["a", "b"]}, "2 labels for 5000 outputs"),
                              (5000, {"kind": "cam", "labels": [str(i) for i in range(5000)]}, "at most")]:
        with pytest.raises(ModelError, match=why):
            read_layer(_sized(tmp_path / "cam.safetensors", rows, 1280, header), "cam", 1280)
    assert reads == []
    weight, _, _ = read_layer(_raw(tmp_path / "ok.safetensors", "F32", 4), "cam", 8)
    assert weight.shape == (3, 8) and reads == ["weight", "bias"]


@pytest.mark.parametrize("header", [{"kind": "cam"}, {"kind": "cam", "labels": []}])
def test_a_layer_without_a_label_per_output_is_refused_at_load(tmp_path, header):
    # Without labels every picture became a model_error record (no emotion to find) instead of exit 2.
    with pytest.raises(ModelError, match="labels") as e:
        read_layer(_raw(tmp_path / "cam.safetensors", "F32", 4, header), "cam", 8)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("header", [{"kind": "cam", "labels": ["a", "b\ud800", "c"]},
                                    {"kind": "cam", "labels": ["a", "b", "c"], "data": {"k\udcff": 1}}])
def test_a_layer_whose_header_holds_a_lone_surrogate_is_refused_at_load(tmp_path, header):
    # Its labels go into every region record, which the writer then could not write.
    with pytest.raises(ModelError, match="lone surrogate") as e:
        read_layer(_raw(tmp_path / "cam.safetensors", "F32", 4, header), "cam", 8)
    str(e.value).encode("utf-8")
