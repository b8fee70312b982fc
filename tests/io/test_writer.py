"""JsonlWriter: whole lines only, under signals, on a full disk, on a closed pipe."""

from __future__ import annotations

import errno
import io
import os
import signal

import numpy as np
import orjson
import pytest

import emo.io.writer as writer_mod
from emo.errors import OutputError
from emo.io.writer import JsonlWriter, dumps


def test_dumps_writes_numpy_as_numbers_on_one_line():
    line = dumps({"path": "a.jpg", "v": np.array([0.5, 0.25], dtype=np.float32), "n": np.int64(3)})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"path": "a.jpg", "v": [0.5, 0.25], "n": 3}


def test_an_unwritable_record_keeps_the_fields_that_name_its_file():
    rec = {"path": "caf\ufffd.jpg", "path_bytes": "Y2Fm/y5qcGc=", "note": object()}
    out = orjson.loads(dumps(rec))
    assert out["path"] == rec["path"] and out["path_bytes"] == rec["path_bytes"]
    assert out["error"]["kind"] == "bad_record" and "note" not in out


def test_stream_target_gets_whole_batches():
    buf = io.BytesIO()
    w = JsonlWriter(buf)
    w.write([{"a": 1}, {"a": 2}])
    w.write([])
    assert buf.getvalue() == b'{"a":1}\n{"a":2}\n' and w.lines == 2


def test_sigint_during_a_batch_waits_until_the_batch_is_written(tmp_path, monkeypatch):
    """The signal comes after the first half of a batch is out; the second half still goes."""
    path = tmp_path / "out.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    real_write = os.write
    calls = []

    def write_half_then_signal(f, data):
        calls.append(len(data))
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # blocked: Python sees it only after the batch
            return real_write(f, bytes(data[: len(data) // 2]))
        return real_write(f, data)

    monkeypatch.setattr(writer_mod.os, "write", write_half_then_signal)
    w = JsonlWriter(fd)
    with pytest.raises(KeyboardInterrupt):
        w.write([{"i": i, "pad": "x" * 100} for i in range(20)])
    os.close(fd)
    assert len(calls) == 2
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(x)["i"] for x in lines] == list(range(20))


def test_full_disk_cuts_the_failed_batch_off_a_regular_file(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    w = JsonlWriter(fd, name=str(path))
    w.write([{"i": 0}])
    real_write = os.write

    def half_then_enospc(f, data):
        if len(data) > 20:
            real_write(f, bytes(data[:15]))  # part of the batch reached the disk
            return 15
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_mod.os, "write", half_then_enospc)
    with pytest.raises(OutputError, match="disk full") as e:
        w.write([{"i": 1, "pad": "y" * 40}, {"i": 2}])
    os.close(fd)
    assert str(path) in str(e.value)
    assert path.read_bytes() == b'{"i":0}\n'


def test_dev_full_is_an_output_error():
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OutputError, match="No space left on device"):
            JsonlWriter(fd).write([{"a": 1}])
    finally:
        os.close(fd)


def test_closed_pipe_raises_broken_pipe():
    r, w = os.pipe()
    os.close(r)
    try:
        with pytest.raises(BrokenPipeError):
            JsonlWriter(w).write([{"a": 1}])
    finally:
        os.close(w)


def test_a_table_on_a_closed_pipe_raises_pipe_closed_not_system_exit():
    """rich ends the process with exit 1 on a closed pipe; a table must end as a JSONL run does (141)."""
    from rich.table import Table

    from emo.errors import PipeClosed

    class ClosedPipe(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    t = Table()
    t.add_column("metric")
    t.add_row("accuracy")
    con = writer_mod.table_console(file=ClosedPipe())
    with pytest.raises(PipeClosed):
        con.print(t)


@pytest.mark.parametrize("record", [
    {"path": "a\ud800.jpg", "regions": [{"emotion": "joy\ud800"}]},
    {"path": "a.jpg", "path_bytes": "\ud800", "regions": [{"emotion": "joy\ud800"}]},
    {"path": "caf\udcff.jpg", "path_bytes": "Y2Fm/y5qcGc=", "regions": [], "note": "\ud800"},
])
def test_a_lone_surrogate_where_the_file_is_named_still_gives_one_error_record(record):
    # The error record keeps the fields naming the file; when those held the surrogate, it raised.
    out = orjson.loads(dumps(record))
    assert out["error"]["kind"] == "bad_record" and "regions" not in out
    assert out["path"].startswith(("a", "caf")) and "\ud800" not in out["path"]
    assert out.get("path_bytes") in (None, "Y2Fm/y5qcGc=")
