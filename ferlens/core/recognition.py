"""`EmotionRecognizer`: give it an image, get every face with its box and emotion probabilities.

The app, the CLI, the benchmarks and the tests all go through this one pipeline:
decode/validate -> detect (downscaled) -> crop with margin -> classify in one batch.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ferlens.config import CLASS_NAMES, DEFAULT_MODEL_DIR, FACE_MARGIN, IMAGE_SIZE
from ferlens.core.detectors import (
    EDGE_PAD,
    PHOTO_DETECTOR,
    Box,
    Detection,
    DetectorSettings,
    FaceDetector,
    detect_with_border,
    make_detector_or_fallback,
)
from ferlens.core.framing import bounded_crop
from ferlens.core.images import InvalidImageError, as_gray, as_rgb, read_image
from ferlens.core.tta import DEFAULT_TTA, check_mode, predict_with_tta
from ferlens.modelfolder.loading import Backend, ModelLoadError, ModelLoadWarning, describe_bad_probabilities, load_backend

__all__ = ["EmotionRecognizer", "Face", "InvalidImageError", "ModelLoadError"]


@dataclass
class Face:
    """One face: its box (x, y, w, h) in the input image, the 7 class probabilities, and the
    detector's score for it (None when the detector gives none, or the face was not detected)."""

    box: Box
    probabilities: dict[str, float]
    whole_image: bool = False
    extra: dict = field(default_factory=dict)
    detection_score: float | None = None

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.label]

    def to_dict(self) -> dict:
        x, y, w, h = self.box
        return {
            "box": {"x": x, "y": y, "width": w, "height": h},
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "whole_image": self.whole_image,
            "detection_score": None if self.detection_score is None else round(self.detection_score, 4),
        }


#: Faces per backend call in `classify` (x10 views with ten-crop): bounds the activations' memory.
CLASSIFY_CHUNK = 64


class EmotionRecognizer:
    """Face detection + emotion classification with one shared, batched pipeline.

    Args:
        model_dir: a trained model folder (default: the shipped model in `models/`).
        backend: "auto" (the fastest float format), "realtime" (INT8 first where the CPU has 8-bit
            dot products, else float TFLite), "keras", "tflite", "tflite-int8" or "onnx".
        detector: a name of `ferlens.core.detectors.DETECTORS` (default: the best measured on real photos,
            BlazeFace; the Haar cascade plus dlib's HOG where BlazeFace's models are not installed,
            with a load warning).
        min_size: smallest face kept, in input pixels; score_threshold: lowest detection score kept
            by detectors that score faces (None, for either: the detector's own default).
            scale_factor, min_neighbors: Haar cascade settings.
        detect_max_side: detection runs on a copy whose longer side is at most this (None: the
            detector's own; 640 px for the Haar cascade, 1280 for BlazeFace, which scans in tiles).
        edge_pad: `predict` looks at the picture a second time inside a border this fraction of its
            longer side wide and adds the faces found only then, mostly faces cut by the picture's edge
            (`ferlens.core.detectors.border`); 0 turns it off. Frames given with `boxes` are not scanned.
        margin: extra border around each detected face, as a fraction of its size.
        threads: inference threads (None: the runtime's default).
        tta: test-time augmentation, "none", "flip" (default: mirror-averaged, ~2 points more
            accurate for one extra inference per face) or "ten-crop" (~3 points, ten inferences).

    Thread-safe: one recognizer (and the clones `with_settings` makes) may serve any number of threads
    at once, as the app's sessions share it; the detectors and backends it holds are each thread-safe
    (tests/test_concurrency.py, benchmarks/concurrency.md).

    `load_warnings` lists what did not go as asked while loading (another format used because
    the first was refused, or a folder without a checksum manifest); each is also issued as a
    `ModelLoadWarning`. Front ends show them: the app as a warning, the CLI on stderr.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        backend: str = "auto",
        *,
        detector: str = PHOTO_DETECTOR,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int | None = None,
        score_threshold: float | None = None,
        detect_max_side: int | None = None,
        edge_pad: float = EDGE_PAD,
        margin: float = FACE_MARGIN,
        threads: int | None = None,
        tta: str = DEFAULT_TTA,
    ):
        if not 0.0 <= _as_float(margin) <= 1.0:  # NaN fails the comparison too
            raise ValueError(f"margin must be a number between 0 and 1, got {margin!r}")
        if not 0.0 <= _as_float(edge_pad) <= 1.0:
            raise ValueError(f"edge_pad must be a number between 0 and 1, got {edge_pad!r}")
        self.model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        self.margin = margin
        self.edge_pad = edge_pad
        self.tta = check_mode(tta)
        self.load_warnings: list[str] = []
        settings = DetectorSettings(scale_factor=scale_factor, min_neighbors=min_neighbors, min_size=min_size,
                                    max_side=detect_max_side, score_threshold=score_threshold)
        self.detector: FaceDetector = self._make_detector(detector, settings)
        self.backend: Backend = load_backend(self.model_dir, backend, threads, on_warning=self.load_warnings.append)
        for message in self.load_warnings:
            warnings.warn(message, ModelLoadWarning, stacklevel=2)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def _make_detector(self, name: str, settings: DetectorSettings) -> FaceDetector:
        """The detector `name`; the photo default falls back (with a load warning) where it cannot run."""
        detector, note = make_detector_or_fallback(name, settings)
        if note and note not in self.load_warnings:
            self.load_warnings.append(note)
        return detector

    def with_settings(self, tta: str | None = None, detector: str | None = None, **settings) -> EmotionRecognizer:
        """A recognizer sharing this one's loaded model but with another detector, other detection
        settings (scale_factor, min_neighbors, min_size, max_side, score_threshold) or test-time
        augmentation, so a settings change costs no model load (detectors share their native objects)."""
        clone = copy.copy(self)
        clone.load_warnings = list(self.load_warnings)
        clone.detector = clone._make_detector(detector or self.detector.name, replace(self.detector.settings, **settings))
        clone.tta = check_mode(tta) if tta is not None else self.tta
        return clone

    # ------------------------------------------------------------ public API

    def predict(
        self,
        image: np.ndarray | str | os.PathLike | bytes,
        *,
        color_order: str = "bgr",
        whole_image: bool = False,
        detect_downscale: float | None = None,
        boxes: Sequence[Box | Detection] | None = None,
    ) -> list[Face]:
        """All faces in `image`, largest first.

        `image` is a numpy array (gray, BGR/RGB, BGRA/RGBA; `color_order` says which) or a file
        path / encoded bytes. `whole_image=True` skips detection and treats the image as one
        face (for pre-cropped photos such as FER2013's). `detect_downscale` (e.g. 0.5) runs
        detection at that fraction of the resolution instead of the `detect_max_side` rule.
        `boxes` skips detection and classifies these (x, y, w, h) boxes or `Detection`s (video:
        `FaceFollower`); they are clipped to the image, and a box with nothing inside raises `ValueError`.

        Boxes are in the coordinates of the array given, or for a file of the image `read_image`
        returns (the file's own size unless it is over `ferlens.core.images.MAX_DECODED_PIXELS`).
        Raises `InvalidImageError` for an unusable image, `ModelLoadError` if the model
        returns non-finite probabilities.
        """
        if isinstance(image, (str, os.PathLike, bytes, bytearray)):
            image, color_order = read_image(image), "rgb"
        gray = as_gray(image, color_order)
        if whole_image:
            height, width = gray.shape
            return [self._faces(_pad_square_resize(gray)[None], [Detection((0, 0, width, height))], whole_image=True)[0]]
        if boxes is None:
            view = as_rgb(image, color_order) if self.detector.uses_color else gray
            detections = detect_with_border(self.detector, view, detect_downscale, self.edge_pad)
        else:
            detections = [Detection(clip_box(b.box, gray.shape), b.score, b.landmarks) if isinstance(b, Detection)
                          else Detection(clip_box(b, gray.shape)) for b in boxes]
        if not detections:
            return []
        crops = np.stack([bounded_crop(gray, d.box, IMAGE_SIZE, self.margin) for d in detections])
        return self._faces(crops, detections)

    def predict_faces(self, crops: Sequence[np.ndarray] | np.ndarray, *, color_order: str = "bgr") -> list[Face]:
        """Classify already-cropped faces in one batch; each box is the whole crop."""
        if isinstance(crops, np.ndarray) and crops.ndim in (2, 3) and (crops.ndim == 2 or crops.shape[-1] in (1, 3, 4)):
            crops = [crops]
        grays = [as_gray(c, color_order) for c in crops]
        if not grays:
            return []
        batch = np.stack([_pad_square_resize(g) for g in grays])
        return self._faces(batch, [Detection((0, 0, g.shape[1], g.shape[0])) for g in grays], whole_image=True)

    def classify(self, faces48: np.ndarray, tta: str | None = None) -> np.ndarray:
        """Probabilities (N, 7) for a uint8 batch (N, 48, 48) of face crops, averaged over the
        recognizer's test-time augmentation views (`tta` another mode, without a clone's detector);
        one backend call per chunk for all of them."""
        if faces48.ndim != 3 or faces48.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}) crops, got {faces48.shape}")
        mode = self.tta if tta is None else check_mode(tta)
        # In chunks: a caller's thousands of crops (times ten views) would otherwise be one huge backend batch.
        probs = np.concatenate([predict_with_tta(self.backend.predict, faces48[start:start + CLASSIFY_CHUNK], mode)
                                for start in range(0, len(faces48), CLASSIFY_CHUNK)] or
                               [predict_with_tta(self.backend.predict, faces48, mode)])
        problem = describe_bad_probabilities(np.asarray(probs, dtype=np.float64), len(faces48))
        if problem:
            raise ModelLoadError(f"the model {self.backend.path} gave {problem}; the file is damaged: "
                                 "restore or re-export it")
        return probs

    @staticmethod
    def to_gray(image: np.ndarray | str | os.PathLike | bytes, color_order: str = "bgr") -> np.ndarray:
        """Validate and convert any supported input to 2-D uint8 grayscale."""
        if isinstance(image, (str, os.PathLike, bytes, bytearray)):
            return as_gray(read_image(image), "rgb")
        return as_gray(image, color_order)

    # ------------------------------------------------------------ internals

    def _faces(self, crops: np.ndarray, detections: list[Detection], whole_image: bool = False) -> list[Face]:
        probs = self.classify(crops)
        return [
            Face(box=tuple(int(v) for v in d.box),
                 probabilities={name: float(p) for name, p in zip(CLASS_NAMES, row)},
                 whole_image=whole_image, detection_score=d.score)
            for d, row in zip(detections, probs)
        ]


def _pad_square_resize(gray: np.ndarray) -> np.ndarray:
    """Centre a non-square image in a square (edge-padded) before resizing, so faces keep their shape."""
    height, width = gray.shape
    side = max(height, width)
    return bounded_crop(gray, ((width - side) // 2, (height - side) // 2, side, side), IMAGE_SIZE, 0.0)


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def clip_box(box: Sequence[float], shape: tuple[int, ...]) -> Box:
    """A caller's (x, y, w, h) box as whole pixels inside an image of `shape`; ValueError if nothing is left."""
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a box is four numbers (x, y, width, height), got {box!r}") from exc
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"box {tuple(box)} has a NaN or infinite value")
    height, width = shape[:2]
    x0, y0 = max(0, round(x)), max(0, round(y))
    x1, y1 = min(width, round(x + w)), min(height, round(y + h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {tuple(box)} has no pixels inside the {width}x{height} image")
    return (x0, y0, x1 - x0, y1 - y0)
