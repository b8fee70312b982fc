"""The engine cache attacked: sidecars that name other files, foreign files in the folder, nonsense
fields, folders and links at the cache's names, and caches others could write (the trust rule)."""

from __future__ import annotations

import json
import os
import pwd
import time
from pathlib import Path

import orjson
import pytest

from emo.engine.cache import EngineCache, is_cache_name, key_of, sidecar_problem
from emo.engine.trust import check_trusted, untrusted_reason
from emo.errors import ModelError
from tests.robustness.conftest import assert_clean, emo

FIELDS = {"network": "n", "backend": "inductor"}
KEY = key_of(FIELDS)


def _build(payload: bytes = b"engine bytes"):
    def build(tmp: Path):
        tmp.write_bytes(payload)
        return {"min_batch": 1, "max_batch": 8}
    return build


def _read(path: Path, meta: dict) -> bytes:
    return path.read_bytes()


@pytest.fixture
def cache_dir() -> Path:
    root = Path(os.environ["EMO_CACHE_DIR"]) / "engines"
    root.mkdir(parents=True, mode=0o755)
    return root


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def _forged_sidecar(root: Path, name: str, file: str, size: int = 6) -> None:
    meta = {"key": name, "file": file, "size": size, "sha256": "0" * 64, "fields": {"network": "x"}}
    (root / f"{name}.json").write_text(json.dumps(meta))


def test_clear_never_follows_a_sidecar_outside_the_folder(tmp_path, cache_dir):
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    _forged_sidecar(cache_dir, "a" * 32, "../../victim")
    _forged_sidecar(cache_dir, "b" * 32, str(victim))
    _forged_sidecar(cache_dir, "c" * 32, "../" + victim.name)
    EngineCache(cache_dir).clear()
    assert victim.read_bytes() == b"victim"
    assert not list(cache_dir.glob("*.json"))  # our own (corrupt) sidecars do go


def test_clear_leaves_what_the_cache_did_not_make(cache_dir):
    EngineCache(cache_dir).get(FIELDS, "pt2", _build(), _read)
    (cache_dir / "README.txt").write_text("shared cache, see the wiki\n")
    (cache_dir / "notes.json").write_text("{}")
    (cache_dir / ("d" * 32 + ".json")).mkdir()  # a folder at one of our names
    (cache_dir / "x.json").mkdir()
    (cache_dir / "keep.pt2").write_bytes(b"not ours: the name is no key")
    (cache_dir / ("e" * 32 + ".so")).write_bytes(b"no extension of ours")
    removed = EngineCache(cache_dir).clear()
    assert [e.key for e in removed] == [KEY]
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        ["README.txt", "notes.json", "d" * 32 + ".json", "x.json", "keep.pt2", "e" * 32 + ".so", f"{KEY}.lock"])


def test_plan_clear_lists_exactly_what_clear_removes_and_touches_nothing(cache_dir):
    cache = EngineCache(cache_dir)
    cache.get(FIELDS, "pt2", _build(), _read)
    orphan = cache_dir / ("f" * 32 + ".pt2")
    orphan.write_bytes(b"never committed")
    (cache_dir / "README.txt").write_text("x")
    before = _snapshot(cache_dir)
    entries, others = cache.plan_clear()
    assert _snapshot(cache_dir) == before
    assert [e.key for e in entries] == [KEY] and others == [orphan]
    cache.clear()
    gone = set(before) - set(_snapshot(cache_dir))
    assert gone == {f"{KEY}.pt2", f"{KEY}.json", orphan.name}


def test_a_link_at_a_cache_name_is_never_followed(tmp_path, cache_dir):
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    (cache_dir / ("a" * 32 + ".pt2")).symlink_to(victim)
    (cache_dir / ("a" * 32 + ".json")).symlink_to(victim)
    cache = EngineCache(cache_dir)
    assert list(cache.entries()) == []  # the cache never makes links: not an entry, not read
    cache.clear()
    assert victim.read_bytes() == b"victim"


def test_list_never_reports_a_file_outside(tmp_path, cache_dir):
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * 12345)
    _forged_sidecar(cache_dir, "a" * 32, str(victim))
    cache = EngineCache(cache_dir)
    assert list(cache.entries()) == []  # its own engine file is missing: no engine
    assert cache.plan_clear() == ([], [cache_dir / ("a" * 32 + ".json")])  # the sidecar is a leftover


@pytest.mark.parametrize("planted", ["folder", "link", "missing"])
def test_only_a_regular_file_by_its_own_name_is_an_engine(tmp_path, cache_dir, planted):
    cache = EngineCache(cache_dir)
    cache.get(FIELDS, "pt2", _build(), _read)
    engine = cache_dir / f"{KEY}.pt2"
    engine.unlink()
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100_000)
    if planted == "folder":
        engine.mkdir()
        (engine / "inside").write_bytes(b"x" * 5000)
    elif planted == "link":
        engine.symlink_to(big)
    assert list(cache.entries()) == []
    assert cache.plan_clear() == ([], [cache_dir / f"{KEY}.json"])  # the orphaned sidecar is ours to remove
    assert emo(["engines", "list", "--json"]).out == b""
    listed = emo(["engines", "list"])
    assert listed.code == 0 and "no engines" in listed.err
    cleared = emo(["engines", "clear", "--yes"])
    assert_clean(cleared)
    assert cleared.code == 0 and "removed 0 engine(s), 0 B" in cleared.err
    left = sorted(p.name for p in cache_dir.iterdir())
    assert left == sorted([f"{KEY}.lock"] + ([engine.name] if planted != "missing" else []))
    assert big.read_bytes() == b"x" * 100_000
    if planted == "folder":
        assert (engine / "inside").exists()  # a folder is never emptied or removed


def test_sizes_are_the_engine_files_own_not_what_a_sidecar_claims(cache_dir):
    cache = EngineCache(cache_dir)
    cache.get(FIELDS, "pt2", _build(b"twelve bytes"), _read)
    sidecar = cache_dir / f"{KEY}.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "size": 10 << 30}))
    (entry,) = cache.entries()
    assert entry.size == 12
    row = orjson.loads(emo(["engines", "list", "--json"]).out)
    assert row["size"] == 12
    cleared = emo(["engines", "clear", "--yes"])
    assert cleared.code == 0 and "removed 1 engine(s), 12 B" in cleared.err, cleared.err


@pytest.mark.parametrize("change", [
    {"max_batch": -5}, {"min_batch": 0}, {"min_batch": 9, "max_batch": 4}, {"min_batch": "1"},
    {"min_batch": True}, {"size": "12"}, {"size": -1}, {"sha256": 5}, {"file": "../x.pt2"},
    {"file": None}, {"fields": []}, {"fields": {"a": 1}}, {"created": "yesterday"}, {"key": "other"},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_a_sidecar_with_nonsense_counts_as_corrupt_and_is_rebuilt(cache_dir, change):
    cache = EngineCache(cache_dir)
    cache.get(FIELDS, "pt2", _build(), _read)
    sidecar = cache_dir / f"{KEY}.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, **change}))
    warned: list[str] = []
    cache.warn = warned.append
    out, meta2, built = cache.get(FIELDS, "pt2", _build(b"fresh engine"), _read)
    assert built and out == b"fresh engine" and len(warned) == 1 and "corrupt" in warned[0]
    assert not sidecar_problem(KEY, meta2)


@pytest.mark.parametrize("text", ["[1]", "null", '"s"', "{", "{\"a\": " * 5000 + "}" * 5000, "\xff"])
def test_a_sidecar_that_is_not_an_object_is_rebuilt(cache_dir, text):
    cache = EngineCache(cache_dir)
    cache.get(FIELDS, "pt2", _build(), _read)
    (cache_dir / f"{KEY}.json").write_text(text, errors="surrogateescape")
    cache.warn = lambda m: None
    assert cache.get(FIELDS, "pt2", _build(b"again"), _read)[2]


def test_a_folder_where_the_engine_goes_is_one_line(cache_dir):
    (cache_dir / f"{KEY}.json").mkdir()
    cache = EngineCache(cache_dir)
    cache.warn = lambda m: None
    with pytest.raises(ModelError, match="not a file"):
        cache.get(FIELDS, "pt2", _build(), _read)


def test_only_the_cache_s_names_are_its_own():
    assert is_cache_name("a" * 32 + ".pt2") and is_cache_name("a" * 32 + ".json")
    assert is_cache_name("." + "a" * 32 + ".123.tmp.ep") and is_cache_name("." + "a" * 32 + ".9.json.tmp")
    for name in ("README.txt", "x.json", "A" * 32 + ".pt2", "a" * 31 + ".pt2", "a" * 32 + ".pt2/..",
                 "../" + "a" * 32 + ".pt2", "a" * 32 + ".so", "a" * 32 + ".json.bak"):
        assert not is_cache_name(name), name


# --- the trust rule -------------------------------------------------------------------------------

def test_a_cache_others_can_write_is_refused_with_one_line(cache_dir):
    cache = EngineCache(cache_dir)
    cache.get(FIELDS, "pt2", _build(), _read)
    cache_dir.chmod(0o777)
    loaded: list[Path] = []
    with pytest.raises(ModelError, match="can be written by others") as e:
        cache.get(FIELDS, "pt2", _build(), lambda p, m: loaded.append(p))
    assert not loaded and "\n" not in str(e.value) and "0777" in str(e.value)
    assert (cache_dir / f"{KEY}.pt2").exists()  # refused, not removed


def test_a_group_writable_engine_file_is_refused(cache_dir):
    cache = EngineCache(cache_dir)
    cache.get(FIELDS, "pt2", _build(), _read)
    (cache_dir / f"{KEY}.pt2").chmod(0o664)
    with pytest.raises(ModelError, match="its group"):
        cache.get(FIELDS, "pt2", _build(), _read)


def test_engines_are_written_without_group_or_other_write_bits(cache_dir):
    old = os.umask(0o000)
    try:
        EngineCache(cache_dir).get(FIELDS, "pt2", _build(), _read)
    finally:
        os.umask(old)
    for p in (cache_dir / f"{KEY}.pt2", cache_dir / f"{KEY}.json"):
        assert p.stat().st_mode & 0o022 == 0
    assert untrusted_reason(cache_dir / f"{KEY}.pt2") is None


def _other_user() -> pwd.struct_passwd | None:
    for name in ("nobody", "daemon"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@pytest.mark.skipif(os.geteuid() != 0 or _other_user() is None, reason="giving a file away needs root")
def test_an_engine_another_user_owns_is_refused_unless_trusted(cache_dir, monkeypatch):
    other = _other_user()
    cache = EngineCache(cache_dir)
    cache.get(FIELDS, "pt2", _build(), _read)
    engine = cache_dir / f"{KEY}.pt2"
    os.chown(engine, other.pw_uid, other.pw_gid)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # as a user who is neither root nor the owner
    with pytest.raises(ModelError, match=f"owned by {other.pw_name}"):
        check_trusted(engine)
    monkeypatch.setenv("EMO_TRUSTED_USERS", other.pw_name)
    check_trusted(engine)


def test_an_unknown_trusted_user_is_a_config_error(cache_dir, monkeypatch):
    from emo.errors import ConfigError

    monkeypatch.setenv("EMO_TRUSTED_USERS", "no-such-user-here")
    with pytest.raises(ConfigError, match="no user named"):
        check_trusted(cache_dir)


# --- through the command line ---------------------------------------------------------------------

def test_engines_clear_and_list_on_a_hostile_folder(tmp_path, cache_dir):
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    _forged_sidecar(cache_dir, "a" * 32, "../../victim")
    (cache_dir / "README.txt").write_text("x")
    (cache_dir / "y.json").mkdir()
    listed = emo(["engines", "list", "--json"])
    assert_clean(listed)
    assert listed.code == 0 and listed.out == b""  # a sidecar without its engine file is no engine
    cleared = emo(["engines", "clear", "--yes"])
    assert_clean(cleared)
    assert cleared.code == 0 and victim.read_bytes() == b"victim"
    assert sorted(p.name for p in cache_dir.iterdir()) == ["README.txt", "y.json"]


def test_engines_clear_by_age_keeps_a_temp_file_a_build_may_still_write(cache_dir):
    tmp = cache_dir / ("." + "a" * 32 + ".99.tmp.pt2")
    tmp.write_bytes(b"half an engine")
    EngineCache(cache_dir).clear()
    assert tmp.exists()  # an hour's grace
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    EngineCache(cache_dir).clear()
    assert not tmp.exists()


def test_a_run_refuses_a_world_writable_engine_cache_before_compiling(tiny, tmp_path, cache_dir, monkeypatch):
    from tests.conftest import make_image

    cache_dir.chmod(0o777)
    monkeypatch.setenv("EMO_BACKEND", "inductor")
    run = emo(["features", "--set", "object", "--backbone", "tiny_test", "--device", "cpu",
               str(make_image(tmp_path / "a.png"))])
    assert_clean(run)
    assert run.code == 2 and run.out == b"", run.err
    err = [ln for ln in run.err.splitlines() if ln.strip()]
    assert len(err) == 1 and "can be written by others" in err[0]
    assert list(cache_dir.iterdir()) == []  # nothing built, nothing loaded


def test_a_full_disk_under_the_cache_is_one_model_error(cache_dir):
    import errno

    def full(tmp: Path):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ModelError, match="No space left on device"):
        EngineCache(cache_dir).get(FIELDS, "pt2", full, _read)
    assert sorted(p.name for p in cache_dir.iterdir()) == [f"{KEY}.lock"]  # no half engine left


def test_a_cache_folder_that_is_a_file_is_one_model_error(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_bytes(b"a file where the folder should be")
    with pytest.raises(ModelError, match="Not a directory"):
        EngineCache(blocker / "engines").get(FIELDS, "pt2", _build(), _read)
    assert blocker.read_bytes() == b"a file where the folder should be"


def test_clear_on_a_cache_it_may_not_change_is_one_line(cache_dir, monkeypatch):
    EngineCache(cache_dir).get(FIELDS, "pt2", _build(), _read)
    real = Path.unlink

    def refused(self, missing_ok=False):
        if self.parent == cache_dir:
            raise PermissionError(13, "Permission denied")
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refused)  # as a user who does not own a shared cache
    run = emo(["engines", "clear", "--yes"])
    assert_clean(run)
    assert run.code == 2 and "Permission denied" in run.err and len(run.err.strip().splitlines()) == 1
