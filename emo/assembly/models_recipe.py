"""``emo models``: the networks emo knows and where their weights are, the shipped heads, and
fetching weights (``emo models pull``).

The networks are :mod:`emo.models.registry` (pure data) and their weights :mod:`emo.models.weights`;
this module is what ``emo models`` makes of them: one row per network (``--json``), the two tables,
and the line ``pull`` prints per network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click
import orjson

from emo import config
from emo.assembly.filters import settings_from
from emo.errors import EXIT_OK, ModelError

# Past a terminal, lines are never cut: each network stays on one line for grep and awk.
_PIPE_WIDTH = 10_000


def model_rows(settings: config.Settings) -> list[dict[str, Any]]:
    """One row per known network, by name, as ``emo models --json`` prints them: task, input size,
    classes and embedding size, its weights file, whether it is here (``present``, and from where:
    ``source`` and ``path``), else how to get it (``url``, ``package`` and the pinned ``install`` line)."""
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


def networks_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """A rich table of the networks' rows: dims, whether the weights are here, and where they come
    from, or for missing ones how to get them."""
    from rich.table import Table

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
    return t


def heads_table() -> Any:
    """A rich table of the shipped heads, under the networks."""
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


def list_models(settings: config.Settings, as_json: bool = False) -> int:
    """``emo models``: the networks' table then the heads' on stdout, or one JSON object per network
    (``as_json``); the exit code."""
    from emo.assembly.progress import stdout_is_terminal
    from emo.io.writer import table_console

    rows = model_rows(settings)
    if as_json:
        for r in rows:
            click.echo(orjson.dumps(r).decode())
        return EXIT_OK
    table_console(width=None if stdout_is_terminal() else _PIPE_WIDTH).print(networks_table(rows))
    table_console(width=None if stdout_is_terminal() else _PIPE_WIDTH).print(heads_table())
    return EXIT_OK


def pull_models(names: Sequence[str], given: Mapping[str, Any], base: config.Settings | None = None) -> int:
    """``emo models pull``: copy or download the weights of networks ``names`` into the cache,
    hash-checked, one ``name<TAB>path`` line each; ``given``: the subcommand's own options, on top of
    the group's settings ``base``. The exit code."""
    from emo.models.registry import get
    from emo.models.weights import pull as pull_weights

    settings = settings_from(given, base)
    for name in names:
        entry = get(name)
        if entry.weights is None:
            raise ModelError(f"{name} has no weights file")
        path = pull_weights(entry.weights, settings)
        click.echo(f"{name}\t{path}")
    return EXIT_OK
