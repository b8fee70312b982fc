"""emo.models.safe_load: torch loads inside the block are weights-only whatever they ask."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from emo.models.safe_load import is_file, no_pickled_code


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_an_explicit_full_unpickle_is_refused_inside_the_block(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"payload": _Payload(marker)}))
    with no_pickled_code(), pytest.raises(Exception):
        torch.load(path, weights_only=False)  # what torch.export.load does inside
    assert not marker.exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1" and "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_plain_tensors_still_load_inside_the_block(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.arange(3.0)}, path)
    with no_pickled_code():
        assert torch.load(path, weights_only=False)["w"].tolist() == [0.0, 1.0, 2.0]


def test_is_file_never_raises(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    assert is_file(tmp_path / "f")
    assert not is_file(tmp_path / ("x" * 300)) and not is_file("a\0b") and not is_file(tmp_path)
