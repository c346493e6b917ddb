"""Test-time augmentation: average the model's probabilities over mirrored and shifted copies of a face.

The models see a 40x40 centre crop of the 48x48 input (training shifts the face by up to 4 px),
so shifting the input is the same as taking the corner crops of the ten-crop literature.
What each mode buys is measured per model by `ferlens.training.evaluate` (the `tta` section of its metrics.json
and its model card): ten crops cost ten times a single crop, a mirror twice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: "none": the single centre crop; "flip": + its mirror image; "ten-crop": 5 shifts x 2 mirrors.
TTA_MODES: tuple[str, ...] = ("none", "flip", "ten-crop")

#: The recognizer's default, cheap enough for every face of every video frame.
DEFAULT_TTA = "flip"
#: For still photos (upload page, CLI), where a few milliseconds a face do not matter.
PHOTO_TTA = "ten-crop"

#: Ten-crop shift in pixels, chosen on PublicTest (2, 3, 4, 5 px gave 54.08, 54.19, 53.89, 53.69 %).
TEN_CROP_SHIFT = 3


def check_mode(mode: str) -> str:
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r}; choose one of {', '.join(TTA_MODES)}")
    return mode


def tta_views(faces: np.ndarray, mode: str) -> np.ndarray:
    """All views of an (N, H, W) batch, stacked view-major: (V * N, H, W)."""
    if check_mode(mode) == "none":
        return faces
    if mode == "flip":
        return np.concatenate([faces, faces[:, :, ::-1]])
    s = TEN_CROP_SHIFT
    height, width = faces.shape[1:3]
    padded = np.pad(faces, ((0, 0), (s, s), (s, s)), mode="reflect")
    shifted = [padded[:, s + dy:s + dy + height, s + dx:s + dx + width] for dy, dx in
               ((0, 0), (-s, -s), (-s, s), (s, -s), (s, s))]
    return np.concatenate(shifted + [view[:, :, ::-1] for view in shifted])


def predict_with_tta(predict: Callable[[np.ndarray], np.ndarray], faces: np.ndarray, mode: str = "none") -> np.ndarray:
    """Mean probabilities (N, C) over the views of `faces` (N, 48, 48), in a single `predict` call."""
    views = tta_views(faces, mode)
    probs = predict(np.ascontiguousarray(views[..., None], dtype=np.float32))
    if len(views) == len(faces):  # "none", or an empty batch
        return probs
    return probs.reshape(len(views) // len(faces), len(faces), -1).mean(axis=0)
