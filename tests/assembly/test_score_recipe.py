"""emo score: truth joined on resolved paths (--root), a run that scores nothing says why and
exits 1, -o and -q as on the filters, a missing file is one line and exit 2."""

from __future__ import annotations

import orjson

from tests.robustness.conftest import emo


def _jsonl(path, recs):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return path


def _pred(path: str, label: str) -> dict:
    probs = {"joy": 0.1, "fear": 0.1, "sadness": 0.1}
    probs[label] = 0.8
    return {"path": path, "emotion": {"label": label, "probs": probs}}


def test_truth_paths_resolve_against_root(tmp_path):
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    truth = _jsonl(data / "truth.jsonl", [{"path": "img/a.jpg", "label": "joy"}, {"path": "img/b.jpg", "label": "fear"}])
    # Predictions as emo classify -r writes them: absolute paths.
    preds = _jsonl(tmp_path / "p.jsonl", [_pred(str(data / "img/a.jpg"), "joy"), _pred(str(data / "img/b.jpg"), "joy")])
    silent = emo(["score", "--truth", str(truth), str(preds)])
    assert silent.code == 1 and "nothing scored" in silent.err and "paths differ" in silent.err
    assert orjson.loads(silent.out)["classify"]["counts"]["scored"] == 0
    ok = emo(["score", "--truth", str(truth), "--root", str(data), str(preds)])
    assert ok.code == 0, ok.err
    res = orjson.loads(ok.out)
    assert res["classify"]["counts"]["scored"] == 2 and res["classify"]["accuracy"] == 0.5
    assert res["join"]["matched"] == 2


def test_quiet_and_output_file(tmp_path):
    preds = _jsonl(tmp_path / "p.jsonl", [_pred("a.jpg", "joy")])  # no truth anywhere
    r = emo(["score", "-q", "-o", str(tmp_path / "s.json"), str(preds)])
    assert r.code == 1 and r.err == "" and r.out == b""
    assert orjson.loads((tmp_path / "s.json").read_bytes())["classify"]["counts"]["no_truth"] == 1


def test_missing_prediction_file_is_one_line(tmp_path):
    r = emo(["score", str(tmp_path / "nosuch.jsonl")])
    assert r.code == 2 and r.err.count("\n") == 1 and "nosuch.jsonl" in r.err and "Traceback" not in r.err


def test_odd_values_in_predictions_are_counted_not_raised(tmp_path):
    recs = [{"path": "a", "label": "joy", "emotion": {"label": "joy", "probs": "high"}},
            {"path": "b", "label": "joy", "distribution": {"joy": None}, "emotion": {"label": None, "probs": None}},
            {"path": "c", "label": "joy", "distribution": "x", "emotion": {"label": "joy", "probs": {"joy": "x"}}},
            {"path": "d", "valence": "x", "arousal": None, "va": {"valence": None, "arousal": "y"}},
            _pred("e", "joy") | {"label": "joy"}]
    r = emo(["score", str(_jsonl(tmp_path / "p.jsonl", recs))])
    assert r.code in (0, 1) and "Traceback" not in r.err, r.err
    res = orjson.loads(r.out)
    assert res["classify"]["counts"]["records"] == 5


def test_lines_that_are_not_records_are_named_with_their_line_numbers(tmp_path):
    truth = tmp_path / "t.jsonl"
    junk = [b'{"path": "b.jpg", "label": joy}', b"[1]", b"NaN", b"\x1b[31mred", b"x" * 300]
    truth.write_bytes(orjson.dumps({"path": "a.jpg", "label": "joy"}) + b"\n"
                      + b"".join(j + b"\n" for j in junk))
    preds = tmp_path / "p.jsonl"
    preds.write_bytes(orjson.dumps(_pred("a.jpg", "joy")) + b"\n\nnot json\n")
    r = emo(["score", "--truth", str(truth), "--root", str(tmp_path), str(preds)])
    assert r.code == 0, r.err
    assert r.err.splitlines() == [
        f"emo score: {preds}:3: not a JSON object: not json",
        f"emo score: {preds}: that line counts as an error",
        f'emo score: {truth}:2: not a JSON object: {{"path": "b.jpg", "label": joy}}',
        f"emo score: {truth}:3: not a JSON object: [1]",
        f"emo score: {truth}:4: not a JSON object: NaN",
        f"emo score: {truth}: 2 more lines are not JSON objects; all 5 count as truth records without a path",
    ]
    res = orjson.loads(r.out)
    assert res["classify"]["counts"]["errors"] == 1 and res["join"]["truth_without_path"] == 5
    assert emo(["score", "-q", "--truth", str(truth), "--root", str(tmp_path), str(preds)]).err == ""


def test_a_junk_line_is_shown_cut_and_without_control_characters(tmp_path):
    preds = tmp_path / "p.jsonl"
    preds.write_bytes(orjson.dumps(_pred("a.jpg", "joy") | {"label": "joy"}) + b"\n\x1b[2Jgone\n" + b"y" * 5000 + b"\n")
    r = emo(["score", str(preds)])
    assert r.code == 0, r.err
    lines = r.err.splitlines()
    assert lines[0] == f"emo score: {preds}:2: not a JSON object: ?[2Jgone" and "\x1b" not in r.err
    assert lines[1] == f"emo score: {preds}:3: not a JSON object: {'y' * 80}…"
    assert lines[2] == f"emo score: {preds}: those 2 lines count as errors"


def test_junk_lines_are_named_even_when_nothing_can_be_scored():
    r = emo(["score"], b"junk\n")
    assert r.code == 1 and "Traceback" not in r.err  # the line counts as an error record: nothing scored
    assert r.err.splitlines()[:2] == ["emo score: stdin:1: not a JSON object: junk",
                                      "emo score: stdin: that line counts as an error"]


def test_table_shows_labels_as_literal_text(tmp_path):
    # Labels come from the records: rich markup in one raised (exit 2), escapes reached the terminal.
    recs = [{"path": "a", "label": "[/oops]", "emotion": {"label": "[red]x", "probs": {"[red]x": 1.0}}},
            {"path": "b", "label": "\x1b]0;title\x07\x1b[2J", "emotion": {"label": "joy", "probs": {"joy": 1.0}}}]
    r = emo(["score", "--format", "table", str(_jsonl(tmp_path / "p.jsonl", recs))])
    assert r.code == 0, r.err
    assert b"[/oops]" in r.out and b"[red]x" in r.out and b"\x1b]0" not in r.out and b"\x07" not in r.out


def test_an_error_past_float64_is_null_and_said_once(tmp_path):
    recs = [{"path": "a", "valence": 1e308, "va": {"valence": 5.0, "arousal": 5.0}},
            {"path": "b", "valence": 3.0, "arousal": 4.0, "va": {"valence": 4.0, "arousal": 6.0}},
            {"path": "c", "valence": 7.0, "arousal": 2.0, "va": {"valence": 6.0, "arousal": 3.0}}]
    r = emo(["score", str(_jsonl(tmp_path / "p.jsonl", recs))])
    res = orjson.loads(r.out)["va"]
    assert r.code == 0 and res["valence"]["mse"] is None and res["valence"]["rmse"] > 1e307
    assert res["arousal"]["mse"] == 5 / 2
    assert r.err.count("\n") == 1 and "va.valence" in r.err and "null" in r.err
    assert emo(["score", "-q", str(tmp_path / "p.jsonl")]).err == ""


def test_table_shows_uncertain_count_and_truth_join(tmp_path):
    # The JSON carried both; the table left them out, so a reader of --format table could not tell
    # that predictions below --min-prob were scored on their best class, nor how --truth matched.
    unsure = {"path": "a.jpg", "emotion": {"label": None, "uncertain": True, "best": "joy",
                                           "probs": {"joy": 0.3, "fear": 0.25, "sadness": 0.45 - 0.2}}}
    preds = _jsonl(tmp_path / "p.jsonl", [unsure, _pred("b.jpg", "fear"), _pred("c.jpg", "joy")])
    truth = _jsonl(tmp_path / "t.jsonl", [{"path": "a.jpg", "label": "joy"}, {"path": "b.jpg", "label": "joy"}])
    r = emo(["score", "--format", "table", "--truth", str(truth), "--root", str(tmp_path), str(preds)])
    assert r.code == 0, r.err
    rows = {" ".join(line.split()[:-1]): line.split()[-1] for line in r.out.decode().splitlines() if line.strip()}
    assert rows["uncertain (scored on best)"] == "1"
    assert rows["matched"] == "2" and rows["no_truth"] == "1" and rows["predictions"] == "3"
    assert rows["accuracy"] == "0.5000"
