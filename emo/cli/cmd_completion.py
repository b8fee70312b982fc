"""``emo completion SHELL``: print the shell completion script, from the installed code."""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


def completion_source(shell: str) -> str:
    """The completion script of the installed ``emo`` for ``shell`` (what ``emo completion`` prints)."""
    from emo.assembly.completion_recipe import completion_script
    from emo.cli import cli

    return completion_script(cli, shell)


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> int:
    """Print the completion script for a shell (bash, zsh or fish) on stdout.

    \b
    Examples:
      emo completion bash > ~/.local/share/bash-completion/completions/emo
      emo completion zsh > "${fpath[1]}/_emo"
      emo completion fish > ~/.config/fish/completions/emo.fish
      eval "$(emo completion bash)"
    """
    from emo.assembly.completion_recipe import print_completion
    from emo.cli import cli

    return print_completion(cli, shell)
