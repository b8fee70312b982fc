"""``emo engines``: list, build or clear the compiled engines in the cache."""

from __future__ import annotations

import click

from emo.cli.options import backbone_option, cache_options, complete_backbones, engine_options


@click.group(invoke_without_command=True)
@cache_options
@click.pass_context
def engines(ctx: click.Context, cache_dir: str | None, weights_dir: str | None) -> int:
    """List, build ahead or clear the compiled engines in the cache.

    An engine is a network (a backbone of emo models) compiled by a backend (tensorrt on CUDA,
    inductor, or eager: not compiled) for one input profile, precision and device. A run builds
    the engine it needs the first time (about a minute for mobilenet_v2 on 2 cores) and keeps it
    in the cache's engines/ folder; later runs load it in a fraction of a second. Its key hashes
    all of these and the torch / torch-tensorrt / TensorRT versions, so a change builds a new one.

    With no subcommand, lists the cache. --cache-dir may come before or after the subcommand.

    \b
    Examples:
      emo engines list --cache-dir /srv/emo-cache
      emo engines build --for classify,regions        # every engine those commands use, ahead of a cron job
      emo engines build --backend inductor --batch-size 64 mobilenet_v2
      emo engines clear --older-than 30
      emo engines clear --dry-run
    """
    from emo.assembly.filters import settings_from

    ctx.obj = settings_from({"cache_dir": cache_dir, "weights_dir": weights_dir})
    if ctx.invoked_subcommand is None:
        return ctx.invoke(list_engines)
    return 0


@engines.command("list", short_help="Show the cached engines (what a bare emo engines does).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per engine instead of a table.")
@cache_options
@click.pass_context
def list_engines(ctx: click.Context, as_json: bool = False, cache_dir: str | None = None,
                 weights_dir: str | None = None) -> int:
    """Show the cached engines: network, backend, precision, input profile, device, size, age, last use.

    \b
    Example:
      emo engines list --json | jq -r 'select(.backend == "inductor") | .path'
    """
    from emo.assembly.engines_recipe import list_engines as run

    return run({"cache_dir": cache_dir, "weights_dir": weights_dir}, ctx.obj, as_json=as_json)


def _for(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    from emo.assembly.filters import FILTER_MODULES

    if not value:
        return ()
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in FILTER_MODULES]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)}: not a filter subcommand (one of {', '.join(FILTER_MODULES)})")
    return names


def _complete_for(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.assembly.filters import FILTER_MODULES

    done, _, last = incomplete.rpartition(",")
    return [(done + "," if done else "") + n for n in FILTER_MODULES if n.startswith(last)]


@engines.command(short_help="Compile engines before a run needs them (ahead of a cron job).")
@click.argument("names", nargs=-1, shell_complete=complete_backbones)
@click.option("--for", "commands", callback=_for, default=None, shell_complete=_complete_for,
              help="Build every engine these subcommands use with their default options "
                   "(features, regions, classify, va; comma-separated), e.g. --for classify,regions.")
@engine_options()
@cache_options
@backbone_option
@click.option("-v", "--verbose", is_flag=True, help="Say on stderr what is compiled or loaded.")
@click.pass_context
def build(ctx: click.Context, names: tuple[str, ...], commands: tuple[str, ...], verbose: bool, **given) -> int:
    """Compile engines before a run needs them, so its first batch does not wait for a compile.

    Builds the engines of backbone NAMES, or of every network the subcommands named by --for use
    (at least one of the two), for the --batch-size, --precision, --backend and --device the runs
    will take: an engine is built for those exactly. An engine already cached is loaded and
    checked, not rebuilt.

    Prints one line per engine: name, backend, device, and the engine file (or "-": nothing to
    compile, as with --backend eager).

    \b
    Examples:
      emo engines build mobilenet_v2 efficientnet_lite0
      emo engines build --for classify,regions --batch-size 64
    """
    from emo.assembly.engines_recipe import build_engines

    return build_engines(names, commands, given, ctx.obj, verbose=verbose)


@engines.command(short_help="Delete cached engines; a run rebuilds what it needs.")
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=None,
              help="Only engines not used for this many days.")
@click.option("-n", "--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask (scripts); without it a terminal is asked first, and "
                                               "clearing every engine without a terminal is refused.")
@cache_options
@click.pass_context
def clear(ctx: click.Context, days: float | None, dry_run: bool, yes: bool, cache_dir: str | None = None,
          weights_dir: str | None = None) -> int:
    """Delete cached engines (all, or those unused for --older-than DAYS); a run rebuilds what it needs.

    \b
    Examples:
      emo engines clear --dry-run
      emo engines clear --older-than 30
      emo engines clear --yes                      # in a script: every engine
    """
    from emo.assembly.engines_recipe import clear_engines

    return clear_engines({"cache_dir": cache_dir, "weights_dir": weights_dir}, ctx.obj, days=days, dry_run=dry_run,
                         yes=yes)
