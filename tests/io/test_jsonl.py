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
