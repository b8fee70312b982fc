"""-o FILE through a temporary file; --resume reads what is done, cuts half lines, skips."""

from __future__ import annotations

import orjson
import pytest

from emo.errors import OutputError
from emo.io.output import OutputFile, read_done, record_key, skip_done
from emo.io.records import Item


def test_file_appears_only_when_the_run_ends(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"path": "old"}\n')
    out = OutputFile(path)
    w = out.open()
    w.write([{"path": "new"}])
    assert path.read_bytes() == b'{"path": "old"}\n'  # readers still see the old, whole file
    out.commit()
    assert path.read_bytes() == b'{"path":"new"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_abort_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    out = OutputFile(path)
    out.open().write([{"path": "new"}])
    out.abort()
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_resume_appends_and_knows_what_is_done(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"path":"a.jpg","features":{}}\n{"line":3,"error":{"kind":"bad_line","message":"m"}}\n')
    out = OutputFile(path, resume=True)
    w = out.open()
    assert out.done == {("a.jpg", None), record_key({"line": 3})}
    w.write([{"path": "b.jpg"}])
    out.commit()
    assert path.read_bytes().endswith(b'{"path":"b.jpg"}\n')
    assert len(path.read_bytes().splitlines()) == 3


def test_half_a_last_line_is_cut_off(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"path":"a.jpg"}\n{"path":"b.jp')
    assert read_done(path) == {("a.jpg", None)}
    assert path.read_bytes() == b'{"path":"a.jpg"}\n'


def test_a_line_that_is_not_a_record_stops_resume(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"path":"a.jpg"}\nnot json\n{"path":"b.jpg"}\n')
    with pytest.raises(OutputError, match=r"out.jsonl:2"):
        read_done(path)


def test_missing_file_means_nothing_done(tmp_path):
    assert read_done(tmp_path / "none.jsonl") == set()


def test_skip_matches_path_and_hash_where_given():
    done = {record_key({"path": "a.jpg"}), record_key({"path": "b.jpg", "sha256": "11"})}
    items = [
        Item(0, {"path": "a.jpg"}),
        Item(1, {"path": "b.jpg", "sha256": "11"}),  # same content: done
        Item(2, {"path": "b.jpg", "sha256": "22"}),  # the file changed since: do it again
        Item(3, {"path": "c.jpg"}),
    ]
    assert [it.index for it in skip_done(items, done)] == [2, 3]


def test_bad_line_records_match_across_runs():
    item = Item(4, {"line": 5})
    item.fail("bad_line", "not valid JSON")
    written = orjson.loads(orjson.dumps(item.record))
    assert record_key(written) == record_key(item.record)


def test_output_to_a_folder_is_an_error(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        OutputFile(tmp_path).open()
