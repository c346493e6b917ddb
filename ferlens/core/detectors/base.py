"""What every face detector returns, the settings they share, and box helpers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the image given
Point = tuple[float, float]


class DetectorError(RuntimeError):
    """The detector itself cannot work (a model or cascade file is missing, or its runtime)."""


@dataclass(frozen=True)
class Detection:
    """One face found: its box framed for the classifier, the detector's score where it gives one
    (0..1), and its landmarks where it finds them (BlazeFace: the eyes, nose tip, mouth centre and
    ear tragions, the subject's right first)."""

    box: Box
    score: float | None = None
    landmarks: tuple[Point, ...] = ()

    @property
    def eyes(self) -> tuple[Point, Point] | None:
        """The two eye centres, or None when the detector gives no landmarks."""
        return (self.landmarks[0], self.landmarks[1]) if len(self.landmarks) >= 2 else None


@dataclass(frozen=True)
class DetectorSettings:
    """Settings of every detector. `max_side` bounds the size of the image scanned, `min_size` the
    smallest face kept (pixels of the input), `score_threshold` the lowest score kept by detectors
    that score their faces; None leaves each at the detector's own default. The Haar cascade also
    takes `scale_factor`, `min_neighbors` and `equalize`."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int | None = None
    max_side: int | None = None
    equalize: bool = False  # histogram equalisation lost faces on plain backgrounds in our tests
    score_threshold: float | None = None

    # Allowed ranges (class constants, not fields). Below 1.02 the cascade scans so many sizes that
    # one photo takes tens of seconds (1.0001: 49 s); the app's slider starts at 1.02.
    SCALE_FACTOR_RANGE = (1.02, 2.0)
    MIN_NEIGHBORS_RANGE = (0, 100)
    MIN_SIZE_RANGE = (8, 10_000)
    MAX_SIDE_RANGE = (64, 4096)
    SCORE_THRESHOLD_RANGE = (0.05, 0.99)

    def __post_init__(self) -> None:
        self._check("scale_factor", self.scale_factor, self.SCALE_FACTOR_RANGE, whole=False)
        self._check("min_neighbors", self.min_neighbors, self.MIN_NEIGHBORS_RANGE)
        if self.min_size is not None:
            self._check("min_size", self.min_size, self.MIN_SIZE_RANGE, " pixels")
        if self.max_side is not None:
            self._check("max_side", self.max_side, self.MAX_SIDE_RANGE, " pixels")
        if self.score_threshold is not None:
            self._check("score_threshold", self.score_threshold, self.SCORE_THRESHOLD_RANGE, whole=False)

    @staticmethod
    def _check(name: str, value, bounds: tuple[float, float], unit: str = "", whole: bool = True) -> None:
        """A clear ValueError unless `value` is a (whole, if asked) number within `bounds`; NaN and inf fail."""
        low, high = bounds
        kind = "a whole number" if whole else "a number"
        types = (int, np.integer) if whole else (int, float, np.integer, np.floating)
        if not isinstance(value, types) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{name} must be {kind} from {low} to {high}{unit}, got {value!r}")

    def min_face(self, detector_default: int) -> int:
        """The smallest face kept: `min_size`, or the detector's default when it is None."""
        return detector_default if self.min_size is None else self.min_size

    def scale_for(self, shape: tuple[int, ...], detector_max_side: int, downscale: float | None = None) -> float:
        """The factor an image of `shape` is shrunk by before scanning: `downscale` if given, else
        whatever brings its longer side to `max_side` (the detector's own when None; never enlarged).

        A `downscale` that shrinks the image's shorter side below the smallest face any setting allows
        (`MIN_SIZE_RANGE`, 8 px) is refused: no face could be found, and an empty answer would hide why."""
        height, width = shape[:2]
        max_side = detector_max_side if self.max_side is None else self.max_side
        scale = downscale if downscale is not None else min(1.0, max_side / max(height, width))
        if not 0 < scale <= 1.0:
            raise ValueError(f"downscale must be in (0, 1], got {scale}")
        smallest = self.MIN_SIZE_RANGE[0]
        if downscale is not None and min(height, width) * scale < smallest:
            raise ValueError(f"downscale {downscale:g} shrinks this {width}x{height} image to {width * scale:.3g}x"
                             f"{height * scale:.3g} pixels, smaller than a face can be ({smallest} pixels); use at "
                             f"least {math.ceil(1000 * smallest / min(height, width)) / 1000:g}")
        return scale


class FaceDetector(Protocol):
    """A face detector. Implementations are thread-safe: one may serve many threads at once."""

    name: str
    settings: DetectorSettings
    #: True when the detector looks at colour: the recognizer then hands it RGB, else grayscale.
    uses_color: bool
    #: The smallest face kept, the longer side scanned and the lowest score kept, when the settings
    #: leave them None; the last is None for a detector that does not score faces.
    default_min_size: int
    default_max_side: int
    default_score_threshold: float | None

    def detect(self, image: np.ndarray, downscale: float | None = None) -> list[Detection]:
        """Faces in a 2-D gray or HxWx3 RGB uint8 image, largest first, boxes in its pixels."""
        ...


#: Two detections with at least this overlap are the same face.
MERGE_IOU = 0.3


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def largest_first(detections: Iterable[Detection]) -> list[Detection]:
    """Largest face first: the "main" face of a photo or a video call."""
    return sorted(detections, key=lambda d: d.box[2] * d.box[3], reverse=True)


def as_gray(image: np.ndarray) -> np.ndarray:
    """A detector's input as 2-D gray (RGB is converted)."""
    import cv2

    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
