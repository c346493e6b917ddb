"""Why did the model say that? Occlusion sensitivity: hide each part of the face, see how much the answer drops.

A grey square slides over the 48x48 face crop the model sees; every occluded copy goes through
the recognizer's own `classify` (the fast backend, with its test-time augmentation), so the map
explains exactly the prediction that was shown, for any model format, without TensorFlow.
`benchmarks/explain.py` compares this with Grad-CAM on the Keras model: occlusion is the more
faithful of the two by the deletion test there, and costs one batched call per face (its figures
are in `benchmarks/explain.md`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fer.config import CLASS_NAMES, IMAGE_SIZE
from fer.framing import crop_face
from fer.recognition import EmotionRecognizer, Face

#: Side of the hidden square and its step, in pixels of the 48x48 crop: 11 x 11 = 121 occluded copies.
#: A 8 px square covers an eye, a mouth corner or a brow; smaller ones hide too little to matter.
PATCH = 8
STRIDE = 4


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
    the intact crop and all its occluded copies together. Hidden squares are filled with the
    crop's mean grey, which the model's per-image standardisation turns into "no signal".
    """
    if crop.shape != (IMAGE_SIZE, IMAGE_SIZE) or crop.dtype != np.uint8:
        raise ValueError(f"expected a ({IMAGE_SIZE}, {IMAGE_SIZE}) uint8 crop, got {crop.shape} {crop.dtype}")
    starts = range(0, IMAGE_SIZE - patch + 1, stride)
    positions = [(y, x) for y in starts for x in starts]
    batch = np.repeat(crop[None], len(positions) + 1, axis=0)
    fill = np.uint8(round(float(crop.mean())))
    for i, (y, x) in enumerate(positions, start=1):
        batch[i, y:y + patch, x:x + patch] = fill
    probabilities = classify(batch)[:, label_index]
    drops = probabilities[0] - probabilities[1:]
    total = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    counts = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for drop, (y, x) in zip(drops, positions):
        total[y:y + patch, x:x + patch] += drop
        counts[y:y + patch, x:x + patch] += 1
    return total / np.maximum(counts, 1), float(probabilities[0])


def explain_face(
    recognizer: EmotionRecognizer, image: np.ndarray, face: Face, *, color_order: str = "rgb", picture_size: int = 192,
) -> Explanation:
    """Occlusion map of one face found by `recognizer.predict(image)`, explaining its top label
    with the same crop, model and test-time augmentation as the prediction."""
    gray = recognizer.to_gray(image, color_order)
    if face.whole_image:  # the recognizer centres the image in a square, edge-padded, without margin
        height, width = gray.shape
        side = max(height, width)
        box, margin = ((width - side) // 2, (height - side) // 2, side, side), 0.0
    else:
        box, margin = face.box, recognizer.margin
    crop = crop_face(gray, box, IMAGE_SIZE, margin)
    label_index = CLASS_NAMES.index(face.label)
    importance, probability = occlusion_importance(recognizer.classify, crop, label_index)
    return Explanation(face.label, probability, crop, importance, crop_face(gray, box, picture_size, margin))
