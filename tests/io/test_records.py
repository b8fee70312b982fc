"""Inputs to Items: arguments, stdin lines, JSON records, -0, -r, --root, odd bytes."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from emo.io.records import _split, read_inputs


def _read(data: bytes, **kw):
    return list(read_inputs([], io.BytesIO(data), **kw))


@given(pieces=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       chunk=st.integers(1, 64))
def test_split_gives_back_every_piece_whatever_the_chunk_size(pieces, chunk):
    data = b"".join(p + b"\n" for p in pieces)
    assert list(_split(io.BytesIO(data), b"\n", chunk)) == pieces


def test_split_keeps_a_last_piece_without_separator():
    assert list(_split(io.BytesIO(b"a\nb"), b"\n", 1)) == [b"a", b"b"]


def test_json_fields_pass_through_and_features_are_taken(tmp_path):
    (item,) = _read(b'{"path": "x.jpg", "label": "joy", "features": {"color": [1.0, 2.0]}}\n', root=tmp_path)
    assert item.ok and item.path == tmp_path / "x.jpg"
    assert item.record["label"] == "joy" and item.features == {"color": [1.0, 2.0]}


def test_an_upstream_error_is_not_inherited():
    (item,) = _read(b'{"path": "x.jpg", "error": {"kind": "not_found", "message": "m"}}\n')
    assert item.ok and "error" not in item.record


def test_recursive_walk_is_sorted_and_takes_image_files_only(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", "sub/c.webp"):
        p = tmp_path / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    items = list(read_inputs([str(tmp_path)], None, recursive=True))
    assert [it.record["path"] for it in items] == [str(tmp_path / n) for n in ("a.JPG", "b.png", "sub/c.webp")]
    assert [it.index for it in items] == [0, 1, 2]


def test_null_separated_paths_keep_newlines_and_spaces():
    items = _read(b"a b.jpg\0two\nlines.jpg\0", null=True)
    assert [it.record["path"] for it in items] == ["a b.jpg", "two\nlines.jpg"]


def test_non_utf8_argument_is_written_as_replacement_characters():
    (item,) = read_inputs(["caf\udce9.jpg"], None)
    assert item.record["path"] == "caf\ufffd.jpg" and str(item.path) == "caf\udce9.jpg"
