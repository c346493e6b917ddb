"""The whole pipeline on real photos: detect, crop and classify the labelled faces of ExpW.

FER2013's test images are pre-cropped 48x48 faces, so they cannot show how well the app finds
faces in a photo or frames them the way the model was trained. ExpW ("Expression in-the-Wild")
can: each image is a web photo crop around one labelled face. Protocol (the dataset's README):
detect faces, take the detection that overlaps the labelled box most, count a miss when none
overlaps it by IoU >= 0.3, and report accuracy over all faces (a miss is wrong), the face-found
rate, accuracy on the faces found, macro-F1 and per-class recall.

ExpW is a validation set for the pipeline: never train on it, never select weights on it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferlens.config import CLASS_NAMES, DEFAULT_EXPW_DIR
from ferlens.core.detectors import Box, box_iou
from ferlens.core.images import InvalidImageError, read_image
from ferlens.training.metrics import classification_report

#: A detection counts as the labelled face when their boxes overlap by at least this IoU.
MATCH_IOU = 0.3
LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class LabelledFace:
    """One labelled face of an in-the-wild photo: the file, its emotion and its box (x, y, w, h)."""

    path: Path
    label: int
    box: Box


def load_labels(root: Path | str = DEFAULT_EXPW_DIR, limit: int | None = None) -> list[LabelledFace]:
    """The labelled faces in file order; `limit` takes an evenly spaced, class-balanced subset.

    Raises FileNotFoundError when the folder or its labels.csv is absent.
    """
    root = Path(root)
    labels_file = root / LABELS_FILE
    if not labels_file.is_file():
        raise FileNotFoundError(f"no in-the-wild dataset at {root} ({LABELS_FILE} not found)")
    faces = []
    with open(labels_file, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["label"] not in CLASS_NAMES:
                continue
            box = tuple(int(row[key]) for key in ("face_x", "face_y", "face_w", "face_h"))
            faces.append(LabelledFace(root / row["file"], CLASS_NAMES.index(row["label"]), box))
    if limit is not None and limit < len(faces):
        per_class = max(1, limit // len(CLASS_NAMES))
        subset = []
        for cls in range(len(CLASS_NAMES)):
            members = [f for f in faces if f.label == cls]
            step = max(1, len(members) // per_class)
            subset.extend(members[::step][:per_class])
        faces = subset
    return faces


def match_face(detections: list[Box], labelled: Box) -> int | None:
    """Index of the detection that overlaps the labelled box most, or None below MATCH_IOU."""
    if not detections:
        return None
    overlaps = [box_iou(box, labelled) for box in detections]
    best = int(np.argmax(overlaps))
    return best if overlaps[best] >= MATCH_IOU else None


def wild_report(labels: np.ndarray, predicted: np.ndarray, other_detections: int = 0) -> dict:
    """The protocol's figures from true labels and predictions, where -1 marks a missed face."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    found = predicted >= 0
    overall = classification_report(labels, predicted)
    on_found = classification_report(labels[found], predicted[found]) if found.any() else None
    return {
        "faces": int(len(labels)),
        "accuracy_all": overall["accuracy"],
        "found_rate": float(found.mean()) if len(labels) else 0.0,
        "accuracy_found": on_found["accuracy"] if on_found else 0.0,
        "macro_f1": overall["macro_f1"],
        "per_class_recall": {name: r["recall"] for name, r in overall["per_class"].items()},
        "missed_per_class": {name: int(np.sum((labels == i) & ~found)) for i, name in enumerate(CLASS_NAMES)},
        "other_detections_per_photo": other_detections / max(1, len(labels)),
        "confusion_matrix": overall["confusion_matrix"],
    }


#: Size of the fixed, class-balanced subset whose figures metrics.json also records, so that a
#: test can recompute them in seconds (7 x 42 = 294 faces).
CHECK_SUBSET = 300


@dataclass
class WildPredictions:
    """Per-face outcome of the pipeline: the predicted class, or -1 for a missed face."""

    faces: list[LabelledFace]
    predicted: np.ndarray
    compared: np.ndarray | None
    other_detections: np.ndarray

    def report(self, keep: list[int] | None = None) -> dict:
        idx = np.arange(len(self.faces)) if keep is None else np.asarray(keep, dtype=np.int64)
        labels = np.array([self.faces[i].label for i in idx], dtype=np.int64)
        report = wild_report(labels, self.predicted[idx], int(self.other_detections[idx].sum()))
        if self.compared is not None:
            again = wild_report(labels, self.compared[idx])
            report["single_crop"] = {key: again[key] for key in ("accuracy_all", "accuracy_found", "macro_f1")}
        return report


def pipeline_answer(recognizer, face: LabelledFace) -> tuple[np.ndarray | None, list, int | None]:
    """One labelled photo through `recognizer.predict`: its RGB pixels (None when the file cannot be
    read), the faces found, and the index of the one matching the labelled box (None: a miss)."""
    try:
        rgb = read_image(face.path)
    except InvalidImageError:
        return None, [], None
    found = recognizer.predict(rgb, color_order="rgb")
    return rgb, found, match_face([f.box for f in found], face.box)


def run_pipeline(
    recognizer, faces: list[LabelledFace], compare_tta: str | None = "none",
    progress: Callable[[int, int], None] | None = None,
) -> WildPredictions:
    """`recognizer.predict` on every photo, as the app runs it (its detector, crop margin and
    test-time augmentation); a photo that cannot be read counts as a missed face. With
    `compare_tta`, the same matched boxes are classified again with that augmentation."""
    predicted = np.full(len(faces), -1, dtype=np.int64)
    compared = predicted.copy()
    others = np.zeros(len(faces), dtype=np.int64)
    other = recognizer.with_settings(tta=compare_tta) if compare_tta and compare_tta != recognizer.tta else None
    for i, face in enumerate(faces):
        rgb, found, hit = pipeline_answer(recognizer, face)
        if rgb is None:
            continue
        others[i] = len(found) - (hit is not None)
        if hit is not None:
            predicted[i] = CLASS_NAMES.index(found[hit].label)
            if other is not None:
                compared[i] = CLASS_NAMES.index(other.predict(rgb, color_order="rgb", boxes=[found[hit].box])[0].label)
        if progress is not None:
            progress(i + 1, len(faces))
    return WildPredictions(faces, predicted, compared if other is not None else None, others)


def pipeline_settings(recognizer) -> dict:
    """What the figures depend on besides the weights: detector settings, crop margin, TTA, runtime."""
    from dataclasses import asdict

    return {"detector": recognizer.detector.name, **asdict(recognizer.detector.settings),
            "edge_pad": recognizer.edge_pad, "margin": recognizer.margin,
            "tta": recognizer.tta, "backend": recognizer.backend_name}


def evaluate_wild_section(recognizer, root: Path | str | None = None) -> dict:
    """The "in_the_wild" section of metrics.json (all faces, plus the fixed check subset's figures);
    says why it was skipped when the data is absent."""
    root = Path(root or DEFAULT_EXPW_DIR)
    try:
        faces = load_labels(root)
    except FileNotFoundError as exc:
        return {"skipped": str(exc)}
    predictions = run_pipeline(recognizer, faces)
    report = predictions.report()
    report["settings"] = pipeline_settings(recognizer)
    index = {face.path: i for i, face in enumerate(faces)}
    subset = [index[face.path] for face in load_labels(root, CHECK_SUBSET)]
    report["check_subset"] = {key: value for key, value in predictions.report(subset).items() if key != "confusion_matrix"}
    report["dataset"] = f"ExpW: {len(faces)} labelled faces in web photos ({root.name}/)"
    report["protocol"] = (f"the whole pipeline as the upload page runs it; the detection overlapping the labelled box "
                          f"most counts, a miss (IoU < {MATCH_IOU}) is wrong; never used for training or model selection")
    return report
