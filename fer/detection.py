"""Face detection with OpenCV's Haar cascade, run on a downscaled copy for speed.

The detectors here are thread-safe: the native objects behind them (OpenCV cascades, dlib's HOG
detector) are not, so every call borrows one of its own from a process-wide `InstancePool`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from fer.pool import InstancePool

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
    #: Still photos only: also run dlib's HOG face detector and add the faces Haar missed (turned
    #: profiles, tilted or partly covered faces). Video keeps the Haar cascade alone, for speed.
    second_detector: bool = True

    # Allowed ranges (class constants, not fields). Below 1.02 the cascade scans so many sizes that
    # one photo takes tens of seconds (1.0001: 49 s); the app's slider starts at 1.02.
    SCALE_FACTOR_RANGE = (1.02, 2.0)
    MIN_NEIGHBORS_RANGE = (0, 100)
    MIN_SIZE_RANGE = (8, 10_000)
    MAX_SIDE_RANGE = (64, 4096)

    def __post_init__(self) -> None:
        self._check("scale_factor", self.scale_factor, self.SCALE_FACTOR_RANGE, whole=False)
        self._check("min_neighbors", self.min_neighbors, self.MIN_NEIGHBORS_RANGE)
        self._check("min_size", self.min_size, self.MIN_SIZE_RANGE, " pixels")
        self._check("max_side", self.max_side, self.MAX_SIDE_RANGE, " pixels")

    @staticmethod
    def _check(name: str, value, bounds: tuple[float, float], unit: str = "", whole: bool = True) -> None:
        """A clear ValueError unless `value` is a (whole, if asked) number within `bounds`; NaN and inf fail."""
        low, high = bounds
        kind = "a whole number" if whole else "a number"
        types = (int, np.integer) if whole else (int, float, np.integer, np.floating)
        if not isinstance(value, types) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{name} must be {kind} from {low} to {high}{unit}, got {value!r}")


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
#: arguments of each scan, not part of the cascade, so a settings change loads nothing.
_CASCADES: InstancePool[cv2.CascadeClassifier] = InstancePool(_load_cascade)


class HaarFaceDetector:
    """Frontal-face Haar cascade. Boxes come back in the coordinates of the full image.

    Thread-safe: one detector may serve any number of threads at once (each scan borrows a cascade).
    """

    CASCADE = HAAR_CASCADE

    def __init__(self, settings: DetectorSettings | None = None):
        self.settings = settings or DetectorSettings()
        with _CASCADES.borrow():  # a missing or broken cascade fails here, not at the first photo
            pass

    def detect(self, gray: np.ndarray, downscale: float | None = None) -> list[Box]:
        """Find faces in a 2-D uint8 image; `downscale` (e.g. 0.5) overrides the max_side rule."""
        s = self.settings
        height, width = gray.shape[:2]
        scale = downscale if downscale is not None else min(1.0, s.max_side / max(height, width))
        if not 0 < scale <= 1.0:
            raise ValueError(f"downscale must be in (0, 1], got {scale}")
        return largest_first(self._scan(gray, scale, max(8, round(s.min_size * scale))))

    def detect_photo(self, gray: np.ndarray, downscale: float | None = None) -> list[Box]:
        """`detect`, plus the faces only the second (HOG) detector finds when `second_detector` is on.

        A HOG face is added when it overlaps no Haar face by `MERGE_IOU`; its box is first mapped
        to the framing of a Haar box (`HogFaceDetector.to_haar_frame`), so that every crop the
        classifier sees is framed alike.
        """
        faces = self.detect(gray, downscale)
        if not self.settings.second_detector:
            return faces
        hog = second_detector()
        if hog is None:
            return faces
        height, width = gray.shape[:2]
        scale = downscale if downscale is not None else min(1.0, self.settings.max_side / max(height, width))
        extra = [box for box in hog.detect(gray, scale, self.settings.min_size)
                 if all(box_iou(box, known) < MERGE_IOU for known in faces)]
        return largest_first(faces + extra)

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
        with _CASCADES.borrow() as cascade:
            found = cascade.detectMultiScale(
                small, scaleFactor=s.scale_factor, minNeighbors=s.min_neighbors,
                minSize=(min_px, min_px), maxSize=(max_px, max_px),
            )
        return [
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for (x, y, w, h) in (found if len(found) else [])
        ]


#: Two detections with at least this overlap are the same face.
MERGE_IOU = 0.3


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


#: HOG's smallest face at 2x upsampling maps to a 39-px box: one that size still passes the default
#: min_size of 40 (without it, 6 % of ExpW's faces, those in its ~100-px photos, were dropped).
MIN_SIZE_TOLERANCE = 0.9


class HogFaceDetector:
    """dlib's HOG + linear SVM frontal face detector (from the dlib-bin wheel; needs no model file).

    On ExpW's web photos it finds faces the Haar cascade misses (and the other way round), at a
    few milliseconds per 640-px image. Its boxes are tighter than Haar's and sit lower on the
    face; `to_haar_frame` maps them onto Haar's framing. The mapping was measured on FER2013
    PublicTest faces (upscaled 4x) found by both detectors: a Haar box is 1.067 times the HOG
    box's side, and FER2013's frame is centred 0.053 HOG sides above the HOG box's centre.

    Thread-safe: each scan borrows a dlib detector of its own (one shared dlib detector crashes
    the process when two threads call it at once).
    """

    SIDE_RATIO = 1.067
    CENTRE_SHIFT = -0.053
    #: HOG's window is 80 px: images are scanned at this longer side (upsampled if smaller).
    SCAN_SIDE = 640


    def __init__(self):
        import dlib

        self._detectors = InstancePool(dlib.get_frontal_face_detector)
        with self._detectors.borrow():  # load one now: the first photo should not wait for it
            pass

    def detect(self, gray: np.ndarray, scale: float, min_size: int) -> list[Box]:
        """Faces in `gray` at least `min_size` px, scanned at `SCAN_SIDE` px or `scale`, whichever is larger."""
        height, width = gray.shape[:2]
        scan = max(scale, min(2.0, self.SCAN_SIDE / max(height, width)))
        small = gray if scan == 1.0 else cv2.resize(
            gray, (max(1, round(width * scan)), max(1, round(height * scan))),
            interpolation=cv2.INTER_AREA if scan < 1.0 else cv2.INTER_LINEAR)
        with self._detectors.borrow() as detector:
            found = detector(np.ascontiguousarray(small), 0)
        boxes = []
        for rect in found:
            box = self.to_haar_frame((rect.left() / scan, rect.top() / scan, rect.width() / scan, rect.height() / scan))
            if min(box[2], box[3]) >= MIN_SIZE_TOLERANCE * min_size:
                boxes.append(box)
        return boxes

    @classmethod
    def to_haar_frame(cls, box: tuple[float, float, float, float]) -> Box:
        x, y, w, h = box
        side = max(w, h) * cls.SIDE_RATIO
        cx, cy = x + w / 2, y + h / 2 + cls.CENTRE_SHIFT * h
        return (round(cx - side / 2), round(cy - side / 2), round(side), round(side))


_SECOND: list = []
_SECOND_LOCK = threading.Lock()


def second_detector() -> HogFaceDetector | None:
    """The process's one HOG detector, or None (with one warning) when dlib is not installed."""
    with _SECOND_LOCK:  # two first photos at once must not build two
        if not _SECOND:
            try:
                _SECOND.append(HogFaceDetector())
            except ImportError:
                import warnings

                warnings.warn("dlib is not installed: photos are scanned with the Haar cascade only "
                              "(pip install dlib-bin)", RuntimeWarning, stacklevel=3)
                _SECOND.append(None)
        return _SECOND[0]


def largest_first(boxes) -> list[Box]:
    """Largest face first: the "main" face of a photo or a video call."""
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


class FaceFollower:
    """Boxes for a video stream: a full scan every `full_every` frames, re-detection near the
    known faces in between.

    Not thread-safe: it carries one stream's boxes from frame to frame, so each stream has its own
    (`LiveProcessor` calls it under its lock); the detector it holds may be shared.

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


def crop_square(box: Box, margin: float) -> tuple[int, int, int, int]:
    """Corners (x0, y0, x1, y1) of the square around `box` enlarged by `margin` on each side; they
    may lie outside the image."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    return x0, y0, x0 + int(round(side)), y0 + int(round(side))


def crop_face(gray: np.ndarray, box: Box, size: int, margin: float) -> np.ndarray:
    """Square crop around `box`, enlarged by `margin` on each side, edge-padded, resized to size x size."""
    x0, y0, x1, y1 = crop_square(box, margin)
    height, width = gray.shape[:2]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = gray[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)
