"""Man pages and completions match the code; every --help runs; the CLI imports no torch."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from emo.cli import cli
from tests.conftest import REPO

REGENERATE = "make docs  (= python scripts/gen_man.py && python scripts/gen_completions.py)"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen_man = _script("gen_man")
gen_completions = _script("gen_completions")
COMMANDS = [path for path, _, _ in gen_man.walk(cli)]


def _same_tree(fresh_dir, checked_in_dir, pattern: str) -> None:
    fresh = {p.name: p.read_text() for p in fresh_dir.glob(pattern)}
    ours = {p.name: p.read_text() for p in checked_in_dir.glob(pattern)}
    assert sorted(ours) == sorted(fresh), f"{checked_in_dir.name}/ has other files than the code makes; run {REGENERATE}"
    stale = [n for n in fresh if fresh[n] != ours[n]]
    assert not stale, f"{', '.join(stale)} drifted from the code; run {REGENERATE}"


def test_man_pages_match_the_code(tmp_path):
    gen_man.generate(tmp_path)
    _same_tree(tmp_path, REPO / "man", "*.1")


def test_completions_match_the_code(tmp_path):
    gen_completions.generate(tmp_path)
    _same_tree(tmp_path, REPO / "completions", "*emo*")


def test_there_is_a_page_for_every_command_including_nested_ones():
    names = {"-".join(p) for p in COMMANDS}
    assert {"emo", "emo-features", "emo-classify", "emo-models", "emo-models-pull"} <= names
    for n in names:
        assert (REPO / "man" / f"{n}.1").is_file() or pytest.fail(f"man/{n}.1 missing; run {REGENERATE}")


@pytest.mark.parametrize("path", COMMANDS, ids=["-".join(p) for p in COMMANDS])
def test_every_help_runs_and_shows_usage(path):
    res = CliRunner().invoke(cli, [*path[1:], "--help"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("Usage: ")
    if "Not built yet" not in res.output:
        assert "Example" in res.output, f"emo {' '.join(path[1:])} --help shows no example"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_pages_render_without_warnings():
    for page in sorted((REPO / "man").glob("*.1")):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (page.name, r.stderr)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_registers_and_completes():
    r = subprocess.run(["bash", "-c", f"source {REPO}/completions/emo.bash; complete -p emo"], capture_output=True, text=True)
    assert "-F _emo_completion emo" in r.stdout, r.stderr
    env = dict(os.environ, _EMO_COMPLETE="bash_complete", COMP_WORDS="emo features --backbone ", COMP_CWORD="3")
    code = "import sys; from emo.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "plain,mobilenet_v2" in r.stdout.splitlines(), r.stdout + r.stderr


def test_cli_import_help_and_completion_import_no_torch():
    code = """
import os, sys
from click.testing import CliRunner
from emo.cli import cli
assert 'torch' not in sys.modules, 'import emo.cli imported torch'
for args in (['--help'], ['features', '--help'], ['classify', '--help'], ['models', 'pull', '--help']):
    assert CliRunner().invoke(cli, args).exit_code == 0
os.environ.update(_EMO_COMPLETE='bash_complete', COMP_WORDS='emo features --backbone ', COMP_CWORD='3')
try:
    cli.main(prog_name='emo')
except SystemExit:
    pass
bad = sorted(m for m in ('torch', 'torchvision', 'numpy', 'PIL') if m in sys.modules)
assert not bad, bad
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
