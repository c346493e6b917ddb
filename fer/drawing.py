"""Draw faces onto images: a numbered box per face, its label and confidence, in the emotion's colour.

Labels are placed so that they never overlap each other and never leave the image: a group
photo stays readable, and each number on the image matches a chart, a table row and the
CSV/JSON of the upload page (faces are numbered in reading order, `reading_order`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from fer.config import EMOTION_COLORS
from fer.detectors import Box
from fer.recognition import Face

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Drawn under every box and around every label, so a grey "neutral" box stays visible on grey.
OUTLINE_RGB = (0, 0, 0)
#: Display images are scaled so that their longer side is within these bounds (labels stay legible).
DISPLAY_MIN_SIDE, DISPLAY_MAX_SIDE = 480, 1600


@dataclass(frozen=True)
class Label:
    """Where one face's label goes: its text and its background rectangle (x, y, w, h) inside the image."""

    text: str
    rect: Box
    face_box: Box


def reading_order(faces: Sequence[Face]) -> list[Face]:
    """Faces as one reads a page: rows from top to bottom, left to right within a row.

    A face starts a new row when its centre is lower than the row's first face by more than half
    the smaller of the two faces' heights, so slightly uneven heads in a group photo share a row.
    """
    by_height = sorted(faces, key=lambda f: f.box[1] + f.box[3] / 2)
    rows: list[list[Face]] = []
    for face in by_height:
        centre, height = face.box[1] + face.box[3] / 2, face.box[3]
        if rows:
            first = rows[-1][0]
            if centre - (first.box[1] + first.box[3] / 2) <= 0.5 * min(height, first.box[3]):
                rows[-1].append(face)
                continue
        rows.append([face])
    return [face for row in rows for face in sorted(row, key=lambda f: f.box[0])]


def face_label_text(face: Face, number: int | None) -> str:
    """'#3 happy 85%': the number ties the box to its chart and table row (or a video track)."""
    text = f"{face.label} {face.confidence:.0%}"
    return f"#{number} {text}" if number is not None else text


def text_style(height: int, width: int) -> tuple[float, int]:
    """Font scale and line thickness that stay readable from a 320x240 frame to a 1600 px photo."""
    longer = max(height, width)
    return max(0.4, longer / 1000), max(1, round(longer / 400))


def draw_faces(
    image: np.ndarray,
    faces: Iterable[Face],
    *,
    color_order: str = "rgb",
    copy: bool = True,
    numbers: Sequence[int] | None = None,
) -> np.ndarray:
    """Annotate a 3-channel uint8 image (RGB or BGR as `color_order` says); returns the annotated image.

    Each label reads "#n emotion confidence", with n from `numbers` (the upload page's reading
    order) or else the face's video track id (`face.extra["track_id"]`), when it has one.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"draw_faces needs an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    faces = list(faces)
    if numbers is not None and len(numbers) != len(faces):
        raise ValueError(f"{len(numbers)} numbers for {len(faces)} faces")
    out = image.copy() if copy else image
    height, width = out.shape[:2]
    font_scale, thickness = text_style(height, width)

    def color(name: str) -> tuple[int, int, int]:
        rgb = EMOTION_COLORS.get(name, (255, 255, 255))
        return rgb if color_order == "rgb" else rgb[::-1]

    outline = OUTLINE_RGB if color_order == "rgb" else OUTLINE_RGB[::-1]
    texts = [
        face_label_text(face, numbers[i] if numbers is not None else face.extra.get("track_id"))
        for i, face in enumerate(faces)
    ]
    for face in faces:
        x, y, w, h = face.box
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), outline, thickness + 2, cv2.LINE_AA)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color(face.label), thickness, cv2.LINE_AA)
    labels = place_labels([f.box for f in faces], texts, (height, width), font_scale, thickness)
    for face, label in zip(faces, labels):
        lx, ly, lw, lh = label.rect
        _leader_line(out, label, color(face.label), thickness)
        cv2.rectangle(out, (lx, ly), (lx + lw - 1, ly + lh - 1), color(face.label), cv2.FILLED)
        cv2.rectangle(out, (lx, ly), (lx + lw - 1, ly + lh - 1), outline, 1)
        scale, text_thickness = _fit_font(label.text, lw, font_scale, thickness)
        (_, th), _ = cv2.getTextSize(label.text, FONT, scale, text_thickness)
        pad = _pad(thickness)
        cv2.putText(out, label.text, (lx + pad, ly + pad + th), FONT, scale, (0, 0, 0), text_thickness, cv2.LINE_AA)
    return out


def place_labels(
    boxes: Sequence[Box], texts: Sequence[str], image_size: tuple[int, int], font_scale: float, thickness: int
) -> list[Label]:
    """One label rectangle per box, in order: inside the image, overlapping no earlier label.

    Each label goes to the free spot nearest its face (above, below, inside the top or bottom
    of the box, then further up or down), preferring spots that cover no other face. A label
    for which no free spot exists is shortened to its number ("#3"); only if even that cannot
    be placed does it take the least-overlapping spot.
    """
    height, width = image_size
    placed: list[Label] = []
    for index, (box, text) in enumerate(zip(boxes, texts)):
        others = [b for i, b in enumerate(boxes) if i != index]
        label = None
        for candidate_text in dict.fromkeys((text, text.split(" ")[0])):  # full text, then "#n" alone
            size = _label_size(candidate_text, width, font_scale, thickness)
            label = _best_spot(box, size, (height, width), others, [p.rect for p in placed], strict=True)
            if label is not None:
                label = Label(candidate_text, label, box)
                break
        if label is None:
            size = _label_size(text, width, font_scale, thickness)
            label = Label(text, _best_spot(box, size, (height, width), others, [p.rect for p in placed], strict=False),
                          box)
        placed.append(label)
    return placed


def fit_for_display(
    image: np.ndarray, faces: list[Face], max_side: int = DISPLAY_MAX_SIDE, min_side: int = DISPLAY_MIN_SIDE
) -> tuple[np.ndarray, list[Face]]:
    """Scale an image (and its face boxes) so that its longer side is between `min_side` and `max_side`:
    large photos stay cheap to annotate and show, small ones get labels that can be read."""
    height, width = image.shape[:2]
    longer = max(height, width)
    scale = max_side / longer if longer > max_side else min_side / longer if longer < min_side else 1.0
    if scale == 1.0:
        return image, faces
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    scaled = [replace(f, box=tuple(round(v * scale) for v in f.box)) for f in faces]
    return resized, scaled


# ---------------------------------------------------------------- internals


def _pad(thickness: int) -> int:
    return thickness + 2


def _fit_font(text: str, max_width: int, font_scale: float, thickness: int) -> tuple[float, int]:
    """The font scale (and stroke) at which `text` fits into `max_width` pixels with its padding."""
    scale, stroke = font_scale, thickness
    while scale > 0.3:
        (tw, _), _ = cv2.getTextSize(text, FONT, scale, stroke)
        if tw + 2 * _pad(thickness) <= max_width:
            break
        scale *= 0.9
        stroke = max(1, min(stroke, round(scale * 2)))
    return scale, stroke


def _label_size(text: str, image_width: int, font_scale: float, thickness: int) -> tuple[int, int]:
    scale, stroke = _fit_font(text, image_width, font_scale, thickness)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, stroke)
    pad = _pad(thickness)
    return min(image_width, tw + 2 * pad), th + base + 2 * pad


def _overlap(a: Box, b: Box) -> int:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))


def _gap(a: Box, b: Box) -> int:
    """Pixels between two rectangles (0 when they touch or overlap)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    dx = max(0, bx - (ax + aw), ax - (bx + bw))
    dy = max(0, by - (ay + ah), ay - (by + bh))
    return max(dx, dy)


def _best_spot(
    box: Box, size: tuple[int, int], image_size: tuple[int, int], other_faces: list[Box], taken: list[Box], *, strict: bool
) -> Box | None:
    """The cheapest label rectangle near `box`; with `strict`, None when every spot overlaps a taken one."""
    x, y, w, h = box
    lw, lh = size
    height, width = image_size
    xs = {x, x + w - lw, x + (w - lw) // 2}
    ys = [y - lh, y + h, y, y + h - lh]
    steps = max(1, height // max(1, lh))
    ys += [y - lh - k * lh for k in range(1, steps)] + [y + h + k * lh for k in range(1, steps)]
    best, best_cost = None, None
    for cy in ys:
        for cx in xs:
            rect = (min(max(0, cx), max(0, width - lw)), min(max(0, cy), max(0, height - lh)), lw, lh)
            clash = sum(_overlap(rect, t) for t in taken)
            if strict and clash:
                continue
            cost = (10 * clash + 2 * sum(_overlap(rect, f) for f in other_faces)
                    + 0.5 * _overlap(rect, box) + _gap(rect, box) * lw)
            if best_cost is None or cost < best_cost:
                best, best_cost = rect, cost
                if cost == 0:  # no cost can be lower, and ties keep the first: skip the far rows
                    return best
    return best


def _leader_line(image: np.ndarray, label: Label, color: tuple[int, int, int], thickness: int) -> None:
    """A thin line from a label that had to move away from its face back to the face's box."""
    if _gap(label.rect, label.face_box) <= thickness:
        return
    lx, ly, lw, lh = label.rect
    x, y, w, h = label.face_box
    start = (lx + lw // 2, ly + lh // 2)
    end = (min(max(start[0], x), x + w - 1), min(max(start[1], y), y + h - 1))
    cv2.line(image, start, end, color, max(1, thickness // 2), cv2.LINE_AA)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB image as PNG file bytes (the annotated photo's download)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
