"""Metrics from probabilities: checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.metrics import compute_metrics, predict_labels


def test_multiclass_by_hand():
    # truth: a a a b b c ; predicted: a a b b c c
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6]])
    labels = [(0,), (0,), (0,), (1,), (1,), (2,)]
    m = compute_metrics(probs, labels, ["a", "b", "c"], "multiclass")
    assert m.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m.count == 6 and m.accuracy == pytest.approx(4 / 6)
    recall = [2 / 3, 1 / 2, 1.0]
    precision = [1.0, 1 / 2, 1 / 2]
    assert [c.recall for c in m.per_class] == pytest.approx(recall)
    assert [c.precision for c in m.per_class] == pytest.approx(precision)
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    assert [c.f1 for c in m.per_class] == pytest.approx(f1)
    assert [c.support for c in m.per_class] == [3, 2, 1]
    assert m.balanced_accuracy == pytest.approx(np.mean(recall))
    assert m.macro_f1 == pytest.approx(np.mean(f1))
    assert m.threshold is None


def test_classes_without_support_do_not_count_in_balanced_accuracy():
    probs = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0]])
    m = compute_metrics(probs, [(0,), (1,)], ["a", "b", "never"], "multiclass")
    assert m.balanced_accuracy == 1.0 and m.macro_f1 == 1.0
    assert m.per_class[2].support == 0 and m.per_class[2].precision == 0.0


def test_binary_uses_the_threshold_on_the_second_class():
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.55, 0.45]])
    labels = [(0,), (1,), (1,)]
    m = compute_metrics(probs, labels, ["neg", "pos"], "binary", threshold=0.5)
    assert m.confusion == [[1, 0], [1, 1]] and m.threshold == 0.5
    low = compute_metrics(probs, labels, ["neg", "pos"], "binary", threshold=0.4)
    assert low.confusion == [[1, 0], [0, 2]] and low.accuracy == 1.0
    assert predict_labels(probs, "binary", 0.6).tolist() == [0, 1, 0]


def test_multilabel_by_hand():
    probs = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.4], [0.8, 0.9, 0.1]])
    labels = [(0, 2), (1, 2), ()]
    m = compute_metrics(probs, labels, ["x", "y", "z"], "multilabel")
    # predicted: {x,z}, {y}, {x,y}
    assert m.confusion == [[[1, 1], [0, 1]], [[1, 1], [0, 1]], [[1, 0], [1, 1]]]
    assert m.accuracy == pytest.approx(6 / 9)
    assert m.extra["subset_accuracy"] == pytest.approx(1 / 3)
    assert [c.support for c in m.per_class] == [1, 1, 2]
    assert [c.recall for c in m.per_class] == pytest.approx([1, 1, 0.5])
    assert [c.precision for c in m.per_class] == pytest.approx([0.5, 0.5, 1])


def test_to_dict_is_json_ready():
    import json

    m = compute_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), [(0,), (0,)], ["a", "b"], "multiclass")
    data = json.loads(json.dumps(m.to_dict()))
    assert data["accuracy"] == 0.5 and data["confusion"] == [[1, 1], [0, 0]]
    assert data["per_class"][0] == {"name": "a", "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}


def test_metrics_per_class_and_balanced_accuracy():
    # moved from the former tests/test_options.py
    probs = np.array([[0.9, 0.1, 0], [0.8, 0.2, 0], [0.1, 0.9, 0], [0.6, 0.4, 0]])
    m = compute_metrics(probs, [(0,), (0,), (1,), (1,)], ["a", "b", "c"], "multiclass")
    assert m.accuracy == 0.75 and m.confusion == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert m.balanced_accuracy == pytest.approx(0.75)  # mean recall over classes with support
    assert m.per_class[0].precision == pytest.approx(2 / 3) and m.per_class[1].recall == 0.5
    assert m.per_class[2].support == 0
