"""``emo score`` on a tiny hand-made set: the numbers worked out by hand, --truth, table output."""

from __future__ import annotations

import math

import orjson
import pytest

from tests.cli.test_cmd_models import emo

# truth a a b b c, predicted a b b b a (see tests/test_metrics.py for the hand computation)
PAIRS = [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("c", "a")]


def _preds():
    return [{"path": f"{i}.jpg", "emotion": {"label": p, "probs": {"a": 0.0, "b": 0.0, "c": 0.0, p: 1.0}}}
            for i, (_, p) in enumerate(PAIRS)]


def _lines(recs):
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


def test_score_with_truth_in_the_records(monkeypatch):
    recs = [dict(r, label=t) for r, (t, _) in zip(_preds(), PAIRS)]
    recs.append({"path": "bad.jpg", "error": {"kind": "not_found", "message": "no such file"}})
    r = emo(monkeypatch, "score", input=_lines(recs) + b"not json\n")
    assert r.code == 0, r.err
    res = orjson.loads(r.out)["classify"]
    assert res["counts"] == {"records": 7, "errors": 2, "no_prediction": 0, "no_truth": 0, "scored": 5}
    assert res["accuracy"] == pytest.approx(0.6)
    assert res["macro_f1"] == pytest.approx(1.3 / 3)
    assert res["per_class_tpr"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert res["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_score_with_truth_file_and_distribution_and_va(monkeypatch, tmp_path):
    truth = tmp_path / "truth.jsonl"
    truth.write_bytes(_lines([{"path": "0.jpg", "distribution": {"a": 0.5, "b": 0.5}, "valence": 1.0, "arousal": 2.0},
                              {"path": "1.jpg", "distribution": {"a": 1.0}, "valence": 3.0, "arousal": 2.0}]))
    preds = [{"path": "0.jpg", "label": "c", "emotion": {"label": "a", "probs": {"a": 0.5, "b": 0.5}},
              "va": {"valence": 2.0, "arousal": 2.0}},
             {"path": "1.jpg", "emotion": {"label": "b", "probs": {"a": 0.5, "b": 0.5}}, "va": {"valence": 3.0, "arousal": 4.0}},
             {"path": "2.jpg", "emotion": {"label": "b", "probs": {"b": 1.0}}}]
    r = emo(monkeypatch, "score", "--truth", str(truth), input=_lines(preds))
    assert r.code == 0, r.err
    res = orjson.loads(r.out)
    c = res["classify"]
    assert c["counts"]["no_truth"] == 1 and c["counts"]["scored"] == 2
    assert c["accuracy"] == pytest.approx(0.5)  # the stale "c" label was replaced by the truth file's
    assert c["distribution"]["kl"] == pytest.approx(math.log(2) / 2)
    va = res["va"]
    assert va["valence"]["mse"] == pytest.approx(0.5) and va["arousal"]["mse"] == pytest.approx(2.0)
    assert va["counts"]["no_prediction"] == 1


def test_table_format_and_no_predictions(monkeypatch):
    recs = [dict(r, label=t) for r, (t, _) in zip(_preds(), PAIRS)]
    r = emo(monkeypatch, "score", "--format", "table", input=_lines(recs))
    assert r.code == 0 and b"accuracy" in r.out and b"0.6000" in r.out and b"confusion" in r.out
    r = emo(monkeypatch, "score", input=_lines([{"path": "x", "label": "a"}]))
    assert r.code == 2 and "no record carries a prediction" in r.err


def test_a_run_whose_inputs_all_failed_scores_nothing_with_exit_1(monkeypatch):
    """`emo classify missing.jpg | emo score`: the records are error records, which is "nothing
    could be scored" (exit 1, the errors counted), not a usage error telling to pipe emo classify."""
    failed = [{"path": "missing.jpg", "label": "a", "error": {"kind": "not_found", "message": "no such file"}}]
    r = emo(monkeypatch, "score", input=_lines(failed))
    assert r.code == 1, r.err
    res = orjson.loads(r.out)
    assert res["classify"]["counts"]["errors"] == 1 and res["classify"]["counts"]["scored"] == 0
    assert "pipe emo classify" not in r.err and "1 with errors" in r.err
    r = emo(monkeypatch, "score", input=b"")  # an upstream run over no inputs at all
    assert r.code == 1 and "pipe emo classify" not in r.err


@pytest.mark.parametrize("which", ["predictions", "truth", "link to predictions", "hard link to truth"])
def test_o_naming_a_file_being_read_is_refused_before_it_is_replaced(monkeypatch, tmp_path, which):
    import os

    recs = [dict(r, label=t) for r, (t, _) in zip(_preds(), PAIRS)]
    preds, truth = tmp_path / "preds.jsonl", tmp_path / "truth.jsonl"
    preds.write_bytes(_lines(recs))
    truth.write_bytes(_lines([{"path": r["path"], "label": r["label"]} for r in recs]))
    before = {p: p.read_bytes() for p in (preds, truth)}
    out = {"predictions": preds, "truth": truth}.get(which)
    if which == "link to predictions":
        out = tmp_path / "out.jsonl"
        out.symlink_to(preds)
    elif which == "hard link to truth":
        out = tmp_path / "out.jsonl"
        os.link(truth, out)
    r = emo(monkeypatch, "score", str(preds), "--truth", str(truth), "-o", str(out))
    assert r.code == 2 and r.err.startswith(f"emo: error: -o {out}: is also one of the record files read")
    assert {p: p.read_bytes() for p in (preds, truth)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"preds.jsonl", "truth.jsonl", out.name})
