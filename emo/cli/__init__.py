"""The ``emo`` command: a click group whose subcommands load lazily (fast --help and TAB).

Importing this module must not import torch; each subcommand module imports heavy things
inside its command body.
"""

from __future__ import annotations

import importlib
import sys

import click

from emo import __version__

# name -> (module, attribute, one-line help). The help is here so `emo --help` imports nothing.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "features": ("emo.cli.cmd_features", "features", "Compute feature groups (colour, texture, object, deep, scene)."),
    "regions": ("emo.cli.cmd_regions", "regions", "Find the emotional regions of each image (Rao et al.)."),
    "classify": ("emo.cli.cmd_classify", "classify", "Predict the emotion distribution and sentiment of each image."),
    "va": ("emo.cli.cmd_va", "va", "Predict valence and arousal (1-9) of each image (Kim et al.)."),
    "fit": ("emo.cli.cmd_fit", "fit", "Train a head on labelled records and write a head file."),
    "score": ("emo.cli.cmd_score", "score", "Score predictions against truth (accuracy, F1, KL, MSE, Pearson r)."),
    "models": ("emo.cli.cmd_models", "models", "List the networks and heads emo knows, and fetch their weights."),
    "engines": ("emo.cli.cmd_engines", "engines", "List, build or clear compiled engines in the cache."),
    "completion": ("emo.cli.cmd_completion", "completion", "Print the shell completion script (bash, zsh, fish)."),
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs (click docs, complex.md)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        mod, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(mod), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="emo")
def cli() -> None:
    """Tell what emotion an image evokes, as Unix filters.

    Each subcommand reads image paths (arguments, or stdin lines; JSON lines with a "path"
    pass through with their fields) and writes one JSON object per input on stdout, in input
    order. Subcommands chain: each adds its own keys.

    \b
    Examples:
      find photos -name '*.jpg' | emo classify > tags.jsonl
      emo features --set color,lbp,gist,object,deep a.jpg b.png | emo va | emo classify
      emo classify < test.jsonl | emo score --task classify

    \b
    Exit status:
      0         every input done
      1         some inputs became error records (emo score: nothing could be scored)
      2         usage (emo without a command too), model, configuration or output
                error: nothing useful ran
      129, 130, 143
                stopped by SIGHUP (not under nohup), SIGINT, SIGTERM; only whole
                lines were written
      141       the reader closed the pipe (emo ... | head), quietly
    """


def main() -> None:
    """Console entry point: run, flush, and leave without tearing the interpreter down."""
    import os
    import warnings

    from emo.cli.exits import exit_now, guard_stderr, guard_stdout, guarded

    guard_stderr()
    guard_stdout()
    if not os.environ.get("PYTHONWARNINGS"):  # libraries' warnings are for developers, not for emo's users
        warnings.simplefilter("ignore")
    exit_now(guarded(cli))
