"""``emo completion SHELL``: print the shell completion script, from the installed code."""

from __future__ import annotations

import click

PROG = "emo"
COMPLETE_VAR = "_EMO_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def completion_source(shell: str) -> str:
    """The completion script click generates for ``shell``: on TAB it runs ``emo`` with
    ``_EMO_COMPLETE`` set, so subcommands, options, networks and heads match the installed code."""
    from click.shell_completion import get_completion_class

    from emo.cli import cli

    cls = get_completion_class(shell)
    if cls is None:  # click knows every shell of SHELLS
        raise click.BadParameter(f"no completion for {shell}")
    text = cls(cli, {}, PROG, COMPLETE_VAR).source()
    if shell == "bash":
        text = _bash_keeps_names(text)
    return text if text.endswith("\n") else text + "\n"


def _bash_keeps_names(text: str) -> str:
    """click's bash script empties the list when a file or folder item comes: a head option
    (``--head``: shipped names, then files) then offered files only. Without the emptying,
    ``compopt -o default`` / ``-o dirnames`` complete paths only when no name matches."""
    for kind in ("dirnames", "default"):
        text = text.replace(f"COMPREPLY=()\n            compopt -o {kind}", f"compopt -o {kind}")
    return text


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
    click.echo(completion_source(shell), nl=False)
    return 0
