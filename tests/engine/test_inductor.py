"""The inductor backend on real images: equal to eager, loaded from the cache, corrupt files rebuilt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from emo.config import Settings, from_env
from emo.engine import Profile, load
from emo.io.decode import View, decode
from tests.conftest import SAMPLES

# Read at import: the suite's autouse fixture clears every EMO_* variable before a test runs.
SHARED_ENGINE_CACHE = os.environ.get("EMO_TEST_ENGINE_CACHE", "")


def _real_batch(size: int, resize: int, n: int = 7) -> torch.Tensor:
    """``(n, 3, size, size) uint8`` from the shipped sample photos (repeated, then mirrored)."""
    paths = sorted(SAMPLES.glob("*.jpg"))
    view = View(size, resize, "crop")
    arr = np.stack([decode(p, (view,), 0).views[view] for p in paths])
    arr = np.concatenate([arr, arr[:, :, ::-1]])
    arr = np.concatenate([arr] * (n // len(arr) + 1))[:n]
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


def _tiny(tiny_backbone):
    from emo.models import create

    return create("tiny_test", from_env())


def test_inductor_equals_eager_on_real_images(tiny_backbone, tiny_cache):
    model = _tiny(tiny_backbone)
    settings = Settings(device="cpu", backend="inductor", cache_dir=str(tiny_cache))
    eng = load(model, network_id="tiny_test", weights_sha256=model.weights_sha256, profile=Profile(32, 32), settings=settings)
    assert eng.backend == "inductor" and not eng.built  # the session's engine, loaded from the cache
    x = _real_batch(32, 36)
    with torch.inference_mode():
        ref = model(x)
    for n in (1, x.shape[0]):  # a batch of 1 (the last, short batch) as well as a full one
        got = eng(x[:n])
        for g, r in zip(got, ref):
            assert g.shape == r[:n].shape
            assert torch.allclose(g, r[:n], atol=1e-4, rtol=0), (g - r[:n]).abs().max()


def test_truncated_package_is_detected_removed_and_rebuilt(tiny_backbone, tiny_cache, monkeypatch, capsys):
    from emo.engine import inductor

    model = _tiny(tiny_backbone)
    (pkg,) = (tiny_cache / "engines").glob("*.pt2")
    good = pkg.read_bytes()
    pkg.write_bytes(good[: len(good) // 3])
    builds = []

    def rebuild(model, profile, device, precision, out: Path):
        builds.append(out)
        out.write_bytes(good)  # what a fresh compile would write, without another minute of compiling
        return {"min_batch": 1, "max_batch": profile.max_batch}

    monkeypatch.setattr(inductor, "build", rebuild)
    settings = Settings(device="cpu", backend="inductor", cache_dir=str(tiny_cache))
    eng = load(model, network_id="tiny_test", weights_sha256=model.weights_sha256, profile=Profile(32, 32), settings=settings)
    assert len(builds) == 1 and eng.built and pkg.read_bytes() == good
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "corrupt" in err[0] and pkg.name in err[0]
    x = _real_batch(32, 36, n=3)
    assert torch.allclose(eng(x)[1], model(x)[1], atol=1e-4)


def _cli(args: list[str], monkeypatch) -> int:
    from emo.cli import cli
    from emo.cli.exits import guarded

    monkeypatch.setattr("sys.argv", ["emo", *args])
    return guarded(cli)


def test_features_through_the_cached_engine_match_eager(tiny_backbone, tiny_cache, monkeypatch, capfd):
    import orjson

    imgs = [str(p) for p in sorted(SAMPLES.glob("*.jpg"))[:3]]
    base = ["features", "--set", "deep", "--backbone", "tiny_test", "--device", "cpu", "-q"]
    assert _cli(base + ["--backend", "eager", *imgs], monkeypatch) == 0
    eager = [orjson.loads(ln) for ln in capfd.readouterr().out.splitlines()]
    assert _cli(base + ["--backend", "inductor", "-v", *imgs], monkeypatch) == 0
    out, err = capfd.readouterr()
    compiled = [orjson.loads(ln) for ln in out.splitlines()]
    assert "engine inductor" in err and "loaded from" in err
    assert len(compiled) == len(eager) == len(imgs)
    for a, b in zip(compiled, eager):
        assert np.allclose(a["features"]["deep"], b["features"]["deep"], atol=1e-4)


def test_engines_cli_list_build_clear(tiny_backbone, tiny_cache, monkeypatch, capfd):
    import orjson

    assert _cli(["engines", "build", "--device", "cpu", "--backend", "inductor", "tiny_test"], monkeypatch) == 0
    out = capfd.readouterr().out
    assert out.startswith("tiny_test\tinductor\tcpu\t") and "cached" in out
    assert _cli(["engines", "list", "--json"], monkeypatch) == 0
    (row,) = [orjson.loads(ln) for ln in capfd.readouterr().out.splitlines()]
    assert row["network"] == "tiny_test" and row["backend"] == "inductor" and row["size"] > 0
    assert row["profile"] == "3x32x32:b1-32-32:uint8" and row["device"].startswith("cpu")
    assert _cli(["engines", "list"], monkeypatch) == 0
    table = capfd.readouterr().out
    assert "tiny_test" in table and "inductor" in table and "ago" in table
    assert _cli(["engines", "clear", "--older-than", "1"], monkeypatch) == 0  # just used: kept
    assert "removed 0 engine(s)" in capfd.readouterr().err
    assert _cli(["engines", "clear"], monkeypatch) == 2  # every engine, no terminal to ask: refused
    assert "--yes" in capfd.readouterr().err and list((tiny_cache / "engines").glob("*.pt2"))
    assert _cli(["engines", "clear", "--dry-run"], monkeypatch) == 0
    out, err = capfd.readouterr()
    assert out.strip().endswith(".pt2") and "would remove 1 engine(s)" in err
    assert list((tiny_cache / "engines").glob("*.pt2"))
    assert _cli(["engines", "clear", "--yes"], monkeypatch) == 0
    assert "removed 1 engine(s)" in capfd.readouterr().err
    assert not list((tiny_cache / "engines").glob("*.pt2"))


def test_engines_options_come_after_the_subcommand_and_build_for_a_command(tiny_backbone, tmp_path, monkeypatch, capfd):
    import orjson

    cache = tmp_path / "elsewhere"
    args = ["--cache-dir", str(cache), "--device", "cpu", "--backend", "inductor", "--backbone", "tiny_test"]
    assert _cli(["engines", "build", "--for", "features", *args], monkeypatch) == 0
    out = capfd.readouterr().out
    assert out.startswith("features\tinductor\tcpu\t") and str(cache) in out
    assert _cli(["engines", "list", "--json", "--cache-dir", str(cache)], monkeypatch) == 0
    (row,) = [orjson.loads(ln) for ln in capfd.readouterr().out.splitlines()]
    assert row["network"] == "tiny_test"
    assert _cli(["models", "pull", "tiny_test", "--cache-dir", str(cache)], monkeypatch) in (0, 2)
    assert "No such option" not in capfd.readouterr().err


def test_engines_build_unknown_name_is_exit_2(monkeypatch, capfd):
    assert _cli(["engines", "build", "no_such_net"], monkeypatch) == 2
    assert "unknown network" in capfd.readouterr().err


def test_explicit_tensorrt_on_cpu_is_exit_2(tiny_backbone, monkeypatch, capfd):
    img = str(sorted(SAMPLES.glob("*.jpg"))[0])
    rc = _cli(["features", "--set", "deep", "--backbone", "tiny_test", "--device", "cpu", "--backend", "tensorrt", img], monkeypatch)
    out, err = capfd.readouterr()
    assert rc == 2 and out == ""
    assert "tensorrt" in err and "CUDA" in err and "Traceback" not in err


@pytest.mark.slow
def test_mobilenet_v2_inductor_equals_eager(tmp_path):
    """The real default network, compiled (about a minute on 2 cores, or loaded from EMO_TEST_ENGINE_CACHE)."""
    from emo.models import create, get

    cache = SHARED_ENGINE_CACHE or str(tmp_path)
    settings = Settings(device="cpu", backend="inductor", cache_dir=cache)
    model = create("mobilenet_v2", settings)
    pp = get("mobilenet_v2").preprocess
    eng = load(model, network_id="mobilenet_v2", weights_sha256=model.weights_sha256, profile=Profile(pp.crop, 32), settings=settings)
    assert eng.backend == "inductor"
    x = _real_batch(pp.crop, pp.resize, n=8)
    with torch.inference_mode():
        ref = model(x)
    got = eng(x)
    for g, r in zip(got, ref):
        assert torch.allclose(g, r, atol=1e-4, rtol=0), (g - r).abs().max()
    assert torch.equal(got[0].argmax(1), ref[0].argmax(1))


def test_cached_engine_never_builds_the_network(tiny_backbone, tiny_cache, monkeypatch):
    """A cached run keys the engine by the weights file's digest alone: no network is built."""
    from emo.assembly.feature_needs import backbone_engine

    def refuse(*a, **k):
        raise AssertionError("the network was built although its engine is cached")

    model = _tiny(tiny_backbone)  # the reference, built before building is refused
    monkeypatch.setattr("emo.models.create", refuse)
    from dataclasses import replace

    settings = replace(from_env(), device="cpu", backend="inductor", cache_dir=str(tiny_cache), backbone="tiny_test")
    entry, digest, eng = backbone_engine(settings)
    assert eng.backend == "inductor" and not eng.built
    assert digest == tiny_backbone.weights.sha256
    x = _real_batch(32, 36, n=3)
    assert torch.allclose(eng(x)[1], model(x)[1], atol=1e-4)


def test_network_is_built_once_when_the_engine_is_missing(tiny_backbone, monkeypatch, tmp_path):
    from emo.engine import inductor

    built, compiled = [], []
    model = _tiny(tiny_backbone)

    def factory():
        built.append(1)
        return model

    def fake_build(m, profile, device, precision, out: Path):
        compiled.append(m)
        raise RuntimeError("no compiler here")  # auto falls back to eager, which needs the model too

    monkeypatch.setattr(inductor, "build", fake_build)
    settings = Settings(device="cpu", backend="auto", cache_dir=str(tmp_path))
    eng = load(factory, network_id="tiny_test", weights_sha256="f" * 64, profile=Profile(32, 32), settings=settings)
    assert eng.backend == "eager" and compiled == [model] and built == [1]


def test_engines_unpack_into_a_folder_of_this_process_removed_at_exit(tiny_backbone, tiny_cache, monkeypatch, tmp_path):
    """The package loader's own folder goes only with its C++ destructor, which emo's os._exit
    skips: emo unpacks into a locked emo-aoti-<pid>-*, removes it at exit, and sweeps folders
    whose lock is free (their process is gone)."""
    import tempfile

    from emo.engine import inductor

    import fcntl

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / "emo-aoti-4294967296-left"  # its lock is free: its process is gone (kill -9)
    stale.mkdir()
    (stale / ".lock").touch()
    live = tmp_path / "emo-aoti-1-live"  # its lock is held: a running emo, whatever its pid says
    live.mkdir()
    held = os.open(live / ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    foreign = tmp_path / "emo-aoti-notours"  # no lock file: not a folder emo made
    foreign.mkdir()
    model = _tiny(tiny_backbone)
    settings = Settings(device="cpu", backend="inductor", cache_dir=str(tiny_cache))
    eng = load(model, network_id="tiny_test", weights_sha256=model.weights_sha256, profile=Profile(32, 32), settings=settings)
    ours = list(tmp_path.glob(f"emo-aoti-{os.getpid()}-*"))
    assert len(ours) == 1 and any(ours[0].rglob("*.so"))  # the loader unpacked here, not in /tmp
    assert not stale.exists() and live.exists() and foreign.exists()
    os.close(held)
    assert os.environ.get("TMPDIR") != str(ours[0])  # restored after the load
    inductor.remove_extracted()
    assert not ours[0].exists()
    x = _real_batch(32, 36, n=3)
    assert eng(x)[0].shape[0] == 3  # the code stays mapped: the engine still runs
