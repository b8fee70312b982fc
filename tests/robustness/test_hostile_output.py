"""Every file emo writes with -o and --resume, attacked: repeats, pathless records, foreign files,
two runs at once, FIFOs, devices, links and modes."""

from __future__ import annotations

import fcntl
import os
import stat
import threading

import orjson
import pytest

from tests.conftest import make_image
from tests.robustness.conftest import TINY, assert_clean, emo


@pytest.fixture
def imgs(tmp_path) -> dict[str, str]:
    return {n: str(make_image(tmp_path / f"{n}.png", color=c))
            for n, c in (("a", (200, 20, 20)), ("b", (20, 200, 20)), ("c", (20, 20, 200)))}


def paths_of(data: bytes) -> list:
    return [orjson.loads(ln).get("path") for ln in data.splitlines()]


def test_resume_counts_each_appearance(tiny, tmp_path, imgs):
    out = tmp_path / "out.jsonl"
    first = emo(TINY + ["-o", str(out), imgs["a"]])  # the run that was killed after "a"
    assert first.code == 0
    run = emo(TINY + ["-o", str(out), "--resume", imgs["a"], imgs["b"], imgs["a"], imgs["c"]])
    assert_clean(run)
    assert run.code == 0
    assert paths_of(out.read_bytes()) == [imgs["a"], imgs["b"], imgs["a"], imgs["c"]]
    again = emo(TINY + ["-o", str(out), "--resume", imgs["a"], imgs["b"], imgs["a"], imgs["c"]])
    assert again.code == 0 and len(out.read_bytes().splitlines()) == 4  # all done: nothing added


@pytest.mark.parametrize("sub", ["classify", "features"])
def test_records_without_a_path_are_not_doubled_by_a_second_resume(tiny, tmp_path, sub):
    import random

    out = tmp_path / "out.jsonl"
    rng = random.Random(0)
    if sub == "classify":  # results are added to the record: it no longer equals its input
        args, group, dim = ["classify"], "deep", 1280
    else:  # the group is written back as float32: 0.1 + 1e-9 does not survive the round trip
        args, group, dim = TINY, "object", 10
    feats = [[rng.random() + 1e-9 for _ in range(dim)] for _ in range(3)]
    data = b"".join(orjson.dumps({"features": {group: f}}) + b"\n" for f in feats + feats[:1])
    for _ in range(3):
        run = emo(args + ["-o", str(out), "--resume"], data)
        assert_clean(run)
        assert run.code == 0, run.err
        assert len(out.read_bytes().splitlines()) == 4


@pytest.mark.parametrize("before", [b"one line of notes, no final newline", b"notes\nmore notes\n",
                                    b'{"path": "a.png"}\n', b"\x00\x01binary"],
                         ids=["text_no_newline", "text", "input_list_not_output", "binary"])
def test_resume_on_a_file_that_is_not_emo_output_refuses_and_keeps_it(tiny, tmp_path, imgs, before):
    out = tmp_path / "notes.txt"
    out.write_bytes(before)
    run = emo(TINY + ["-o", str(out), "--resume", imgs["a"]])
    assert_clean(run)
    assert run.code == 2 and run.out == b"" and "not a JSON record of emo output" in run.err
    assert out.read_bytes() == before


def test_a_second_resume_run_on_one_file_is_refused_while_the_first_holds_it(tiny, tmp_path, imgs):
    out = tmp_path / "out.jsonl"
    emo(TINY + ["-o", str(out), imgs["a"]])
    before = out.read_bytes()
    with open(out, "rb") as held:  # what a first --resume run holds for its whole run
        fcntl.flock(held, fcntl.LOCK_EX)
        run = emo(TINY + ["-o", str(out), "--resume", imgs["a"], imgs["b"]])
    assert_clean(run)
    assert run.code == 2 and "another emo --resume run" in run.err
    assert out.read_bytes() == before


def test_output_into_a_fifo_is_written_through(tiny, tmp_path, imgs):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    run = emo(TINY + ["-o", str(fifo), imgs["a"], imgs["b"]])
    reader.join(30)
    assert_clean(run)
    assert run.code == 0 and paths_of(got[0]) == [imgs["a"], imgs["b"]]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_output_into_a_device_leaves_the_device(tiny, tmp_path, imgs):
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    run = emo(TINY + ["-o", str(link), imgs["a"]])
    assert_clean(run)
    assert run.code == 0 and link.is_symlink() and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    run = emo(TINY + ["-o", os.devnull, imgs["a"]])
    assert run.code == 0 and stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_output_keeps_the_mode_of_the_file_it_replaces(tiny, tmp_path, imgs):
    out = tmp_path / "private.jsonl"
    out.write_bytes(b"old\n")
    out.chmod(0o600)
    run = emo(TINY + ["-o", str(out), imgs["a"]])
    assert run.code == 0 and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert paths_of(out.read_bytes()) == [imgs["a"]]


def test_output_through_a_symlink_replaces_the_target_not_the_link(tiny, tmp_path, imgs):
    real = tmp_path / "real.jsonl"
    real.write_bytes(b"old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    run = emo(TINY + ["-o", str(link), imgs["a"]])
    assert run.code == 0 and link.is_symlink() and paths_of(real.read_bytes()) == [imgs["a"]]


def test_resume_on_a_fifo_is_refused(tiny, tmp_path, imgs):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    run = emo(TINY + ["-o", str(fifo), "--resume", imgs["a"]])
    assert_clean(run)
    assert run.code == 2 and "regular file" in run.err


def test_output_in_a_missing_folder_is_one_line(tiny, tmp_path, imgs):
    run = emo(TINY + ["-o", str(tmp_path / "no" / "such" / "out.jsonl"), imgs["a"]])
    assert_clean(run)
    assert run.code == 2 and run.out == b"" and not (tmp_path / "no").exists()


def test_a_half_written_last_record_is_redone_and_foreign_bytes_are_not_cut(tiny, tmp_path, imgs):
    out = tmp_path / "out.jsonl"
    emo(TINY + ["-o", str(out), imgs["a"]])
    whole = out.read_bytes()
    out.write_bytes(whole + whole[:25])  # a kill inside the second record
    run = emo(TINY + ["-o", str(out), "--resume", imgs["a"], imgs["b"]])
    assert run.code == 0 and paths_of(out.read_bytes()) == [imgs["a"], imgs["b"]]


def test_two_resume_processes_on_one_file_the_second_is_refused(tiny, tmp_path, imgs):
    """Overlapping cron jobs: the first holds the file while it runs; the second says so, exit 2,
    and changes nothing."""
    import subprocess
    import time

    from tests.robustness.conftest import spawn
    from tests.robustness.test_process_faults import _feed_forever

    out = tmp_path / "out.jsonl"
    first = spawn(TINY + ["--batch-size", "2", "-o", str(out), "--resume"], stdin=subprocess.PIPE,
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop = threading.Event()
    try:
        _feed_forever(first, imgs["a"].encode() + b"\n", stop)
        deadline = time.monotonic() + 60
        while not out.exists() or not out.read_bytes().endswith(b"\n"):
            assert time.monotonic() < deadline and first.poll() is None, "the first run never wrote"
            time.sleep(0.05)
        second = emo(TINY + ["-o", str(out), "--resume", imgs["b"]])
        assert_clean(second)
        assert second.code == 2 and "another emo --resume run" in second.err
        stop.set()
        time.sleep(0.1)
        first.stdin.close()
        assert first.wait(60) == 0, first.stderr.read().decode()
    finally:
        stop.set()
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stderr.close()
    done = paths_of(out.read_bytes())
    assert done and set(done) == {imgs["a"]}  # nothing of the refused run
