"""Inputs to Items: arguments, stdin lines, JSON records, -0, -r, --root, odd bytes."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emo.io.records import Item, split_pieces, name_fields, name_from_path_bytes, read_inputs, record_name


def _read(data: bytes, **kw):
    return list(read_inputs([], io.BytesIO(data), **kw))


@given(pieces=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       chunk=st.integers(1, 64))
def test_split_gives_back_every_piece_whatever_the_chunk_size(pieces, chunk):
    data = b"".join(p + b"\n" for p in pieces)
    assert list(split_pieces(io.BytesIO(data), b"\n", chunk)) == pieces


def test_split_keeps_a_last_piece_without_separator():
    assert list(split_pieces(io.BytesIO(b"a\nb"), b"\n", 1)) == [b"a", b"b"]


def test_json_fields_pass_through_and_features_are_taken(tmp_path):
    (item,) = _read(b'{"path": "x.jpg", "label": "joy", "features": {"color": [1.0, 2.0]}}\n', root=tmp_path)
    assert item.ok and item.path == tmp_path / "x.jpg"
    assert item.record["label"] == "joy" and item.features == {"color": [1.0, 2.0]}


def test_carried_values_that_are_not_lists_are_taken_too():
    # Taken as given: a group the run uses is checked by its stage, not quietly recomputed over.
    line = b'{"path": "x.jpg", "features": {"color": {"a": 1}, "deep": 3, "lbp": null, "object_top": ["cat"]}}\n'
    (item,) = _read(line)
    assert item.ok and item.features == {"color": {"a": 1}, "deep": 3, "lbp": None, "object_top": ["cat"]}
    (bare,) = _read(b'{"features": {"color": "x"}}\n')  # no path: the check decides, not a missing path
    assert bare.ok and bare.path is None and bare.features == {"color": "x"}
    (none,) = _read(b'{"features": {}}\n')
    assert none.error.kind == "bad_record" and 'no "path"' in none.error.message


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


def test_a_folder_without_images_is_one_error_record_in_every_input_form(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    for name in ("empty", "notes"):
        folder = str(tmp_path / name)
        forms = {
            "args": list(read_inputs([folder, folder], None, recursive=True)),
            "lines": _read(f"{folder}\n{folder}\n".encode(), recursive=True),
            "null": _read(f"{folder}\0{folder}\0".encode(), null=True, recursive=True),
        }
        for form, items in forms.items():
            assert [it.index for it in items] == [0, 1], form
            assert all(it.error.kind == "no_images" and ".jpg" in it.error.message for it in items), form
            assert [it.record["path"] for it in items] == [folder, folder], form


def test_a_json_record_naming_a_folder_gives_its_fields_to_every_picture(tmp_path):
    for name in ("a.jpg", "sub/b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    line = b'{"path": "%s", "label": "joy", "album": {"y": 2024}}\n' % str(tmp_path).encode()
    lines = line + b'{"path": "%s", "album": "none"}\nafter.jpg\n' % str(tmp_path / "empty").encode()
    items = _read(lines, recursive=True)
    assert [it.record for it in items[:2]] == [
        {"path": str(tmp_path / n), "label": "joy", "album": {"y": 2024}} for n in ("a.jpg", "sub/b.png")]
    assert items[2].error.kind == "no_images" and items[2].record["album"] == "none"
    assert items[3].ok and items[3].record == {"path": "after.jpg"}
    assert [it.index for it in items] == [0, 1, 2, 3]


@pytest.mark.parametrize("key", ["features", "emotion", "va", "regions", "sha256", "xmp", "sentiment"])
def test_a_json_record_naming_a_folder_cannot_give_one_pictures_results_to_all(tmp_path, key):
    (tmp_path / "a.jpg").write_bytes(b"x")
    line = b'{"path": "%s", "%s": {"color": [1.0]}}\nnext.jpg\n' % (str(tmp_path).encode(), key.encode())
    bad, after = _read(line, recursive=True)
    assert bad.error.kind == "bad_record" and f'"{key}"' in bad.error.message
    assert bad.record["path"] == str(tmp_path) and after.ok and after.index == 1


def test_null_separated_paths_keep_newlines_and_spaces():
    items = _read(b"a b.jpg\0two\nlines.jpg\0", null=True)
    assert [it.record["path"] for it in items] == ["a b.jpg", "two\nlines.jpg"]


def test_non_utf8_argument_is_written_readably_and_exactly():
    (item,) = read_inputs(["caf\udce9.jpg"], None)
    assert item.record == {"path": "caf\ufffd.jpg", "path_bytes": base64.b64encode(b"caf\xe9.jpg").decode()}
    assert str(item.path) == "caf\udce9.jpg"


def test_names_that_read_alike_keep_their_own_bytes_in_every_input_form(tmp_path):
    names = [os.fsencode(tmp_path) + b"/caf" + bad + b".png" for bad in (b"\xff", b"\xfe")]
    try:
        for raw in names:
            Path(os.fsdecode(raw)).write_bytes(b"x")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    forms = {
        "args": list(read_inputs([os.fsdecode(n) for n in names], None)),
        "lines": _read(b"".join(n + b"\n" for n in names)),
        "null": _read(b"".join(n + b"\0" for n in names), null=True),
        "walk": list(read_inputs([str(tmp_path)], None, recursive=True)),
    }
    for form, items in forms.items():
        got = sorted(base64.b64decode(it.record["path_bytes"]) for it in items)
        assert got == sorted(names), form
        assert {it.record["path"] for it in items} == {str(tmp_path) + "/caf\ufffd.png"}, form
        assert sorted(os.fsencode(it.path) for it in items) == sorted(names), form
        assert [record_name(it.record) for it in items] == [str(it.path) for it in items], form


def test_utf8_names_get_no_exact_twin():
    assert name_fields("café.jpg") == {"path": "café.jpg"}
    (item,) = _read("café.jpg\n".encode())
    assert item.record == {"path": "café.jpg"}


def test_path_bytes_wins_over_path_and_fills_a_missing_path(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xff.png"
    b64 = base64.b64encode(raw).decode()
    line = orjson.dumps({"path": "somewhere/else.png", "path_bytes": b64, "label": "joy"})
    (item,) = _read(line + b"\n")
    assert item.ok and os.fsencode(item.path) == raw and item.record["path"] == "somewhere/else.png"
    (item,) = _read(orjson.dumps({"path_bytes": b64}) + b"\n")
    assert item.ok and item.record["path"] == str(tmp_path) + "/caf\ufffd.png"
    rel = base64.b64encode(b"sub/caf\xff.png").decode()
    (item,) = _read(orjson.dumps({"path_bytes": rel}) + b"\n", root=tmp_path)
    assert os.fsencode(item.path) == os.fsencode(tmp_path) + b"/sub/caf\xff.png"  # --root applies as to path


def test_a_null_path_bytes_is_no_path_bytes():
    # jq's {path, path_bytes} writes null for a name that needs none.
    (item,) = _read(b'{"path": "a.jpg", "path_bytes": null}\n')
    assert item.ok and str(item.path) == "a.jpg"
    assert record_name({"path": "a.jpg", "path_bytes": None}) == "a.jpg"


@pytest.mark.parametrize("value, why", [
    (5, "not a string"), (["YQ=="], "not a string"), ("not base64!", "not base64"), ("YQ", "not base64"),
    ("Yf==", "not base64"), ("YQ==\n", "not base64"), ("-_8=", "not base64"), ("", "empty"),
    (base64.b64encode(b"a\0b").decode(), "NUL"), (base64.b64encode(b"x" * 4097).decode(), "too long"),
    ("QUFB" * 100_000, "too long"),
])
def test_a_hostile_path_bytes_is_that_records_bad_record(value, why):
    lines = b'{"path": "a.jpg"}\n' + orjson.dumps({"path": "b.jpg", "path_bytes": value}) + b'\n{"path": "c.jpg"}\n'
    items = _read(lines)
    assert [it.ok for it in items] == [True, False, True]
    assert items[1].error.kind == "bad_record"
    assert why in items[1].error.message and "path_bytes" in items[1].error.message
    assert items[1].path is None and record_name(items[1].record) is None
    with pytest.raises(ValueError, match=why):
        name_from_path_bytes(value)


def test_an_empty_path_is_a_bad_path_not_the_working_folder(tmp_path):
    # Path("") is "."; with --root it would be the root: either way a directory, never what was meant.
    for root in (None, tmp_path):
        items = _read(b'{"path": "a.jpg"}\n{"path": ""}\n{"path": "c.jpg"}\n', root=root)
        assert [it.ok for it in items] == [True, False, True]
        assert items[1].error.kind == "bad_path" and '"path" is empty' in items[1].error.message
        assert items[1].path is None
        # it names no file anywhere a record's name is asked for (score joins, resume, messages)
        assert record_name(items[1].record) is None and items[1].label == "<input 2>"


def test_path_bytes_given_twice_is_a_bad_record():
    (item,) = _read(b'{"path": "a.jpg", "path_bytes": "YQ==", "path_bytes": "Yg=="}\n')
    assert item.error.kind == "bad_record" and '"path_bytes" more than once' in item.error.message


def test_a_message_quoting_a_name_that_is_not_utf8_is_still_json_and_tells_names_apart():
    item = Item(0, name_fields("a\udcff.jpg"))
    item.fail("read_error", "drawing not written to a\udcff.jpg.jpg: no space")
    written = orjson.loads(orjson.dumps(item.record))
    assert written["error"]["message"] == "drawing not written to a\\xff.jpg.jpg: no space"
    assert item.label == "a\\xff.jpg" and Item(1, name_fields("a\udcfe.jpg")).label == "a\\xfe.jpg"
    assert Item(2, {"path": "a.jpg", "path_bytes": "%%%"}).label == "a.jpg"


def test_split_cuts_a_piece_past_the_limit_without_gathering_it():
    import io as _io

    from emo.io.records import LongPiece, split_pieces

    data = b"a\n" + b"x" * 1000 + b"\nb\n"
    pieces = list(split_pieces(_io.BytesIO(data), b"\n", chunk=64, limit=100))
    assert pieces[0] == b"a" and pieces[2] == b"b"
    assert isinstance(pieces[1], LongPiece) and pieces[1].total == 1000 and len(pieces[1]) <= 80


def test_bom_only_before_the_first_input():
    import io as _io

    from emo.io.records import read_inputs

    items = list(read_inputs([], _io.BytesIO(b"\xef\xbb\xbfa.jpg\n\xef\xbb\xbfb.jpg\n")))
    assert [it.record["path"] for it in items] == ["a.jpg", "\ufeffb.jpg"]


def test_path_lookups_that_the_system_refuses_become_errors_not_exceptions(tmp_path):
    from emo.io.records import read_inputs

    long = "c" * 300
    items = list(read_inputs([long, "a\0b", str(tmp_path)], None, recursive=True))
    assert [it.error.kind if it.error else None for it in items] == ["bad_path", "bad_path", "no_images"]
    assert [it.index for it in items] == [0, 1, 2]  # the empty folder is a record of its own


def test_one_line_escapes_what_would_break_or_steer_a_terminal_line():
    from emo.io.records import one_line

    assert one_line("a\nb\rc\td\x1b[0m\x7f\x85\u2028é") == "a\\nb\\rc\\td\\x1b[0m\\x7f\\x85\\u2028é"
    item = Item(0, {"path": "x\ny.jpg"})
    item.fail("not_found", "no such file")
    assert item.error_line(" (skipped)") == "emo: x\\ny.jpg: not_found: no such file (skipped)"
