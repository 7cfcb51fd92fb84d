"""Metrics on crafted predictions: top-1, macro-F1 (against scikit-learn), worst-region, pm-k."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from wiseft_lib.core.metrics import METRICS, get_metric, pm_k, region_accuracies


def onehot(preds, n_classes):
    return np.eye(n_classes)[np.asarray(preds)]


def test_registered_names():
    assert {"top1", "macro_f1", "worst_region_acc", "pm0", "pm10"} <= set(METRICS)
    with pytest.raises(KeyError, match="unknown metric"):
        get_metric("nope")


def test_macro_f1_matches_sklearn_over_present_classes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, 300)
    logits = rng.normal(size=(300, 20))  # predictions may fall on classes absent from labels
    preds = logits.argmax(1)
    expected = f1_score(labels, preds, average="macro", labels=np.unique(labels)) * 100
    assert get_metric("macro_f1")(logits, labels, {}) == pytest.approx(expected)
    # hand-computed: class 0 F1 = 2/3 (P=1/2, R=1), class 1 F1 = 0 -> 33.3
    assert get_metric("macro_f1")(onehot([0, 0], 3), np.array([0, 1]), {}) == pytest.approx(100 / 3)
    with pytest.raises(ValueError):
        get_metric("macro_f1")(np.zeros((0, 3)), np.zeros(0, int), {})


def test_worst_region_accuracy_ignores_other_and_empty_regions():
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    preds = np.array([0, 1, 0, 0, 0, 2, 1])
    region = np.array(["Asia", "Asia", "Asia", "Europe", "Europe", "Other", "Other"])
    logits = onehot(preds, 3)
    assert region_accuracies(logits, labels, region) == {
        "Asia": pytest.approx(200 / 3), "Europe": 50.0, "Other": 50.0}
    assert get_metric("worst_region_acc")(logits, labels, {"region": region}) == 50.0
    region2 = np.array(["Asia"] * 5 + ["Other"] * 2)  # Other (0/2 correct would be worst) is ignored
    assert get_metric("worst_region_acc")(onehot([0, 1, 2, 0, 1, 0, 0], 3), labels,
                                          {"region": region2}) == 100.0
    with pytest.raises(KeyError, match="region"):
        get_metric("worst_region_acc")(logits, labels, {})
    assert get_metric("top1")(logits, labels, {}) == pytest.approx(400 / 7)


def test_pm_k_on_crafted_groups():
    # group A: anchor 0, neighbours 1 (offset 3), 2 (offset 12); group B: anchor 3, neighbour 4 (offset 1);
    # group C: anchor 5 alone; example 6 belongs to no group
    meta = {"pm_anchor": np.array([0, 0, 0, 3, 3, 5, -1]), "pm_offset": np.array([0, 3, 12, 0, 1, 0, 0])}
    labels = np.array([1, 1, 1, 2, 2, 0, 0])
    preds = np.array([1, 1, 0, 2, 0, 1, 0])  # A: far neighbour wrong; B: near neighbour wrong; C: anchor wrong
    logits = onehot(preds, 3)
    assert get_metric("pm0")(logits, labels, meta) == pytest.approx(200 / 3)  # anchors A, B right
    assert get_metric("pm10")(logits, labels, meta) == pytest.approx(100 / 3)  # only A (12 > 10 frames)
    assert pm_k(logits, labels, meta, 12) == 0.0
    # several acceptable labels per frame: B's neighbour predicted 0, which it also carries
    ok = np.eye(3, dtype=bool)[labels]
    ok[4, 0] = True
    assert get_metric("pm10")(logits, labels, {**meta, "correct_labels": ok}) == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="no anchor"):
        pm_k(logits, labels, {"pm_anchor": np.full(7, -1), "pm_offset": np.zeros(7)}, 0)
