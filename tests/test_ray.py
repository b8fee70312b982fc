"""examples/ray_classify.py on a local Ray instance: the distributed output equals emo's."""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.conftest import REPO, make_image
from tests.robustness.conftest import assert_same_records, emo

ray = pytest.importorskip("ray", reason="ray is not installed (pip install '.[ray]'); the Ray example is not tested")


def _example():
    spec = importlib.util.spec_from_file_location("ray_classify", REPO / "examples" / "ray_classify.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _argv() -> list[str]:
    """emo classify where its shipped head is installed, else the backbone's object features."""
    from emo.errors import EmoError
    from emo.heads import DEFAULT_HEAD
    from emo.models.head_file import load_head

    try:
        load_head(DEFAULT_HEAD["classify"])
        return ["classify"]
    except EmoError:
        return ["features", "--set", "object"]


def test_ray_output_equals_emo_on_the_same_images(tmp_path):
    from emo.config import from_env
    from emo.models.registry import get
    from emo.models.weights import locate

    if locate(get("mobilenet_v2").weights, from_env()) is None:
        pytest.skip("mobilenet_v2 weights are not here (make setup installs their offline carrier)")
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(6):
        make_image(d / f"{i}.jpg", size=(48 + 8 * i, 40), color=(30 * i, 200 - 20 * i, 120))
    (d / "broken.jpg").write_bytes(b"not an image")
    argv = _argv()
    out = tmp_path / "ray.jsonl"
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    try:
        code = _example().main([str(d), "-o", str(out), "--actors", "2", "--num-cpus", "2",
                                "--batch-size", "3", "--", *argv])
    finally:
        ray.shutdown()
    local = emo(argv + ["-r", str(d)])
    assert code == local.code == 1  # broken.jpg
    assert len(out.read_bytes().splitlines()) == 7
    assert_same_records(out.read_bytes(), local.out)
