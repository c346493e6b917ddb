"""Why did the model say that? Occlusion sensitivity: hide each part of the face, see how much the answer drops.

A grey square slides over the 48x48 face crop the model sees; every occluded copy goes through
the recognizer's own `classify` (the fast backend, with its test-time augmentation), so the map
explains exactly the prediction that was shown, for any model format, without TensorFlow.
`benchmarks/explain.py` compares this with Grad-CAM on the Keras model: occlusion is the more
faithful of the two by the deletion test there, and costs one batched call per face (its figures
are in `benchmarks/explain.md`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ferlens.config import CLASS_NAMES, IMAGE_SIZE
from ferlens.core.framing import crop_face
from ferlens.core.recognition import EmotionRecognizer, Face
from ferlens.core.tta import tta_views

#: Side of the hidden square and its step, in pixels of the 48x48 crop: 11 x 11 = 121 occluded copies.
#: A 8 px square covers an eye, a mouth corner or a brow; smaller ones hide too little to matter.
PATCH = 8
STRIDE = 4
#: Occluded copies per model call (x the views): all faces of a photo share the calls, and the
#: progress bars move once per call.
EXPLAIN_CHUNK = 64


@dataclass(frozen=True)
class Occlusion:
    """How a map is made: the hidden square's side and step (pixels of the 48x48 crop), and the
    test-time views each occluded copy is classified with (None: the recognizer's own). The cost of
    a face is `inferences` model runs, so this is the knob between speed and detail."""

    patch: int = PATCH
    stride: int = STRIDE
    views: str | None = None

    def positions(self) -> list[tuple[int, int]]:
        """Top-left corners (y, x) of the hidden squares; the last row and column reach the crop's edge."""
        last = IMAGE_SIZE - self.patch
        starts = sorted({*range(0, last + 1, self.stride), last})
        return [(y, x) for y in starts for x in starts]

    def copies(self, crop: np.ndarray) -> np.ndarray:
        """(1 + positions, 48, 48): the intact crop, then one copy per hidden square, filled with the
        crop's mean grey (which the model's per-image standardisation turns into "no signal")."""
        if crop.shape != (IMAGE_SIZE, IMAGE_SIZE) or crop.dtype != np.uint8:
            raise ValueError(f"expected a ({IMAGE_SIZE}, {IMAGE_SIZE}) uint8 crop, got {crop.shape} {crop.dtype}")
        positions = self.positions()
        batch = np.repeat(crop[None], len(positions) + 1, axis=0)
        fill = np.uint8(round(float(crop.mean())))
        for i, (y, x) in enumerate(positions, start=1):
            batch[i, y:y + self.patch, x:x + self.patch] = fill
        return batch

    def importance(self, probabilities: np.ndarray) -> tuple[np.ndarray, float]:
        """(map, intact probability) from the label's probability on each of `copies` (intact first)."""
        drops = probabilities[0] - probabilities[1:]
        total = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
        counts = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
        for drop, (y, x) in zip(drops, self.positions()):
            total[y:y + self.patch, x:x + self.patch] += drop
            counts[y:y + self.patch, x:x + self.patch] += 1
        return total / np.maximum(counts, 1), float(probabilities[0])

    def inferences(self, tta: str) -> int:
        """Model runs for one face explained under a recognizer whose augmentation is `tta`."""
        return (len(self.positions()) + 1) * len(tta_views(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
                                                            self.views or tta))


#: What the upload page explains a prediction with, per test-time augmentation of that prediction
#: (others: `Occlusion()`, the prediction's own views).
#: Ten-crop: the same 8 px squares with the flip's two views instead of ten, as faithful by the deletion
#: test and a fifth of the model runs (benchmarks/explain_app.md).
APP_OCCLUSION: dict[str, Occlusion] = {"ten-crop": Occlusion(PATCH, STRIDE, "flip")}


@dataclass
class Explanation:
    """Which parts of a face drove its label: `importance[y, x]` is how much the label's probability
    drops, on average, when a square around (x, y) of the 48x48 crop is hidden (negative: it rises)."""

    label: str
    probability: float
    crop: np.ndarray  # (48, 48) uint8: the face as the model saw it
    importance: np.ndarray  # (48, 48) float32
    picture: np.ndarray  # the same square of the image at display resolution (grey), for `overlay`

    @property
    def largest_drop(self) -> float:
        """The most that hiding one part lowered the label's probability (0.05: five points). Small
        values mean no single part decides: the evidence is spread over the face."""
        return max(0.0, float(self.importance.max()))

    def overlay(self) -> np.ndarray:
        """The face (RGB, at `picture`'s size) with the evidence for the label in red-yellow: the
        stronger the colour, the more the probability fell when that part was hidden."""
        size = self.picture.shape[0]
        face_rgb = np.repeat(self.picture[..., None], 3, axis=2).astype(np.float32)
        evidence = cv2.GaussianBlur(np.clip(self.importance, 0, None), (0, 0), STRIDE / 2)  # soften the squares' edges
        scale = evidence.max()
        strength = cv2.resize(evidence / scale if scale > 0 else evidence, (size, size),
                              interpolation=cv2.INTER_CUBIC).clip(0, 1)
        heat = cv2.applyColorMap((strength * 255).astype(np.uint8), cv2.COLORMAP_HOT)[..., ::-1].astype(np.float32)
        alpha = 0.65 * strength[..., None]
        return (face_rgb * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8)


def occlusion_importance(
    classify, crop: np.ndarray, label_index: int, *, patch: int = PATCH, stride: int = STRIDE,
) -> tuple[np.ndarray, float]:
    """(importance map, the label's probability on the intact crop) for a (48, 48) uint8 crop.

    `classify` maps an (N, 48, 48) uint8 batch to (N, 7) probabilities; it is called once, on
    the intact crop and all its occluded copies together.
    """
    occlusion = Occlusion(patch, stride)
    return occlusion.importance(classify(occlusion.copies(crop))[:, label_index])


def occlusion_for(tta: str) -> Occlusion:
    """The occlusion the upload page uses to explain a prediction made with test-time augmentation `tta`."""
    return APP_OCCLUSION.get(tta, Occlusion())


def explain_faces(
    recognizer: EmotionRecognizer, image: np.ndarray, faces: Sequence[Face], *, color_order: str = "rgb",
    occlusion: Occlusion | None = None, picture_size: int = 192,
    progress: Callable[[int, float], None] | None = None,
) -> list[Explanation]:
    """Occlusion maps of faces found by `recognizer.predict(image)`, each explaining its top label with
    the same crop and model as the prediction (views: `occlusion`, default `occlusion_for` the
    recognizer's augmentation).

    Every face's occluded copies go through the model together, in chunks; after each chunk
    `progress(face index, share of that face done)` is called for the faces it advanced.
    """
    occlusion = occlusion or occlusion_for(recognizer.tta)
    gray = recognizer.to_gray(image, color_order)
    framed = [_framing(recognizer, gray, face) for face in faces]
    batches = [occlusion.copies(crop_face(gray, box, IMAGE_SIZE, margin)) for box, margin in framed]
    copies = np.concatenate(batches) if batches else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    owner = np.repeat(np.arange(len(batches)), [len(b) for b in batches])
    per_face = len(batches[0]) if batches else 1
    probabilities = np.zeros((len(copies), len(CLASS_NAMES)), np.float32)
    for start in range(0, len(copies), EXPLAIN_CHUNK):
        stop = min(start + EXPLAIN_CHUNK, len(copies))
        probabilities[start:stop] = recognizer.classify(copies[start:stop], occlusion.views)
        if progress is not None:
            for index in np.unique(owner[start:stop]):
                progress(int(index), min(1.0, (stop - index * per_face) / per_face))
    explanations = []
    for index, (face, (box, margin), batch) in enumerate(zip(faces, framed, batches)):
        own = probabilities[index * per_face:(index + 1) * per_face, CLASS_NAMES.index(face.label)]
        importance, probability = occlusion.importance(own)
        explanations.append(Explanation(face.label, probability, batch[0], importance,
                                        crop_face(gray, box, picture_size, margin)))
    return explanations


def explain_face(
    recognizer: EmotionRecognizer, image: np.ndarray, face: Face, *, color_order: str = "rgb", picture_size: int = 192,
    occlusion: Occlusion | None = None,
) -> Explanation:
    """Occlusion map of one face found by `recognizer.predict(image)` (`explain_faces` for one)."""
    return explain_faces(recognizer, image, [face], color_order=color_order, occlusion=occlusion,
                         picture_size=picture_size)[0]


def _framing(recognizer: EmotionRecognizer, gray: np.ndarray, face: Face) -> tuple[tuple[int, int, int, int], float]:
    """The box and margin the recognizer cropped this face with."""
    if face.whole_image:  # the recognizer centres the image in a square, edge-padded, without margin
        height, width = gray.shape
        side = max(height, width)
        return ((width - side) // 2, (height - side) // 2, side, side), 0.0
    return face.box, recognizer.margin
