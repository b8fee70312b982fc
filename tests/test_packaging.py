"""The wheel is the whole product: every file the package opens at run time is in it, and an
installed copy runs from another folder with nothing of the source tree on its path."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

# Files the code opens by name at run time (heads, the CAM layer, the sample photos and their terms).
OPENED = [
    *(f"emo/heads/{n}.safetensors{ext}" for n in ("emotion6", "sentiment", "va", "emotion6_linear") for ext in ("", ".json")),
    "emo/regions/cam_emotion6.safetensors",
    "emo/data/samples/LICENSE.txt",
    *(f"emo/data/samples/{n}.jpg" for n in ("astronaut", "cat", "coffee", "hubble", "rocket")),
]


def _tracked() -> list[str]:
    """Files git tracks or would track (new, not ignored): what a commit of this tree holds."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked file list is unknown")
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p and (REPO / p).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built, as pip builds it, from a copy of the tracked files (the tree stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for rel in _tracked():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    dist = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = dist.glob("emo-*.whl")
    return whl


def _names(whl: Path) -> set[str]:
    with zipfile.ZipFile(whl) as z:
        return set(z.namelist())


def test_every_tracked_file_of_the_package_is_in_the_wheel(wheel):
    names = _names(wheel)
    ours = [p for p in _tracked() if p.startswith("emo/")]
    missing = sorted(p for p in ours if p not in names)
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"
    assert not sorted(n for n in names if n.startswith("emo/") and (n.endswith(".pyc") or "__pycache__" in n))


def test_the_files_the_code_opens_are_in_the_wheel(wheel):
    names = _names(wheel)
    assert [p for p in OPENED if p not in names] == []
    with zipfile.ZipFile(wheel) as z:
        assert z.read("emo/regions/cam_emotion6.safetensors") == (REPO / "emo/regions/cam_emotion6.safetensors").read_bytes()


def test_the_wheel_marks_the_package_as_typed(wheel):
    """emo.Predictor is a library API with annotations; without py.typed, type checkers ignore them."""
    assert "emo/py.typed" in _names(wheel)


def test_man_pages_and_completions_are_installed(wheel):
    names = _names(wheel)
    data = "emo-0.1.0.data/data/share/"
    pages = sorted(p.name for p in (REPO / "man").glob("*.1"))
    assert pages and all(f"{data}man/man1/{p}" in names for p in pages)
    assert f"{data}zsh/site-functions/_emo" in names and f"{data}fish/vendor_completions.d/emo.fish" in names


def test_torch_is_a_range_and_the_exact_pins_live_in_the_constraints():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement
    from packaging.version import Version

    deps = {Requirement(d).name: Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    pins = dict(re.findall(r"^([\w-]+)==(\S+)", (REPO / "constraints.txt").read_text(), re.M))
    assert {"torch", "torchvision"} <= set(pins)
    for name in ("torch", "torchvision"):
        assert not any(s.operator == "==" for s in deps[name].specifier), f"{name} is pinned exactly in pyproject.toml"
        assert Version(pins[name]) in deps[name].specifier  # the project's own set-up satisfies the range
    # The oldest releases the code supports, and the one the GPU machines run, are inside the range.
    for v in ("2.8.0", "2.11.0", "2.13.0"):
        assert Version(v) in deps["torch"].specifier
    assert Version("2.7.1") not in deps["torch"].specifier  # its AOTInductor loader takes no device index
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()


def test_the_installed_wheel_runs_regions_classify_and_va_from_another_folder(wheel, tmp_path):
    """pip install --target, then the commands from an empty folder: heads and CAM layer come from the install."""
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    cat = target / "emo" / "data" / "samples" / "cat.jpg"
    emo = [sys.executable, "-m", "emo"]
    where = subprocess.run([*emo[:1], "-c", "import emo; print(emo.__file__)"], cwd=cwd, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr

    r = subprocess.run([*emo, "regions", "--top-k", "2", str(cat)], cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert 1 <= len(rec["regions"]) <= 2 and all(0 <= g["p_emo"] <= 1 for g in rec["regions"])

    feats = subprocess.run([*emo, "features", "--set", "deep", str(cat)], cwd=cwd, env=env, capture_output=True, text=True)
    assert feats.returncode == 0, feats.stderr
    tagged = subprocess.run([*emo, "classify"], input=feats.stdout, cwd=cwd, env=env, capture_output=True, text=True)
    assert tagged.returncode == 0, tagged.stderr
    rated = subprocess.run([*emo, "va"], input=tagged.stdout, cwd=cwd, env=env, capture_output=True, text=True)
    assert rated.returncode == 0, rated.stderr
    (rec,) = [json.loads(line) for line in rated.stdout.splitlines()]
    assert sum(rec["emotion"]["probs"].values()) == pytest.approx(1, abs=1e-3)
    assert rec["sentiment"]["label"] in ("positive", "negative")
    assert all(1 <= rec["va"][k] <= 9 for k in ("valence", "arousal"))


def test_the_wheel_carries_the_mit_licence(wheel):
    """The README says MIT: the licence text ships in the wheel and its metadata names it."""
    with zipfile.ZipFile(wheel) as z:
        lic = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert lic, sorted(n for n in z.namelist() if ".dist-info/" in n)
        assert z.read(lic[0]).decode().startswith("MIT License")
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in meta and "License-File: LICENSE" in meta
