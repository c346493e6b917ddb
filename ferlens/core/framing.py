"""Framing: the square crop around a face box that the classifier sees, in training and in serving alike."""

from __future__ import annotations

import cv2
import numpy as np

from ferlens.core.detectors.base import Box


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


#: `crop_face` pads the whole image when a crop reaches past its edge; above this many padded
#: pixels, `bounded_crop` shrinks the part inside the image first and pads only the small result.
_MAX_PADDED_PIXELS = 16_000_000


def bounded_crop(gray: np.ndarray, box: Box, size: int, margin: float) -> np.ndarray:
    """`crop_face` (same pixels for every ordinary box) in memory bounded by the output, not by the box.

    A huge box, or whole-image mode on a long thin image, would otherwise pad the image to the
    crop's square: a 100000x8 image asks for 100000^2 bytes.
    """
    x0, y0, x1, y1 = crop_square(box, margin)
    height, width = gray.shape[:2]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    if not pad or (height + 2 * pad) * (width + 2 * pad) <= _MAX_PADDED_PIXELS:
        return crop_face(gray, box, size, margin)
    scale = size / (x1 - x0)
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    inner_w = min(size, max(1, round((ix1 - ix0) * scale)))
    inner_h = min(size, max(1, round((iy1 - iy0) * scale)))
    left = min(size - inner_w, max(0, round((ix0 - x0) * scale)))
    top = min(size - inner_h, max(0, round((iy0 - y0) * scale)))
    right, bottom = left + inner_w, top + inner_h
    region = gray[iy0:iy1, ix0:ix1]
    out = np.empty((size, size), np.uint8)

    def shrink(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
        return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA).reshape(height, width)

    out[top:bottom, left:right] = shrink(region, inner_w, inner_h)
    # The border repeats the image's outermost rows and columns, as crop_face's edge padding does.
    out[top:bottom, :left] = shrink(region[:, :1], 1, inner_h)
    out[top:bottom, right:] = shrink(region[:, -1:], 1, inner_h)
    out[:top, left:right] = shrink(region[:1], inner_w, 1)
    out[bottom:, left:right] = shrink(region[-1:], inner_w, 1)
    out[:top, :left], out[:top, right:] = region[0, 0], region[0, -1]
    out[bottom:, :left], out[bottom:, right:] = region[-1, 0], region[-1, -1]
    return out
