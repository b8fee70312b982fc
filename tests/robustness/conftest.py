"""Helpers for the robustness suite: run ``emo`` in-process (fast) or as a process (signals).

In-process runs go through :func:`emo.cli.exits.guarded`, the same edge that maps errors to exit
codes in the real program, with stdin/stdout/stderr swapped by click's test isolation.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]

# Fast settings: the tiny random network on 32 px crops, small batches.
TINY = ["features", "--set", "object", "--backbone", "tiny_test", "--batch-size", "4", "--workers", "2"]


@dataclass
class Run:
    code: int
    out: bytes
    err: str

    @property
    def records(self) -> list[dict]:
        """stdout as records; fails the test if any line is not one whole JSON object."""
        assert self.out == b"" or self.out.endswith(b"\n"), "stdout ends inside a line"
        recs = [orjson.loads(line) for line in self.out.splitlines()]
        assert all(isinstance(r, dict) for r in recs)
        return recs


def emo(args: list[str], stdin: bytes = b"") -> Run:
    """Run ``emo ARGS`` in this process; exit code, stdout bytes, stderr text."""
    from emo.cli import cli
    from emo.cli.exits import guarded

    old = signal.getsignal(signal.SIGTERM)
    try:
        with CliRunner().isolation(input=stdin) as (out, err, _):
            code = guarded(cli, args)
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        signal.signal(signal.SIGTERM, old)
    return Run(code, out.getvalue(), err.getvalue().decode("utf-8", "replace"))


def assert_clean(run: Run) -> None:
    """No Python traceback reached the user."""
    assert "Traceback" not in run.err, run.err
    assert b"Traceback" not in run.out


def check_contract(run: Run, expected: list[tuple[str, str | None]], code: int | None = None) -> list[dict]:
    """One record per input, in order: ``expected`` is (path, error kind or None) per input."""
    assert_clean(run)
    recs = run.records
    assert [(r.get("path"), r.get("error", {}).get("kind")) for r in recs] == expected, run.err
    for r in recs:
        if "error" in r:
            assert set(r["error"]) == {"kind", "message"} and r["error"]["message"]
            assert "features" not in r
        else:
            assert len(r["features"]["object"]) == 10
    failed = sum(1 for _, kind in expected if kind)
    assert run.code == (code if code is not None else (1 if failed else 0)), run.err
    # One stderr line per bad input, naming its kind.
    err_lines = [ln for ln in run.err.splitlines() if ln.startswith("emo: ") and ": " in ln[5:]]
    assert sum(1 for ln in err_lines if any(f": {k}: " in ln for _, k in expected if k)) >= failed
    return recs


@pytest.fixture
def tiny(tiny_backbone):
    """The ``tiny_test`` network registered for in-process runs (and its weights folder)."""
    return tiny_backbone


def tiny_digest() -> str:
    return hashlib.sha256((Path(os.environ["EMO_WEIGHTS_DIR"]) / "tiny_test.pth").read_bytes()).hexdigest()


def spawn(args: list[str], prefix: list[str] = (), **kw) -> subprocess.Popen:
    """Start ``emo ARGS`` as a process with ``tiny_test`` registered (see ``tiny_emo.py``);
    ``prefix`` runs it under another program (``setpriv ...``). It decodes in worker processes,
    as ``emo`` does by default (the test module has loaded torch already, so it is forced)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.setdefault("EMO_DECODER", "process")
    cmd = [*prefix, sys.executable, "-m", "tests.robustness.tiny_emo", *args]
    return subprocess.Popen(cmd, cwd=kw.pop("cwd", REPO), env=env, **kw)


def assert_same_records(a: bytes, b: bytes, rtol: float = 1e-5) -> None:
    """Two JSONL outputs hold the same records in the same order; floats may differ in the last
    bits, since a network's CPU kernels sum in another order for another batch make-up. Records
    round probabilities to 6 decimals, so such a difference can move a value by one step of 1e-6."""
    ra, rb = [orjson.loads(x) for x in a.splitlines()], [orjson.loads(x) for x in b.splitlines()]
    assert [r.get("path") for r in ra] == [r.get("path") for r in rb]

    def same(x, y) -> bool:
        if isinstance(x, float) or isinstance(y, float):
            return abs(x - y) <= rtol * max(abs(x), abs(y)) + 1.5e-6
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y))
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return x == y

    for x, y in zip(ra, rb):
        assert same(x, y), (x.get("path"), y.get("path"))
