"""Classification figures from labels and predictions: the confusion matrix and the per-class report.

One home for the arithmetic that FER2013 evaluation, the in-the-wild (ExpW) pipeline and the tests
all use, so their figures are computed the same way.
"""

from __future__ import annotations

import numpy as np

from ferlens.config import CLASS_NAMES


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def classification_report(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and per-class precision / recall / F1 / support from the confusion matrix.

    A prediction of -1 means none was made (a face the detector missed in a photo): it is wrong,
    lowers its class's recall and counts in no class's precision.
    """
    num_classes = len(CLASS_NAMES)
    predicted = np.where(np.asarray(predicted) < 0, num_classes, predicted)
    with_missed = confusion_matrix(np.asarray(labels), predicted, num_classes + 1)[:num_classes]
    cm = with_missed[:, :num_classes]
    true_pos = np.diag(cm).astype(np.float64)
    support = with_missed.sum(axis=1)
    predicted_count = cm.sum(axis=0)
    precision = np.divide(true_pos, predicted_count, out=np.zeros_like(true_pos), where=predicted_count > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return {
        "images": int(len(labels)),
        "accuracy": float(true_pos.sum() / max(1, len(labels))),
        # Mean recall over the classes present: accuracy with every class weighted alike, so a model that
        # wins by following a skewed prior (FER+ is 37 % neutral, 2 % fear) does not look better for it.
        "balanced_accuracy": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(CLASS_NAMES, precision, recall, f1, support)
        },
        "confusion_matrix": cm.tolist(),
    }
