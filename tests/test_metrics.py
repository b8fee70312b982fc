"""emo.metrics on hand-made sets whose numbers were worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from emo.io.records import name_fields

from emo.metrics import (JoinCounts, classification_metrics, distribution_metrics, expected_calibration_error,
                         join_truth, regression_metrics, why_nothing_scored,
                         score_classify, score_va)


def test_classification_by_hand():
    # truth a a b b c, predicted a b b b a
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["per_class_tpr"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    # F1: a = 0.5 (P 1/2, R 1/2), b = 0.8 (P 2/3, R 1), c = 0.
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_distribution_by_hand():
    m = distribution_metrics(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert m["kl"] == pytest.approx(math.log(2) / 2)  # ln 2 and 0
    assert m["top1"] == pytest.approx(1.0)  # argmax ties break to the first class on both sides
    # A zero prediction where truth has mass stays finite.
    assert np.isfinite(distribution_metrics(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))["kl"])


def test_regression_by_hand():
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0]))
    assert m["mse"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert m["pearson_r"] == pytest.approx(math.sqrt(3) / 2)
    assert regression_metrics(np.array([1.0, 2.0]), np.array([3.0, 3.0]))["pearson_r"] is None


def test_regression_near_float64s_limit_keeps_what_fits():
    t, p = np.array([1e308, -1e308, 3.0]), np.array([5.0, 4.0, 6.0])
    m = regression_metrics(t, p)
    assert m["mse"] is None  # about 6.7e615: no float64 holds it
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3) * 1e308, rel=1e-12)
    # r does not change when either side is scaled: the same as for the truth divided by 1e300
    assert m["pearson_r"] == pytest.approx(regression_metrics(t / 1e300, p)["pearson_r"], rel=1e-9)
    both = regression_metrics(np.array([-1.7e308, 3.0]), np.array([1.7e308, 4.0]))
    assert both["mse"] is None and both["rmse"] is None and both["pearson_r"] == pytest.approx(-1.0)


def _rec(label, pred, probs=None, **kw):
    r = {"path": f"{label}-{pred}.jpg", "label": label, **kw}
    if pred is not None:
        r["emotion"] = {"label": pred, "probs": probs or {pred: 1.0}}
    return r


def test_score_classify_counts_and_sentiment():
    recs = [
        _rec("joy", "joy", valence=7.0),
        _rec("fear", "joy", valence=3.0),
        _rec("fear", "fear", valence=2.0, sentiment={"label": "negative", "p_positive": 0.2}),
        _rec("surprise", "surprise"),  # no polarity on either side: not in the 2-class count
        {"path": "x.jpg", "error": {"kind": "not_found", "message": "no such file"}},
        {"path": "y.jpg", "emotion": {"label": "joy", "probs": {"joy": 1.0}}},  # no truth
        {"path": "z.jpg", "label": "joy"},  # no prediction
    ]
    s = score_classify(recs)
    assert s["counts"] == {"records": 7, "errors": 1, "no_prediction": 1, "no_truth": 1, "scored": 4}
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["sentiment"] == {"n": 3, "accuracy": pytest.approx(2 / 3), "unmapped": 1}


def test_score_classify_distribution_truth():
    recs = [
        {"path": "a", "distribution": {"joy": 0.5, "fear": 0.5}, "emotion": {"label": "joy", "probs": {"joy": 0.5, "fear": 0.5}}},
        {"path": "b", "distribution": {"joy": 1.0, "fear": 0.0}, "emotion": {"label": "fear", "probs": {"joy": 0.5, "fear": 0.5}}},
    ]
    s = score_classify(recs)
    # Truth label = argmax of the distribution (joy for both; ties to the first).
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["distribution"]["kl"] == pytest.approx(math.log(2) / 2)


def test_weights_that_are_no_distribution_give_no_label_and_no_kl():
    good = {"path": "a", "distribution": {"joy": 0.5, "fear": 0.5}, "emotion": {"label": "joy", "probs": {"joy": 0.5, "fear": 0.5}}}
    odd = [
        {"path": "neg", "distribution": {"joy": -1.0, "fear": 2.0}, "emotion": {"label": "joy", "probs": {"joy": 1.0}}},
        {"path": "zero", "distribution": {"joy": 0.0, "fear": 0.0}, "emotion": {"label": "joy", "probs": {"joy": 1.0}}},
        {"path": "huge", "distribution": {"joy": 1e308, "fear": 1e308}, "emotion": {"label": "joy", "probs": {"joy": 1.0}}},
        # a labelled truth is scored, but predicted probabilities below 0 are no distribution for KL
        {"path": "p", "label": "joy", "distribution": {"joy": 1.0}, "emotion": {"label": "joy", "probs": {"joy": 2.0, "fear": -1.0}}},
    ]
    s = score_classify([good, *odd])
    assert s["counts"]["no_truth"] == 3 and s["counts"]["scored"] == 2
    assert s["accuracy"] == pytest.approx(1.0)
    assert s["distribution"]["n"] == 1 and s["distribution"]["kl"] == pytest.approx(0.0)


def test_score_va_by_hand():
    recs = [{"path": str(i), "valence": t, "arousal": 5.0, "va": {"valence": p, "arousal": 6.0}}
            for i, (t, p) in enumerate([(1.0, 2.0), (2.0, 2.0), (3.0, 4.0)])]
    s = score_va(recs + [{"path": "n", "va": {"valence": 1.0, "arousal": 1.0}}])
    assert s["counts"]["no_truth"] == 1 and s["counts"]["scored"] == 3
    assert s["valence"]["mse"] == pytest.approx(2 / 3)
    assert s["arousal"]["mse"] == pytest.approx(1.0) and s["arousal"]["pearson_r"] is None


def test_join_truth_replaces_truth_by_path():
    preds = [{"path": "a", "label": "stale", "emotion": {"label": "joy"}}, {"path": "b", "emotion": {"label": "joy"}}]
    out = list(join_truth(preds, [{"path": "a", "label": "joy", "valence": 7}]))
    assert out[0]["label"] == "joy" and out[0]["valence"] == 7
    assert "label" not in out[1]


def test_join_tells_apart_names_that_read_alike():
    a, b = name_fields("/p/caf\udcff.jpg"), name_fields("/p/caf\udcfe.jpg")
    truth = [{**a, "label": "joy"}, {**b, "label": "fear"}, {"path": a["path"], "label": "anger"}]
    counts = JoinCounts()
    out = list(join_truth([{**b, "emotion": {"label": "fear"}}, {**a, "emotion": {"label": "joy"}}], truth,
                          counts=counts))
    assert [r["label"] for r in out] == ["fear", "joy"]
    assert counts.matched == 2 and counts.duplicate_truth == 0 and counts.no_prediction == 1
    hostile = list(join_truth([{**a, "emotion": {}}], [{**a, "path_bytes": "%%%", "label": "joy"}], counts=counts))
    assert "label" not in hostile[0] and counts.truth_without_path == 1


def test_predictions_that_name_no_file_are_counted_apart():
    # a bad line, a null path, an invalid path_bytes: none can meet truth, and none may vanish from the counts
    preds = [{"path": "a.jpg", "emotion": {"label": "joy"}}, {"error": {"kind": "bad_line", "message": "p:2"}},
             {"path": None, "emotion": {"label": "joy"}}, {"path": "b.jpg", "path_bytes": "%%%", "emotion": {}},
             {"path": "c.jpg", "emotion": {"label": "fear"}}, {"path": "", "emotion": {"label": "joy"}}]
    c = JoinCounts()
    out = list(join_truth(preds, [{"path": "a.jpg", "label": "joy"}, {"path": "", "label": "joy"}], counts=c))
    assert len(out) == 6 and out[0]["label"] == "joy" and "label" not in out[5]
    assert (c.predictions, c.matched, c.no_truth, c.prediction_without_path) == (6, 1, 1, 4)
    assert c.truth_without_path == 1  # an empty path names no file on the truth side either
    assert c.matched + c.no_truth + c.prediction_without_path == c.predictions


def test_ece_by_hand():
    # two records at confidence 0.9 (one right) and two at 0.6 (both right), in 15 bins:
    # bin of 0.9: |0.5 - 0.9| = 0.4, weight 1/2; bin of 0.6: |1.0 - 0.6| = 0.4, weight 1/2
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, y, 15) == pytest.approx(0.4)
    assert expected_calibration_error(np.array([[0.75, 0.25]] * 4), np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        expected_calibration_error(np.zeros((0, 2)), np.zeros(0))


def test_uncertain_predictions_are_scored_on_their_best_class_and_counted():
    recs = [{"path": "a", "label": "fear", "emotion": {"label": None, "uncertain": True, "best": "fear", "p": 0.2,
                                                       "probs": {"fear": 0.2, "joy": 0.1}}},
            {"path": "b", "label": "joy", "emotion": {"label": "joy", "p": 0.9, "probs": {"joy": 0.9}}}]
    s = score_classify(recs)
    assert s["counts"]["scored"] == 2 and s["accuracy"] == 1.0 and s["uncertain"] == 1


def _pictures(tmp_path):
    data = tmp_path / "data"
    (data / "images" / "joy").mkdir(parents=True)
    for n in ("1.jpg", "2.jpg"):
        Image.new("RGB", (4, 4)).save(data / "images" / "joy" / n)
    return data


def test_join_matches_absolute_predictions_to_truth_relative_to_root(tmp_path, monkeypatch):
    data = _pictures(tmp_path)
    monkeypatch.chdir(tmp_path)
    truth = [{"path": "images/joy/1.jpg", "label": "joy"}, {"path": "images/joy/2.jpg", "label": "joy"},
             {"path": "images/joy/3.jpg", "label": "joy"}, {"label": "joy"}]
    preds = [{"path": str(data / "images/joy/1.jpg"), "emotion": {"label": "joy", "probs": {"joy": 1.0}}},
             {"path": "data/images/joy/2.jpg", "emotion": {"label": "fear", "probs": {"fear": 1.0}}},  # relative to cwd
             {"path": "images/joy/9.jpg", "emotion": {"label": "joy", "probs": {"joy": 1.0}}}]
    c = JoinCounts()
    joined = list(join_truth(preds, truth, root="data", counts=c))
    assert [r.get("label") for r in joined] == ["joy", "joy", None]
    assert c.as_dict() == {"predictions": 3, "truth": 4, "matched": 2, "no_truth": 1, "no_prediction": 1,
                           "truth_without_path": 1, "prediction_without_path": 0, "duplicate_truth": 0}
    s = score_classify(joined)
    assert s["counts"]["scored"] == 2 and s["accuracy"] == 0.5
    assert why_nothing_scored({"classify": s}, c) is None


def test_join_follows_a_symlinked_root_and_predictions_made_with_the_same_root(tmp_path, monkeypatch):
    data = _pictures(tmp_path)
    (tmp_path / "link").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    truth = [{"path": "images/joy/1.jpg", "label": "joy"}]
    preds = [{"path": "images/joy/1.jpg", "emotion": {"label": "joy"}}]  # emo classify --root link < truth
    joined = list(join_truth(preds, truth, root=tmp_path / "link"))
    assert joined[0]["label"] == "joy"


def test_why_nothing_scored_names_the_counts_and_the_path_mismatch(tmp_path, monkeypatch):
    data = _pictures(tmp_path)
    monkeypatch.chdir(tmp_path)
    truth = [{"path": "images/joy/1.jpg", "label": "joy"}, {"path": "images/joy/2.jpg", "label": "joy"}]
    preds = [{"path": str(data / "images/joy/1.jpg"), "emotion": {"label": "joy", "probs": {}}},
             {"path": "x.jpg", "error": {"kind": "not_found", "message": "no such file"}}]
    c = JoinCounts()
    joined = list(join_truth(preds, truth, counts=c))  # no root: truth taken against the current folder
    why = why_nothing_scored({"classify": score_classify(joined)}, c)
    assert why.startswith("nothing scored: 2 records, 1 with errors, 0 without a prediction, 1 without truth")
    assert "0 of 2 prediction paths" in why and "2 truth records have no prediction" in why
    assert "images/joy/1.jpg" in why and "the current folder" in why
    assert why_nothing_scored({}) .startswith("nothing scored: no record carries a prediction")
    no_truth = why_nothing_scored({"classify": score_classify([{"path": "a", "emotion": {"label": "joy"}}])})
    assert "1 without truth" in no_truth and "--truth" in no_truth
    one = why_nothing_scored({"classify": score_classify([{"path": "a", "error": {"kind": "x", "message": "y"}}])})
    assert one.startswith("nothing scored: 1 record, 1 with errors")
    empty = why_nothing_scored({"classify": score_classify([])})
    assert empty == "nothing scored: no prediction records came in (empty input?)"
