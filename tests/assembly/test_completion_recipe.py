"""emo completion's library side: click's script for each shell, bash's made to keep names beside paths."""

from __future__ import annotations

import click
import pytest

from emo.assembly import completion_recipe as R


@click.command()
@click.option("--head")
def _command(head: str | None) -> None:
    """A command to complete."""


CLICK_BASH = (
    "        if [[ $type == 'dir' ]]; then\n"
    "            COMPREPLY=()\n"
    "            compopt -o dirnames\n"
    "        elif [[ $type == 'file' ]]; then\n"
    "            COMPREPLY=()\n"
    "            compopt -o default\n"
    "        elif [[ $type == 'plain' ]]; then\n"
    "            COMPREPLY+=($value)\n"
)


def test_bash_keeps_the_names_already_offered():
    assert R.bash_keeps_names(CLICK_BASH) == (
        "        if [[ $type == 'dir' ]]; then\n"
        "            compopt -o dirnames\n"
        "        elif [[ $type == 'file' ]]; then\n"
        "            compopt -o default\n"
        "        elif [[ $type == 'plain' ]]; then\n"
        "            COMPREPLY+=($value)\n"
    )
    assert R.bash_keeps_names("no such lines\n") == "no such lines\n"


def test_the_bash_script_runs_emo_with_the_variable_and_never_empties_the_list():
    text = R.completion_script(_command, "bash")
    assert "_EMO_COMPLETE=bash_complete $1" in text and "complete -o nosort -F _emo_completion emo" in text
    assert "COMPREPLY=()" not in text and text.count("compopt -o") == 2 and text.endswith("\n")


@pytest.mark.parametrize("shell, first", [("zsh", "#compdef emo"), ("fish", "function _emo_completion;")])
def test_zsh_and_fish_scripts_are_clicks_own(shell, first):
    from click.shell_completion import get_completion_class

    text = R.completion_script(_command, shell)
    assert text.splitlines()[0] == first and "_EMO_COMPLETE" in text and text.endswith("\n")
    assert text.rstrip("\n") == get_completion_class(shell)(_command, {}, "emo", "_EMO_COMPLETE").source().rstrip("\n")


def test_another_program_name_names_its_own_variable():
    text = R.completion_script(_command, "zsh", prog="emo2", complete_var="_EMO2_COMPLETE")
    assert text.startswith("#compdef emo2\n") and "_EMO2_COMPLETE=zsh_complete emo2" in text


def test_a_shell_click_does_not_know_is_a_bad_parameter():
    with pytest.raises(click.BadParameter, match="no completion for tcsh"):
        R.completion_script(_command, "tcsh")


def test_print_writes_the_script_as_is(capsys):
    assert R.print_completion(_command, "fish") == 0
    assert capsys.readouterr() == (R.completion_script(_command, "fish"), "")
