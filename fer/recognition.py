"""`EmotionRecognizer`: give it an image, get every face with its box and emotion probabilities.

The app, the CLI, the benchmarks and the tests all go through this one pipeline:
decode/validate -> detect (downscaled) -> crop with margin -> classify in one batch.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fer.backends import Backend, ModelLoadError, load_backend
from fer.config import CLASS_NAMES, DEFAULT_MODEL_DIR, IMAGE_SIZE
from fer.detection import Box, DetectorSettings, HaarFaceDetector, crop_face
from fer.images import InvalidImageError, as_gray, read_image
from fer.tta import DEFAULT_TTA, check_mode, predict_with_tta

__all__ = ["EmotionRecognizer", "Face", "InvalidImageError", "ModelLoadError"]


@dataclass
class Face:
    """One face: its box (x, y, w, h) in the input image and the 7 class probabilities."""

    box: Box
    probabilities: dict[str, float]
    whole_image: bool = False
    extra: dict = field(default_factory=dict)

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
        }


class EmotionRecognizer:
    """Face detection + emotion classification with one shared, batched pipeline.

    Args:
        model_dir: a trained model folder (default: the shipped model in `models/`).
        backend: "auto" (fastest available), "keras", "tflite", "tflite-int8" or "onnx".
        scale_factor, min_neighbors, min_size: Haar cascade settings (min_size in input pixels).
        detect_max_side: detection runs on a copy whose longer side is at most this.
        margin: extra border around each detected face, as a fraction of its size.
        threads: inference threads (None: the runtime's default).
        tta: test-time augmentation, "none", "flip" (default: mirror-averaged, ~2 points more
            accurate for one extra inference per face) or "ten-crop" (~3 points, ten inferences).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        backend: str = "auto",
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 40,
        detect_max_side: int = 640,
        margin: float = 0.1,
        threads: int | None = None,
        tta: str = DEFAULT_TTA,
    ):
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be between 0 and 1, got {margin}")
        self.model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        self.margin = margin
        self.tta = check_mode(tta)
        self.detector = HaarFaceDetector(
            DetectorSettings(scale_factor=scale_factor, min_neighbors=min_neighbors,
                             min_size=min_size, max_side=detect_max_side)
        )
        self.backend: Backend = load_backend(self.model_dir, backend, threads)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def with_settings(self, tta: str | None = None, **settings) -> EmotionRecognizer:
        """A recognizer sharing this one's loaded model but with other detection settings
        (scale_factor, min_neighbors, min_size, max_side) or test-time augmentation, so a
        settings change costs no model load."""
        clone = copy.copy(self)
        clone.detector = HaarFaceDetector(replace(self.detector.settings, **settings))
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
        boxes: Sequence[Box] | None = None,
    ) -> list[Face]:
        """All faces in `image`, largest first.

        `image` is a numpy array (gray, BGR/RGB, BGRA/RGBA; `color_order` says which) or a file
        path / encoded bytes. `whole_image=True` skips detection and treats the image as one
        face (for pre-cropped photos such as FER2013's). `detect_downscale` (e.g. 0.5) runs
        detection at that fraction of the resolution instead of the `detect_max_side` rule.
        `boxes` skips detection and classifies these (x, y, w, h) boxes (video: `FaceFollower`).
        """
        gray = self.to_gray(image, color_order)
        if whole_image:
            height, width = gray.shape
            return [self._faces(_pad_square_resize(gray)[None], [(0, 0, width, height)], whole_image=True)[0]]
        if boxes is None:
            boxes = self.detector.detect(gray, detect_downscale)
        if not boxes:
            return []
        crops = np.stack([crop_face(gray, box, IMAGE_SIZE, self.margin) for box in boxes])
        return self._faces(crops, boxes)

    def predict_faces(self, crops: Sequence[np.ndarray] | np.ndarray, *, color_order: str = "bgr") -> list[Face]:
        """Classify already-cropped faces in one batch; each box is the whole crop."""
        if isinstance(crops, np.ndarray) and crops.ndim in (2, 3) and (crops.ndim == 2 or crops.shape[-1] in (1, 3, 4)):
            crops = [crops]
        grays = [as_gray(c, color_order) for c in crops]
        if not grays:
            return []
        batch = np.stack([_pad_square_resize(g) for g in grays])
        return self._faces(batch, [(0, 0, g.shape[1], g.shape[0]) for g in grays], whole_image=True)

    def classify(self, faces48: np.ndarray) -> np.ndarray:
        """Probabilities (N, 7) for a uint8 batch (N, 48, 48) of face crops, averaged over the
        recognizer's test-time augmentation views (one backend call for all of them)."""
        if faces48.ndim != 3 or faces48.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}) crops, got {faces48.shape}")
        return predict_with_tta(self.backend.predict, faces48, self.tta)

    @staticmethod
    def to_gray(image: np.ndarray | str | os.PathLike | bytes, color_order: str = "bgr") -> np.ndarray:
        """Validate and convert any supported input to 2-D uint8 grayscale."""
        if isinstance(image, (str, os.PathLike, bytes, bytearray)):
            return as_gray(read_image(image), "rgb")
        return as_gray(image, color_order)

    # ------------------------------------------------------------ internals

    def _faces(self, crops: np.ndarray, boxes: list[Box], whole_image: bool = False) -> list[Face]:
        probs = self.classify(crops)
        return [
            Face(box=tuple(int(v) for v in box),
                 probabilities={name: float(p) for name, p in zip(CLASS_NAMES, row)},
                 whole_image=whole_image)
            for box, row in zip(boxes, probs)
        ]


def _pad_square_resize(gray: np.ndarray) -> np.ndarray:
    """Centre a non-square image in a square (edge-padded) before resizing, so faces keep their shape."""
    height, width = gray.shape
    side = max(height, width)
    return crop_face(gray, ((width - side) // 2, (height - side) // 2, side, side), IMAGE_SIZE, 0.0)
