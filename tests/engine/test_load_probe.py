"""load_probe: a compiled engine is loaded in a child first; a crash there is refused and remembered."""

from __future__ import annotations

import subprocess

import pytest
import torch

from emo.engine import load_probe
from emo.errors import ModelError


def _fake_run(code: int, stdout: str = "", stderr: str = ""):
    def run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, code, stdout, stderr)

    return run


def test_a_crashing_loader_is_refused_and_remembered(tmp_path, monkeypatch):
    monkeypatch.setattr(load_probe.subprocess, "run", _fake_run(-11))
    with pytest.raises(ModelError, match="crashed \\(SIGSEGV\\)"):
        load_probe.check_in_child("inductor", tmp_path / "e.pt2", torch.device("cpu"), 8, 1, None, tmp_path, "k1")
    assert "SIGSEGV" in load_probe.known_unloadable(tmp_path, "k1")
    assert load_probe.known_unloadable(tmp_path, "other") is None


def test_a_loader_that_works_leaves_no_mark(tmp_path, monkeypatch):
    monkeypatch.setattr(load_probe.subprocess, "run", _fake_run(0, "loaded\n"))
    load_probe.check_in_child("inductor", tmp_path / "e.pt2", torch.device("cpu"), 8, 1, None, tmp_path, "k2")
    assert load_probe.known_unloadable(tmp_path, "k2") is None


def test_a_real_child_reports_why_a_package_does_not_load(tmp_path):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a package")
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_probe.check_in_child("inductor", bad, torch.device("cpu"), 8, 1, None, tmp_path, "k3")
    assert load_probe.known_unloadable(tmp_path, "k3").startswith("it cannot be loaded")


def test_a_remembered_crash_falls_back_at_once(tmp_path, monkeypatch, capsys):
    import emo.engine as engine_mod
    from emo.config import Settings
    from emo.engine import Profile, load
    from emo.engine.cache import key_of

    monkeypatch.setattr(engine_mod, "resolve_device", lambda spec: torch.device("cuda"))
    monkeypatch.setattr(engine_mod, "fingerprint", lambda d: {"device": "cuda: test", "capability": "sm_90"})
    monkeypatch.setattr(engine_mod, "candidates", lambda b, d: ["inductor", "eager"])
    built = []
    monkeypatch.setattr("emo.engine.inductor.build", lambda *a: built.append(a))
    monkeypatch.setattr("emo.engine.eager.build_eager",
                        lambda m, d, p, prof: engine_mod.Engine(fn=m, backend="eager", device=d, precision=p, profile=prof))
    settings = Settings(cache_dir=str(tmp_path), backend="auto", device="cuda")
    fields = engine_mod.key_fields("net", "a" * 64, Profile(8, 4), "fp32", "inductor", torch.device("cuda"))
    load_probe.mark_path(tmp_path / "engines", key_of(fields)).parent.mkdir(parents=True)
    load_probe.mark_path(tmp_path / "engines", key_of(fields)).write_text('{"why": "its loader crashed (SIGSEGV)"}')
    eng = load(torch.nn.Identity(), network_id="net", weights_sha256="a" * 64, profile=Profile(8, 4), settings=settings)
    assert eng.backend == "eager" and not built  # nothing compiled again
    assert "loader crashed (SIGSEGV)" in capsys.readouterr().err
