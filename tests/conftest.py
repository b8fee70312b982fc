"""Shared fixtures: real images made with Pillow, real corrupt files, a tiny registered network,
and caches kept in tmp_path through EMO_* variables."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "emo" / "data" / "samples"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache, and no EMO_* setting leaks in from the developer's shell."""
    for k in list(os.environ):
        if k.startswith("EMO_"):
            monkeypatch.delenv(k)
    cache = tmp_path_factory.mktemp("emo-cache")
    monkeypatch.setenv("EMO_CACHE_DIR", str(cache))
    # Compiling engines costs tens of seconds; tests that check compilation opt back in.
    monkeypatch.setenv("EMO_BACKEND", "eager")
    return cache


def make_image(path: Path, size=(64, 48), color=(200, 30, 30), mode="RGB", fmt=None, **save) -> Path:
    """Write a real image: a colour field with a gradient so that every pixel is not the same."""
    w, h = size
    grad = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    arr = (np.array(color, dtype=np.float32)[None, None, :] * (0.5 + 0.5 * grad)).repeat(h, 0)
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt, **save)
    return path


def alike_images(folder: Path, colors=((220, 20, 20), (20, 40, 220))) -> list[Path]:
    """Real images, one per colour, whose names are not UTF-8 and read alike: ``caf\\xff.png``,
    ``caf\\xfe.png``... both shown as ``caf\ufffd.png``. Skips on a file system that refuses them."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, color in enumerate(colors):
        path = Path(os.fsdecode(os.fsencode(folder) + b"/caf" + bytes([0xFF - i]) + b".png"))
        try:
            make_image(path, color=color)
        except UnicodeError:
            pytest.skip("this system cannot spell names that are not UTF-8")
        except OSError as e:
            if e.errno in (errno.EILSEQ, errno.EINVAL):  # how file systems that insist on UTF-8 refuse
                pytest.skip("this file system refuses names that are not UTF-8")
            raise
        out.append(path)
    return out


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """A folder with three good images of different colours and formats."""
    d = tmp_path / "imgs"
    d.mkdir()
    make_image(d / "red.jpg", color=(220, 20, 20))
    make_image(d / "green.png", color=(20, 200, 40))
    make_image(d / "blue.webp", color=(20, 40, 220))
    return d


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    """Real corrupt inputs: zero bytes, truncated JPEG, text named .jpg, a directory."""
    d = tmp_path / "bad"
    d.mkdir()
    good = make_image(d / "good.jpg", size=(128, 96))
    data = good.read_bytes()
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "text.jpg").write_text("this is not an image\n")
    (d / "folder.jpg").mkdir()
    return {p.stem: p for p in d.iterdir()}


# How long a forked child may take before it counts as hung (it takes about a second).
FORK_TIMEOUT = 60.0


def in_fork(fn: Callable[[], bytes], timeout: float = FORK_TIMEOUT) -> bytes:
    """``fn()`` run in a child forked from this process, its bytes handed back; the test fails
    when the child raises, or is killed and fails when it has not finished within ``timeout``."""
    import select
    import signal
    import time
    import traceback

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest, whatever happens
        code = 1
        try:
            os.close(r)
            try:
                out, code = b"ok" + fn(), 0
            except BaseException:
                out = b"no" + traceback.format_exc().encode()
            with os.fdopen(w, "wb") as f:
                f.write(out)
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            if select.select([r], [], [], left)[0]:
                if not (chunk := os.read(r, 1 << 20)):
                    break
                chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the forked child did not finish within {timeout:.0f} s: it hung")
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    out = b"".join(chunks)
    assert out[:2] == b"ok", out[2:].decode(errors="replace") or "the child ended without a word"
    return out[2:]


def _tiny_builder():
    """A 2-layer conv net with the Backbone contract: 10 classes, 8-d embedding."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
            self.classifier = nn.Linear(8, 10)

    def split(net):
        from emo.models.backbones import _Pooled

        return _Pooled(net.features), net.classifier

    torch.manual_seed(0)
    return Tiny(), split


def tiny_entry(digest: str):
    """The registry entry of ``tiny_test`` (also registered by subprocess tests)."""
    from emo.models.registry import NetworkEntry, Preprocess, WeightsFile

    return NetworkEntry(
        name="tiny_test",
        builder="tests.conftest:_tiny_builder",
        task="backbone",
        weights=WeightsFile("tiny_test.pth", digest),
        preprocess=Preprocess(crop=32, resize=36),
        embed_dim=8,
        num_classes=10,
        stages=(("features.0", 8),),
    )


@pytest.fixture
def tiny_backbone(tmp_path, monkeypatch):
    """Register ``tiny_test``: a random-init network whose weights file is written and hashed here."""
    import torch

    from emo.models import registry

    net, _ = _tiny_builder()
    wdir = tmp_path / "weights"
    wdir.mkdir()
    path = wdir / "tiny_test.pth"
    torch.save(net.state_dict(), path)
    entry = tiny_entry(hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setitem(registry.REGISTRY, "tiny_test", entry)
    monkeypatch.setenv("EMO_WEIGHTS_DIR", str(wdir))
    return entry
