"""Weights files that are corrupt, foreign, or pickles with code in them: refused, never run."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
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
    [b"", b"\x00" * 100, *(random.Random(seed).randbytes(2048) for seed in range(8)),
     b'{"json": "not weights"}', b"PK\x03\x04 a zip cut short"],
    ids=["empty", "zeros", *(f"random_bytes_{seed}" for seed in range(8)), "json", "broken_zip"],
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


def _head_with_header(path: Path, header: dict | str, tensors: dict | None = None) -> Path:
    import json

    from safetensors.torch import save_file

    meta = header if isinstance(header, str) else json.dumps(header)
    save_file(tensors or {"log_mask": torch.zeros(1, dtype=torch.uint8)}, str(path), metadata={"emo_head": meta})
    return path


def _foreign_safetensors(path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(path))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, m: (p.write_bytes(os.urandom(3000)), p)[1], "not a safetensors head file"),
        (_evil_torch_file, "not a safetensors head file"),
        (_evil_plain_pickle, "not a safetensors head file"),
        (lambda p, m: _foreign_safetensors(p), "without an emo head header"),
        (lambda p, m: _head_with_header(p, "{not json"), "broken head file"),
        (lambda p, m: _head_with_header(p, {"format": "someone-else/9"}), "broken head file"),
    ],
    ids=["random_bytes", "torch_pickle_with_code", "plain_pickle_with_code", "foreign_safetensors",
         "header_not_json", "foreign_header"],
)
def test_corrupt_foreign_or_pickled_head_file_is_refused(tiny, tmp_path, make, message):
    marker = tmp_path / "pwned"
    head = make(tmp_path / "bad.head", marker)
    run = emo(["classify", "--head", str(head), "--backbone", "tiny_test", str(make_image(tmp_path / "a.png"))])
    assert_clean(run)
    assert run.code == 2 and run.out == b"", run.err
    assert message in run.err and str(head) in run.err
    assert not marker.exists()


def test_head_header_claiming_huge_sizes_is_refused_before_allocating(tmp_path):
    """A few-byte file whose header claims a 10^9-wide layer: refused by shape, not by running out."""
    import resource
    import subprocess
    import sys

    header = {"format": "emo-head/1", "architecture": {"in_dim": 10**9, "n_out": 7, "hidden": [], "members": 1},
              "task": "classify", "labels": list("abcdefg"), "dims": {"deep": 10**9}}
    head = _head_with_header(tmp_path / "huge.head", header)
    code = f"from emo.models.head_file import load_head_file\nload_head_file({str(head)!r})"
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # noqa: E731  never the whole machine
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=limit)
    assert "ModelError" in r.stderr
    assert "allocate" not in r.stderr, r.stderr[-300:]
