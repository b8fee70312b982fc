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


def test_split_cuts_a_piece_past_the_limit_without_gathering_it():
    import io as _io

    from emo.io.records import _LongPiece, _split

    data = b"a\n" + b"x" * 1000 + b"\nb\n"
    pieces = list(_split(_io.BytesIO(data), b"\n", chunk=64, limit=100))
    assert pieces[0] == b"a" and pieces[2] == b"b"
    assert isinstance(pieces[1], _LongPiece) and pieces[1].total == 1000 and len(pieces[1]) <= 80


def test_bom_only_before_the_first_input():
    import io as _io

    from emo.io.records import read_inputs

    items = list(read_inputs([], _io.BytesIO(b"\xef\xbb\xbfa.jpg\n\xef\xbb\xbfb.jpg\n")))
    assert [it.record["path"] for it in items] == ["a.jpg", "\ufeffb.jpg"]


def test_path_lookups_that_the_system_refuses_become_errors_not_exceptions(tmp_path):
    from emo.io.records import read_inputs

    long = "c" * 300
    items = list(read_inputs([long, "a\0b", str(tmp_path)], None, recursive=True))
    assert [it.error.kind if it.error else None for it in items] == ["bad_path", "bad_path"]
    assert [it.index for it in items] == [0, 1]  # the empty folder adds none
