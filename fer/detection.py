"""Face detection with OpenCV's Haar cascade, run on a downscaled copy for speed."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the image given


class DetectorError(RuntimeError):
    """The detector itself cannot work (e.g. the cascade file is missing from OpenCV)."""


@dataclass(frozen=True)
class DetectorSettings:
    """Haar parameters. `max_side` bounds the size of the image the cascade scans."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 40
    max_side: int = 640
    equalize: bool = False  # histogram equalisation lost faces on plain backgrounds in our tests

    def __post_init__(self) -> None:
        if not self.scale_factor > 1.0:
            raise ValueError(f"scale_factor must be > 1.0, got {self.scale_factor}")
        if self.min_neighbors < 0:
            raise ValueError(f"min_neighbors must be >= 0, got {self.min_neighbors}")
        if self.min_size < 8:
            raise ValueError(f"min_size must be at least 8 pixels, got {self.min_size}")
        if self.max_side < 64:
            raise ValueError(f"max_side must be at least 64 pixels, got {self.max_side}")


class HaarFaceDetector:
    """Frontal-face Haar cascade. Boxes come back in the coordinates of the full image."""

    CASCADE = "haarcascade_frontalface_default.xml"

    def __init__(self, settings: DetectorSettings | None = None):
        self.settings = settings or DetectorSettings()
        path = cv2.data.haarcascades + self.CASCADE if hasattr(cv2, "data") else self.CASCADE
        if not hasattr(cv2, "CascadeClassifier"):
            raise DetectorError("this OpenCV build has no CascadeClassifier; install opencv-python-headless<5")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise DetectorError(f"could not load the Haar cascade {path}")

    def detect(self, gray: np.ndarray, downscale: float | None = None) -> list[Box]:
        """Find faces in a 2-D uint8 image; `downscale` (e.g. 0.5) overrides the max_side rule."""
        s = self.settings
        height, width = gray.shape[:2]
        scale = downscale if downscale is not None else min(1.0, s.max_side / max(height, width))
        if not 0 < scale <= 1.0:
            raise ValueError(f"downscale must be in (0, 1], got {scale}")
        return largest_first(self._scan(gray, scale, max(8, round(s.min_size * scale))))

    def detect_near(self, gray: np.ndarray, box: Box, search: float = 0.5) -> Box | None:
        """Find again a face last seen at `box`, looking only around it; None if it is gone.

        The cascade scans a window `search` times the face size larger on each side, shrunk so
        the face is ~36 px (the cascade's window is 24), at face sizes 0.7-1.4x the last one.
        That is a few hundred windows instead of a frame's tens of thousands (1-2 ms a face here,
        against ~20 ms for a half-resolution full scan), so video can re-detect every face on
        every frame and run the full scan only now and then.
        """
        x, y, w, h = box
        height, width = gray.shape[:2]
        x0, y0 = max(0, int(x - search * w)), max(0, int(y - search * h))
        x1, y1 = min(width, int(x + w + search * w)), min(height, int(y + h + search * h))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        scale = min(1.0, 36.0 / max(1, min(w, h)))
        side = min(w, h) * scale
        found = self._scan(gray[y0:y1, x0:x1], scale, max(8, int(0.7 * side)), max(9, int(1.4 * side) + 1))
        if not found:
            return None
        # The candidate closest to where the face was.
        cx, cy = x + w / 2 - x0, y + h / 2 - y0
        fx, fy, fw, fh = min(found, key=lambda f: (f[0] + f[2] / 2 - cx) ** 2 + (f[1] + f[3] / 2 - cy) ** 2)
        return (x0 + fx, y0 + fy, fw, fh)

    def _scan(self, gray: np.ndarray, scale: float, min_px: int, max_px: int = 0) -> list[Box]:
        """The cascade over `gray` shrunk by `scale`, faces of min_px..max_px (0: no limit) pixels
        in the shrunk image; boxes come back in `gray`'s coordinates."""
        s = self.settings
        small = gray
        if scale < 1.0:
            height, width = gray.shape[:2]
            small = cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
        if s.equalize:
            small = cv2.equalizeHist(small)
        found = self._cascade.detectMultiScale(
            small, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
            minSize=(min_px, min_px), maxSize=(max_px, max_px),
        )
        return [
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for (x, y, w, h) in (found if len(found) else [])
        ]


def largest_first(boxes) -> list[Box]:
    """Largest face first: the "main" face of a photo or a video call."""
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


class FaceFollower:
    """Boxes for a video stream: a full scan every `full_every` frames, re-detection near the
    known faces in between.

    Each box on every frame is a real cascade detection, so boxes stay right as faces move;
    only faces that newly enter the frame wait up to `full_every` frames to be found. A frame
    with no known face, or on which every known face was lost, always gets a full scan.
    """

    def __init__(self, detector: HaarFaceDetector, full_every: int = 5, downscale: float | None = 0.5):
        if full_every < 1:
            raise ValueError(f"full_every must be >= 1, got {full_every}")
        self.detector = detector
        self.full_every = full_every
        self.downscale = downscale
        self.boxes: list[Box] = []
        self._since_full = 0

    def reset(self) -> None:
        self.boxes, self._since_full = [], 0

    def update(self, gray: np.ndarray) -> list[Box]:
        """This frame's face boxes, largest first."""
        self._since_full += 1
        if self.boxes and self._since_full < self.full_every:
            found = [self.detector.detect_near(gray, box) for box in self.boxes]
            self.boxes = largest_first(b for b in found if b is not None)
        if not self.boxes or self._since_full >= self.full_every:  # due, or every known face was lost
            self.boxes = self.detector.detect(gray, self.downscale)
            self._since_full = 0
        return list(self.boxes)


def crop_face(gray: np.ndarray, box: Box, size: int, margin: float) -> np.ndarray:
    """Square crop around `box`, enlarged by `margin` on each side, edge-padded, resized to size x size."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    height, width = gray.shape[:2]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = gray[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)
