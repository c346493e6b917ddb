"""Face detectors: one module per detector behind one interface (`FaceDetector`), picked by name.

Every detector returns `Detection`s (a box framed for the classifier, a score where it gives one,
landmarks where it finds them) and is safe to share between threads. The defaults per job live
here: still photos, the live camera and video files each take the detector measured best for them
(benchmarks/detectors.md).
"""

from __future__ import annotations

from collections.abc import Callable

from ferlens.core.detectors.base import (
    MERGE_IOU,
    Box,
    Detection,
    DetectorError,
    DetectorSettings,
    FaceDetector,
    box_iou,
    largest_first,
)
from ferlens.core.detectors.blazeface import BlazeFaceDetector
from ferlens.core.detectors.border import EDGE_PAD, detect_with_border
from ferlens.core.detectors.follower import FaceFollower
from ferlens.core.detectors.haar import HaarFaceDetector
from ferlens.core.detectors.hog import HogFaceDetector
from ferlens.core.detectors.union import UnionDetector

__all__ = [
    "DETECTORS", "EDGE_PAD", "MERGE_IOU", "Box", "Detection", "DetectorError", "DetectorSettings", "FaceDetector",
    "BlazeFaceDetector", "FaceFollower", "HaarFaceDetector", "HogFaceDetector", "UnionDetector", "box_iou",
    "detect_with_border", "detector_names", "describe", "largest_first", "make_detector", "make_detector_or_fallback",
]


def _blazeface(model: str) -> Callable[[DetectorSettings], FaceDetector]:
    return lambda settings: BlazeFaceDetector(settings, model)


#: Name -> (factory, one line for the CLI's help and the pages).
DETECTORS: dict[str, tuple[Callable[[DetectorSettings], FaceDetector], str]] = {
    "blazeface": (_blazeface("back"), "MediaPipe BlazeFace (back-camera model, 256 px), tiled on large photos"),
    "blazeface-full-range": (_blazeface("full-range"), "MediaPipe BlazeFace full-range model (192 px)"),
    "blazeface-short-range": (_blazeface("short-range"), "MediaPipe BlazeFace short-range model (128 px), for webcams"),
    "haar": (HaarFaceDetector, "OpenCV's Haar cascade: frontal faces, fastest"),
    "hog": (HogFaceDetector, "dlib's HOG detector: frontal faces"),
    "haar+hog": (lambda s: UnionDetector(HaarFaceDetector(s), HogFaceDetector(s)),
                 "the Haar cascade plus the faces only dlib's HOG detector finds"),
}

#: Still photos (upload page, CLI on images, `EmotionRecognizer()`): the detector that finds most
#: faces in real photos. Where its model files are not installed, FALLBACK_PHOTO_DETECTOR.
PHOTO_DETECTOR = "blazeface"
FALLBACK_PHOTO_DETECTOR = "haar+hog"
#: The live camera: the paper's per-frame Haar cascade, re-detecting near known faces between full
#: scans; the page offers the others of LIVE_DETECTORS beside it, with their measured speed.
LIVE_DETECTOR = "haar"
LIVE_DETECTORS = ("haar", "blazeface-short-range", "blazeface-full-range", "blazeface")
#: Video files and the CLI on videos.
VIDEO_DETECTOR = "haar"


def detector_names() -> list[str]:
    return list(DETECTORS)


def describe(name: str) -> str:
    """The one-line description of a detector, for help texts and the pages."""
    return DETECTORS[name][1]


def make_detector(name: str, settings: DetectorSettings | None = None) -> FaceDetector:
    """The detector called `name` with `settings`; ValueError for an unknown name, DetectorError when
    it cannot run here (a model file or package missing)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose {', '.join(DETECTORS)}")
    return DETECTORS[name][0](settings or DetectorSettings())


def make_detector_or_fallback(name: str, settings: DetectorSettings | None = None) -> tuple[FaceDetector, str | None]:
    """`make_detector`, except that the photo default falls back to FALLBACK_PHOTO_DETECTOR where it
    cannot run here; the second value then says so, for the user to see."""
    try:
        return make_detector(name, settings), None
    except DetectorError as exc:
        if name != PHOTO_DETECTOR:
            raise
        note = (f"{exc}; faces are found with {FALLBACK_PHOTO_DETECTOR} instead, which misses more faces in "
                "real photos")
        return make_detector(FALLBACK_PHOTO_DETECTOR, settings), note
