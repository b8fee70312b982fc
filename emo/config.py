"""Defaults, environment variables, paths, and the JSONL keys, each defined once.

A default comes from :data:`DEFAULTS`, then an ``EMO_*`` environment variable, then the
command-line option: the option wins.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from emo.errors import ConfigError

# JSONL keys each subcommand adds; truth fields (label, distribution, valence, arousal) never clash.
KEY_PATH = "path"
# A name that is not UTF-8 is shown readably in "path" (U+FFFD) and exactly here: base64 of its bytes.
KEY_PATH_BYTES = "path_bytes"
KEY_ERROR = "error"
KEY_FEATURES = "features"
KEY_REGIONS = "regions"
KEY_EMOTION = "emotion"
KEY_SENTIMENT = "sentiment"
KEY_VA = "va"
KEY_XMP = "xmp"  # the XMP sidecar written beside the picture (emo classify --xmp)
KEY_HASH = "sha256"  # an input may carry its file's content hash; --resume then matches path and hash
# Keys that describe one picture: a record naming a folder (-r) cannot give them to every picture in it.
PICTURE_KEYS = (KEY_FEATURES, KEY_REGIONS, KEY_EMOTION, KEY_SENTIMENT, KEY_VA, KEY_XMP, KEY_HASH)
TRUTH_KEYS = ("label", "distribution", "valence", "arousal")

ENV_PREFIX = "EMO_"
# Users (names or uids, comma-separated) whose cached engines are trusted besides you and root.
ENV_TRUSTED_USERS = "EMO_TRUSTED_USERS"


@dataclass(frozen=True)
class Settings:
    """Run settings shared by every subcommand."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 32
    workers: int = 0  # decode workers; 0 = automatic (processes: as many as the run measures it needs; threads: one per core, at least 2)
    decoder: str = "auto"  # auto (processes when torch is not loaded yet) | process | thread
    backend: str = "auto"  # auto | tensorrt | inductor | eager
    precision: str = "fp32"  # fp32 | fp16 | bf16
    cache_dir: str = ""  # empty = $XDG_CACHE_HOME/emo or ~/.cache/emo
    backbone: str = "mobilenet_v2"
    head: str = ""  # empty = the subcommand's default head
    max_pixels: int = 89_478_485  # Pillow's default MAX_IMAGE_PIXELS
    weights_dir: str = ""  # extra folder searched for weights files before the cache
    max_bytes: int = 512 << 20  # largest image file read (bytes, checked before decoding); 0 = no limit


DEFAULTS = Settings()

# Upper bounds that keep a typo (EMO_BATCH_SIZE=99999999999999999999) a one-line error rather
# than a failure deep inside the run; far beyond any useful value.
MAX_BATCH_SIZE = 1 << 20
MAX_WORKERS = 4096

BACKENDS = ("auto", "tensorrt", "inductor", "eager")
DECODERS = ("auto", "process", "thread")
PRECISIONS = ("fp32", "fp16", "bf16")


def _coerce(name: str, raw: str, like: object) -> object:
    if isinstance(like, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not an integer") from None
    return raw


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from :data:`DEFAULTS` overridden by ``EMO_<FIELD>`` environment variables."""
    env = os.environ if environ is None else environ
    changes = {}
    for f in fields(Settings):
        var = ENV_PREFIX + f.name.upper()
        raw = env.get(var)
        if raw is not None and raw != "":
            changes[f.name] = _coerce(f.name, raw, getattr(DEFAULTS, f.name))
            # Checked alone, so the one line names the variable that holds the bad value.
            try:
                validate(replace(DEFAULTS, **{f.name: changes[f.name]}))
            except ConfigError as e:
                raise ConfigError(f"{var}={raw!r}: {e}") from None
    return validate(replace(DEFAULTS, **changes))


def validate(s: Settings) -> Settings:
    """Check values that would otherwise fail deep inside a run."""
    if s.backend not in BACKENDS:
        raise ConfigError(f"backend {s.backend!r} is not one of {', '.join(BACKENDS)}")
    if s.precision not in PRECISIONS:
        raise ConfigError(f"precision {s.precision!r} is not one of {', '.join(PRECISIONS)}")
    if s.decoder not in DECODERS:
        raise ConfigError(f"decoder {s.decoder!r} is not one of {', '.join(DECODERS)}")
    if s.batch_size < 1:
        raise ConfigError("batch size must be at least 1")
    if s.batch_size > MAX_BATCH_SIZE:
        raise ConfigError(f"batch size must be at most {MAX_BATCH_SIZE}")
    if s.workers < 0:
        raise ConfigError("workers must be 0 (automatic) or more")
    if s.workers > MAX_WORKERS:
        raise ConfigError(f"workers must be at most {MAX_WORKERS}")
    if s.max_pixels < 0:
        raise ConfigError("max pixels must be 0 (no limit) or more")
    if s.max_bytes < 0:
        raise ConfigError("max bytes must be 0 (no limit) or more")
    if not (s.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", s.device)):
        raise ConfigError(f"device {s.device!r} is not auto, cpu, cuda or cuda:N")
    return s


def cache_root(settings: Settings | None = None) -> Path:
    """Root of emo's cache: ``--cache-dir``, else ``$XDG_CACHE_HOME/emo``, else ``~/.cache/emo``."""
    if settings is not None and settings.cache_dir:
        return Path(settings.cache_dir).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "emo"


def weights_cache(settings: Settings | None = None) -> Path:
    """Folder where downloaded or copied weights files live."""
    return cache_root(settings) / "weights"


def engines_cache(settings: Settings | None = None) -> Path:
    """Folder where compiled engines live."""
    return cache_root(settings) / "engines"


def decode_workers(settings: Settings) -> int:
    """Decode threads: the setting, or one per core (at least 2, since decoding waits on I/O)."""
    return settings.workers or max(2, os.cpu_count() or 2)
