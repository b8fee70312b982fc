"""emo engines' library side: sizes and ages for people, the rows and table of a real cache folder,
list / build / clear with what they print, and the question clear asks on a terminal."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import click
import orjson
import pytest

from emo.assembly import engines_recipe as R
from emo.engine.cache import EngineCache, key_of
from emo.errors import ModelError, UsageError

DAY = 86400.0
NOW = float(int(time.time()))  # clear measures age against the clock
FIELDS = {"network": "mobilenet_v2", "backend": "inductor", "precision": "fp16", "profile": "224x32",
          "device": "cuda:0 (NVIDIA H200)", "capability": "9.0", "torch": "2.6.0"}


@pytest.mark.parametrize("n, text", [
    (0, "0 B"), (1000, "1000 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536, "1.5 KB"),
    (1024 ** 2 - 1, "1024.0 KB"), (int(1.5 * 1024 ** 2), "1.5 MB"), (3 * 1024 ** 3, "3.0 GB"),
    (5 * 1024 ** 4, "5120.0 GB"),  # GB is the largest unit
])
def test_size_text(n, text):
    assert R.size_text(n) == text


@pytest.mark.parametrize("seconds, text", [
    (-30, "0s"), (0, "0s"), (59, "59s"), (60, "1m"), (150, "2m"), (3599, "60m"), (3600, "1h"),
    (5 * 3600 + 1, "5h"), (DAY - 1, "24h"), (DAY, "1d"), (9.4 * DAY, "9d"), (400 * DAY, "400d"),
])
def test_age_text(seconds, text):
    assert R.age_text(seconds) == text


def _engine(root: Path, fields: dict, payload: bytes, created: float, used: float) -> Path:
    """A real cache entry (engine file and sidecar, as a build commits them), dated."""
    cache = EngineCache(root)

    def build(tmp: Path):
        tmp.write_bytes(payload)
        return {"min_batch": 1, "max_batch": 32}

    cache.get(fields, "pt2", build, lambda path, meta: None)
    key = key_of(fields)
    sidecar = root / f"{key}.json"
    meta = json.loads(sidecar.read_text())
    meta["created"], meta["build_seconds"] = created, 41.5
    sidecar.write_text(json.dumps(meta))
    os.utime(root / f"{key}.pt2", (used, used))
    return root / f"{key}.pt2"


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    """A cache folder with two engines: one built 10 days ago and used 2 hours ago, one 40 days old and
    unused for 35, its sidecar lacking most key fields."""
    root = tmp_path / "cache" / "engines"
    root.mkdir(parents=True, mode=0o755)
    _engine(root, FIELDS, b"e" * 1536, NOW - 10 * DAY, NOW - 2 * 3600)
    _engine(root, {"network": "resnet50"}, b"r" * 1000, NOW - 40 * DAY, NOW - 35 * DAY)
    return root


def test_rows_of_a_real_cache_folder(cache_dir):
    rows = R.engine_rows(EngineCache(cache_dir))
    by_net = {r["network"]: r for r in rows}
    assert [r["key"] for r in rows] == sorted(r["key"] for r in rows)  # the cache lists by key
    key = key_of(FIELDS)
    assert by_net["mobilenet_v2"] == {
        "key": key, "network": "mobilenet_v2", "backend": "inductor", "precision": "fp16", "profile": "224x32",
        "device": "cuda:0 (NVIDIA H200)", "capability": "9.0", "torch": "2.6.0", "size": 1536,
        "created": NOW - 10 * DAY, "last_used": NOW - 2 * 3600, "build_seconds": 41.5,
        "path": str(cache_dir / f"{key}.pt2"),
    }
    other = by_net["resnet50"]
    assert (other["backend"], other["precision"], other["profile"], other["device"]) == ("?", "?", "?", "?")
    assert other["size"] == 1000 and other["last_used"] == NOW - 35 * DAY


def test_a_sidecar_with_nonsense_gives_a_row_of_question_marks(tmp_path):
    root = tmp_path / "engines"
    root.mkdir()
    key = "f" * 32
    (root / f"{key}.pt2").write_bytes(b"x" * 10)
    (root / f"{key}.json").write_text(json.dumps({"key": key, "file": f"{key}.pt2", "size": "ten"}))
    [row] = R.engine_rows(EngineCache(root))
    assert row["key"] == key and row["network"] == "?" and row["torch"] == "?" and row["size"] == 10
    assert row["build_seconds"] is None and row["created"] == (root / f"{key}.json").stat().st_mtime


def test_an_empty_or_missing_folder_has_no_rows(tmp_path):
    assert R.engine_rows(EngineCache(tmp_path / "none")) == []


def test_the_table_shows_short_keys_sizes_and_ages(cache_dir):
    from rich.console import Console

    rows = R.engine_rows(EngineCache(cache_dir))
    out = io.StringIO()
    Console(file=out, width=200).print(R.engines_table(rows, NOW))
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert lines[0] == ["key", "network", "backend", "precision", "profile", "device", "size", "age", "last", "use"]
    by_net = {line[1]: line for line in lines[1:]}
    assert by_net["mobilenet_v2"] == [key_of(FIELDS)[:12], "mobilenet_v2", "inductor", "fp16", "224x32", "cuda:0",
                                      "(NVIDIA", "H200)", "1.5", "KB", "10d", "2h", "ago"]
    assert by_net["resnet50"][2:] == ["?", "?", "?", "?", "1000", "B", "40d", "35d", "ago"]


def test_list_json_and_table(cache_dir, capsys):
    given = {"cache_dir": str(cache_dir.parent), "weights_dir": None}
    assert R.list_engines(given, as_json=True) == 0
    out, err = capsys.readouterr()
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert {r["network"] for r in rows} == {"mobilenet_v2", "resnet50"} and err == ""
    assert rows == R.engine_rows(EngineCache(cache_dir))

    assert R.list_engines(given) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split()[:3] == ["key", "network", "backend"] and len(out.splitlines()) == 3
    assert err == f"2 engine(s), 2.5 KB in {cache_dir}\n"


def test_list_of_an_empty_cache_says_so_on_stderr_only(tmp_path, capsys):
    assert R.list_engines({"cache_dir": str(tmp_path)}) == 0
    assert capsys.readouterr() == ("", f"no engines in {tmp_path / 'engines'}\n")


def test_clear_dry_run_lists_and_keeps(cache_dir, capsys):
    given = {"cache_dir": str(cache_dir.parent)}
    assert R.clear_engines(given, dry_run=True) == 0
    out, err = capsys.readouterr()
    assert sorted(out.splitlines()) == sorted(str(p) for p in cache_dir.glob("*.pt2"))
    assert err == f"would remove 2 engine(s), 2.5 KB, and 0 leftover file(s) from {cache_dir}\n"
    assert len(list(cache_dir.glob("*.pt2"))) == 2


def test_clear_by_age_and_all(cache_dir, capsys):
    given = {"cache_dir": str(cache_dir.parent)}
    with pytest.raises(UsageError, match=r"would remove every engine \(2\) in .*: add --yes"):
        R.clear_engines(given)  # no terminal to ask, no --yes
    assert R.clear_engines(given, days=30) == 0  # only resnet50 is unused for that long
    assert capsys.readouterr().err == f"removed 1 engine(s), 1000 B from {cache_dir}\n"
    assert [r["network"] for r in R.engine_rows(EngineCache(cache_dir))] == ["mobilenet_v2"]
    assert R.clear_engines(given, yes=True) == 0
    assert capsys.readouterr().err == f"removed 1 engine(s), 1.5 KB from {cache_dir}\n"
    assert {p.suffix for p in cache_dir.iterdir()} == {".lock"}  # locks stay: others may hold them


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", [False, "eof"])
def test_clear_asks_a_terminal_and_a_no_keeps_everything(cache_dir, capsys, monkeypatch, answer):
    asked = []

    def confirm(text, err=False):
        asked.append((text, err))
        if answer == "eof":
            raise click.exceptions.Abort()
        return answer

    monkeypatch.setattr(R.sys, "stdin", _Tty())
    monkeypatch.setattr(click, "confirm", confirm)
    assert R.clear_engines({"cache_dir": str(cache_dir.parent)}) == 0
    assert asked == [(f"remove 2 engine(s), 2.5 KB from {cache_dir}?", True)]
    assert capsys.readouterr().err == "emo: nothing removed\n"
    assert len(R.engine_rows(EngineCache(cache_dir))) == 2


def test_clear_asks_a_terminal_and_a_yes_removes(cache_dir, capsys, monkeypatch):
    monkeypatch.setattr(R.sys, "stdin", _Tty())
    monkeypatch.setattr(click, "confirm", lambda text, err=False: True)
    assert R.clear_engines({"cache_dir": str(cache_dir.parent)}) == 0
    assert capsys.readouterr().err == f"removed 2 engine(s), 2.5 KB from {cache_dir}\n"
    assert R.engine_rows(EngineCache(cache_dir)) == []


def test_base_settings_name_the_cache_unless_the_subcommand_does(cache_dir, tmp_path, capsys):
    from emo.assembly.filters import settings_from

    base = settings_from({"cache_dir": str(cache_dir.parent)})
    assert R.list_engines({"cache_dir": None}, base, as_json=True) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert R.list_engines({"cache_dir": str(tmp_path / "other")}, base, as_json=True) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("built, path, state", [
    (True, Path("/c/k.pt2"), "built in 61.2 s"), (False, Path("/c/k.pt2"), "cached in 61.2 s"),
    (False, None, "nothing to compile"),
])
def test_report_line(built, path, state):
    engine = SimpleNamespace(backend="inductor", device="cpu", path=path, built=built)
    where = str(path) if path else "-"
    assert R.report_line("mobilenet_v2", engine, 61.23) == f"mobilenet_v2\tinductor\tcpu\t{where}\t{state}"


def test_engines_of_a_stage_are_its_engine_like_members():
    engine = SimpleNamespace(backend="eager", device="cpu", built=False)
    stage = SimpleNamespace(engine=engine, head="a head", other=SimpleNamespace(backend="x"))
    assert R.engines_of(stage) == [engine]


def test_build_needs_names_or_subcommands_before_it_reads_options():
    with pytest.raises(UsageError, match="name backbones to build"):
        R.build_engines((), (), {"device": "no such device"})


def test_build_refuses_a_network_that_is_not_a_backbone():
    with pytest.raises(ModelError, match="deeplabv3_mobilenet_v3_large is a segmentation network"):
        R.build_engines(("deeplabv3_mobilenet_v3_large",), (), {})


def test_build_an_eager_backbone_says_there_is_nothing_to_compile(tiny_backbone, capsys):
    assert R.build_engines(("tiny_test",), (), {"backend": "eager", "device": "cpu"}) == 0
    out, err = capsys.readouterr()
    assert out == "tiny_test\teager\tcpu\t-\tnothing to compile\n" and err == ""
