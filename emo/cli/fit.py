"""``emo fit``: not built yet; answers with a clear error and exit 2."""

from __future__ import annotations

import click

from emo.cli._common import not_built


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fit(args: tuple[str, ...]) -> int:
    """Not built yet: exits 2 without computing anything."""
    return not_built("emo fit", "issue 4: emotion heads")
