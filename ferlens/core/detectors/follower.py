"""Faces through a video stream: full scans now and then, cheap re-detection in between."""

from __future__ import annotations

import numpy as np

from ferlens.core.detectors.base import Detection, FaceDetector, as_gray, largest_first


class FaceFollower:
    """Faces for a video stream. With a detector that can look again near a known face (the Haar
    cascade's `detect_near`), a full scan every `full_every` frames and re-detection near the known
    faces in between; with any other, a full scan on every frame.

    Not thread-safe: it carries one stream's faces from frame to frame, so each stream has its own
    (`LiveProcessor` calls it under its lock); the detector it holds may be shared.

    Each box on every frame is a real detection, so boxes stay right as faces move; only faces
    that newly enter the frame wait up to `full_every` frames to be found. A frame with no known
    face, or on which every known face was lost, always gets a full scan.
    """

    def __init__(self, detector: FaceDetector, full_every: int = 5, downscale: float | None = 0.5):
        if full_every < 1:
            raise ValueError(f"full_every must be >= 1, got {full_every}")
        self.detector = detector
        self.full_every = full_every if hasattr(detector, "detect_near") else 1
        self.downscale = downscale
        self.faces: list[Detection] = []
        self._since_full = 0

    def reset(self) -> None:
        self.faces, self._since_full = [], 0

    def update(self, image: np.ndarray) -> list[Detection]:
        """This frame's faces, largest first (`image` gray, or RGB for a detector that uses colour)."""
        self._since_full += 1
        if self.faces and self._since_full < self.full_every:
            gray = as_gray(image)
            found = [self.detector.detect_near(gray, face.box) for face in self.faces]
            self.faces = largest_first(f for f in found if f is not None)
        if not self.faces or self._since_full >= self.full_every:  # due, or every known face was lost
            self.faces = self.detector.detect(image, self.downscale)
            self._since_full = 0
        return list(self.faces)
