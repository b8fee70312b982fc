"""Shell completion: ``emo completion SHELL`` prints the script; options complete what they take."""

from __future__ import annotations

import pytest
from click.shell_completion import ShellComplete

from emo.cli import cli
from emo.cli.cmd_completion import completion_source
from tests.cli.test_cmd_models import emo


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
