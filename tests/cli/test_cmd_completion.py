"""Shell completion: ``emo completion SHELL`` prints the script; options complete what they take."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest
from click.shell_completion import ShellComplete

from emo.cli import cli
from emo.cli.cmd_completion import completion_source
from tests.cli.test_cmd_models import emo
from tests.conftest import REPO


def _complete(args: list[str], incomplete: str):
    return ShellComplete(cli, {}, "emo", "_EMO_COMPLETE").get_completions(args, incomplete)


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F"), ("zsh", "#compdef emo"),
                                           ("fish", "complete --no-files --command emo")])
def test_completion_prints_each_shells_script(monkeypatch, shell, marker):
    r = emo(monkeypatch, "completion", shell)
    assert r.code == 0 and marker in r.out.decode() and "_EMO_COMPLETE" in r.out.decode()
    assert r.out.decode() == completion_source(shell)


def test_an_unknown_shell_is_a_usage_error(monkeypatch):
    assert emo(monkeypatch, "completion", "tcsh").code == 2


@pytest.mark.parametrize("args, option", [
    (["classify"], "--head"), (["classify"], "-o"), (["features"], "--weights-dir"), (["va"], "--cache-dir"),
    (["regions"], "--draw"), (["fit"], "-o"), (["engines", "list"], "--cache-dir"),
])
def test_path_options_complete_paths(args, option):
    got = _complete(args + [option], "")
    assert any(c.type in ("file", "dir") for c in got), (args, option, [(c.value, c.type) for c in got])


@pytest.mark.parametrize("args, incomplete, expect", [
    (["features", "--set"], "color,l", "color,lbp"),
    (["classify", "--device"], "cu", "cuda"),
    (["classify", "--backend"], "ind", "inductor"),
    (["fit", "--labels"], "mik", "mikels8"),
    (["classify", "--head"], "emo", "emotion6"),
    (["engines", "build", "--for"], "classify,re", "classify,regions"),
])
def test_choices_complete(args, incomplete, expect):
    assert expect in [c.value for c in _complete(args, incomplete)]


def test_head_options_offer_heads_of_their_task():
    va = [c.value for c in _complete(["va", "--head"], "") if c.type == "plain"]
    assert va == ["va"]
    sent = [c.value for c in _complete(["classify", "--sentiment-head"], "") if c.type == "plain"]
    assert "none" in sent and "va" not in sent and "sentiment" in sent


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_offers_head_names_and_files_only_when_no_name_matches(tmp_path):
    """click's bash script emptied the list at the file item a head option also offers, so TAB after
    --head showed files and never the shipped heads."""
    script = tmp_path / "emo.bash"
    script.write_text(completion_source("bash"))
    exe = tmp_path / "bin" / "emo"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m emo "$@"\n')
    exe.chmod(0o755)
    env = {**os.environ, "PATH": f"{exe.parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}

    def tab(*words: str) -> tuple[list[str], str]:
        code = (f"source {shlex.quote(str(script))}; compopt() {{ echo \"$1 $2\" >&2; }}; "
                f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
                "_emo_completion emo; printf '%s\\n' \"${COMPREPLY[@]}\"")
        r = subprocess.run(["bash", "-c", code], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return [w for w in r.stdout.splitlines() if w], r.stderr

    names, opts = tab("emo", "classify", "--head", "")
    assert {"emotion6", "emotion6_linear", "sentiment"} <= set(names)
    assert "-o default" in opts  # readline's file names, when nothing above matches
    names, opts = tab("emo", "classify", "--head", "my")
    assert names == [] and "-o default" in opts
