"""emo.engine.load: cache keys, backend choice and fallback, padding and splitting of batches."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import emo.engine as engine_mod
from emo.config import Settings
from emo.engine import Engine, Profile, candidates, key_fields, load
from emo.errors import ModelError

from .conftest import tiny_model

BASE = dict(network_id="net", weights_sha256="a" * 64, profile=Profile(224, 32), precision="fp32",
            backend="inductor", device=torch.device("cpu"))


def _key(**changes):
    from emo.engine.cache import key_of

    args = {**BASE, **changes}
    return key_of(key_fields(args["network_id"], args["weights_sha256"], args["profile"], args["precision"],
                             args["backend"], args["device"]))


def test_key_changes_with_each_field(monkeypatch):
    base = _key()
    variants = {
        "network": _key(network_id="other"),
        "weights": _key(weights_sha256="b" * 64),
        "size": _key(profile=Profile(256, 32)),
        "max batch": _key(profile=Profile(224, 64)),
        "min batch": _key(profile=Profile(224, 32, min_batch=2)),
        "opt batch": _key(profile=Profile(224, 32, opt_batch=8)),
        "precision": _key(precision="fp16"),
        "backend": _key(backend="tensorrt"),
    }
    from emo.engine import device as device_mod

    monkeypatch.setattr(engine_mod, "fingerprint", lambda d: {"device": "cpu: Other CPU", "capability": "AVX2 flags:0"})
    variants["device"] = _key()
    monkeypatch.setattr(engine_mod, "fingerprint", device_mod.fingerprint)
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    variants["torch"] = _key()
    monkeypatch.undo()
    from emo.engine import tensorrt

    monkeypatch.setattr(tensorrt, "versions", lambda: {"torch_tensorrt": "2.99", "tensorrt": ""})
    variants["torch-tensorrt"] = _key()
    monkeypatch.setattr(tensorrt, "versions", lambda: {"torch_tensorrt": "", "tensorrt": "10.99"})
    variants["tensorrt"] = _key()
    monkeypatch.undo()
    assert _key() == base  # deterministic
    keys = list(variants.values())
    assert base not in keys and len(set(keys)) == len(keys), variants


def test_key_fields_name_the_device():
    f = key_fields("net", "w", Profile(224, 32), "fp32", "inductor", torch.device("cpu"))
    assert f["device"].startswith("cpu: ") and f["capability"]
    assert set(f) >= {"network", "weights_sha256", "profile", "precision", "backend", "torch", "torch_tensorrt", "tensorrt"}


def test_auto_order(monkeypatch):
    from emo.engine import tensorrt

    assert candidates("auto", torch.device("cpu")) == ["inductor", "eager"]
    monkeypatch.setattr(tensorrt, "available", lambda: True)
    assert candidates("auto", torch.device("cpu")) == ["inductor", "eager"]  # TensorRT needs CUDA
    assert candidates("auto", torch.device("cuda")) == ["tensorrt", "inductor", "eager"]
    monkeypatch.setattr(tensorrt, "available", lambda: False)
    assert candidates("auto", torch.device("cuda")) == ["inductor", "eager"]
    assert candidates("eager", torch.device("cuda")) == ["eager"]


def _settings(tmp_path, **kw) -> Settings:
    return replace(Settings(device="cpu", cache_dir=str(tmp_path)), **kw)


def test_auto_falls_back_with_one_line(monkeypatch, tmp_path, capsys):
    from emo.engine import inductor

    def boom(*a, **k):
        raise RuntimeError("C++ compiler not found\nlong details that must not reach the user")

    monkeypatch.setattr(inductor, "build", boom)
    _, model = tiny_model()
    eng = load(model, network_id="tiny_test", weights_sha256="x", profile=Profile(32, 4), settings=_settings(tmp_path, backend="auto"))
    assert eng.backend == "eager"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "inductor" in err and "C++ compiler not found" in err and "eager" in err and "long details" not in err
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    ref = model(x)
    got = eng(x)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, ref))


def test_explicit_backend_that_fails_is_a_model_error(monkeypatch, tmp_path, capsys):
    from emo.engine import inductor

    monkeypatch.setattr(inductor, "build", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no compiler")))
    _, model = tiny_model()
    with pytest.raises(ModelError, match="--backend inductor: cannot build .*no compiler") as ei:
        load(model, network_id="tiny_test", weights_sha256="x", profile=Profile(32, 4), settings=_settings(tmp_path, backend="inductor"))
    assert ei.value.exit_code == 2
    assert capsys.readouterr().err == ""


def test_explicit_tensorrt_on_cpu_says_why(tmp_path):
    _, model = tiny_model()
    with pytest.raises(ModelError, match="--backend tensorrt: TensorRT needs a CUDA device"):
        load(model, network_id="tiny_test", weights_sha256="x", profile=Profile(32, 4), settings=_settings(tmp_path, backend="tensorrt"))


def test_tensorrt_not_installed_message(monkeypatch, tmp_path):
    from emo.engine import tensorrt

    monkeypatch.setattr(engine_mod, "resolve_device", lambda spec: torch.device("cuda"))
    monkeypatch.setattr(tensorrt, "available", lambda: False)
    _, model = tiny_model()
    with pytest.raises(ModelError, match=r"pip install '\.\[tensorrt\]'"):
        load(model, network_id="tiny_test", weights_sha256="x", profile=Profile(32, 4), settings=_settings(tmp_path, backend="tensorrt"))


def test_auto_tries_tensorrt_first_on_cuda_then_falls_back(monkeypatch, tmp_path, capsys):
    """On a CUDA machine with torch-tensorrt whose build fails, auto says so once and goes on."""
    from emo.engine import inductor, tensorrt

    tried = []
    monkeypatch.setattr(engine_mod, "resolve_device", lambda spec: torch.device("cuda"))
    monkeypatch.setattr(tensorrt, "available", lambda: True)
    monkeypatch.setattr(engine_mod, "fingerprint", lambda d: {"device": "cuda: Fake GPU", "capability": "sm_90"})

    def trt_build(*a, **k):
        tried.append("tensorrt")
        raise ImportError("libnvinfer.so.10: cannot open shared object file")

    def ind_build(*a, **k):
        tried.append("inductor")
        raise RuntimeError("no CUDA here")

    monkeypatch.setattr(tensorrt, "build", trt_build)
    monkeypatch.setattr(inductor, "build", ind_build)
    monkeypatch.setattr("emo.engine.eager.build_eager", lambda model, device, precision, profile: Engine(
        fn=model, backend="eager", device=torch.device("cpu"), precision=precision, profile=profile))
    _, model = tiny_model()
    eng = load(model, network_id="tiny_test", weights_sha256="x", profile=Profile(32, 4), settings=_settings(tmp_path))
    assert tried == ["tensorrt", "inductor"] and eng.backend == "eager"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "libnvinfer" in lines[0] and "using inductor" in lines[0] and "using eager" in lines[1]


def test_engine_pads_short_batches_and_splits_long_ones():
    seen = []

    def fn(x):
        assert 2 <= x.shape[0] <= 4, x.shape
        seen.append(x.shape[0])
        return x.float().sum(dim=(1, 2, 3)), x.float().mean(dim=(2, 3))

    eng = Engine(fn=fn, backend="inductor", device=torch.device("cpu"), precision="fp32",
                 profile=Profile(8, 4), min_batch=2, max_batch=4)
    for n in (1, 2, 4, 9):
        x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8)
        s, m = eng(x)
        assert s.shape == (n,) and m.shape == (n, 3)
        assert torch.equal(s, x.float().sum(dim=(1, 2, 3)))
    assert seen == [2, 2, 4, 4, 4, 2]  # 1 padded to 2; 9 split 4 + 4 + 1 (padded to 2)


def test_random_weights_are_keyed_by_their_values(tmp_path, monkeypatch):
    """No weights file (random init): the key hashes the tensors, so two random nets never share an engine."""
    from emo.engine import _state_sha256

    _, a = tiny_model()
    _, b = tiny_model()
    assert _state_sha256(a) == _state_sha256(b)
    with torch.no_grad():
        b.classifier.bias.add_(1.0)
    assert _state_sha256(a) != _state_sha256(b)
