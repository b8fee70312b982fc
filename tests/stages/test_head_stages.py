"""emo.stages.head_stages: emotion / sentiment / va keys from features, bad features, lazy backbone."""

from __future__ import annotations

import os

import numpy as np
import pytest

from emo.io.decode import View
from emo.io.records import Item
from emo.models.head_file import new_head
from emo.stages.head_stages import ClassifyStage, LazyStage, VAStage
from emo.train import FitConfig, Targets, fit_head
from tests.conftest import in_fork

E6 = ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]


def _head(labels, task="classify", d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((40, d)).astype(np.float32)
    h = new_head(["deep"], {"deep": d}, task, labels)
    if task == "classify":
        y = rng.integers(0, len(labels), 40)
        t = Targets(y=y, dist=np.eye(len(labels), dtype=np.float32)[y], p_star=np.ones(40, np.float32))
        fit_head(X, t, FitConfig(hidden=(), epochs=2, threads=1), h.net)
    else:
        fit_head(X, Targets(va=rng.uniform(1, 9, (40, 2)).astype(np.float32)),
                 FitConfig(task="va", loss="mse", hidden=(), epochs=2, threads=1), h.net)
    h.header["name"] = "t"
    return h


def _items(n=3, d=4):
    rng = np.random.default_rng(1)
    return [Item(i, {"path": f"{i}.jpg", "label": "joy"}, features={"deep": rng.random(d).tolist()}) for i in range(n)]


def test_classify_adds_emotion_and_sentiment_only():
    head, sent = _head(E6), _head(["positive", "negative"], seed=2)
    items = _items()
    ClassifyStage(head, sent, top_k=2).run(items)
    X = np.array([it.features["deep"] for it in items], np.float32)
    expect, p_pos = head.predict(X), sent.predict(X)[:, 0]
    for i, it in enumerate(items):
        assert set(it.record) == {"path", "label", "emotion", "sentiment"}
        e = it.record["emotion"]
        assert list(e["probs"]) == E6 and sum(e["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        assert e["label"] == E6[int(expect[i].argmax())] and e["top"][0]["label"] == e["label"] and len(e["top"]) == 2
        assert e["p"] == pytest.approx(expect[i].max(), abs=1e-5) and e["top"][0]["p"] == e["p"]
        assert e["top"][1]["p"] == pytest.approx(np.sort(expect[i])[-2], abs=1e-5)
        assert [e["probs"][c] for c in E6] == pytest.approx(expect[i], abs=1e-5)
        s = it.record["sentiment"]
        assert s["p_positive"] == pytest.approx(p_pos[i], abs=1e-5)
        assert s["label"] == ("positive" if p_pos[i] >= 0.5 else "negative")
        assert s["p"] == pytest.approx(max(p_pos[i], 1 - p_pos[i]), abs=1e-5) and "uncertain" not in s


def test_min_prob_marks_uncertain_records_and_keeps_probs_numeric():
    head, sent = _head(E6), _head(["positive", "negative"], seed=2)
    items = _items(6)
    X = np.array([it.features["deep"] for it in items], np.float32)
    best = head.predict(X).max(1)
    cut = float(np.median(best))  # half the records fall below it
    ClassifyStage(head, sent, top_k=3, min_prob=cut, sentiment_min_prob=1.0).run(items)
    n_uncertain = 0
    for i, it in enumerate(items):
        e = it.record["emotion"]
        assert all(isinstance(v, float) for v in e["probs"].values())
        assert e["top"][0]["label"] == (e["label"] or e["best"])
        if best[i] < cut:
            n_uncertain += 1
            assert e["label"] is None and e["uncertain"] is True
            assert e["best"] == E6[int(np.argmax([e["probs"][c] for c in E6]))]
            assert e["p"] == pytest.approx(best[i], abs=1e-5)
        else:
            assert e["label"] == E6[int(np.argmax([e["probs"][c] for c in E6]))] and "uncertain" not in e
        s = it.record["sentiment"]  # a threshold of 1 leaves every sentiment uncertain
        assert s["label"] is None and s["uncertain"] and s["best"] in ("positive", "negative")
        assert isinstance(s["p_positive"], float)
    assert n_uncertain == 3


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_min_prob_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="min_prob"):
        ClassifyStage(_head(E6), min_prob=bad)


def test_sentiment_follows_from_classes_with_a_polarity():
    head = _head(["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"])
    items = _items()
    ClassifyStage(head, None).run(items)
    for it in items:
        probs = list(it.record["emotion"]["probs"].values())
        assert it.record["sentiment"]["p_positive"] == pytest.approx(sum(probs[:4]), abs=1e-5)


def test_bad_features_fail_only_their_record():
    head = _head(E6)
    items = _items()
    items[1].features["deep"] = [0.0, 1.0]
    ClassifyStage(head).run(items)
    assert items[1].error.kind == "bad_features" and "needs 4" in items[1].error.message
    assert "emotion" not in items[1].record
    assert "emotion" in items[0].record and "emotion" in items[2].record
    assert "sentiment" not in items[0].record  # Emotion6 without a sentiment head: no polarity for all classes


def test_va_stage_on_the_1_to_9_scale():
    head = _head([], task="va")
    items = _items()
    VAStage(head).run(items)
    for it in items:
        va = it.record["va"]
        assert set(va) == {"valence", "arousal"} and all(1 <= v <= 9 for v in va.values())


def test_stages_refuse_the_wrong_kind_of_head():
    with pytest.raises(ValueError):
        VAStage(_head(E6))
    with pytest.raises(ValueError):
        ClassifyStage(_head([], task="va"))


def test_lazy_stage_builds_only_when_a_record_lacks_features():
    built = []

    class Fill:
        def run(self, items):
            for it in items:
                it.features["deep"] = [1.0, 2.0, 3.0, 4.0]

    def build():
        built.append(1)
        return Fill()

    lazy = LazyStage(build, (View(32, 36),), ("deep",))
    have = _items(2)
    assert not any(lazy.wants(it) for it in have)
    lack = Item(5, {"path": "x.jpg"})
    assert lazy.wants(lack) and not lazy.built
    lazy.run([lack])
    lazy.run([Item(6, {"path": "y.jpg"})])
    assert built == [1] and lack.features["deep"] == [1.0, 2.0, 3.0, 4.0]


def test_a_lazy_stage_asked_from_two_threads_at_once_builds_once():
    import threading
    import time

    built = []

    def build():
        built.append(threading.current_thread().name)
        time.sleep(0.2)  # a network that takes a while to load: the second caller arrives meanwhile
        return object()

    lazy = LazyStage(build, (View(32, 36),), ("deep",))
    got = []
    threads = [threading.Thread(target=lambda: got.append(lazy.build())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and got[0] is got[1]


def test_calibrated_false_gives_the_probabilities_as_trained():
    head = _head(E6)
    items, raw = _items(), _items()
    X = np.array([it.features["deep"] for it in items], np.float32)
    p_trained = head.predict(X)
    head.set_temperature(0.5)
    ClassifyStage(head).run(items)
    ClassifyStage(head, calibrated=False).run(raw)
    for i in range(len(items)):
        assert [raw[i].record["emotion"]["probs"][c] for c in E6] == pytest.approx(p_trained[i], abs=1e-5)
        assert items[i].record["emotion"]["p"] > raw[i].record["emotion"]["p"]  # T < 1 sharpens


def test_a_sentiment_the_input_carried_does_not_pass_as_this_runs():
    items = _items()
    for it in items:
        it.record["sentiment"] = {"label": "positive", "p_positive": 0.9}  # from an earlier run
    ClassifyStage(_head(E6), None).run(items)  # Emotion6 alone has no polarity for every class
    assert all("sentiment" not in it.record and "emotion" in it.record for it in items)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")
def test_a_build_another_thread_was_making_at_a_fork_is_made_again_in_the_child():
    """The builder's lock stays held in the child, where the thread holding it never ends."""
    import threading

    started, finish = threading.Event(), threading.Event()
    parent = os.getpid()

    def build():
        if os.getpid() == parent:  # the parent's build lasts across the fork
            started.set()
            finish.wait(30)
        return os.getpid()

    lazy = LazyStage(build, (View(32, 36),), ("deep",))
    t = threading.Thread(target=lazy.build)
    t.start()
    started.wait(30)
    try:
        child = int(in_fork(lambda: str(lazy.build()).encode()))
    finally:
        finish.set()
        t.join()
    assert child != parent and lazy.build() == parent
