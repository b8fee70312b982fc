"""emo.assembly.runner: inputs counted for progress, closed standard streams, the filters' run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from emo.assembly.runner import RunOptions, count_inputs, run_filter
from emo.assembly.features_recipe import FeaturesOptions
from emo.assembly.filters import settings_from
from emo.errors import UsageError
from tests.conftest import make_image

REPO = Path(__file__).resolve().parents[2]


def test_inputs_are_counted_from_arguments_and_folders(tmp_path):
    (tmp_path / "a").mkdir()
    for i in range(3):
        make_image(tmp_path / "a" / f"{i}.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    assert count_inputs(RunOptions(paths=("x.jpg", "y.jpg")), None) == 2
    assert count_inputs(RunOptions(paths=("a", "b.jpg"), recursive=True, root=tmp_path), None) == 4


def test_a_regular_file_on_stdin_is_counted_without_moving_the_run_along(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"a.jpg\n\n  \nb.jpg\n{\"path\": \"c.jpg\"}\n")
    with open(lst, "rb") as f:
        assert count_inputs(RunOptions(), f) == 3  # blank lines carry no input
        assert f.readline() == b"a.jpg\n"  # the run's own reading position is untouched
    lst.write_bytes(b"a.jpg\0b c.jpg\0\0")
    with open(lst, "rb") as f:
        assert count_inputs(RunOptions(null=True), f) == 2
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe, os.fdopen(w, "wb"):
        assert count_inputs(RunOptions(), pipe) is None  # a pipe is not counted: it may never end


def test_stdout_or_stdin_closed_is_a_usage_error(monkeypatch, tmp_path):
    img = str(make_image(tmp_path / "a.png"))
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(UsageError, match="stdout is closed"):
        run_filter("features", FeaturesOptions(groups=("color",)), settings_from({}), RunOptions(paths=(img,)))
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(UsageError, match="stdin is closed"):
        run_filter("features", FeaturesOptions(groups=("color",)), settings_from({}), RunOptions(output=tmp_path / "o"))


def _emo(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "emo", *args], env=env, timeout=120, **kw)


def test_closed_or_broken_stderr_still_writes_every_record(tmp_path):
    imgs = [str(make_image(tmp_path / f"{i}.png", color=(20 * i, 90, 9))) for i in range(3)]
    args = ["features", "--set", "color", imgs[0], str(tmp_path / "missing.png"), imgs[1], imgs[2]]
    closed = _emo(args, stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2))
    r, w = os.pipe()
    os.close(r)  # a reader of stderr that quit before the run started
    try:
        broken = _emo(args, stdout=subprocess.PIPE, stderr=w)
    finally:
        os.close(w)
    for run in (closed, broken):
        recs = [orjson.loads(x) for x in run.stdout.splitlines()]
        assert [("error" in x) for x in recs] == [False, True, False, False]
        assert run.returncode == 1  # one input failed; the lost stderr is not an error of the run


def test_closed_stdin_and_stdout_are_one_line_and_exit_2(tmp_path):
    img = str(make_image(tmp_path / "a.png"))
    for args, kw in ((["features", "--set", "color"], {"stdin": subprocess.DEVNULL, "preexec_fn": lambda: os.close(0)}),
                     (["features", "--set", "color", img], {"preexec_fn": lambda: os.close(1)}),
                     (["score"], {"preexec_fn": lambda: os.close(0)}),
                     (["fit", "-o", str(tmp_path / "h.head")], {"preexec_fn": lambda: os.close(0)})):
        run = _emo(args, stderr=subprocess.PIPE, **kw)
        err = run.stderr.decode()
        assert run.returncode == 2, (args, err)
        assert "Traceback" not in err and err.count("\n") == 1 and "closed" in err


class _Unwritable:
    """A stage that leaves a value JSON cannot hold in the second picture's record."""

    views = ()

    def wants(self, item):
        return item.index == 1

    def run(self, items):
        for it in items:
            it.record["note"] = "half\ud800"


@pytest.mark.parametrize("fail_fast", [False, True])
def test_a_record_the_writer_must_replace_counts_as_failed(tmp_path, monkeypatch, capsys, fail_fast):
    import emo.assembly.runner as runner

    real = runner.filter_stages
    monkeypatch.setattr(runner, "filter_stages", lambda *a, **k: [*real(*a, **k), _Unwritable()])
    imgs = [str(make_image(tmp_path / f"{i}.png")) for i in range(3)]
    out = tmp_path / "out.jsonl"
    code = run_filter("features", FeaturesOptions(groups=("color",)), settings_from({}),
                      RunOptions(paths=tuple(imgs), output=out, fail_fast=fail_fast))
    assert code == 1  # not 0: one input has an error record instead of its features
    recs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r.get("error", {}).get("kind") for r in recs] == ([None, "bad_record"] if fail_fast
                                                              else [None, "bad_record", None])
    err = capsys.readouterr().err
    assert f"emo: {imgs[1]}: bad_record: cannot be written as JSON" in err


def _pictures(tmp_path):
    imgs = [make_image(tmp_path / f"{n}.png", color=(9 * i, 99, 9)) for i, n in enumerate("abc")]
    return imgs, {p: p.read_bytes() for p in imgs}


def test_o_naming_a_picture_argument_is_refused_before_anything_runs(tmp_path):
    import emo.assembly.runner as runner
    from emo.errors import OutputError

    imgs, before = _pictures(tmp_path)
    link = tmp_path / "out.jsonl"
    link.symlink_to(imgs[2])
    for out, given in ((imgs[1], imgs[1]), (link, imgs[2])):
        with pytest.raises(OutputError, match=f"-o {out}: is also one of the pictures given"):
            run_filter("features", FeaturesOptions(groups=("color",)), settings_from({}),
                       RunOptions(paths=tuple(str(p) for p in imgs), output=out))
    # Relative names are resolved against --root, as the pictures are.
    with pytest.raises(OutputError):
        runner.run_filter("features", FeaturesOptions(groups=("color",)), settings_from({}),
                          RunOptions(paths=("a.png",), root=tmp_path, output=imgs[0]))
    assert {p: p.read_bytes() for p in imgs} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png", "out.jsonl"]


@pytest.mark.parametrize("how", ["stdin", "records", "recursive"])
def test_o_naming_a_picture_read_from_stdin_or_a_folder_is_refused_and_left_alone(tmp_path, monkeypatch, how):
    import io

    from emo.errors import OutputError

    imgs, before = _pictures(tmp_path)
    if how == "stdin":
        data, run = b"".join(f"{p}\n".encode() for p in imgs), RunOptions(output=imgs[1])
    elif how == "records":
        data, run = b"".join(orjson.dumps({"path": p.name}) + b"\n" for p in imgs), RunOptions(output=imgs[1],
                                                                                                 root=tmp_path)
    else:
        data, run = b"", RunOptions(paths=(str(tmp_path),), recursive=True, output=imgs[1])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with pytest.raises(OutputError, match=f"-o {imgs[1]}: is also input 2"):
        run_filter("features", FeaturesOptions(groups=("color",)), settings_from({}), run)
    assert {p: p.read_bytes() for p in imgs} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "c.png"]  # no temporary file left


def test_o_naming_the_file_stdin_reads_is_refused_and_the_list_kept(tmp_path, monkeypatch):
    from emo.errors import OutputError

    imgs, _ = _pictures(tmp_path)
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"".join(f"{p}\n".encode() for p in imgs))
    with open(lst, "rb") as f:
        monkeypatch.setattr(sys, "stdin", f)
        with pytest.raises(OutputError, match=f"-o {lst}: is also the file on stdin"):
            run_filter("features", FeaturesOptions(groups=("color",)), settings_from({}), RunOptions(output=lst))
    assert lst.read_bytes() == b"".join(f"{p}\n".encode() for p in imgs)


def test_o_naming_the_head_file_the_run_reads_is_refused_before_it_is_replaced(tmp_path, monkeypatch):
    # emo classify --head my.head a.png -o my.head replaced the head with the records, exit 0.
    from dataclasses import replace as with_

    from emo.assembly.classify_recipe import ClassifyOptions
    from emo.errors import OutputError
    from emo.models.head_file import save_head
    from tests.models.test_head_file import _trained

    head, _ = _trained(groups=("color",), dims={"color": 22})
    path = save_head(head, tmp_path / "my.head")
    before = path.read_bytes()
    imgs, _ = _pictures(tmp_path)
    for settings, options in ((with_(settings_from({}), head=str(path)), ClassifyOptions()),
                              (settings_from({}), ClassifyOptions(sentiment_head=str(path)))):
        with pytest.raises(OutputError, match=f"-o {path}: is also one of the model files read"):
            run_filter("classify", options, settings, RunOptions(paths=(str(imgs[0]),), output=path))
    assert path.read_bytes() == before
