"""The exit code of the real entry point when the reader of stdout has gone (``emo ... | head``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]


def _scored(tmp_path: Path) -> Path:
    preds = tmp_path / "preds.jsonl"
    probs = {"joy": 0.7, "fear": 0.3}
    preds.write_bytes(b"".join(orjson.dumps({"path": f"{i}.jpg", "label": "joy",
                                             "emotion": {"label": "joy", "p": 0.7, "probs": probs}}) + b"\n"
                               for i in range(3)))
    return preds


@pytest.mark.parametrize("args", [
    ["models"],  # a rich table
    ["models", "--json"],  # click.echo
    ["completion", "bash"],
    ["score", "--format", "table", "PREDS"],
    ["classify", "--help"],
], ids=lambda a: " ".join(a[:3]))
def test_a_closed_pipe_exits_141_quietly_whatever_writes_stdout(tmp_path, args):
    """Whatever writes the output (a JSONL writer, click.echo, a rich table), a reader that left
    is exit 141 with nothing on stderr, never 1, which says some inputs failed."""
    (tmp_path / "cache").mkdir()
    args = [str(_scored(tmp_path)) if a == "PREDS" else a
            for a in args]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    env = dict(os.environ, PYTHONPATH=str(REPO), EMO_CACHE_DIR=str(tmp_path / "cache"))
    try:
        proc = subprocess.run([sys.executable, "-m", "emo", *args], stdout=write_end, stderr=subprocess.PIPE,
                              cwd=tmp_path, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == b""


@pytest.mark.parametrize("name", ["no\nemo: wrote forged.jsonl", "no\x1b[2J\x1b[31m.jsonl", "caf\udcff\u2028.jsonl"])
def test_the_run_level_error_line_escapes_the_user_text_it_quotes(tmp_path, name):
    """A file name quoted in ``emo: error: ...`` cannot forge a second line or steer the terminal."""
    from click.testing import CliRunner

    from emo.cli import cli
    from emo.cli.exits import guarded

    missing = str(tmp_path / name)
    with CliRunner().isolation() as (_, err, _):
        code = guarded(cli, ["score", missing])
        sys.stderr.flush()
    text = err.getvalue().decode("utf-8")  # valid UTF-8: a name's stray bytes are written \xNN
    assert code == 2 and text.count("\n") == 1 and text.startswith("emo: error: cannot read ")
    assert "\x1b" not in text and "\u2028" not in text
