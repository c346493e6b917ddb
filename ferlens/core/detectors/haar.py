"""OpenCV's Haar cascade (2001): fast on frontal, upright faces; the live page's per-frame detector."""

from __future__ import annotations

import cv2
import numpy as np

from ferlens.core.detectors.base import Box, Detection, DetectorError, DetectorSettings, as_gray, largest_first
from ferlens.pool import InstancePool

HAAR_CASCADE = "haarcascade_frontalface_default.xml"


def _load_cascade() -> cv2.CascadeClassifier:
    if not hasattr(cv2, "CascadeClassifier"):
        raise DetectorError("this OpenCV build has no CascadeClassifier; install opencv-python-headless<5")
    path = cv2.data.haarcascades + HAAR_CASCADE if hasattr(cv2, "data") else HAAR_CASCADE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise DetectorError(f"could not load the Haar cascade {path}")
    return cascade


#: Every Haar detector of the process shares these cascades (0.4 MB and 15 ms each): settings are
#: arguments of each scan, not part of the cascade, so a settings change loads nothing. A cascade
#: must not run in two threads at once (wrong boxes, cv2 errors, crashes), so each scan borrows one.
_CASCADES: InstancePool[cv2.CascadeClassifier] = InstancePool(_load_cascade)


class HaarFaceDetector:
    """Frontal-face Haar cascade on a downscaled copy. Boxes come back in the full image's pixels;
    the cascade gives no score. Thread-safe: each scan borrows a cascade."""

    name = "haar"
    uses_color = False
    default_min_size = 40
    default_max_side = 640
    default_score_threshold = None
    CASCADE = HAAR_CASCADE

    def __init__(self, settings: DetectorSettings | None = None):
        self.settings = settings or DetectorSettings()
        with _CASCADES.borrow():  # a missing or broken cascade fails here, not at the first photo
            pass

    def detect(self, image: np.ndarray, downscale: float | None = None) -> list[Detection]:
        """Faces in a gray (or RGB) uint8 image; `downscale` (e.g. 0.5) overrides the max_side rule."""
        gray = as_gray(image)
        scale = self.settings.scale_for(gray.shape, self.default_max_side, downscale)
        found = self._scan(gray, scale, max(8, round(self.settings.min_face(self.default_min_size) * scale)))
        return largest_first(Detection(box) for box in found)

    def detect_near(self, gray: np.ndarray, box: Box, search: float = 0.5) -> Detection | None:
        """Find again a face last seen at `box`, looking only around it; None if it is gone.

        The cascade scans a window `search` times the face size larger on each side, shrunk so
        the face is ~36 px (the cascade's window is 24), at face sizes 0.7-1.4x the last one.
        That is a few hundred windows instead of a frame's tens of thousands (a fraction of a
        half-resolution full scan's time: benchmarks/results.md, end-to-end frame pipeline), so video
        can re-detect every face on every frame and run the full scan only now and then.
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
        return Detection((x0 + fx, y0 + fy, fw, fh))

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
        with _CASCADES.borrow() as cascade:
            found = cascade.detectMultiScale(
                small, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
                minSize=(min_px, min_px), maxSize=(max_px, max_px),
            )
        return [
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for (x, y, w, h) in (found if len(found) else [])
        ]
