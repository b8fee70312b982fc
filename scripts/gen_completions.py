"""Write bash, zsh and fish completion files for ``emo`` from click's shell completion support.

    python scripts/gen_completions.py            # writes completions/emo.bash, _emo, emo.fish
    python scripts/gen_completions.py --out DIR

Each file is the small script click generates: on TAB it runs ``emo`` with ``_EMO_COMPLETE`` set,
so subcommands, options, and network and head names (from the registry) always match the
installed code. tests/test_docs.py regenerates them and fails when the checked-in files drift.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emo.cli.cmd_completion import completion_source as source

# shell -> file name its completion system looks for.
FILES = {"bash": "emo.bash", "zsh": "_emo", "fish": "emo.fish"}


def generate(out: Path) -> list[Path]:
    """Write one file per shell into ``out``; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in FILES.items():
        f = out / name
        f.write_text(source(shell))
        written.append(f)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "completions")
    for f in generate(ap.parse_args().out):
        print(f)


if __name__ == "__main__":
    main()
