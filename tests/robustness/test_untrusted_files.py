"""Weights files that are corrupt, foreign, or pickles with code in them: refused, never run."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch

from emo.errors import ModelError
from emo.models import registry
from emo.models.weights import load_state_dict
from tests.conftest import make_image, tiny_entry
from tests.robustness.conftest import TINY, assert_clean, emo


class _Payload:
    """Unpickling this runs ``os.system``: the attack a weights file can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_torch_file(path: Path, marker: Path) -> Path:
    torch.save({"weight": torch.zeros(2), "payload": _Payload(marker)}, path)
    return path


def _evil_plain_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"payload": _Payload(marker)}))
    return path


@pytest.mark.parametrize("make", [_evil_torch_file, _evil_plain_pickle], ids=["torch_save_with_code", "plain_pickle_with_code"])
def test_pickle_with_code_is_refused_and_not_run(tmp_path, make):
    marker = tmp_path / "pwned"
    path = make(tmp_path / "evil.pth", marker)
    with pytest.raises(ModelError, match="not a safe weights file"):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 100, os.urandom(2048), b'{"json": "not weights"}', b"PK\x03\x04 a zip cut short"],
    ids=["empty", "zeros", "random_bytes", "json", "broken_zip"],
)
def test_corrupt_or_foreign_weights_file(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError):
        load_state_dict(path)


def test_cli_refuses_a_weights_file_with_code_even_when_its_hash_is_registered(tmp_path, monkeypatch):
    """The hash check is not the only guard: a registered file that carries code still never runs."""
    marker = tmp_path / "pwned"
    wdir = tmp_path / "w"
    wdir.mkdir()
    evil = _evil_torch_file(wdir / "tiny_test.pth", marker)
    monkeypatch.setitem(registry.REGISTRY, "tiny_test", tiny_entry(hashlib.sha256(evil.read_bytes()).hexdigest()))
    monkeypatch.setenv("EMO_WEIGHTS_DIR", str(wdir))
    run = emo(TINY + [str(make_image(tmp_path / "a.png"))])
    assert_clean(run)
    assert run.code == 2 and run.out == b""
    assert "not a safe weights file" in run.err
    assert not marker.exists()


def test_cli_refuses_a_weights_file_whose_hash_differs(tiny, tmp_path):
    (Path(os.environ["EMO_WEIGHTS_DIR"]) / "tiny_test.pth").write_bytes(b"swapped")
    run = emo(TINY + [str(make_image(tmp_path / "a.png"))])
    assert_clean(run)
    assert run.code == 2 and run.out == b"" and "sha256" in run.err
