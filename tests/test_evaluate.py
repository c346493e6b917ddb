"""Metric arithmetic, checked against figures worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ferlens.training.metrics import classification_report, confusion_matrix


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_report_by_hand():
    labels = np.array([0, 0, 0, 3, 3, 6])
    predicted = np.array([0, 0, 3, 3, 0, 6])
    report = classification_report(labels, predicted)
    assert report["accuracy"] == pytest.approx(4 / 6)
    angry = report["per_class"]["angry"]
    assert angry["precision"] == pytest.approx(2 / 3) and angry["recall"] == pytest.approx(2 / 3)
    happy = report["per_class"]["happy"]
    assert happy["precision"] == pytest.approx(1 / 2) and happy["recall"] == pytest.approx(1 / 2)
    assert report["per_class"]["surprise"]["f1"] == pytest.approx(1.0)
    assert report["per_class"]["disgust"]["support"] == 0 and report["per_class"]["disgust"]["f1"] == 0.0
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1.0) / 7)
    assert np.array(report["confusion_matrix"]).sum() == 6
