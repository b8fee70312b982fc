"""The package's import graph: nothing outside emo/cli imports emo.cli, and there are no cycles.

Read from the source (every ``import`` and ``from ... import``, at any depth, lazy ones too), so
a lazy import inside a function counts: it is still a dependency a reader must follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "emo"


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    mods = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from emo import config`` depends on emo.config, not on the package's __init__.
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t for t in subs if t in mods] or [node.module]
            else:
                continue
            deps |= {t for t in targets if t in mods and t != name}
        graph[name] = deps
    return graph


def test_only_the_cli_imports_the_cli():
    offenders = {m: sorted(d for d in deps if d == "emo.cli" or d.startswith("emo.cli."))
                 for m, deps in _graph().items() if not (m == "emo.cli" or m.startswith("emo.cli.") or m == "emo.__main__")}
    assert {m: d for m, d in offenders.items() if d} == {}


def _package_of(module: str) -> str:
    """``emo.assembly.runner`` -> ``emo.assembly``; top-level modules stand for themselves."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_import_cycles_between_modules():
    graph = _graph()
    # A package's __init__ may re-export its own modules; cycles through that are not design cycles.
    edges = {m: {d for d in deps if not (d == _package_of(m) and m.startswith(d + "."))} for m, deps in graph.items()}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if seen.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2

    for m in sorted(edges):
        if m not in seen:
            visit(m)
    assert cycles == []


def test_no_two_modules_share_a_name():
    names: dict[str, list[str]] = {}
    for p in PACKAGE.rglob("*.py"):
        if p.name != "__init__.py":
            names.setdefault(p.stem, []).append(str(p.relative_to(PACKAGE)))
    for p in PACKAGE.rglob("__init__.py"):
        if p.parent != PACKAGE:
            names.setdefault(p.parent.name, []).append(str(p.parent.relative_to(PACKAGE)) + "/")
    assert {k: v for k, v in names.items() if len(v) > 1} == {}
