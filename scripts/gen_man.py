"""Write roff man pages for ``emo`` and every subcommand, from the click commands themselves.

    python scripts/gen_man.py            # writes man/emo.1, man/emo-classify.1, man/emo-models-pull.1 ...
    python scripts/gen_man.py --out DIR

The pages carry no date, so the same code always gives the same bytes; tests/test_docs.py
regenerates them and fails when the checked-in pages have drifted from the code.
"""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields
from collections.abc import Iterator
from pathlib import Path

import click

from emo import __version__, config
from emo.cli import cli

SECTION = "1"
INTERRUPTED = ("129, 130, 143", "Stopped by SIGHUP (not under nohup), SIGINT or SIGTERM; stdout holds only complete lines.")
PIPE_CLOSED = ("141", "The reader of stdout closed the pipe (emo ... | head); quietly.")
EXIT_STATUS = [
    ("0", "Every input was done."),
    ("1", "Some inputs became error records (their lines carry \"error\": {\"kind\", \"message\"}); "
          "for emo score, nothing could be scored."),
    ("2", "Usage, model or configuration error, or the output cannot be written: nothing useful ran."),
    INTERRUPTED,
    PIPE_CLOSED,
]
FILTER_STATUS = [EXIT_STATUS[0], ("1", "Some inputs became error records (their lines carry "
                                       "\"error\": {\"kind\", \"message\"})."), *EXIT_STATUS[2:]]
SCORE_STATUS = [("0", "Something was scored."), ("1", "Nothing could be scored (stderr says why)."), *EXIT_STATUS[2:]]
OTHER_STATUS = [("0", "Done."), ("2", "Usage, model, configuration or output error."), INTERRUPTED, PIPE_CLOSED]


def exit_statuses(path: tuple[str, ...], cmd: click.Command) -> list[tuple[str, str]]:
    """The exit statuses ``cmd`` can end with: a filter's, emo score's, or the others' (0 or 2)."""
    if len(path) == 1:  # emo without a command is a usage error too
        return [*EXIT_STATUS[:2], ("2", "Usage error (emo without a command too), model or configuration error, or "
                                        "the output cannot be written: nothing useful ran."), *EXIT_STATUS[3:]]
    if any(p.name == "paths" for p in cmd.params):
        return FILTER_STATUS
    return SCORE_STATUS if path[1:] == ("score",) else OTHER_STATUS


# Every variable emo reads; tests/test_docs.py checks that each EMO_ name in the code is here.
_SETTINGS_VARS = [config.ENV_PREFIX + f.name.upper() for f in fields(config.Settings) if f.name != "cache_dir"]
ENVIRONMENT = [
    (", ".join(_SETTINGS_VARS),
     "Defaults for the options of the same names (EMO_BATCH_SIZE for --batch-size); an option given on "
     "the command line wins. A bad value is a configuration error (exit 2) naming the variable."),
    ("EMO_CACHE_DIR", "Cache for weights and compiled engines (default $XDG_CACHE_HOME/emo or ~/.cache/emo)."),
    (config.ENV_TRUSTED_USERS, "Users (names or uids, comma-separated) besides you and root whose cached engines "
                               "are trusted: a shared cache's service user."),
    ("EMO_HEAP", "system: leave glibc's heap settings alone (emo otherwise keeps freed memory for the next batch)."),
    ("EMO_DEBUG", "Set: an unexpected error shows its Python traceback instead of one line."),
]


def walk(cmd: click.Command, path: tuple[str, ...] = ("emo",), parent: click.Context | None = None,
         ) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Every command under ``cmd``, depth first, as (name path, command, its context)."""
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, **cmd.context_settings)
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, path + (name,), ctx)


def esc(text: str) -> str:
    """Text safe for roff: backslashes, hyphens, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def paragraphs(help_text: str) -> list[str]:
    """click help text as roff: ``\\b`` blocks stay as written, other paragraphs are filled."""
    out = []
    for para in re.split(r"\n\s*\n", inspect.cleandoc(help_text)):
        if para.startswith("\b"):
            lines = para.split("\n")[1:]
            head = [ln for ln in lines if ln and not ln.startswith(" ")]
            body = [ln for ln in lines if ln not in head]
            if head and body and lines[0] in head and len(head) == 1:  # "Examples:" then a block
                out.append(f".PP\n{esc(head[0])}\n.PP\n.RS 4\n.nf\n" + "\n".join(esc(ln.strip()) for ln in body) + "\n.fi\n.RE")
            else:
                out.append(".PP\n.nf\n" + "\n".join(esc(ln) for ln in lines) + "\n.fi")
        else:
            out.append(".PP\n" + esc(" ".join(para.split())))
    return out


def _metavar(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, click.Option) and (param.is_flag or param.count):
        return ""
    return param.make_metavar(ctx)


def page(path: tuple[str, ...], cmd: click.Command, ctx: click.Context, children: list[tuple[str, ...]]) -> str:
    name = "-".join(path)
    summary = cmd.get_short_help_str(limit=200).rstrip(".")
    lines = [
        f'.TH "{name.upper()}" "{SECTION}" "" "emo {__version__}" "emo manual"',
        ".SH NAME",
        f"{esc(name)} \\- {esc(summary)}",
        ".SH SYNOPSIS",
        ".B " + esc(" ".join(path)),
    ]
    pieces = ["[\\fIOPTIONS\\fR]"]
    for p in cmd.params:
        if isinstance(p, click.Argument):
            mv = p.make_metavar(ctx)
            pieces.append("\\fI" + esc(mv) + "\\fR")
    if isinstance(cmd, click.Group):
        pieces.append("\\fICOMMAND\\fR [\\fIARGS\\fR]...")
    lines.append(" ".join(pieces))
    lines.append(".SH DESCRIPTION")
    lines += paragraphs(cmd.help or "")
    if cmd.epilog:
        lines += paragraphs(cmd.epilog)
    opts = [p for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]
    if opts:
        lines.append(".SH OPTIONS")
        for p in opts:
            flags = ", ".join(f"\\fB{esc(o)}\\fR" for o in p.opts + p.secondary_opts)
            mv = _metavar(p, ctx)
            text = p.help or ""
            if p.show_default is True and p.default not in (None, False, ()) and "[default" not in text:
                text += f" [default: {p.default}]"
            if isinstance(p.type, click.types._NumberRangeBase):  # the range click's --help shows
                text += f" [{p.type._describe_range()}]"
            lines += [".TP", flags + (f" \\fI{esc(mv)}\\fR" if mv else ""), esc(text)]
    if children:
        lines.append(".SH COMMANDS")
        for child in children:
            sub = cmd.get_command(ctx, child[-1])
            lines += [".TP", f"\\fB{esc(child[-1])}\\fR", esc(sub.get_short_help_str(limit=200)),
                      f"See \\fB{esc('-'.join(child))}\\fR({SECTION})."]
    lines.append(".SH EXIT STATUS")
    for code, what in exit_statuses(path, cmd):
        lines += [".TP", f"\\fB{code}\\fR", esc(what)]
    if len(path) == 1:
        lines.append(".SH ENVIRONMENT")
        for var, what in ENVIRONMENT:
            lines += [".TP", f"\\fB{esc(var)}\\fR", esc(what)]
    lines.append(".SH SEE ALSO")
    others = ["emo"] if len(path) > 1 else []
    if len(path) > 2:
        others.append("-".join(path[:-1]))
    others += ["-".join(c) for c in children] if len(path) == 1 else []
    lines.append(", ".join(f"\\fB{esc(o)}\\fR({SECTION})" for o in others) or "The README of emo.")
    return "\n".join(lines) + "\n"


def generate(out: Path) -> list[Path]:
    """Write every page into ``out``; returns the files written, sorted."""
    out.mkdir(parents=True, exist_ok=True)
    tree = list(walk(cli))
    written = []
    for path, cmd, ctx in tree:
        children = [p for p, _, _ in tree if len(p) == len(path) + 1 and p[: len(path)] == path]
        f = out / f"{'-'.join(path)}.{SECTION}"
        f.write_text(page(path, cmd, ctx, children))
        written.append(f)
    return sorted(written)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "man")
    a = ap.parse_args()
    for stale in a.out.glob(f"emo*.{SECTION}"):
        stale.unlink()
    for f in generate(a.out):
        print(f)


if __name__ == "__main__":
    main()
