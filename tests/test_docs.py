"""Man pages and completions match the code; every --help runs; the CLI imports no torch; the
README's commands parse and the documentation's links resolve."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from emo.cli import cli
from tests.conftest import REPO

REGENERATE = "make docs  (= python scripts/gen_man.py && python scripts/gen_completions.py)"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen_man = _script("gen_man")
gen_completions = _script("gen_completions")
COMMANDS = [path for path, _, _ in gen_man.walk(cli)]


def _same_tree(fresh_dir, checked_in_dir, pattern: str) -> None:
    fresh = {p.name: p.read_text() for p in fresh_dir.glob(pattern)}
    ours = {p.name: p.read_text() for p in checked_in_dir.glob(pattern)}
    assert sorted(ours) == sorted(fresh), f"{checked_in_dir.name}/ has other files than the code makes; run {REGENERATE}"
    stale = [n for n in fresh if fresh[n] != ours[n]]
    assert not stale, f"{', '.join(stale)} drifted from the code; run {REGENERATE}"


def test_man_pages_match_the_code(tmp_path):
    gen_man.generate(tmp_path)
    _same_tree(tmp_path, REPO / "man", "*.1")


def test_completions_match_the_code(tmp_path):
    gen_completions.generate(tmp_path)
    _same_tree(tmp_path, REPO / "completions", "*emo*")


def test_there_is_a_page_for_every_command_including_nested_ones():
    names = {"-".join(p) for p in COMMANDS}
    assert {"emo", "emo-features", "emo-classify", "emo-models", "emo-models-pull"} <= names
    for n in names:
        assert (REPO / "man" / f"{n}.1").is_file() or pytest.fail(f"man/{n}.1 missing; run {REGENERATE}")


@pytest.mark.parametrize("path", COMMANDS, ids=["-".join(p) for p in COMMANDS])
def test_every_help_runs_and_shows_usage(path):
    res = CliRunner().invoke(cli, [*path[1:], "--help"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("Usage: ")
    if "Not built yet" not in res.output:
        assert "Example" in res.output, f"emo {' '.join(path[1:])} --help shows no example"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_pages_render_without_warnings():
    for page in sorted((REPO / "man").glob("*.1")):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", (page.name, r.stderr)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_registers_and_completes():
    r = subprocess.run(["bash", "-c", f"source {REPO}/completions/emo.bash; complete -p emo"], capture_output=True, text=True)
    assert "-F _emo_completion emo" in r.stdout, r.stderr
    env = dict(os.environ, _EMO_COMPLETE="bash_complete", COMP_WORDS="emo features --backbone ", COMP_CWORD="3")
    code = "import sys; from emo.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "plain,mobilenet_v2" in r.stdout.splitlines(), r.stdout + r.stderr


def test_cli_import_help_and_completion_import_no_torch():
    code = """
import os, sys
from click.testing import CliRunner
from emo.cli import cli
assert 'torch' not in sys.modules, 'import emo.cli imported torch'
for args in (['--help'], ['features', '--help'], ['classify', '--help'], ['models', 'pull', '--help']):
    assert CliRunner().invoke(cli, args).exit_code == 0
os.environ.update(_EMO_COMPLETE='bash_complete', COMP_WORDS='emo features --backbone ', COMP_CWORD='3')
try:
    cli.main(prog_name='emo')
except SystemExit:
    pass
bad = sorted(m for m in ('torch', 'torchvision', 'numpy', 'PIL') if m in sys.modules)
assert not bad, bad
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# Pages other parts of the project write; their links are checked once they exist.
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "bench").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def _code_blocks(text: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(text)]


def _emo_commands(block: str) -> list[list[str]]:
    """Each ``emo ...`` of a shell code block as its argument list, with pipes, redirections,
    comments, ``&&`` and line continuations taken apart the way the shell would."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split, lex.commenters = True, "#"
        words, segment = list(lex), []
        for word in [*words, ";"]:
            if word in ("|", "||", "&&", ";", "&"):
                while segment and re.fullmatch(r"[A-Z_]+=\S*", segment[0]):
                    segment.pop(0)  # VAR=value before the command
                if segment and segment[0] == "emo":
                    found.append(segment[1:])
                segment = []
            else:
                segment.append(word)
    # Redirections and their targets are the shell's, not emo's.
    out = []
    for args in found:
        clean, skip = [], False
        for w in args:
            if skip:
                skip = False
            elif re.fullmatch(r"\d?(<|>|>>)", w):
                skip = True
            else:
                clean.append(w)
        out.append(clean)
    return out


def _readme_commands() -> list[list[str]]:
    cmds = [c for block in _code_blocks((REPO / "README.md").read_text()) for c in _emo_commands(block)]
    assert len(cmds) >= 8, cmds  # the two commands' pages, five pipelines: if this drops, the parsing broke
    return cmds


def test_the_parser_finds_emo_inside_pipes_and_redirections():
    block = "find x | EMO_X=1 emo classify --head h.head < in.jsonl | emo va > out.jsonl  # note\nemo fit \\\n  -o a.head t.jsonl && echo"
    assert _emo_commands(block) == [["classify", "--head", "h.head"], ["va"], ["fit", "-o", "a.head", "t.jsonl"]]


@pytest.mark.parametrize("args", _readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_emo_command_in_the_readme_parses(args):
    """The subcommand exists and takes every option given (``--help`` last stops before running)."""
    res = CliRunner().invoke(cli, [*args, "--help"])
    assert res.exit_code == 0 and res.output.startswith("Usage: "), f"emo {' '.join(args)}: {res.output}"


def _anchors(page) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text())
    heads = re.findall(r"^#{1,6}\s+(.*?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # a web address or mailto
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target} leads nowhere"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: {target}: no heading makes #{anchor}"


def test_the_readme_stays_short_and_speaks_of_the_product():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 170
    for page in DOC_FILES:
        words = page.read_text()
        assert not re.search(r"/work/|/root/|\.\./shared|this machine", words), page.name


def _help_examples() -> list[list[str]]:
    """The ``emo ...`` commands of every subcommand's --help examples."""
    out = []
    for path in COMMANDS:
        res = CliRunner().invoke(cli, [*path[1:], "--help"], terminal_width=400)
        for line in res.output.splitlines():
            if line.strip().startswith(("emo ", "find ")):  # an example line; options' prose is not
                out += _emo_commands(line.strip())
    return out


def test_every_shown_classify_regions_names_a_head_that_reads_regions():
    """No shipped head reads the regions' features, so `emo classify --regions` with the default
    head stops with exit 2: every example of it says which head (one from emo fit --regions)."""
    shown = _help_examples()
    for page in DOC_FILES:
        for block in _code_blocks(page.read_text()):
            try:
                shown += _emo_commands(block)
            except ValueError:
                continue  # JSON or XML, not shell
    with_regions = [c for c in shown if c[:1] == ["classify"] and "--regions" in c]
    assert with_regions, "no example of emo classify --regions found: the search broke"
    assert [c for c in with_regions if "--head" not in c] == []


def test_install_lines_never_fetch_emo_by_name():
    """"emo" on PyPI is another project: `pip install 'emo[ray]'` in a fresh environment installs
    it, so the pages, the example and emo's own messages install from the clone (`pip install '.[ray]'`)."""
    pages = [*DOC_FILES, *sorted((REPO / "examples").glob("*.py")), *sorted((REPO / "emo").rglob("*.py")),
             *sorted((REPO / "scripts").glob("*.py")), *sorted((REPO / "man").glob("*.1"))]
    by_name = re.compile(r"pip3? install\s+(?:-\S+\s+)*['\"]?emo(?:\[|['\"]?(?:\s|$|[;)`]))", re.M)
    bad = [str(p.relative_to(REPO)) for p in pages if by_name.search(p.read_text())]
    assert bad == []


def test_every_choice_engine_and_root_option_shows_its_default():
    """A user choosing among values (an engine setting, the folder paths resolve against) sees which
    one runs when none is given."""
    import click

    missing = []
    for path, cmd, ctx in gen_man.walk(cli):
        for p in cmd.get_params(ctx):
            if isinstance(p, click.Option) and not p.is_flag and (isinstance(p.type, click.Choice) or "env EMO_" in (p.help or "")
                                                                  or p.name == "root"):
                if "[default" not in (p.help or "") and not p.show_default and "EMO_WEIGHTS_DIR" not in (p.help or ""):
                    missing.append(f"emo {' '.join(path[1:])} {p.opts[-1]}")
    assert missing == []


def _exit_passage(text: str, start: str) -> str:
    """The paragraph (or table) that begins at the first line containing ``start``."""
    at = text.index(start)
    end = text.find("\n\n", at)
    return text[at:] if end < 0 else text[at:end]


def test_every_exit_code_is_stated_wherever_exit_statuses_are_listed():
    """emo --help, man emo, the README, architecture.md and robustness.md list the same codes as
    emo/errors.py, so none of them leaves out 130/143 or 141."""
    from emo import errors

    codes = {getattr(errors, n) for n in dir(errors) if n.startswith("EXIT_")}
    shown = {
        "emo --help": _exit_passage(CliRunner().invoke(cli, ["--help"]).output, "Exit status"),
        "man/emo.1": _exit_passage((REPO / "man" / "emo.1").read_text(), ".SH EXIT STATUS").replace("\n", " "),
        "README.md": _exit_passage((REPO / "README.md").read_text(), "**Exit status**"),
        "docs/architecture.md": _exit_passage((REPO / "docs" / "architecture.md").read_text(), "- Exit status"),
        "docs/robustness.md": _exit_passage((REPO / "docs" / "robustness.md").read_text(), "| code | meaning |"),
    }
    for where, text in shown.items():
        missing = sorted(c for c in codes if not re.search(rf"(?<!\d){c}(?!\d)", text))
        assert missing == [], f"{where} does not state exit {missing}"


def test_man_emo_names_every_environment_variable_the_code_reads():
    environment = (REPO / "man" / "emo.1").read_text().split(".SH ENVIRONMENT", 1)[1].split(".SH ", 1)[0]
    read = set()
    for f in (REPO / "emo").rglob("*.py"):
        read |= set(re.findall(r"(?<![\w])EMO_[A-Z][A-Z_]*[A-Z]", f.read_text()))
    from emo import config

    read |= {config.ENV_PREFIX + f.upper() for f in config.Settings.__dataclass_fields__}
    missing = sorted(v for v in read if v not in environment.replace("\\", ""))
    assert missing == [], f"man emo's ENVIRONMENT leaves out {missing}"


def test_no_command_list_cuts_a_subcommand_short():
    """Each group's Commands section says in full what each subcommand does (no trailing "...")."""
    for path, cmd, _ in gen_man.walk(cli):
        if path[1:] and hasattr(cmd, "list_commands"):
            out = CliRunner().invoke(cli, [*path[1:], "--help"], terminal_width=80).output
            listed = out.split("Commands:", 1)[1]
            assert "..." not in listed, f"emo {' '.join(path[1:])} --help: {listed}"


def test_engines_help_says_what_an_engine_is():
    out = CliRunner().invoke(cli, ["engines", "--help"]).output
    assert "An engine is a network" in out and "ENGINES is the folder" not in out


def test_every_option_the_docs_give_emo_classify_exists():
    """An option a page shows in `emo classify ...` prose (as --raw-probs) is one classify takes."""
    from emo.cli.cmd_classify import classify

    known = {o for p in classify.params for o in (*p.opts, *p.secondary_opts)}
    for page in DOC_FILES:
        for cmd in re.findall(r"`emo classify ([^`]*)`", page.read_text()):
            flags = [w.split("=")[0] for w in cmd.split() if w.startswith("--")]
            assert set(flags) <= known, f"{page.name}: `emo classify {cmd}`"


# Options of other programs the pages show (pip, useradd, the bench scripts, the Ray example),
# and the misspelt option robustness.md shows a usage error for.
OTHER_PROGRAMS_OPTIONS = {"--no-deps", "--system", "--images", "--decode-side-only", "--actors", "--foo"}


def test_every_option_the_pages_name_is_one_emo_takes():
    """A page that names --fail-fast, --raw-probs... names an option some emo command has."""
    known = set(OTHER_PROGRAMS_OPTIONS)
    for _, cmd, ctx in gen_man.walk(cli):
        for p in cmd.get_params(ctx):
            known |= {*p.opts, *p.secondary_opts}
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        unknown = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", page.read_text())) - known)
        assert unknown == [], f"{page.name} names options no emo command takes: {unknown}"
