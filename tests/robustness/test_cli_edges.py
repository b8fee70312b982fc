"""Hostile command lines: odd names and numbers in options, missing or odd record files, heads of
the wrong task. Each is one line on stderr and its documented exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.cli.test_cmd_fit import FAST, _feature_records, _write
from tests.conftest import make_image
from tests.robustness.conftest import emo


def _one_line(run, code: int) -> None:
    assert run.code == code, run.err
    assert "Traceback" not in run.err and "Warning" not in run.err, run.err
    assert run.err.count("\n") == 1 and run.err.startswith("emo: "), run.err


@pytest.mark.parametrize("args", [
    ["nosuch"],
    ["classify", "--no-such-option"],
    ["classify", "--batch-size", "x"],
    ["score", "--format", "nope"],
    ["models", "pull"],
    ["fit", "--lr", "inf", "x.jsonl"],
    ["classify", "--\x1b[31mred\udcff"],  # an escape sequence and a byte that is not UTF-8
])
def test_usage_errors_are_one_line_naming_the_help(args):
    run = emo(args)
    _one_line(run, 2)
    assert run.err.startswith("emo: error: ") and "--help')" in run.err and "Usage:" not in run.err
    assert "\x1b" not in run.err


@pytest.mark.parametrize("args", [
    ["classify", "--head", "h" * 300],
    ["va", "--head", "x/" * 3000],
    ["classify", "--sentiment-head", "va"],
    ["classify", "--head", "va"],
    ["features", "--batch-size", "99999999999999999999"],
    ["features", "--workers", "-1"],
    ["score", "nosuch.jsonl"],
    ["fit", "nosuch.jsonl", "-o", "h.head"],
])
def test_bad_option_values_are_one_line_and_exit_2(tmp_path, args):
    img = str(make_image(tmp_path / "a.png"))
    run = emo(args + ([img] if args[0] in ("classify", "va", "features") else []))
    _one_line(run, 2)


def test_fit_output_under_a_regular_file_is_exit_2(tiny_backbone, tmp_path):
    data = _write(tmp_path, _feature_records(12))
    (tmp_path / "file").write_text("x")
    run = emo(["fit", "--labels", "joy,sadness,fear", *FAST, str(data), "-o", str(tmp_path / "file" / "h.head")])
    _one_line(run, 2)
    assert (tmp_path / "file").read_text() == "x"


def test_fit_skips_records_with_null_or_odd_targets_and_features(tiny_backbone, tmp_path):
    recs = _feature_records(30)
    recs += [
        {"features": {"deep": [0.1] * 8}, "distribution": {"joy": None, "fear": 1}},
        {"features": {"deep": [0.1] * 8}, "distribution": {"joy": "x"}},
        {"features": {"deep": [[0.1, 0.2], [0.3]]}, "label": "joy"},  # ragged
        {"features": {"deep": {"a": 1}}, "label": "joy"},  # an object
        {"features": {"deep": ["x"] * 8}, "label": "joy"},
        {"features": {"deep": [1e39] * 8}, "label": "fear"},  # overflows float32
        {"features": {"deep": [0.1] * 3}, "label": "fear"},  # another size
    ]
    data = _write(tmp_path, recs)
    run = emo(["fit", "--labels", "joy,sadness,fear", *FAST, str(data), "-o", str(tmp_path / "h.head")])
    assert run.code == 0 and "Traceback" not in run.err, run.err
    assert "30 records used" in run.err


def test_va_fit_skips_non_finite_targets(tiny_backbone, tmp_path):
    recs = _feature_records(30)
    lines = b"".join(orjson.dumps(r) + b"\n" for r in recs)
    lines += b'{"features": {"deep": [0,0,0,0,0,0,0,0]}, "valence": NaN, "arousal": 3}\n'
    lines += b'{"features": {"deep": [0,0,0,0,0,0,0,0]}, "valence": 1e999, "arousal": 3}\n'
    lines += b'{"features": {"deep": [0,0,0,0,0,0,0,0]}, "valence": true, "arousal": 3}\n'
    (tmp_path / "t.jsonl").write_bytes(lines)
    run = emo(["fit", "--task", "va", "--hidden", "8", "--epochs", "3", "--backbone", "tiny_test", "--threads", "1",
               str(tmp_path / "t.jsonl"), "-o", str(tmp_path / "v.head")])
    assert run.code == 0 and "Traceback" not in run.err, run.err
    assert "30 records used" in run.err


def test_an_unexpected_failure_is_one_line_not_a_traceback(monkeypatch, tmp_path):
    import emo.assembly.runner as runner

    def broken(*a, **k):
        raise ImportError("operator torchvision::nms does not exist")

    monkeypatch.setattr(runner, "run_filter", broken)
    run = emo(["features", "--set", "color", str(make_image(tmp_path / "a.png"))])
    _one_line(run, 2)
    assert "ImportError: operator torchvision::nms does not exist" in run.err
    monkeypatch.setenv("EMO_DEBUG", "1")
    with pytest.raises(ImportError):
        emo(["features", "--set", "color", str(tmp_path / "a.png")])


def test_fit_output_is_never_a_device_a_fifo_or_its_own_input(tiny_backbone, tmp_path):
    import os

    data = _write(tmp_path, _feature_records(12))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    base = ["fit", "--labels", "joy,sadness,fear", *FAST, str(data), "-o"]
    for target in (str(fifo), "/dev/null", str(data)):
        _one_line(emo(base + [target]), 2)
    assert fifo.exists() and not fifo.is_file() and os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert data.read_bytes().startswith(b"{")  # the records are still there
    # A 0600 head stays 0600; a link to a head is followed, not replaced.
    head = tmp_path / "h.head"
    head.write_bytes(b"old")
    os.chmod(head, 0o600)
    link = tmp_path / "link.head"
    link.symlink_to(head)
    run = emo(base + [str(link)])
    assert run.code == 0, run.err
    assert link.is_symlink() and os.stat(head).st_mode & 0o777 == 0o600 and head.read_bytes() != b"old"


def test_closed_or_full_stdout_is_one_line_for_every_command(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for args in (["models"], ["models", "--json"], ["completion", "bash"]):
        for kw in ({"preexec_fn": lambda: os.close(1)}, {"stdout": open("/dev/full", "wb")}):
            run = subprocess.run([sys.executable, "-m", "emo", *args], stderr=subprocess.PIPE, env=env, timeout=60, **kw)
            err = run.stderr.decode()
            assert run.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, (args, err)


def test_score_table_with_an_output_file_is_a_usage_error(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"path": "a", "label": "joy", "emotion": {"label": "joy", "probs": {"joy": 1.0}}}\n')
    _one_line(emo(["score", "--format", "table", "-o", str(tmp_path / "s.json"), str(p)]), 2)
    assert not (tmp_path / "s.json").exists()
