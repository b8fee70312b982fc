"""emo.config: defaults, EMO_* overrides, validation and cache paths."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from emo import config
from emo.config import DEFAULTS, Settings, cache_root, decode_workers, engines_cache, from_env, validate, weights_cache
from emo.errors import ConfigError


def test_defaults_are_the_documented_ones():
    s = from_env({})
    assert s == DEFAULTS
    assert (s.device, s.batch_size, s.workers, s.backend, s.precision) == ("auto", 32, 0, "auto", "fp32")
    assert s.backbone == "mobilenet_v2"
    assert s.max_pixels == 89_478_485  # Pillow's MAX_IMAGE_PIXELS
    assert (s.cache_dir, s.head, s.weights_dir) == ("", "", "")


def test_env_overrides_each_field_and_coerces_ints():
    env = {
        "EMO_DEVICE": "cuda:1",
        "EMO_BATCH_SIZE": "7",
        "EMO_WORKERS": "3",
        "EMO_DECODER": "process",
        "EMO_BACKEND": "inductor",
        "EMO_PRECISION": "bf16",
        "EMO_CACHE_DIR": "/tmp/x",
        "EMO_BACKBONE": "resnet50",
        "EMO_HEAD": "mikels8.head",
        "EMO_MAX_PIXELS": "1000",
        "EMO_WEIGHTS_DIR": "/w",
        "EMO_MAX_BYTES": "2048",
    }
    s = from_env(env)
    assert s == Settings(device="cuda:1", batch_size=7, workers=3, decoder="process", backend="inductor",
                         precision="bf16", cache_dir="/tmp/x", backbone="resnet50", head="mikels8.head",
                         max_pixels=1000, weights_dir="/w", max_bytes=2048)
    assert isinstance(s.batch_size, int) and isinstance(s.max_pixels, int)


def test_empty_env_value_means_default():
    assert from_env({"EMO_BATCH_SIZE": "", "EMO_BACKEND": ""}) == DEFAULTS


def test_unrelated_and_lowercase_vars_are_ignored():
    assert from_env({"emo_batch_size": "3", "EMO_NOT_A_SETTING": "x", "BATCH_SIZE": "4"}) == DEFAULTS


def test_from_env_reads_os_environ(monkeypatch):
    monkeypatch.setenv("EMO_BATCH_SIZE", "11")
    assert from_env().batch_size == 11


def test_bad_int_is_a_config_error_naming_the_variable():
    with pytest.raises(ConfigError, match=r"EMO_BATCH_SIZE='lots' is not an integer"):
        from_env({"EMO_BATCH_SIZE": "lots"})
    with pytest.raises(ConfigError, match="EMO_MAX_PIXELS"):
        from_env({"EMO_MAX_PIXELS": "1.5"})


@pytest.mark.parametrize(
    "env, match",
    [
        ({"EMO_BACKEND": "onnx"}, "backend 'onnx' is not one of auto, tensorrt, inductor, eager"),
        ({"EMO_PRECISION": "int8"}, "precision 'int8'"),
        ({"EMO_BATCH_SIZE": "0"}, "batch size must be at least 1"),
        ({"EMO_WORKERS": "-1"}, "workers must be 0"),
        ({"EMO_DEVICE": "gpu"}, "device 'gpu'"),
        ({"EMO_DEVICE": "cuda:"}, "device 'cuda:'"),
        ({"EMO_DEVICE": "cuda:x"}, "device 'cuda:x'"),
        ({"EMO_MAX_PIXELS": "-1"}, "max pixels"),
    ],
)
def test_validation_errors(env, match):
    with pytest.raises(ConfigError, match=match):
        from_env(env)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_devices(device):
    assert validate(replace(DEFAULTS, device=device)).device == device


def test_config_error_exits_2():
    assert ConfigError("x").exit_code == 2


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "emo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "emo"
    assert cache_root(DEFAULTS) == tmp_path / "xdg" / "emo"  # an empty cache_dir falls through
    explicit = replace(DEFAULTS, cache_dir=str(tmp_path / "mine"))
    assert cache_root(explicit) == tmp_path / "mine"  # --cache-dir wins over XDG
    assert weights_cache(explicit) == tmp_path / "mine" / "weights"
    assert engines_cache(explicit) == tmp_path / "mine" / "engines"


def test_cache_dir_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root(replace(DEFAULTS, cache_dir="~/c")) == tmp_path / "c"


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EMO_CACHE_DIR", str(tmp_path / "envcache"))
    assert weights_cache(from_env()) == tmp_path / "envcache" / "weights"


def test_conftest_isolates_the_cache(_isolated_cache):
    assert cache_root(from_env()) == Path(_isolated_cache)


def test_decode_workers(monkeypatch):
    assert decode_workers(replace(DEFAULTS, workers=5)) == 5
    monkeypatch.setattr(config.os, "cpu_count", lambda: 1)
    assert decode_workers(DEFAULTS) == 2  # at least 2: decoding waits on I/O
    monkeypatch.setattr(config.os, "cpu_count", lambda: None)
    assert decode_workers(DEFAULTS) == 2
    monkeypatch.setattr(config.os, "cpu_count", lambda: 16)
    assert decode_workers(DEFAULTS) == 16


def test_jsonl_keys_never_clash_with_truth():
    own = {config.KEY_FEATURES, config.KEY_REGIONS, config.KEY_EMOTION, config.KEY_SENTIMENT, config.KEY_VA}
    assert len(own) == 5
    assert not own & set(config.TRUTH_KEYS)
    assert config.TRUTH_KEYS == ("label", "distribution", "valence", "arousal")


def test_an_unknown_decoder_is_refused():
    with pytest.raises(ConfigError, match="decoder 'fork' is not one of auto, process, thread"):
        from_env({"EMO_DECODER": "fork"})


@pytest.mark.parametrize(
    "env, match",
    [
        ({"EMO_BATCH_SIZE": "0"}, r"^EMO_BATCH_SIZE='0': batch size must be at least 1$"),
        ({"EMO_BATCH_SIZE": "2000000"}, r"^EMO_BATCH_SIZE='2000000': batch size must be at most"),
        ({"EMO_WORKERS": "-1"}, r"^EMO_WORKERS='-1': workers must be 0"),
        ({"EMO_DEVICE": "gpu"}, r"^EMO_DEVICE='gpu': device 'gpu'"),
        ({"EMO_MAX_BYTES": "-5", "EMO_BATCH_SIZE": "8"}, r"^EMO_MAX_BYTES='-5': max bytes"),
    ],
)
def test_out_of_range_env_value_names_its_variable(env, match):
    """docs/robustness.md: an EMO_* value out of range is one line naming it."""
    with pytest.raises(ConfigError, match=match):
        from_env(env)
