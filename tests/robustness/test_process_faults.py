"""Faults around the process: a closed pipe, SIGINT and SIGTERM mid-run, a full disk, no rights.

These need a real process (signals, pipes, dropped privileges), so they are few; each runs the
real entry point with the tiny network (``tests/robustness/tiny_emo.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import orjson
import pytest

from tests.conftest import make_image
from tests.robustness.conftest import TINY, assert_same_records, check_contract, emo, spawn
from tests.robustness.files import image_set

TIMEOUT = 60


def _feed_forever(proc: subprocess.Popen, line: bytes, stop: threading.Event) -> threading.Thread:
    """Keep writing ``line`` to the process's stdin until ``stop`` or the pipe closes."""

    def feed() -> None:
        try:
            while not stop.is_set():
                proc.stdin.write(line * 16)
                proc.stdin.flush()
                time.sleep(0.01)
        except (BrokenPipeError, ValueError, OSError):
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return t


def _whole_lines(data: bytes) -> list[dict]:
    assert data == b"" or data.endswith(b"\n"), "output ends inside a line"
    return [orjson.loads(x) for x in data.splitlines()]


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated"),
                                            (signal.SIGHUP, 129, "hung up")],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_mid_run_leaves_whole_lines(tiny, tmp_path, sig, code, word):
    good = make_image(tmp_path / "good.png")
    proc = spawn(TINY + ["--batch-size", "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop = threading.Event()
    _feed_forever(proc, str(good).encode() + b"\n", stop)
    first = proc.stdout.readline()  # the run is under way: records are flowing
    assert first.endswith(b"\n")
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        stop.set()
    recs = _whole_lines(first + out)
    assert recs and all(r["path"] == str(good) and len(r["features"]["object"]) == 10 for r in recs)
    assert proc.returncode == code
    assert b"Traceback" not in err and word.encode() in err


def test_console_run_writes_every_record_then_exits_with_its_code(tiny, tmp_path):
    """The entry point leaves without the interpreter's teardown: nothing written may be lost
    (stdout, -o FILE, the summary on stderr), and the exit code is the run's."""
    good = make_image(tmp_path / "good.png")
    paths = [str(good), str(tmp_path / "missing.png"), str(good)] * 40
    out_file = tmp_path / "out.jsonl"
    for extra in ([], ["-o", str(out_file)]):
        proc = spawn(TINY + ["-v", *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate("\n".join(paths).encode() + b"\n", timeout=TIMEOUT)
        recs = _whole_lines(out_file.read_bytes() if extra else out)
        assert [r["path"] for r in recs] == paths
        assert [("error" in r) for r in recs] == [p.endswith("missing.png") for p in paths]
        assert proc.returncode == 1, err
        assert b"120 inputs, 40 failed" in err and b"worker process" in err and b"Traceback" not in err
    assert not list(tmp_path.glob(".out.jsonl*"))  # the -o file was committed, no temp file left


def test_closed_pipe_exits_quietly(tiny, tmp_path):
    """``emo ... | head -1``: no traceback, no noise, exit 141 (128 + SIGPIPE)."""
    good = make_image(tmp_path / "good.png")
    proc = spawn(TINY, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop = threading.Event()
    _feed_forever(proc, str(good).encode() + b"\n", stop)
    line = proc.stdout.readline()
    proc.stdout.close()  # what head does after its first line
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        stop.set()
    assert orjson.loads(line)["path"] == str(good)
    assert proc.returncode == 141
    assert err == b"", err


def test_stdout_on_a_full_disk_is_a_clear_error(tiny, tmp_path):
    """/dev/full: every write fails with ENOSPC."""
    good = make_image(tmp_path / "good.png")
    with open("/dev/full", "wb") as full:
        proc = spawn(TINY + [str(good)], stdout=full, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 2
    assert b"Traceback" not in err
    assert b"cannot write stdout" in err and b"disk full" in err


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs root); skips where it cannot be mounted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the stream case is covered by /dev/full")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); /dev/full covers the stream case")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("resume", [False, True], ids=["replace", "resume"])
def test_output_file_on_a_full_disk(tiny, tmp_path, small_tmpfs, resume):
    """-o on a full disk: exit 2, a clear message; FILE never ends inside a line."""
    good = make_image(tmp_path / "good.png")
    out = small_tmpfs / "out.jsonl"
    if not resume:
        out.write_bytes(b'{"path": "old"}\n')  # a previous complete run stays as it was
    paths = [str(good)] * 600  # ~600 x 200 bytes: more than 64 KiB
    run = emo(TINY + ["-o", str(out)] + (["--resume"] if resume else []) + paths)
    assert run.code == 2
    assert "Traceback" not in run.err and "disk full" in run.err and str(out) in run.err
    assert [p.name for p in small_tmpfs.iterdir()] == ["out.jsonl"]  # no temporary file left behind
    data = out.read_bytes()
    if resume:
        recs = _whole_lines(data)
        assert 0 < len(recs) < 600
    else:
        assert data == b'{"path": "old"}\n'


def test_permission_denied(tiny, tmp_path):
    good = make_image(tmp_path / "good.png")
    locked = make_image(tmp_path / "locked.png")
    locked.chmod(0)
    args = TINY + [str(good), str(locked), str(good)]
    if os.geteuid() != 0:
        run = emo(args)
        check_contract(run, [(str(good), None), (str(locked), "permission_denied"), (str(good), None)])
        return
    # Root reads any file; without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH it is refused like anyone.
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing: root bypasses chmod 000")
    proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 prefix=["setpriv", "--bounding-set", "-dac_override,-dac_read_search"])
    out, err = proc.communicate(timeout=TIMEOUT)
    kinds = [r.get("error", {}).get("kind") for r in _whole_lines(out)]
    assert kinds == [None, "permission_denied", None], err
    assert proc.returncode == 1 and b"Traceback" not in err


def test_killed_run_resumes_to_the_uninterrupted_output(tiny, tmp_path):
    """kill -9 half way (and half a line left by it), then --resume: exactly one line per input,
    the same records as a run that was never interrupted."""
    paths = image_set(tmp_path, 60)
    stdin = b"".join(p.encode() + b"\n" for p in paths)
    full = tmp_path / "full.jsonl"
    assert emo(TINY + ["-o", str(full)], stdin).code == 0

    out = tmp_path / "out.jsonl"
    proc = spawn(TINY + ["--batch-size", "2", "-o", str(out), "--resume"],
                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.stdin.write(stdin[: len(stdin) // 2])  # the rest never comes: the run is killed first
    proc.stdin.flush()
    deadline = time.monotonic() + TIMEOUT
    while not out.exists() or len(out.read_bytes().splitlines()) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=TIMEOUT)
    proc.stdin.close()
    with open(out, "ab") as f:
        f.write(b'{"path": "' + paths[-1].encode()[:10])  # half a line, as a kill mid-write leaves
    done = len(out.read_bytes().splitlines()) - 1
    assert 5 <= done < len(paths)

    run = emo(TINY + ["-o", str(out), "--resume"], stdin)
    assert run.code == 0, run.err
    assert len(out.read_bytes().splitlines()) == len(paths)
    assert_same_records(out.read_bytes(), full.read_bytes())


def test_sighup_mid_run_with_o_leaves_no_temporary_file(tiny, tmp_path):
    # A closed terminal (SIGHUP) killed the run where it stood: ".out.jsonl.PID.XXXX.tmp" stayed
    # beside the output, a file the user never named.
    good = make_image(tmp_path / "good.png")
    out_file = tmp_path / "out.jsonl"
    proc = spawn(TINY + ["--batch-size", "2", "-o", str(out_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    stop = threading.Event()
    _feed_forever(proc, str(good).encode() + b"\n", stop)
    deadline = time.monotonic() + TIMEOUT
    while not any(p.name.endswith(".tmp") and p.stat().st_size for p in tmp_path.iterdir()):  # records flowing
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        stop.set()
    assert proc.returncode == 129 and b"hung up" in err and b"Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["good.png"]
