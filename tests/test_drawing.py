"""Annotation of group photos: faces numbered in reading order, labels that never overlap each other, never
leave the image and never cover another face."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ferlens.config import CLASS_NAMES, EMOTION_COLORS
from ferlens.core.drawing import contrast_ratio, draw_faces, fit_for_display, ink_for, place_labels, reading_order, tag_scale
from ferlens.core.recognition import Face


def _face(box, label="happy", confidence=0.88, **extra) -> Face:
    rest = (1.0 - confidence) / (len(CLASS_NAMES) - 1)
    return Face(box=box, probabilities={n: confidence if n == label else rest for n in CLASS_NAMES}, extra=extra)


def _overlap(a, b) -> int:
    return max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])) * max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))


def test_reading_order_is_rows_then_left_to_right():
    # Two rows of uneven heads, given largest first as detection returns them.
    boxes = [(300, 30, 90, 90), (20, 40, 60, 60), (160, 20, 70, 70), (200, 210, 80, 80), (30, 200, 70, 70)]
    ordered = [f.box for f in reading_order([_face(b) for b in boxes])]
    assert ordered == [(20, 40, 60, 60), (160, 20, 70, 70), (300, 30, 90, 90), (30, 200, 70, 70), (200, 210, 80, 80)]


def _grid(columns: int, rows: int, face: tuple[int, int], gap: int = 0, border: int = 0) -> tuple[list, tuple]:
    """Face boxes tiled `columns` x `rows` with `gap` px between them, and the picture's (height, width)."""
    fw, fh = face
    boxes = [(border + c * (fw + gap), border + r * (fh + gap), fw, fh) for r in range(rows) for c in range(columns)]
    return boxes, (2 * border + rows * fh + (rows - 1) * gap, 2 * border + columns * fw + (columns - 1) * gap)


def _crowd(count: int, size: tuple[int, int], seed: int) -> tuple[list, tuple]:
    """`count` faces of 30-140 px at random, none overlapping another: a crowded group photo."""
    rng = np.random.default_rng(seed)
    height, width = size
    boxes: list = []
    while len(boxes) < count:
        side = int(rng.integers(30, 140))
        box = (int(rng.integers(0, width - side)), int(rng.integers(0, height - side)), side, side)
        if all(_overlap(box, b) == 0 for b in boxes):
            boxes.append(box)
    return boxes, size


#: The issue's collage: six web faces side by side in a 1440x240 strip, as BlazeFace framed them.
COLLAGE = ([(54, 64, 116, 116), (295, 62, 132, 132), (533, 57, 129, 129), (770, 63, 139, 139), (1002, 43, 144, 144),
            (1266, 60, 124, 124)], (240, 1440))
LAYOUTS = {
    "collage of six web faces, 1440x240": COLLAGE,
    "six faces filling a 1440x240 strip": _grid(6, 1, (230, 230), gap=10, border=5),
    "six faces stacked in a 240x1440 strip": _grid(1, 6, (230, 230), gap=10, border=5),
    "eight faces tiled 4x2, no room between": _grid(4, 2, (100, 120)),
    "eight small faces tiled 4x2, no room between": _grid(4, 2, (60, 60)),
    "group photo, three rows of seven": _grid(7, 3, (70, 80), gap=12, border=40),
    "crowd of 25 faces": _crowd(25, (800, 1200), seed=1),
    "crowd of 40 faces": _crowd(40, (900, 1600), seed=2),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_tags_never_cover_another_face_nor_each_other(layout):
    """Dense group photos and collages, drawn as the upload page shows them (`fit_for_display`), with the
    longest label there is: every tag stays inside the picture, clear of every other tag and of every
    face but its own, and keeps its number."""
    boxes, (height, width) = LAYOUTS[layout]
    faces = [_face(box) for box in boxes]
    display, shown = fit_for_display(np.zeros((height, width, 3), np.uint8), faces)
    boxes, (height, width) = [f.box for f in shown], display.shape[:2]
    texts = [f"#{i} surprise 100%" for i in range(1, len(boxes) + 1)]
    labels = place_labels(boxes, texts, (height, width))
    for index, label in enumerate(labels):
        x, y, w, h = label.rect
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, label
        assert label.text.split(" ")[0] == f"#{index + 1}" and label.face_box == boxes[index]
        for other, box in enumerate(boxes):
            if other != index:
                assert _overlap(label.rect, box) == 0, (label, box)
    for a, b in itertools.combinations(labels, 2):
        assert _overlap(a.rect, b.rect) == 0, (a, b)


def test_the_collages_tags_are_sized_to_their_faces_and_keep_their_text():
    """The issue's 1440x240 collage got tags 40 px tall and 300 px wide, over the neighbours' heads."""
    boxes, (height, width) = COLLAGE
    display, shown = fit_for_display(np.zeros((height, width, 3), np.uint8), [_face(b) for b in boxes])
    boxes = [f.box for f in shown]
    texts = [f"#{i} surprise 100%" for i in range(1, 7)]
    labels = place_labels(boxes, texts, display.shape[:2])
    assert [label.text for label in labels] == texts
    for label, box in zip(labels, boxes):
        assert label.rect[3] <= box[3] / 3  # a third of its face's height at most
        preferred, floor = tag_scale(box, display.shape[:2])
        assert floor <= label.scale <= preferred


def test_a_small_face_in_a_large_photo_gets_a_smaller_tag_than_a_large_one():
    size = (1200, 1600)
    small, _ = tag_scale((100, 100, 60, 60), size)
    large, floor = tag_scale((600, 100, 400, 400), size)
    assert floor == small < large


def test_a_label_near_the_right_edge_is_moved_inside_not_clipped():
    labels = place_labels([(560, 5, 40, 40)], ["#1 happy 88%"], (300, 600))
    x, y, w, h = labels[0].rect
    assert labels[0].text == "#1 happy 88%" and x + w <= 600 and y >= 0


def test_neutral_grey_box_stays_visible_on_a_grey_background():
    grey = np.array(EMOTION_COLORS["neutral"], np.uint8)
    image = np.tile(grey, (300, 400, 1))
    out = draw_faces(image, [_face((100, 80, 120, 120), label="neutral")], numbers=[1])
    across_left_edge = out[140, 96:105].astype(int)  # a row crossing the box's left edge at x = 100
    assert np.abs(across_left_edge - grey).max(axis=1).max() > 100  # a dark outline, not grey on grey


def test_numbers_and_track_ids_are_drawn_into_the_label(monkeypatch):
    import ferlens.core.drawing

    drawn = []
    real = ferlens.core.drawing.cv2.putText
    monkeypatch.setattr(ferlens.core.drawing.cv2, "putText",
                        lambda img, text, *a, **k: drawn.append(text) or real(img, text, *a, **k))
    image = np.zeros((240, 320, 3), np.uint8)
    draw_faces(image, [_face((20, 20, 80, 80)), _face((200, 20, 80, 80))], numbers=[1, 2])
    draw_faces(image, [_face((20, 20, 80, 80), label="sad", confidence=0.5, track_id=7)], color_order="bgr")
    assert drawn == ["#1 happy 88%", "#2 happy 88%", "#7 sad 50%"]


def test_fit_for_display_bounds_the_longer_side_and_scales_boxes():
    faces = [_face((10, 10, 20, 20))]
    small, scaled = fit_for_display(np.zeros((100, 60, 3), np.uint8), faces)
    assert max(small.shape[:2]) == 480 and scaled[0].box == (48, 48, 96, 96)
    large, _ = fit_for_display(np.zeros((4000, 3000, 3), np.uint8), faces)
    assert max(large.shape[:2]) == 1600
    thin, _ = fit_for_display(np.zeros((10, 32000, 3), np.uint8), [])  # no zero-height resize (cv2.error)
    assert thin.shape[:2] == (1, 1600)


#: Machado, Oliveira and Fernandes (2009): full-severity dichromacy, on linear RGB.
DICHROMACY = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}


@pytest.mark.parametrize("vision", ["normal", *DICHROMACY])
def test_emotion_colours_stay_apart_for_colour_blind_readers(vision):
    """Any two emotions' colours differ by at least 12 CIEDE2000 (a glance tells them apart) with normal
    vision and as people with each dichromacy see them; the old palette had fear and sad 1.6 apart
    for deuteranopes."""
    color = pytest.importorskip("skimage.color")
    rgb = np.array([EMOTION_COLORS[name] for name in CLASS_NAMES], np.float64) / 255
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    if vision != "normal":
        linear = np.clip(linear @ np.array(DICHROMACY[vision]).T, 0, 1)
    seen = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    lab = color.rgb2lab(seen[None])[0]
    for (a, b) in itertools.combinations(range(len(CLASS_NAMES)), 2):
        assert color.deltaE_ciede2000(lab[a], lab[b]) >= 12, (vision, CLASS_NAMES[a], CLASS_NAMES[b])


def test_emotion_colours_are_legible_on_white_and_under_their_text():
    """Chart bars and the legend sit on a white page: 3:1 at least (WCAG's bar for graphics). A tag's text
    takes black or white, whichever reads better on its colour: 4.5:1 at least (WCAG's bar for text)."""
    for name, rgb in EMOTION_COLORS.items():
        assert contrast_ratio(rgb, (255, 255, 255)) >= 3, name
        assert contrast_ratio(rgb, ink_for(rgb)) >= 4.5, name
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21)
    assert ink_for((255, 255, 0)) == (0, 0, 0) and ink_for((0, 0, 128)) == (255, 255, 255)


def test_a_tag_that_must_move_away_gets_a_leader_line_to_its_face():
    """A small face boxed in by four others: no spot beside it is free and its box is too small to hold
    even "#1", so its tag goes further up, clear of every face, with a line back to its box."""
    small = (140, 140, 20, 20)
    around = [(120, 100, 60, 40), (120, 160, 60, 40), (100, 140, 40, 20), (160, 140, 40, 20)]  # above, below, sides
    boxes = [small, *around]
    labels = place_labels(boxes, [f"#{i}" for i in range(1, 6)], (300, 300))
    tag = labels[0]
    assert all(_overlap(tag.rect, box) == 0 for box in around)
    gap_above = small[1] - (tag.rect[1] + tag.rect[3])
    assert gap_above > 0 or tag.rect[1] > small[1] + small[3]  # moved away from its box
    image = np.zeros((300, 300, 3), np.uint8)
    faces = [_face(box, label="surprise") for box in boxes]
    out = draw_faces(image, faces, numbers=range(1, 6))
    colour = np.array(EMOTION_COLORS["surprise"])
    x = tag.rect[0] + tag.rect[2] // 2
    between = range(tag.rect[1] + tag.rect[3] + 1, small[1]) if gap_above > 0 else range(small[1] + small[3] + 1,
                                                                                           tag.rect[1])
    on_line = [np.abs(out[y, x - 1:x + 2].astype(int) - colour).sum(axis=1).min() < 60 for y in between]
    assert on_line and np.mean(on_line) > 0.8  # the leader line runs from the tag to the box
