"""Bad input lines and awkward paths on stdin: each gets its record, in order, the run goes on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import emo.io.decode as decode_mod
from tests.conftest import make_image
from tests.robustness.conftest import TINY, check_contract, emo


@pytest.fixture
def good(tmp_path) -> str:
    return str(make_image(tmp_path / "good.png", color=(30, 160, 90)))


def lines(*parts: bytes) -> bytes:
    return b"".join(p + b"\n" for p in parts)


def test_invalid_utf8_line(tiny, good):
    run = emo(TINY, lines(good.encode(), b"caf\xe9\xff.jpg", good.encode()))
    recs = check_contract(run, [(good, None), (None, "bad_line"), (good, None)])
    assert recs[1]["line"] == 2


def test_invalid_utf8_file_name_that_exists_is_read(tiny, tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.png"
    make_image(Path(os.fsdecode(raw)))
    run = emo(TINY, lines(raw))
    check_contract(run, [(str(tmp_path) + "/caf\ufffd.png", None)])


def test_10_mb_line(tiny, good):
    run = emo(TINY, lines(good.encode(), b"x" * (10 << 20), good.encode()))
    recs = check_contract(run, [(good, None), (None, "bad_line"), (good, None)])
    assert len(recs[1]["error"]["message"]) < 300  # the message does not echo 10 MB back


def test_10_mb_json_record_passes_through(tiny, good):
    big = b'{"path": "%s", "note": "%s"}' % (good.encode(), b"y" * (10 << 20))
    run = emo(TINY, lines(big))
    recs = check_contract(run, [(good, None)])
    assert len(recs[0]["note"]) == 10 << 20


@pytest.mark.parametrize(
    "line, kind",
    [
        (b"[1, 2]", "bad_record"),  # JSON, but an array
        (b'"just a string"', "bad_record"),
        (b'{"path": 5}', "bad_record"),  # path not a string
        (b'{"path": null}', "bad_record"),
        (b'{"file": "a.jpg"}', "bad_record"),  # no path
        (b'{"path": "a.jpg"', "bad_line"),  # broken JSON
        (b'{"path": "a\\u0000b.jpg"}', "bad_path"),  # NUL byte in the path
    ],
    ids=["json_array", "json_string", "path_not_string", "path_null", "no_path", "broken_json", "nul_in_path"],
)
def test_json_that_is_not_a_usable_record(tiny, good, line, kind):
    run = emo(TINY, lines(good.encode(), line, good.encode()))
    recs = run.records
    assert [r.get("error", {}).get("kind") for r in recs] == [None, kind, None], run.err
    assert run.code == 1 and "Traceback" not in run.err


def test_paths_with_spaces_and_non_ascii(tiny, tmp_path):
    a = str(make_image(tmp_path / "with space .png"))
    b = str(make_image(tmp_path / "Ünïcødé ☺ 写真.png"))
    run = emo(TINY, lines(a.encode(), b.encode()))
    check_contract(run, [(a, None), (b, None)])


def test_newline_in_a_path_with_null(tiny, tmp_path, good):
    odd = str(make_image(tmp_path / "two\nlines.png"))
    run = emo(TINY + ["-0"], odd.encode() + b"\0" + good.encode() + b"\0")
    check_contract(run, [(odd, None), (good, None)])


def test_directory_fifo_and_symlink_loop(tiny, tmp_path, good):
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)  # nobody writes to it: opening it to read would block forever
    loop = tmp_path / "loop.jpg"
    os.symlink(loop, loop)
    paths = [str(folder), good, str(fifo), good, str(loop), good]
    run = emo(TINY + paths)
    check_contract(run, [(str(folder), "is_directory"), (good, None), (str(fifo), "not_a_file"), (good, None),
                         (str(loop), "bad_path"), (good, None)])


def test_file_deleted_between_listing_and_reading(tiny, tmp_path, good, monkeypatch):
    """One file goes after the listing, one in the window between stat and open."""
    listed = make_image(tmp_path / "listed.png")
    raced = make_image(tmp_path / "raced.png")
    real_check = decode_mod._check_file

    def check_then_delete(path, max_bytes=0):
        size = real_check(path, max_bytes)
        if path == raced:
            raced.unlink()
        return size

    monkeypatch.setattr(decode_mod, "_check_file", check_then_delete)
    data = lines(str(listed).encode(), good.encode(), str(raced).encode(), good.encode())
    listed.unlink()
    run = emo(TINY, data)
    check_contract(run, [(str(listed), "not_found"), (good, None), (str(raced), "not_found"), (good, None)])


def test_blank_lines_are_skipped_and_crlf_is_stripped(tiny, good):
    run = emo(TINY, b"\n" + good.encode() + b"\r\n\n  \n" + good.encode())
    check_contract(run, [(good, None), (good, None)])
