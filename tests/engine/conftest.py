"""Engine test fixtures: one compiled tiny_test engine per session, copied into each test's cache.

The ``slow`` marker (registered here) marks tests that compile a real network (about a
minute on 2 cores); they are skipped unless selected with ``-m slow``, which
``bench/throughput.py`` runs. ``EMO_TEST_ENGINE_CACHE`` points them at an existing engine cache.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: compiles a real network (about a minute); run with -m slow")


def pytest_collection_modifyitems(config, items):
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="compiles a real network; run with -m slow (bench/throughput.py does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def tiny_model():
    """The tiny_test network exactly as ``emo.models.create("tiny_test")`` builds it, and its weights digest."""
    from emo.models.backbones import Backbone
    from tests.conftest import _tiny_builder

    from emo.models.registry import NetworkEntry, Preprocess

    net, split = _tiny_builder()
    body, classifier = split(net)
    entry = NetworkEntry(name="tiny_test", builder="tests.conftest:_tiny_builder", task="backbone", weights=None,
                         preprocess=Preprocess(crop=32, resize=36), embed_dim=8, num_classes=10)
    return net, Backbone(body, classifier, entry).eval()


@pytest.fixture(scope="session")
def compiled_tiny(tmp_path_factory) -> Path:
    """A cache folder holding the inductor engine of tiny_test on CPU (batch 32, fp32), compiled once."""
    import torch

    from emo.config import Settings
    from emo.engine import Profile, load

    root = tmp_path_factory.mktemp("compiled-tiny")
    net, model = tiny_model()
    wfile = root / "w" / "tiny_test.pth"  # same name as the tiny_backbone fixture's file: same digest
    wfile.parent.mkdir()
    torch.save(net.state_dict(), wfile)
    digest = hashlib.sha256(wfile.read_bytes()).hexdigest()
    settings = Settings(device="cpu", backend="inductor", cache_dir=str(root / "cache"))
    engine = load(model, network_id="tiny_test", weights_sha256=digest, profile=Profile(32, 32), settings=settings)
    assert engine.backend == "inductor" and engine.built
    return root / "cache"


@pytest.fixture
def tiny_cache(compiled_tiny, _isolated_cache) -> Path:
    """This test's EMO_CACHE_DIR, holding a copy of the compiled tiny_test engine."""
    shutil.copytree(compiled_tiny / "engines", _isolated_cache / "engines", dirs_exist_ok=True)
    return _isolated_cache
