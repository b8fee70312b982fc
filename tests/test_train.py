"""emo.train: each loss against a hand-computed value, targets, folds, and heads that learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emo.emotions import LABEL_SETS
from emo.errors import UsageError
from emo.models.head_file import new_head
from emo.train import (FitConfig, Targets, calibration_report, ce_loss, cross_validate, describe_source,
                       fit_temperature, nll, probs_at_temperature, ed_loss, evaluate, fit_head, kfold, mse_loss,
                       multi_loss, prob_loss, split_val, summarise, targets_from_records)

# logits [0, ln 3] -> softmax [1/4, 3/4]
LOGITS = torch.tensor([[0.0, math.log(3.0)]])
Y = torch.tensor([1])


def test_ce_eq7_by_hand():
    assert float(ce_loss(LOGITS, Y)) == pytest.approx(-math.log(0.75))


def test_ed_and_multi_eq6_eq8_by_hand():
    dist = torch.tensor([[0.5, 0.5]])
    led = 0.5 * (math.log(4) - math.log(0.75))
    assert float(ed_loss(LOGITS, dist)) == pytest.approx(led)
    assert float(multi_loss(LOGITS, Y, dist, 0.4)) == pytest.approx(0.6 * -math.log(0.75) + 0.4 * led)
    # lambda 0 is CE, lambda 1 is the distribution term alone (Rao et al. 5.4.4).
    assert float(multi_loss(LOGITS, Y, dist, 0.0)) == pytest.approx(-math.log(0.75))
    assert float(multi_loss(LOGITS, Y, dist, 1.0)) == pytest.approx(led)


def test_prob_eq11_by_hand():
    # p* = 0.5: -0.25 ln 0.75 + ln 4
    assert float(prob_loss(LOGITS, Y, torch.tensor([0.5]))) == pytest.approx(-0.25 * math.log(0.75) + math.log(4))
    # A sure label (p* = 1) is plain cross-entropy.
    assert float(prob_loss(LOGITS, Y, torch.tensor([1.0]))) == pytest.approx(-math.log(0.75))


def test_mse_by_hand():
    assert float(mse_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 4.0]]))) == pytest.approx(2.5)


def test_targets_from_records():
    m8 = LABEL_SETS["mikels8"]
    recs = [
        {"label": "awe"},
        {"distribution": {"anger": 0.2, "fear": 0.8}},
        {"label": "joy"},  # not a mikels8 class: skipped
        {"path": "x.jpg"},  # no target
    ]
    t, kept, skipped = targets_from_records(recs, "classify", m8, label_prob=0.6)
    assert kept == [0, 1] and skipped == [2, 3]
    assert t.y.tolist() == [1, 6]
    assert t.dist[0, 1] == pytest.approx(0.6) and t.dist[0].sum() == pytest.approx(1.0)
    assert t.dist[0, 0] > t.dist[0, 4]  # amusement (neighbour of awe) over anger
    assert t.p_star.tolist() == pytest.approx([0.6, 0.8])
    s, kept, skipped = targets_from_records([{"valence": 7}, {"valence": 5}, {"valence": 2}], "classify",
                                            LABEL_SETS["sentiment"])
    assert s.y.tolist() == [0, 1] and skipped == [1]
    v, kept, skipped = targets_from_records([{"valence": 7, "arousal": 3}, {"valence": 7}], "va")
    assert v.va.tolist() == [[7.0, 3.0]] and skipped == [1]


def test_kfold_is_stratified_and_seeded():
    y = np.array([0] * 20 + [1] * 10 + [2] * 5)
    f = kfold(len(y), 5, seed=3, strata=y)
    for k in range(5):
        assert np.bincount(y[f == k], minlength=3).tolist() == [4, 2, 1]
    assert (kfold(len(y), 5, seed=3, strata=y) == f).all()
    assert not (kfold(len(y), 5, seed=4, strata=y) == f).all()
    assert split_val(len(y), 0.2, 0, y).sum() == 7
    with pytest.raises(UsageError):
        kfold(3, 5)


def _blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (3, 6))
    y = rng.integers(0, 3, n)
    X = (centres[y] + rng.normal(0, 1, (n, 6))).astype(np.float32)
    dist = np.eye(3, dtype=np.float32)[y]
    return X, Targets(y=y.astype(np.int64), dist=dist, p_star=np.ones(n, np.float32))


FAST = FitConfig(hidden=(16,), dropout=0.0, epochs=15, lr=1e-2, weight_decay=0.0, batch_size=32, threads=1)


@pytest.mark.parametrize("loss", ["ce", "multi", "prob"])
def test_head_learns_a_separable_problem(loss):
    X, t = _blobs()
    head = new_head(["deep"], {"deep": 6}, "classify", ["a", "b", "c"])
    fit_head(X[:200], t.take(np.arange(200)), FitConfig(**{**FAST.as_dict(), "hidden": (16,), "loss": loss}), head.net)
    p = head.predict(X[200:])
    assert p.shape == (100, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p.argmax(1) == t.y[200:]).mean() > 0.95


def test_va_head_learns_a_linear_target():
    rng = np.random.default_rng(1)
    X = rng.normal(0, 1, (300, 5)).astype(np.float32)
    va = np.stack([5 + X[:, 0], 4 - 0.5 * X[:, 1]], 1).astype(np.float32)
    head = new_head(["deep"], {"deep": 5}, "va", [])
    cfg = FitConfig(task="va", loss="mse", hidden=(), dropout=0.0, epochs=40, lr=2e-2, weight_decay=0.0, threads=1)
    fit_head(X, Targets(va=va), cfg, head.net)
    assert ((head.predict(X) - va) ** 2).mean() < 0.01


def test_same_seed_same_head_other_seed_other_head():
    X, t = _blobs()

    def train(seed):
        h = new_head(["deep"], {"deep": 6}, "classify", ["a", "b", "c"])
        fit_head(X, t, FitConfig(**{**FAST.as_dict(), "hidden": (16,), "seed": seed, "dropout": 0.3}), h.net)
        return h.net.state_dict()

    a, b, c = train(5), train(5), train(6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_members_are_averaged():
    X, t = _blobs()
    h = new_head(["deep"], {"deep": 6}, "classify", ["a", "b", "c"])
    fit_head(X, t, FitConfig(**{**FAST.as_dict(), "hidden": (8,), "members": 3}), h.net)
    assert len(h.net.members) == 3
    x = torch.as_tensor(X[:4])
    per = torch.softmax(h.net.raw(x), 2)
    assert torch.allclose(h.net(x), per.mean(0))


def test_early_stopping_keeps_the_best_validation_epoch():
    X, t = _blobs()
    # Validation labels unrelated to the features: the validation loss only grows once the head is sure.
    noise = Targets(y=np.roll(t.y[200:], 1), dist=np.roll(t.dist[200:], 1, 0), p_star=t.p_star[200:])
    h = new_head(["deep"], {"deep": 6}, "classify", ["a", "b", "c"])
    hist = fit_head(X[:200], t.take(np.arange(200)), FitConfig(**{**FAST.as_dict(), "hidden": (8,), "epochs": 100,
                    "patience": 3, "schedule": "constant"}), h.net, val=(X[200:], noise))
    assert len(hist) < 100 and "val_top1" in hist[-1]
    best = min(range(len(hist)), key=lambda i: hist[i]["val_loss"])
    assert best == len(hist) - 4  # stopped 3 epochs after the best, and kept the best weights
    logp = torch.log(torch.as_tensor(h.predict(X[200:])))
    kept = float(0.6 * -logp.gather(1, torch.as_tensor(noise.y)[:, None]).mean()
                 + 0.4 * -(torch.as_tensor(noise.dist) * logp).sum(1).mean())
    assert kept == pytest.approx(hist[best]["val_loss"], rel=1e-4)


def test_cross_validate_predicts_every_record_once_and_summarises():
    X, t = _blobs(150)
    labels = LABEL_SETS["sentiment"]  # any 3-class set would do; evaluate only needs names
    labels = type(labels)("abc", ("a", "b", "c"))
    res = cross_validate(X, t, FAST, lambda: new_head(["deep"], {"deep": 6}, "classify", ["a", "b", "c"]).net, k=3,
                         metric=lambda p, tt: evaluate(p, tt, "classify", labels))
    assert res.pred.shape == (150, 3) and np.allclose(res.pred.sum(1), 1, atol=1e-5)
    assert sorted(set(res.folds.tolist())) == [0, 1, 2]
    s = summarise(res.per_fold)
    assert s["top1"]["mean"] > 0.9 and s["top1"]["std"] >= 0


def test_summarise_a_metric_only_some_folds_have():
    # sentiment_acc is absent from a fold whose predictions all lack a polarity (surprise, neutral)
    s = summarise([{"top1": 0.5, "sentiment_acc": 0.8}, {"top1": 0.7}, {"top1": 0.6, "sentiment_acc": 0.6}])
    assert s["top1"] == pytest.approx({"mean": 0.6, "std": np.std([0.5, 0.7, 0.6])})
    assert s["sentiment_acc"] == pytest.approx({"mean": 0.7, "std": 0.1, "n": 2})
    assert set(summarise([{"top1": 0.1}, {"top1": 0.3, "kl": 0.2}])["kl"]) == {"mean", "std", "n"}


def test_config_checks():
    with pytest.raises(UsageError):
        FitConfig(task="va", loss="ce").check()
    with pytest.raises(UsageError):
        FitConfig(loss="mse").check()
    with pytest.raises(UsageError):
        FitConfig(lam=1.5).check()


# ---- calibration ----


def _sampled(T_true, n=4000, c=5, members=1, seed=0):
    """Logits and classes drawn from softmax(logits / T_true): T_true is the right answer."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (members, n, c))
    p = probs_at_temperature(z, T_true)
    y = np.array([rng.choice(c, p=row) for row in p])
    return z, y


@pytest.mark.parametrize("T_true,members", [(2.5, 1), (0.6, 1), (1.8, 3)])
def test_fit_temperature_recovers_the_temperature_the_data_was_drawn_at(T_true, members):
    z, y = _sampled(T_true, members=members)
    T = fit_temperature(z if members > 1 else z[0], y)
    assert T == pytest.approx(T_true, rel=0.12)
    # it is a minimum of the NLL: nudging either way does worse
    assert nll(probs_at_temperature(z, T), y) <= min(nll(probs_at_temperature(z, T * 1.2), y),
                                                     nll(probs_at_temperature(z, T / 1.2), y))


def test_fit_temperature_refuses_mismatched_inputs():
    with pytest.raises(ValueError):
        fit_temperature(np.zeros((3, 4)), np.zeros(5, np.int64))


def test_calibration_report_softens_an_over_confident_model():
    z, y = _sampled(1.0, n=3000)
    folds = kfold(3000, 5, 0)
    dist = probs_at_temperature(z, 1.0)  # the truth distribution the classes were drawn from
    rep = calibration_report(z * 3.0, y, folds, dist=dist)  # logits three times too sharp
    assert rep["temperature"] == pytest.approx(3.0, rel=0.12)
    assert rep["kl_after"] < rep["kl_before"] / 3
    assert rep["ece_before"] > 0.1 and rep["ece_after"] < rep["ece_before"] / 3
    assert rep["nll_after"] < rep["nll_before"] and rep["bins"] == 15


def test_cross_validate_keeps_member_logits_that_give_its_predictions():
    X, t = _blobs(90)
    cfg = FitConfig(hidden=(8,), dropout=0.0, epochs=3, members=2, threads=1)
    res = cross_validate(X, t, cfg, lambda: new_head(["deep"], {"deep": 6}, "classify", ["a", "b", "c"]).net, k=3)
    assert res.logits.shape == (2, 90, 3)
    assert np.allclose(probs_at_temperature(res.logits, 1.0), res.pred, atol=1e-5)


def test_describe_source_names_the_file_relative_to_the_root(tmp_path):
    import hashlib

    (tmp_path / "data").mkdir()
    f = tmp_path / "data" / "train.jsonl"
    f.write_bytes(b'{"path": "a.jpg"}\n')
    d = describe_source(f, tmp_path)
    assert d == {"path": "data/train.jsonl", "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
    assert describe_source(f, tmp_path / "elsewhere")["path"] == "train.jsonl"


def test_pearson_r_of_ratings_all_alike_is_none_and_left_out_of_the_summary():
    flat = Targets(va=np.full((4, 2), 5.0, np.float32))
    pred = np.array([[4.0, 5.0], [5.0, 6.0], [6.0, 4.0], [5.5, 5.5]])
    m = evaluate(pred, flat, "va")
    assert m["valence_r"] is None and m["arousal_r"] is None and m["valence_mse"] > 0
    s = summarise([m, {**m, "valence_r": 0.5}])
    assert s["valence_r"] == {"mean": 0.5, "std": 0.0, "n": 1} and "arousal_r" not in s
    assert all(math.isfinite(v) for row in s.values() for v in row.values())


def test_valence_past_float32_is_no_target():
    recs = [{"valence": 1e300, "arousal": 5.0}, {"valence": 5.0, "arousal": -1e39}, {"valence": 3.0, "arousal": 4.0}]
    t, kept, skipped = targets_from_records(recs, "va")
    assert kept == [2] and skipped == [0, 1] and np.isfinite(t.va).all()


def test_a_val_split_too_large_for_the_records_names_val_split():
    with pytest.raises(UsageError, match="--val-split"):
        split_val(1, 0.5)


def test_a_target_of_the_wrong_json_type_is_refused_not_coerced():
    recs = [{"valence": "5", "arousal": 4.0}, {"valence": True, "arousal": 4.0}, {"valence": 3.0, "arousal": 4.0}]
    refused: dict[int, str] = {}
    t, kept, skipped = targets_from_records(recs, "va", refused=refused)
    assert kept == [2] and skipped == [] and t.va.tolist() == [[3.0, 4.0]]
    assert refused == {0: '"valence" is a string, not a number', 1: '"valence" is a boolean, not a number'}
    # True is not valence 1 (negative), and "7" is not valence 7, for the sentiment set either.
    s, kept, _ = targets_from_records([{"valence": True, "label": "joy"}, {"valence": "7"}], "classify",
                                      LABEL_SETS["sentiment"], refused=(ref := {}))
    assert kept == [] and set(ref) == {0, 1}
    e6 = LABEL_SETS["emotion6"]
    recs = [{"label": True}, {"distribution": {"joy": "0.5", "fear": 0.5}}, {"distribution": {"joy": True}},
            {"distribution": [0.5, 0.5]}, {"label": "joy"}]
    t, kept, skipped = targets_from_records(recs, "classify", e6, refused=(ref := {}))
    assert kept == [4] and sorted(ref) == [0, 1, 2, 3]
    assert ref[1] == "\"distribution\" gives 'joy' a string, not a number"
    # Without a place to say why, such a record is still never used.
    _, kept, skipped = targets_from_records(recs, "classify", e6)
    assert kept == [4] and skipped == [0, 1, 2, 3]
