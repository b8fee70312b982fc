"""emo.emotions: label sets, sentiment mapping, Mikels' wheel, eq. 4."""

from __future__ import annotations

import numpy as np
import pytest

from emo.emotions import (LABEL_SETS, MIKELS_WHEEL, distribution_vector, from_labels, label_set,
                          sentiment_of_valence, wheel_distance, wheel_distribution)


def test_named_sets_and_their_sizes():
    assert len(LABEL_SETS["mikels8"]) == 8
    assert LABEL_SETS["emotion6"].labels == ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")
    assert LABEL_SETS["five"].labels == ("love", "happiness", "violence", "fear", "sadness")
    assert LABEL_SETS["sentiment"].labels == ("positive", "negative")


def test_sentiment_mapping_complete_where_one_exists():
    m8 = LABEL_SETS["mikels8"]
    assert m8.complete_sentiment and LABEL_SETS["five"].complete_sentiment
    assert list(m8.positive_mask()) == [True] * 4 + [False] * 4
    e6 = LABEL_SETS["emotion6"]
    assert not e6.complete_sentiment
    assert e6.polarity("joy") == "positive" and e6.polarity("fear") == "negative" and e6.polarity("surprise") is None
    # 8-class probabilities score as 2-class: the positive half's mass.
    p = np.array([0.1, 0.1, 0.1, 0.1, 0.3, 0.1, 0.1, 0.1])
    assert m8.p_positive(p) == pytest.approx(0.4)
    # Classes without polarity are left out: joy 0.3 against fear 0.1.
    q = np.array([0, 0, 0.1, 0.3, 0, 0.4, 0.2])
    assert e6.p_positive(q) == pytest.approx(0.75)


def test_wheel_distances():
    assert wheel_distance("amusement", "amusement") == 1
    assert wheel_distance("amusement", "awe") == 2  # neighbours
    assert wheel_distance("amusement", "sadness") == 2  # the circle closes
    assert wheel_distance("amusement", "anger") == 5  # opposite
    d = LABEL_SETS["mikels8"].distances()
    assert (d == d.T).all() and d.max() == 5 and (np.diag(d) == 1).all()


def test_eq4_by_hand():
    # amusement with p* = 0.6; distances to the others 2,3,4,5,4,3,2: weights 1/d.
    d = LABEL_SETS["mikels8"].distances()
    f = wheel_distribution(0, 0.6, d)
    inv = np.array([1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 4, 1 / 3, 1 / 2])
    assert f[0] == pytest.approx(0.6)
    assert f[1:] == pytest.approx(0.4 * inv / inv.sum())
    assert f[1] == pytest.approx(0.4 * 0.5 / (1 + 2 / 3 + 1 / 2 + 1 / 5))


@pytest.mark.parametrize("label", range(8))
@pytest.mark.parametrize("p", [0.3, 0.6, 0.99])
def test_eq4_sums_to_one_and_favours_wheel_neighbours(label, p):
    d = LABEL_SETS["mikels8"].distances()
    f = wheel_distribution(label, p, d)
    assert f.sum() == pytest.approx(1.0)
    others = [i for i in range(8) if i != label]
    near = [i for i in others if d[label, i] == 2]
    far = [i for i in others if d[label, i] == 5]
    assert len(near) == 2 and len(far) == 1
    assert all(f[n] > f[far[0]] for n in near)
    # Monotone in distance.
    for i in others:
        for j in others:
            if d[label, i] < d[label, j]:
                assert f[i] > f[j]


def test_sets_off_the_wheel_spread_evenly():
    e6 = LABEL_SETS["emotion6"]
    f = wheel_distribution(3, 0.7, e6.distances())
    assert f[3] == pytest.approx(0.7) and f.sum() == pytest.approx(1.0)
    assert np.allclose(np.delete(f, 3), 0.05)


def test_custom_sets_and_lookup():
    s = label_set("calm, tense ")
    assert s.name == "custom" and s.labels == ("calm", "tense")
    with pytest.raises(ValueError):
        label_set("mikels9")
    assert from_labels(("positive", "negative")).name == "sentiment"
    with pytest.raises(KeyError, match="not a class of emotion6"):
        LABEL_SETS["emotion6"].index("awe")


def test_distribution_vector_orders_and_renormalises():
    e6 = LABEL_SETS["emotion6"]
    v = distribution_vector({"joy": 2.0, "anger": 2.0}, e6)
    assert v.tolist() == [0.5, 0, 0, 0.5, 0, 0, 0]
    with pytest.raises(KeyError):
        distribution_vector({"awe": 1.0}, e6)
    with pytest.raises(ValueError):
        distribution_vector({"joy": 0.0}, e6)


def test_sentiment_of_valence():
    assert sentiment_of_valence(6.1) == "positive"
    assert sentiment_of_valence(2.0) == "negative"
    assert sentiment_of_valence(5.0) is None


def test_wheel_order_is_positive_then_negative():
    assert MIKELS_WHEEL[:4] == ("amusement", "awe", "contentment", "excitement")


@pytest.mark.parametrize("spec, says", [("calm,tense,calm", "'calm' more than once"), ("calm,,tense", "empty label"),
                                        ("calm,tense,", "empty label"), (",calm,tense", "empty label"),
                                        ("calm, ,tense", "empty label"), ("a, a", "'a' more than once")])
def test_custom_labels_with_an_empty_or_repeated_entry_are_refused(spec, says):
    # They were dropped silently: "joy,,fear" trained a two-class head, as if the typo were meant.
    with pytest.raises(ValueError, match=says):
        label_set(spec)
