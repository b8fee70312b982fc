"""Hostile paths and lines on every input form (argument, stdin line, JSON record, -0, -r).

Every case holds the whole contract: one record per input, in order, the right error kind, exit 1,
no traceback, and the inputs after the bad one still done.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

import emo.io.records as records_mod
from tests.conftest import make_image
from tests.robustness.conftest import TINY, check_contract, emo

LONG = "c" * 300  # one path component longer than any file system allows (255 bytes)


@pytest.fixture
def good(tmp_path) -> str:
    return str(make_image(tmp_path / "good.png", color=(30, 160, 90)))


def lines(*parts: bytes) -> bytes:
    return b"".join(p + b"\n" for p in parts)


# --- OSError from a path operation, one form at a time --------------------------------------------

@pytest.mark.parametrize("name", [LONG, "[" + LONG, "./" + LONG + "/x.jpg", '"' + LONG])
def test_name_too_long_on_a_stdin_line(tiny, good, name):
    run = emo(TINY, lines(good.encode(), name.encode(), good.encode()))
    check_contract(run, [(good, None), (name, "bad_path"), (good, None)])


def test_name_too_long_as_an_argument_with_and_without_r(tiny, good):
    for extra in ([], ["-r"]):
        run = emo(TINY + extra + [good, LONG, good])
        check_contract(run, [(good, None), (LONG, "bad_path"), (good, None)])


def test_name_too_long_in_a_json_record(tiny, good):
    rec = orjson.dumps({"path": LONG, "id": 7})
    run = emo(TINY, lines(good.encode(), rec, good.encode()))
    recs = check_contract(run, [(good, None), (LONG, "bad_path"), (good, None)])
    assert recs[1]["id"] == 7  # the record's own fields are kept


def test_name_too_long_with_null_and_with_null_r(tiny, good):
    for extra in (["-0"], ["-0", "-r"]):
        run = emo(TINY + extra, b"\0".join([good.encode(), LONG.encode(), good.encode()]) + b"\0")
        check_contract(run, [(good, None), (LONG, "bad_path"), (good, None)])


def test_name_too_long_with_r_on_stdin(tiny, good):
    run = emo(TINY + ["-r"], lines(good.encode(), ("[" + LONG).encode(), good.encode()))
    check_contract(run, [(good, None), ("[" + LONG, "bad_path"), (good, None)])


def test_symlink_loop_with_r_as_argument_and_on_stdin(tiny, tmp_path, good):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    run = emo(TINY + ["-r", good, str(loop), good])
    check_contract(run, [(good, None), (str(loop), "bad_path"), (good, None)])
    run = emo(TINY + ["-r"], lines(good.encode(), str(loop).encode(), good.encode()))
    check_contract(run, [(good, None), (str(loop), "bad_path"), (good, None)])


def test_a_file_used_as_a_folder(tiny, tmp_path, good):
    odd = good + "/inside.png"  # ENOTDIR
    for extra in ([], ["-r"]):
        run = emo(TINY + extra + [good, odd, good])
        check_contract(run, [(good, None), (odd, "not_found"), (good, None)])


def test_nul_byte_in_a_plain_line_and_in_a_json_path(tiny, good):
    run = emo(TINY, lines(good.encode(), b"a\0b.png", b"[\0", orjson.dumps({"path": "x\0y"}), good.encode()))
    recs = run.records
    assert [r.get("error", {}).get("kind") for r in recs] == [None, "bad_path", "bad_path", "bad_path", None]
    assert run.code == 1 and "Traceback" not in run.err


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder")
def test_a_folder_that_cannot_be_listed_under_r(tiny, tmp_path, good):
    top = tmp_path / "top"
    (top / "a").mkdir(parents=True)
    (top / "b").mkdir()
    make_image(top / "a" / "1.png")
    make_image(top / "c.png")
    (top / "b").chmod(0)
    try:
        run = emo(TINY + ["-r", str(top)])
    finally:
        (top / "b").chmod(0o755)
    check_contract(run, [(str(top / "a" / "1.png"), None), (str(top / "b"), "permission_denied"),
                         (str(top / "c.png"), None)])


def test_an_unlistable_folder_under_r_as_root_is_reported_too(tiny, tmp_path, good, monkeypatch):
    """The walk's listing errors (any user) become records where the walk meets them."""
    top = tmp_path / "top"
    (top / "a").mkdir(parents=True)
    make_image(top / "a" / "1.png")
    real = os.scandir

    def failing(path="."):
        if Path(path) == top / "a":
            raise OSError(5, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", failing)
    run = emo(TINY + ["-r", str(top), good])
    check_contract(run, [(str(top / "a"), "read_error"), (good, None)])


# --- line-level hostility ---------------------------------------------------------------------------

def test_a_bom_before_the_first_line_is_dropped(tiny, good):
    rec = orjson.dumps({"path": good, "id": 1})
    run = emo(TINY, b"\xef\xbb\xbf" + lines(rec, good.encode()))
    recs = check_contract(run, [(good, None), (good, None)])
    assert recs[0]["id"] == 1
    run = emo(TINY + ["-0"], b"\xef\xbb\xbf" + good.encode() + b"\0")
    check_contract(run, [(good, None)])


def test_a_bom_on_a_later_line_is_part_of_the_name(tiny, good):
    run = emo(TINY, lines(good.encode(), b"\xef\xbb\xbf" + good.encode()))
    check_contract(run, [(good, None), ("\ufeff" + good, "not_found")])


@pytest.mark.parametrize("line, kind", [
    (b'{"path": "a.png", "path": "b.png"}', "bad_record"),  # which one? neither
    (b'{"a": ' * 300 + b"1" + b"}" * 300, "bad_record"),  # deeper than JSON output can hold
    (b'{"a": ' * 2000 + b"1" + b"}" * 2000, "bad_line"),  # deeper than the parser takes
    (b'{"path": "a.png", "x": 1e400}', "bad_line"),  # infinity is no JSON number
    (b'{"path": "a.png", "x": NaN}', "bad_line"),
    (b"[" * 300 + b"]" * 300, "bad_record"),
    (b"12345", "not_found"),  # a number is a file name like any other
    (b"null", "not_found"),
    (b'{"path": "\xff\xfe"}', "bad_line"),  # invalid UTF-8 inside JSON
], ids=["duplicate_path", "nested_300", "nested_2000", "infinity", "nan", "array_300", "number", "null",
        "bad_utf8_in_json"])
def test_line_hostility_gets_its_own_record(tiny, good, line, kind):
    run = emo(TINY, lines(good.encode(), line, good.encode()))
    recs = run.records
    assert [r.get("error", {}).get("kind") for r in recs] == [None, kind, None], run.err
    assert run.code == 1 and "Traceback" not in run.err
    assert all(len(ln) < 20_000 for ln in run.out.splitlines()[1:2])  # the error does not echo the line


def test_a_line_past_the_limit_is_skipped_without_gathering_it(tiny, good, monkeypatch):
    monkeypatch.setattr(records_mod, "MAX_LINE_BYTES", 1 << 16)
    huge = b'{"path": "%s", "pad": "%s"}' % (good.encode(), b"x" * (1 << 18))
    run = emo(TINY, lines(good.encode(), huge, good.encode()))
    recs = check_contract(run, [(good, None), (None, "bad_line"), (good, None)])
    assert "over" in recs[1]["error"]["message"] and len(recs[1]["error"]["message"]) < 300


def test_a_path_with_line_separators_is_one_line_of_output(tiny, tmp_path):
    odd = str(make_image(tmp_path / "a\u2028b\u2029c\x85d.png"))
    run = emo(TINY, lines(orjson.dumps({"path": odd})))
    check_contract(run, [(odd, None)])
    text = run.out.decode("utf-8")
    assert len(text.splitlines()) == 1 and "\\u2028" in text and "\\u2029" in text and "\\u0085" in text


def test_an_upstream_error_field_is_not_inherited(tiny, good):
    rec = orjson.dumps({"path": good, "error": {"kind": "not_found", "message": "forged"}})
    run = emo(TINY, lines(rec))
    check_contract(run, [(good, None)])


def test_fifo_socket_and_device_as_inputs(tiny, tmp_path, good):
    import socket

    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    sock_path = tmp_path / "s.png"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        run = emo(TINY + [str(fifo), good, str(sock_path), "/dev/zero", good])
    finally:
        sock.close()
    check_contract(run, [(str(fifo), "not_a_file"), (good, None), (str(sock_path), "not_a_file"),
                         ("/dev/zero", "not_a_file"), (good, None)])
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_stdin_that_fails_mid_read_keeps_what_came_before(good):
    """An I/O error on stdin ends the run with one line, after the inputs read before it."""
    import io

    from emo.errors import UsageError
    from emo.io.records import read_inputs

    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = False

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            if self.sent:
                raise OSError(5, "Input/output error")
            data = (good + "\n").encode()
            b[: len(data)] = data
            self.sent = True
            return len(data)

    got = []
    with pytest.raises(UsageError, match="cannot read stdin: Input/output error"):
        for item in read_inputs([], io.BufferedReader(Failing())):
            got.append(item.record["path"])
    assert got == [good]


def test_a_bad_name_holding_line_breaks_or_escapes_is_one_stderr_line(tiny, tmp_path):
    # -0 names may hold anything but NUL: each bad one is still reported on one line of its own.
    names = ["x\ny.png", "p\rq.png", "e\x1b[2Jf.png", "s\u2028t.png", "n\x85o.png"]
    stdin = b"".join(os.fsencode(str(tmp_path / n)) + b"\0" for n in names)
    run = emo(TINY + ["-0"], stdin=stdin)
    check_contract(run, [(str(tmp_path / n), "not_found") for n in names])
    lines = run.err.splitlines()
    assert len(lines) == len(names) and all(ln.startswith("emo: ") for ln in lines), run.err
    assert "\x1b" not in run.err and "\r" not in run.err
    assert lines[0] == f"emo: {tmp_path}/x\\ny.png: not_found: no such file"
