"""iter_jsonl(), the reader of emo fit, emo score and --truth: bad lines counted, long ones never held."""

from __future__ import annotations

import orjson

from emo.io import records
from emo.io.jsonl import iter_jsonl, read_records


def test_a_line_past_the_limit_is_one_bad_line_given_by_its_start(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "MAX_LINE_BYTES", 100_000)
    good = {"path": "a.jpg", "label": "joy"}
    path = tmp_path / "truth.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(good) + b"\n" + b"x" * 300_000 + b"\n" + orjson.dumps(good) + b"\n")
    bad = []
    got = list(iter_jsonl([str(path)], on_bad=lambda src, n, line: bad.append((n, line))))
    assert [(n, obj) for _, n, obj in got] == [(1, good), (2, None), (3, good)]
    assert len(bad) == 1 and bad[0][0] == 2 and bad[0][1] == b"x" * 80


def test_an_endless_line_does_not_fill_memory(tmp_path, monkeypatch):
    # /dev/zero as a record file: one line that never ends, skipped in pieces rather than gathered.
    monkeypatch.setattr(records, "MAX_LINE_BYTES", 1 << 20)

    class Endless:
        read = 0

        def read1(self, n: int) -> bytes:
            self.read += n
            return b"\0" * n if self.read < (64 << 20) else b""

        def close(self) -> None:
            pass

    monkeypatch.setattr("emo.io.jsonl._open", lambda src: Endless())
    assert read_records(["zeros"]) == ([], 1)


def _read_within(paths, seconds=10):
    """read_records on another thread: (result or exception, whether it returned in time)."""
    import threading

    got: list = []

    def go():
        try:
            got.append(read_records(paths))
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            got.append(e)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(seconds)
    return (got[0] if got else None), not t.is_alive()


def test_a_record_file_that_is_a_device_or_a_folder_is_refused_at_once(tmp_path):
    import os

    import pytest

    from emo.errors import UsageError

    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    good = tmp_path / "good.jsonl"
    good.write_bytes(b'{"path": "a.jpg"}\n')
    for path, what in (("/dev/zero", "a device"), (folder, "a folder")):
        # Every file is opened before any is read: a good file first changes nothing.
        got, returned = _read_within([str(good), str(path)])
        assert returned, f"{path} hung the reader"  # /dev/zero has no end
        assert isinstance(got, UsageError) and f"it is {what}, not a file of records" in str(got)
    assert read_records([str(good)]) == ([{"path": "a.jpg"}], 0)
    with pytest.raises(UsageError, match="cannot read"):
        read_records([str(tmp_path / "missing.jsonl")])


def test_a_pipe_given_as_a_record_file_is_read_and_a_fifo_without_a_writer_is_empty(tmp_path):
    """emo score <(emo classify ...) reads the pipe to its end; a FIFO nobody writes to does not
    hold the run waiting for a writer."""
    import os

    r, w = os.pipe()
    os.write(w, b'{"path": "a.jpg"}\nnot json\n{"path": "b.jpg"}\n')
    os.close(w)
    try:
        got, returned = _read_within([f"/proc/self/fd/{r}"])
    finally:
        os.close(r)
    assert returned and got == ([{"path": "a.jpg"}, {"path": "b.jpg"}], 1)
    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    got, returned = _read_within([str(fifo)])
    assert returned, "a FIFO without a writer hung the reader"
    assert got == ([], 0)
