"""``emo completion``: the shell completion script click generates for a command, bash's made to
offer names and paths together.

The command is passed in (the library never imports :mod:`emo.cli`), so the script always matches
the installed code: on TAB it runs ``emo`` with ``_EMO_COMPLETE`` set.
"""

from __future__ import annotations

import click

from emo.errors import EXIT_OK

PROG = "emo"
COMPLETE_VAR = "_EMO_COMPLETE"


def completion_script(command: click.Command, shell: str, prog: str = PROG, complete_var: str = COMPLETE_VAR) -> str:
    """The completion script click generates for ``shell``: on TAB it runs ``emo`` with
    ``_EMO_COMPLETE`` set, so subcommands, options, networks and heads match the installed code."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # click knows every shell emo completion offers
        raise click.BadParameter(f"no completion for {shell}")
    text = cls(command, {}, prog, complete_var).source()
    if shell == "bash":
        text = bash_keeps_names(text)
    return text if text.endswith("\n") else text + "\n"


def bash_keeps_names(text: str) -> str:
    """click's bash script empties the list when a file or folder item comes: a head option
    (``--head``: shipped names, then files) then offered files only. Without the emptying,
    ``compopt -o default`` / ``-o dirnames`` complete paths only when no name matches."""
    for kind in ("dirnames", "default"):
        text = text.replace(f"COMPREPLY=()\n            compopt -o {kind}", f"compopt -o {kind}")
    return text


def print_completion(command: click.Command, shell: str) -> int:
    """``emo completion SHELL``: the script on stdout; the exit code."""
    click.echo(completion_script(command, shell), nl=False)
    return EXIT_OK
