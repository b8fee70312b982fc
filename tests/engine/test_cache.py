"""The engine cache: keys, atomic commits, one build across processes, corrupt entries rebuilt."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from emo.engine.cache import EngineCache, key_of

FIELDS = {"network": "n", "weights_sha256": "w", "profile": "p", "precision": "fp32", "backend": "inductor"}


def _build_counting(counter: Path, payload: bytes = b"engine-bytes" * 100, pause: float = 0.0):
    def build(tmp: Path):
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(pause)
        tmp.write_bytes(payload)
        return {"min_batch": 1}

    return build


def _read(path: Path, meta: dict) -> bytes:
    return path.read_bytes()


def test_key_is_stable_and_order_free():
    assert key_of(FIELDS) == key_of(dict(reversed(list(FIELDS.items()))))
    assert len(key_of(FIELDS)) == 32


def test_build_once_then_load(tmp_path):
    cache = EngineCache(tmp_path)
    counter = tmp_path / "builds.txt"
    out, meta, built = cache.get(FIELDS, "pt2", _build_counting(counter), _read)
    assert built and out == b"engine-bytes" * 100
    out2, meta2, built2 = cache.get(FIELDS, "pt2", _build_counting(counter), _read)
    assert not built2 and out2 == out
    assert counter.read_text().count("\n") == 1
    side = json.loads((tmp_path / f"{key_of(FIELDS)}.json").read_text())
    assert side["fields"] == FIELDS and side["size"] == 1200 and side["min_batch"] == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temp file left behind


def test_other_fields_other_entry(tmp_path):
    cache = EngineCache(tmp_path)
    counter = tmp_path / "builds.txt"
    cache.get(FIELDS, "pt2", _build_counting(counter), _read)
    cache.get({**FIELDS, "precision": "fp16"}, "pt2", _build_counting(counter), _read)
    assert counter.read_text().count("\n") == 2
    assert len(list(cache.entries())) == 2


def test_failed_build_leaves_nothing(tmp_path):
    cache = EngineCache(tmp_path)

    def bad(tmp: Path):
        tmp.write_bytes(b"half an eng")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cache.get(FIELDS, "pt2", bad, _read)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".lock"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_sidecar", "bad_json"])
def test_corrupt_entry_is_removed_and_rebuilt(tmp_path, damage):
    warnings: list[str] = []
    cache = EngineCache(tmp_path, warn=warnings.append)
    counter = tmp_path / "builds.txt"
    cache.get(FIELDS, "pt2", _build_counting(counter), _read)
    engine, sidecar, _ = cache.paths(key_of(FIELDS), "pt2")
    data = engine.read_bytes()
    if damage == "truncate":
        engine.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        engine.write_bytes(data[:10] + bytes([data[10] ^ 0xFF]) + data[11:])
    elif damage == "delete_sidecar":
        sidecar.unlink()
    else:
        sidecar.write_text("{not json")
    out, _, built = cache.get(FIELDS, "pt2", _build_counting(counter), _read)
    assert built and out == data
    assert counter.read_text().count("\n") == 2
    assert len(warnings) == 1 and "corrupt" in warnings[0] and "rebuilding" in warnings[0]
    assert "\n" not in warnings[0]


def test_file_that_will_not_load_is_rebuilt(tmp_path):
    """A file that matches its sidecar but fails to load (e.g. written by a broken build) is rebuilt once."""
    warnings: list[str] = []
    cache = EngineCache(tmp_path, warn=warnings.append)
    counter = tmp_path / "builds.txt"
    cache.get(FIELDS, "pt2", _build_counting(counter, payload=b"garbage"), _read)
    loads = []

    def picky(path: Path, meta: dict) -> bytes:
        loads.append(path.read_bytes())
        if path.read_bytes() == b"garbage":
            raise ValueError("not a package")
        return path.read_bytes()

    out, _, built = cache.get(FIELDS, "pt2", _build_counting(counter, payload=b"good"), picky)
    assert built and out == b"good"
    assert len(warnings) == 1 and "ValueError: not a package" in warnings[0]


def _worker(root: str, counter: str, results: str) -> None:
    cache = EngineCache(Path(root), warn=lambda m: None)
    out, meta, built = cache.get(FIELDS, "pt2", _build_counting(Path(counter), pause=0.5), _read)
    with open(results, "a") as f:
        f.write(f"{int(built)} {meta['sha256']}\n")


def test_parallel_processes_build_once(tmp_path):
    counter, results = tmp_path / "builds.txt", tmp_path / "results.txt"
    ctx = mp.get_context("spawn")  # fresh interpreters: real processes, no shared state
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "cache"), str(counter), str(results))) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert counter.read_text().count("\n") == 1
    lines = results.read_text().split()
    built_flags, digests = lines[0::2], lines[1::2]
    assert sorted(built_flags) == ["0"] * 5 + ["1"]
    assert len(set(digests)) == 1


def test_entries_and_clear_by_age(tmp_path):
    cache = EngineCache(tmp_path)
    counter = tmp_path / "builds.txt"
    cache.get(FIELDS, "pt2", _build_counting(counter), _read)
    cache.get({**FIELDS, "network": "m"}, "pt2", _build_counting(counter), _read)
    old = next(e for e in cache.entries() if e.meta["fields"]["network"] == "m")
    stamp = time.time() - 10 * 86400
    os.utime(old.path, (stamp, stamp))  # last use 10 days ago
    assert [e.key for e in cache.clear(older_than_s=5 * 86400)] == [old.key]
    assert [e.meta["fields"]["network"] for e in cache.entries()] == ["n"]
    (tmp_path / "0123456789abcdef0123456789abcdef.pt2").write_bytes(b"orphan engine, no sidecar")
    assert len(cache.clear()) == 1
    assert list(cache.entries()) == [] and not (tmp_path / "0123456789abcdef0123456789abcdef.pt2").exists()


def test_loading_touches_last_use(tmp_path):
    cache = EngineCache(tmp_path)
    counter = tmp_path / "builds.txt"
    cache.get(FIELDS, "pt2", _build_counting(counter), _read)
    (entry,) = cache.entries()
    stamp = time.time() - 3600
    os.utime(entry.path, (stamp, stamp))
    cache.get(FIELDS, "pt2", _build_counting(counter), _read)
    (entry,) = cache.entries()
    assert time.time() - entry.last_used < 60
