"""Draw faces onto images: a numbered box per face, its label and confidence, in the emotion's colour.

Labels are sized to their face and the picture, and placed so that they never overlap each other,
never leave the image and, wherever any free spot exists, cover no other face's box (above, below,
beside or inside their own box; a leader line when one had to move away). A group photo or a wide
collage stays readable, and each number on the image matches a chart, a table row and the CSV/JSON
of the upload page (faces are numbered in reading order, `reading_order`).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ferlens.config import EMOTION_COLORS
from ferlens.core.detectors import Box
from ferlens.core.recognition import Face

FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK, WHITE = (0, 0, 0), (255, 255, 255)
#: Display images are scaled so that their longer side is within these bounds (labels stay legible).
DISPLAY_MIN_SIDE, DISPLAY_MAX_SIDE = 480, 1600


#: A tag's font scale per pixel of its face's height: a 160 px face gets scale 1 (text 22 px tall, about
#: a seventh of the face), so a tag stays small beside its face ...
TAG_SCALE_PER_FACE_PIXEL = 1 / 160
#: ... but never below this share of the picture's own scale (`text_style`), so that the browser, which
#: shows a wide picture shrunk to the page, still shows legible text; nor below OpenCV's smallest legible.
TAG_MIN_SHARE, TAG_MIN_SCALE = 0.5, 0.4
#: Smaller fonts tried, as factors of the first, before a tag falls back to its number alone.
TAG_SHRINK = (1.0, 0.85, 0.7)


@dataclass(frozen=True)
class Label:
    """Where one face's label goes: its text, its background rectangle (x, y, w, h) inside the image,
    and the font scale and stroke it is drawn with."""

    text: str
    rect: Box
    face_box: Box
    scale: float = 1.0
    stroke: int = 1


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


def tag_scale(box: Box, image_size: tuple[int, int]) -> tuple[float, float]:
    """(preferred, smallest) font scale of the tag of a face `box` in a picture of `image_size`:
    sized to the face, capped by the picture's own scale, floored where text stops being legible."""
    base, _ = text_style(*image_size)
    floor = max(TAG_MIN_SCALE, TAG_MIN_SHARE * base)
    return min(base, max(floor, box[3] * TAG_SCALE_PER_FACE_PIXEL)), floor


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
    _, thickness = text_style(height, width)

    def color(name: str) -> tuple[int, int, int]:
        rgb = EMOTION_COLORS.get(name, WHITE)
        return rgb if color_order == "rgb" else rgb[::-1]

    def ink(name: str) -> tuple[int, int, int]:  # black and white are the same in either order
        return ink_for(EMOTION_COLORS.get(name, WHITE))

    texts = [
        face_label_text(face, numbers[i] if numbers is not None else face.extra.get("track_id"))
        for i, face in enumerate(faces)
    ]
    for face in faces:  # a box of the contrasting ink under each coloured box: visible on any background
        x, y, w, h = face.box
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), ink(face.label), thickness + 2, cv2.LINE_AA)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), color(face.label), thickness, cv2.LINE_AA)
    labels = place_labels([f.box for f in faces], texts, (height, width))
    for face, label in zip(faces, labels):
        lx, ly, lw, lh = label.rect
        _leader_line(out, label, color(face.label), thickness)
        cv2.rectangle(out, (lx, ly), (lx + lw - 1, ly + lh - 1), color(face.label), cv2.FILLED)
        cv2.rectangle(out, (lx, ly), (lx + lw - 1, ly + lh - 1), ink(face.label), 1)
        (_, th), _ = cv2.getTextSize(label.text, FONT, label.scale, label.stroke)
        pad = _pad(label.stroke)
        cv2.putText(out, label.text, (lx + pad, ly + pad + th), FONT, label.scale, ink(face.label), label.stroke,
                    cv2.LINE_AA)
    return out


def place_labels(boxes: Sequence[Box], texts: Sequence[str], image_size: tuple[int, int]) -> list[Label]:
    """One label per box, in order: inside the image, overlapping no earlier label and, wherever
    possible, no other face's box.

    Each label starts at its face's size (`tag_scale`) and goes to the free spot nearest its face:
    above or below the box, beside it, inside its top or bottom, then further up or down (a leader
    line then joins it to its box). Where no spot is free, the font shrinks (`TAG_SHRINK`, never
    below the legible floor), then the label is shortened to its number ("#3"); only if even that
    fits nowhere does it take the least-overlapping spot.
    """
    height, width = image_size
    placed: list[Label] = []
    for index, (box, text) in enumerate(zip(boxes, texts)):
        others = [b for i, b in enumerate(boxes) if i != index]
        preferred, floor = tag_scale(box, image_size)
        scales = [max(floor, preferred * f) for f in TAG_SHRINK]
        tries = [(t, sc) for t in dict.fromkeys((text, text.split(" ")[0])) for sc in dict.fromkeys(scales)]
        label = None
        # Near the face first, in every size down to the number alone; only then further away.
        for far, (candidate_text, scale) in itertools.product((False, True), tries):
            size, stroke, fitted = _label_size(candidate_text, width, scale)
            rect = _best_spot(box, size, (height, width), others, [p.rect for p in placed], strict=True, far=far)
            if rect is not None:
                label = Label(candidate_text, rect, box, fitted, stroke)
                break
        if label is None:
            size, stroke, fitted = _label_size(tries[-1][0], width, floor)
            rect = _best_spot(box, size, (height, width), others, [p.rect for p in placed], strict=False, far=True)
            label = Label(tries[-1][0], rect, box, fitted, stroke)
        placed.append(label)
    return placed


def relative_luminance(rgb: Sequence[int]) -> float:
    """WCAG's relative luminance of an sRGB colour (0 black .. 1 white)."""
    linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(a: Sequence[int], b: Sequence[int]) -> float:
    """WCAG's contrast ratio of two sRGB colours, 1 (none) to 21 (black on white)."""
    high, low = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def ink_for(rgb: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with `rgb`: a tag's text and a box's outline."""
    return BLACK if contrast_ratio(rgb, BLACK) >= contrast_ratio(rgb, WHITE) else WHITE


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


def _pad(stroke: int) -> int:
    return stroke + 2


def _stroke(scale: float) -> int:
    """Text stroke for a font scale: bold enough to read, thin enough not to blot small letters (in
    steps wide apart, so that the tags of one picture mostly share one)."""
    return 1 if scale < 0.6 else 2 if scale < 1.3 else 3


def _label_size(text: str, image_width: int, scale: float) -> tuple[tuple[int, int], int, float]:
    """((width, height), stroke, scale) of a tag of `text` at `scale`, shrunk until it fits the image's width."""
    stroke = _stroke(scale)
    while True:
        (tw, th), base = cv2.getTextSize(text, FONT, scale, stroke)
        pad = _pad(stroke)
        if tw + 2 * pad <= image_width or scale <= 0.3:
            return (min(image_width, tw + 2 * pad), th + base + 2 * pad), stroke, scale
        scale *= 0.9
        stroke = _stroke(scale)


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
    box: Box, size: tuple[int, int], image_size: tuple[int, int], other_faces: list[Box], taken: list[Box], *,
    strict: bool, far: bool,
) -> Box | None:
    """The cheapest label rectangle near `box` (with `far`, also rows further up and down). With
    `strict`, only spots that overlap no taken label and no other face count (None when there is
    none); otherwise overlaps are costs."""
    height, width = image_size
    best, best_cost = None, None
    for cx, cy, penalty in _spots(box, size, height, far):
        lw, lh = size
        rect = (min(max(0, cx), max(0, width - lw)), min(max(0, cy), max(0, height - lh)), lw, lh)
        clash = sum(_overlap(rect, t) for t in taken)
        covered = sum(_overlap(rect, f) for f in other_faces)
        if strict and (clash or covered):
            continue
        cost = 10 * clash + 2 * covered + 0.5 * _overlap(rect, box) + _gap(rect, box) * lw + penalty * lw * lh
        if best_cost is None or cost < best_cost:
            best, best_cost = rect, cost
            if cost == 0:  # no cost can be lower, and ties keep the first: skip the far rows
                return best
    return best


def _spots(box: Box, size: tuple[int, int], height: int, far: bool) -> Iterator[tuple[int, int, float]]:
    """Candidate top-left corners (x, y) for a label of `size` at `box`, nearest first, each with a
    penalty (in label areas) that ranks spots at the same distance: above and below the box first,
    then beside it, then inside its top and bottom, then (`far`) rows further up and down."""
    x, y, w, h = box
    lw, lh = size
    xs = (x + (w - lw) // 2, x, x + w - lw)
    for cy in (y - lh, y + h):
        for cx in xs:
            yield cx, cy, 0.0
    for cx in (x - lw, x + w):
        for cy in (y, y + (h - lh) // 2, y + h - lh):
            yield cx, cy, 0.1
    for cy in (y, y + h - lh):
        for cx in xs:
            yield cx, cy, 0.0  # inside: its overlap with its own face is the cost
    for k in range(1, max(1, height // max(1, lh)) if far else 1):
        for cy in (y - lh - k * lh, y + h + k * lh):
            for cx in xs:
                yield cx, cy, 0.0


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
