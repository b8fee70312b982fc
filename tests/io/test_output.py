"""-o FILE through a temporary file; --resume reads what is done, cuts half lines, skips."""

from __future__ import annotations

import os
import stat
import threading

import numpy as np
import orjson
import pytest

from emo.errors import OutputError
from emo.io.output import Done, OutputFile, read_done, record_key, skip_done
from emo.io.records import Item, name_fields


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
    assert len(out.done) == 2 and out.done.by_key == {("a.jpg", None): 1}
    assert out.done.take({"line": 3}) and not out.done.take({"line": 3})
    w.write([{"path": "b.jpg"}])
    out.commit()
    assert path.read_bytes().endswith(b'{"path":"b.jpg"}\n')
    assert len(path.read_bytes().splitlines()) == 3


def test_half_a_last_line_is_cut_off(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"path":"a.jpg","features":{}}\n{"path":"b.jp')
    assert read_done(path).by_key == {("a.jpg", None): 1}
    assert path.read_bytes() == b'{"path":"a.jpg","features":{}}\n'


def test_a_line_that_is_not_a_record_stops_resume(tmp_path):
    path = tmp_path / "out.jsonl"
    before = b'{"path":"a.jpg","features":{}}\nnot json\n{"path":"b.jp'
    path.write_bytes(before)
    with pytest.raises(OutputError, match=r"out.jsonl:2"):
        read_done(path)
    assert path.read_bytes() == before  # refused before anything was cut


def test_missing_file_means_nothing_done(tmp_path):
    assert len(read_done(tmp_path / "none.jsonl")) == 0


def _done(*records):
    done = Done()
    for r in records:
        done.add(r)
    return done


def test_skip_matches_path_and_hash_where_given():
    done = _done({"path": "a.jpg"}, {"path": "b.jpg", "sha256": "11"})
    items = [
        Item(0, {"path": "a.jpg"}),
        Item(1, {"path": "b.jpg", "sha256": "11"}),  # same content: done
        Item(2, {"path": "b.jpg", "sha256": "22"}),  # the file changed since: do it again
        Item(3, {"path": "c.jpg"}),
    ]
    assert [it.index for it in skip_done(items, done)] == [2, 3]


def test_names_that_read_alike_are_matched_by_their_exact_bytes():
    a = name_fields("caf\udcff.jpg")
    b = name_fields("caf\udcfe.jpg")
    assert a["path"] == b["path"] and record_key(a) != record_key(b)
    done = _done({**a, "features": {}})
    items = [Item(0, dict(b)), Item(1, dict(a)), Item(2, {"path": a["path"]})]
    assert [it.index for it in skip_done(items, done)] == [0, 2]  # only the one done is skipped


def test_a_record_with_a_bad_path_bytes_matches_as_a_whole():
    item = Item(0, {"path": "a.jpg", "path_bytes": "not base64"})
    item.fail("bad_record", '"path_bytes" is not base64')
    done = _done(orjson.loads(orjson.dumps(item.record)))
    again = [Item(0, {"path": "a.jpg", "path_bytes": "not base64"}), Item(1, {"path": "a.jpg"})]
    assert [it.index for it in skip_done(again, done)] == [1]


def test_bad_line_records_match_across_runs():
    item = Item(4, {"line": 5})
    item.fail("bad_line", "not valid JSON")
    written = orjson.loads(orjson.dumps(item.record))
    assert record_key(written) == record_key(item.record)


def test_output_to_a_folder_is_an_error(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        OutputFile(tmp_path).open()


def test_an_input_given_twice_is_done_twice_in_order():
    # A run killed after the first "a" wrote one record: b, the second a and c are still to do.
    done = _done({"path": "a", "features": {}})
    items = [Item(i, {"path": p}) for i, p in enumerate(["a", "b", "a", "c"])]
    assert [it.record["path"] for it in skip_done(items, done)] == ["b", "a", "c"]


def test_records_without_a_path_match_their_inputs_once_each():
    # Features alone: the output holds the input's fields (features written back as float32).
    feats = [0.1, 0.2, 1e-8]
    written = {"features": {"deep": [float(v) for v in np.float32(feats)]}, "emotion": {"label": "joy"}}
    done = _done(written)
    items = [Item(0, {"features": {"deep": feats}}), Item(1, {"features": {"deep": feats}}),
             Item(2, {"features": {"deep": [0.3, 0.2, 1e-8]}})]
    assert [it.index for it in skip_done(items, done)] == [1, 2]


def test_empty_records_match_their_error_records_once_each():
    # {} (or a record whose only field is an error, which is dropped) is written back as its error alone.
    item = Item(0, {})
    item.fail("bad_record", 'record 1 has no "path"')
    done = _done(orjson.loads(orjson.dumps(item.record)), {"line": 3, "error": {"kind": "bad_line", "message": "x"}})
    items = [Item(0, {}), Item(1, {}), Item(2, {"line": 3})]
    assert [it.index for it in skip_done(items, done)] == [1]


def test_a_second_resume_run_over_empty_records_adds_nothing(tmp_path):
    from tests.robustness.conftest import emo

    out = tmp_path / "out.jsonl"
    for code in (1, 0):  # the second run finds both inputs done
        run = emo(["classify", "--resume", "-o", str(out)], stdin=b'{}\n{"error": 1}\n')
        assert run.code == code, run.err
    assert len(out.read_bytes().splitlines()) == 2


def test_resume_on_a_file_that_is_not_emo_output_changes_nothing(tmp_path):
    for before in (b"hello world", b"a note\nsecond", b'{"path": "x.jpg"}\n', b"[1, 2]\n"):
        path = tmp_path / "notes.txt"
        path.write_bytes(before)
        with pytest.raises(OutputError, match="not a JSON record of emo output"):
            OutputFile(path, resume=True).open()
        assert path.read_bytes() == before


def test_a_second_resume_run_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    first = OutputFile(path, resume=True)
    first.open().write([{"path": "a", "features": {}}])
    with pytest.raises(OutputError, match="another emo --resume run"):
        OutputFile(path, resume=True).open()
    first.commit()
    again = OutputFile(path, resume=True)
    again.open()  # the lock goes with the first run
    assert len(again.done) == 1
    again.commit()


def test_a_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    out = OutputFile(fifo)
    out.open().write([{"path": "a"}])
    out.commit()
    reader.join(10)
    assert got == [b'{"path":"a"}\n']
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_character_device_is_written_into_not_replaced(tmp_path):
    null = tmp_path / "null"
    null.symlink_to("/dev/null")  # a device of our own cannot be made without root; a link to one will do
    out = OutputFile(null)
    out.open().write([{"path": "a"}])
    out.commit()
    assert null.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "secret.jsonl"
    path.write_bytes(b"old\n")
    path.chmod(0o600)
    out = OutputFile(path)
    out.open().write([{"path": "a"}])
    out.commit()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b'{"path":"a"}\n'


def test_a_symlinked_output_is_written_through(tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_bytes(b"old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    out = OutputFile(link)
    out.open().write([{"path": "a"}])
    out.commit()
    assert link.is_symlink() and real.read_bytes() == b'{"path":"a"}\n'


def test_resume_on_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="regular file"):
        OutputFile(fifo, resume=True).open()


def test_a_link_planted_at_the_temporary_name_is_never_written_through(tmp_path, monkeypatch):
    # The old name was .FILE.PID.tmp, opened through links: a link there made emo write elsewhere.
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    (tmp_path / ".out.jsonl.4242.tmp").symlink_to(victim)
    out = OutputFile(tmp_path / "out.jsonl")
    out.open().write([{"path": "a"}])
    out.commit()
    assert victim.read_bytes() == b"precious\n"
    assert (tmp_path / "out.jsonl").read_bytes() == b'{"path":"a"}\n' and not (tmp_path / "out.jsonl").is_symlink()


def test_an_output_with_a_long_name_can_be_written(tmp_path):
    path = tmp_path / ("a" * 240 + ".jsonl")  # 246 bytes: the temporary file's name must still fit
    out = OutputFile(path)
    out.open().write([{"path": "a"}])
    out.commit()
    assert path.read_bytes() == b'{"path":"a"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_new_output_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        out = OutputFile(tmp_path / "out.jsonl")
        out.open().write([{"path": "a"}])
        out.commit()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o640


def test_refuse_inputs_tells_one_file_by_any_name_and_stdin_redirected_from_it(tmp_path, monkeypatch):
    # `emo features -o list.txt < list.txt` replaced the list of inputs with the records.
    import os
    import sys

    import pytest

    from emo.errors import OutputError
    from emo.io.output import refuse_inputs

    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg\n")
    os.link(lst, tmp_path / "hard.txt")
    (tmp_path / "soft.txt").symlink_to(lst)
    other = tmp_path / "other.txt"
    other.write_text("b.jpg\n")
    refuse_inputs(tmp_path / "new.jsonl", [str(lst)])  # no file yet: nothing to replace
    refuse_inputs(other, [str(lst), "-"])
    for out in (lst, tmp_path / "hard.txt", tmp_path / "soft.txt"):
        with pytest.raises(OutputError, match="is also one of the inputs"):
            refuse_inputs(out, ["list.txt"], root=tmp_path)
    with open(lst, "rb") as f:
        monkeypatch.setattr(sys, "stdin", f)
        with pytest.raises(OutputError, match="is also the file on stdin"):
            refuse_inputs(tmp_path / "hard.txt", ["-"])
        refuse_inputs(other, ["-"])
