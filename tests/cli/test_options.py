"""Shared filter options: -o FILE, --resume, --fail-fast (every filter subcommand has them)."""

from __future__ import annotations

import orjson

from tests.conftest import make_image
from tests.robustness.conftest import TINY, assert_same_records, emo


def _lines(path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_output_file_holds_what_stdout_would(tiny_backbone, tmp_path):
    a, b = (str(make_image(tmp_path / f"{n}.png", color=c)) for n, c in (("a", (200, 0, 0)), ("b", (0, 0, 200))))
    to_stdout = emo(TINY + [a, b])
    out = tmp_path / "out.jsonl"
    to_file = emo(TINY + ["-o", str(out), a, b])
    assert to_file.code == 0 and to_file.out == b""
    assert out.read_bytes() == to_stdout.out
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resume_skips_what_is_done_and_appends_in_order(tiny_backbone, tmp_path):
    paths = [str(make_image(tmp_path / f"i{i}.png", color=(i * 40, 90, 200 - i * 40))) for i in range(5)]
    out = tmp_path / "out.jsonl"
    first = emo(TINY + ["-o", str(out), "--resume"] + paths[:2])
    assert first.code == 0
    again = emo(TINY + ["-o", str(out), "--resume", "-v"] + paths)
    assert again.code == 0 and "2 already in" in again.err
    assert [r["path"] for r in _lines(out)] == paths
    assert_same_records(out.read_bytes(), emo(TINY + paths).out)
    # Nothing left to do: the file stays as it is.
    before = out.read_bytes()
    assert emo(TINY + ["-o", str(out), "--resume"] + paths).code == 0
    assert out.read_bytes() == before


def test_resume_redoes_a_file_whose_hash_changed(tiny_backbone, tmp_path):
    p = str(make_image(tmp_path / "a.png"))
    out = tmp_path / "out.jsonl"
    rec = lambda h: orjson.dumps({"path": p, "sha256": h}) + b"\n"  # noqa: E731
    emo(TINY + ["-o", str(out), "--resume"], rec("11"))
    emo(TINY + ["-o", str(out), "--resume"], rec("11") + rec("22"))
    assert [r["sha256"] for r in _lines(out)] == ["11", "22"]


def test_resume_needs_an_output_file(tiny_backbone, tmp_path):
    run = emo(TINY + ["--resume", str(make_image(tmp_path / "a.png"))])
    assert run.code == 2 and "--resume needs -o" in run.err and run.out == b""


def test_resume_refuses_a_file_that_is_not_emo_output(tiny_backbone, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("my notes\n")
    run = emo(TINY + ["-o", str(out), "--resume", str(make_image(tmp_path / "a.png"))])
    assert run.code == 2 and "not a JSON record" in run.err
    assert out.read_text() == "my notes\n"


def test_fail_fast_stops_after_the_first_bad_input(tiny_backbone, tmp_path):
    good = str(make_image(tmp_path / "good.png"))
    missing = str(tmp_path / "missing.png")
    run = emo(TINY + ["--fail-fast", "--batch-size", "2", good, good, good, missing, good, missing, good])
    recs = [orjson.loads(x) for x in run.out.splitlines()]
    assert [r.get("error", {}).get("kind") for r in recs] == [None, None, None, "not_found"]
    assert run.code == 1 and "--fail-fast" in run.err
    assert run.err.count("not_found") == 1


def test_fail_fast_with_output_file_keeps_the_records_up_to_the_stop(tiny_backbone, tmp_path):
    good = str(make_image(tmp_path / "good.png"))
    out = tmp_path / "out.jsonl"
    run = emo(TINY + ["--fail-fast", "-o", str(out), good, str(tmp_path / "missing.png"), good])
    assert run.code == 1
    assert [r.get("error", {}).get("kind") for r in _lines(out)] == [None, "not_found"]


def test_without_fail_fast_every_input_gets_its_record(tiny_backbone, tmp_path):
    good = str(make_image(tmp_path / "good.png"))
    run = emo(TINY + [good, str(tmp_path / "missing.png"), good])
    assert run.code == 1 and len(run.out.splitlines()) == 3


def test_output_dash_is_stdout(tiny_backbone, tmp_path):
    run = emo(TINY + ["-o", "-", str(make_image(tmp_path / "a.png"))])
    assert run.code == 0 and len(run.out.splitlines()) == 1


def test_batch_size_and_workers_take_what_their_variables_take():
    """--batch-size and --workers accept the range EMO_BATCH_SIZE and EMO_WORKERS do, no narrower."""
    import click
    import pytest

    from emo import config
    from emo.cli.cmd_classify import classify

    ctx = classify.make_context("classify", ["--batch-size", str(config.MAX_BATCH_SIZE), "--workers", str(config.MAX_WORKERS)])
    assert (ctx.params["batch_size"], ctx.params["workers"]) == (config.MAX_BATCH_SIZE, config.MAX_WORKERS)
    env = config.from_env({"EMO_BATCH_SIZE": str(config.MAX_BATCH_SIZE), "EMO_WORKERS": str(config.MAX_WORKERS)})
    assert (env.batch_size, env.workers) == (config.MAX_BATCH_SIZE, config.MAX_WORKERS)
    for flag, value in (("--batch-size", config.MAX_BATCH_SIZE + 1), ("--workers", config.MAX_WORKERS + 1)):
        with pytest.raises(click.BadParameter):
            classify.make_context("classify", [flag, str(value)])


def test_verbose_summary_counts_in_words_and_names_a_decoder_only_when_one_decoded(tiny_backbone, tmp_path):
    missing = emo(TINY + ["-v", str(tmp_path / "gone.jpg")])
    last = missing.err.splitlines()[-1]
    assert missing.code == 1 and last.startswith("emo: 1 input, 1 failed,") and "decoded by" not in last
    assert emo(TINY + ["-v"], b"").err.splitlines()[-1].startswith("emo: 0 inputs, 0 failed,")
    two = emo(TINY + ["-v", str(make_image(tmp_path / "a.png")), str(make_image(tmp_path / "b.png"))])
    assert two.code == 0 and two.err.splitlines()[-1].startswith("emo: 2 inputs, 0 failed,")
    assert "decoded by" in two.err.splitlines()[-1]
