"""emo.models.backbones: normalisation inside the network, the body/classifier split, real weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from emo.config import DEFAULTS
from emo.errors import HashMismatch, ModelError
from emo.models import create, get, imagenet_labels
from emo.models.backbones import Backbone
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def mobilenet_random() -> Backbone:
    torch.manual_seed(0)
    return create("mobilenet_v2", DEFAULTS, pretrained=False)


def _pixels(n: int = 2, side: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)


def test_uint8_input_equals_float_normalised_input_through_the_body(mobilenet_random):
    x = _pixels()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    by_hand = (x.float() / 255.0 - mean) / std  # torchvision's ToTensor + Normalize
    with torch.inference_mode():
        logits, emb = mobilenet_random(x)
        emb_ref = mobilenet_random.body(by_hand)
        logits_ref = mobilenet_random.classifier(emb_ref)
    assert torch.allclose(emb, emb_ref, atol=1e-5, rtol=1e-4)
    assert torch.allclose(logits, logits_ref, atol=1e-5, rtol=1e-4)
    assert emb.abs().sum() > 0  # not a trivially zero comparison


def test_float_pixels_in_0_255_give_the_same_as_uint8(mobilenet_random):
    x = _pixels()
    with torch.inference_mode():
        a = mobilenet_random(x)
        b = mobilenet_random(x.float())
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_normalisation_comes_from_the_entry(tiny_backbone):
    # EfficientNet-Lite style: mean = std = 0.5 maps 0 -> -1 and 255 -> +1.
    from tests.conftest import _tiny_builder

    entry = replace(tiny_backbone, preprocess=replace(tiny_backbone.preprocess, mean=(0.5,) * 3, std=(0.5,) * 3))
    net, split = _tiny_builder()
    model = Backbone(*split(net), entry)
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    assert torch.allclose(model.normalize(x).flatten(), torch.tensor([-1.0, 1.0, -0.6]), atol=1e-6)


def test_normalisation_buffers_are_not_in_the_state_dict(mobilenet_random):
    # The weights file is torchvision's own: extra keys would break loading it back.
    keys = set(mobilenet_random.state_dict())
    assert not any(k.endswith(("mean", "inv_std")) and "." not in k for k in keys)


def test_create_loads_weights_from_the_fixture(tiny_backbone):
    model = create("tiny_test")
    assert model.weights_sha256 == tiny_backbone.weights.sha256
    assert not model.training
    assert model.entry_name == "tiny_test"
    logits, emb = model(torch.zeros(3, 3, 32, 32, dtype=torch.uint8))
    assert logits.shape == (3, 10) and emb.shape == (3, 8)


def test_create_unknown_name_is_a_model_error():
    with pytest.raises(ModelError, match="unknown network 'nope'"):
        create("nope")


def test_create_with_a_file_that_does_not_fit(tiny_backbone, tmp_path):
    import hashlib

    from emo.models import registry

    other = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, other)
    digest = hashlib.sha256(other.read_bytes()).hexdigest()
    registry.REGISTRY["tiny_test"] = replace(tiny_backbone, weights=replace(tiny_backbone.weights, sha256=digest))
    with pytest.raises(ModelError, match="does not fit tiny_test"):
        create("tiny_test", weights=other)


def test_create_refuses_an_altered_weights_file(tiny_backbone, tmp_path):
    path = tmp_path / "weights" / "tiny_test.pth"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(HashMismatch):
        create("tiny_test")


def _cat_batch() -> torch.Tensor:
    from emo.io.decode import View, decode

    pp = get("mobilenet_v2").preprocess
    view = View(pp.crop, pp.resize, "crop")
    arr = decode(SAMPLES / "cat.jpg", (view,), DEFAULTS.max_pixels).views[view]
    return torch.from_numpy(np.array(arr)).permute(2, 0, 1)[None]


def test_mobilenet_v2_pretrained_sees_a_cat():
    model = create("mobilenet_v2", DEFAULTS)
    with torch.inference_mode():
        logits, emb = model(_cat_batch())
    top = int(logits.argmax(1))
    assert 281 <= top <= 285, f"top-1 is {top} ({imagenet_labels()[top]})"  # tabby .. Egyptian cat
    assert float(torch.softmax(logits, 1)[0, 281:286].sum()) > 0.5
    assert emb.shape == (1, 1280) and float(emb.min()) >= 0  # pooled after ReLU6
