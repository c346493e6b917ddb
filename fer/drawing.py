"""Draw faces onto images: a box per face, its label and confidence, in the emotion's colour."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import cv2
import numpy as np

from fer.config import EMOTION_COLORS
from fer.recognition import Face


def draw_faces(image: np.ndarray, faces: Iterable[Face], *, color_order: str = "rgb", copy: bool = True) -> np.ndarray:
    """Annotate a 3-channel uint8 image (RGB or BGR as `color_order` says); returns the annotated image.

    Line width and font scale follow the image size so labels stay readable on
    both a 320x240 webcam frame and a 4000x3000 photo.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw_faces needs an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    out = image.copy() if copy else image
    height, width = out.shape[:2]
    thickness = max(1, round(max(height, width) / 400))
    font_scale = max(0.4, max(height, width) / 1000)
    for face in faces:
        rgb = EMOTION_COLORS.get(face.label, (255, 255, 255))
        color = rgb if color_order == "rgb" else rgb[::-1]
        x, y, w, h = face.box
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color, thickness, cv2.LINE_AA)
        text = f"{face.label} {face.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = y - th - base - 2 * thickness if y - th - base - 2 * thickness >= 0 else y + h
        cv2.rectangle(out, (x, top), (x + tw + 2 * thickness, top + th + base + 2 * thickness), color, cv2.FILLED)
        cv2.putText(out, text, (x + thickness, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out


def fit_for_display(image: np.ndarray, faces: list[Face], max_side: int = 1600) -> tuple[np.ndarray, list[Face]]:
    """Downscale a large image (and its face boxes) so that annotating and showing it stays cheap."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image, faces
    small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    scaled = [replace(f, box=tuple(round(v * scale) for v in f.box)) for f in faces]
    return small, scaled
