"""Annotation of group photos: faces numbered in reading order, labels that never overlap or leave the image."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fer.config import CLASS_NAMES, EMOTION_COLORS
from fer.drawing import draw_faces, fit_for_display, place_labels, reading_order, text_style
from fer.recognition import Face


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


@pytest.mark.parametrize("face_size", [(100, 120), (60, 60)])
def test_eight_tiled_faces_get_full_labels_that_neither_overlap_nor_leave_the_image(face_size):
    """The case from the issue: 8 faces tiled 4 x 2 with no room between them (the worst case)."""
    fw, fh = face_size
    height, width = 2 * fh, 4 * fw
    boxes = [(c * fw, r * fh, fw, fh) for r in range(2) for c in range(4)]
    texts = [f"#{i} surprise 100%" for i in range(1, 9)]
    font_scale, thickness = text_style(height, width)
    labels = place_labels(boxes, texts, (height, width), font_scale, thickness)
    for label in labels:
        x, y, w, h = label.rect
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, label
    for a, b in itertools.combinations(labels, 2):
        assert _overlap(a.rect, b.rect) == 0, (a, b)
    # Each label either kept its full text or fell back to the number alone; the numbers all stay.
    assert [label.text.split(" ")[0] for label in labels] == [f"#{i}" for i in range(1, 9)]
    if face_size == (100, 120):
        assert [label.text for label in labels] == texts


def test_a_label_near_the_right_edge_is_moved_inside_not_clipped():
    labels = place_labels([(560, 5, 40, 40)], ["#1 happy 88%"], (300, 600), *text_style(300, 600))
    x, y, w, h = labels[0].rect
    assert labels[0].text == "#1 happy 88%" and x + w <= 600 and y >= 0


def test_neutral_grey_box_stays_visible_on_a_grey_background():
    grey = np.array(EMOTION_COLORS["neutral"], np.uint8)
    image = np.tile(grey, (300, 400, 1))
    out = draw_faces(image, [_face((100, 80, 120, 120), label="neutral")], numbers=[1])
    across_left_edge = out[140, 96:105].astype(int)  # a row crossing the box's left edge at x = 100
    assert np.abs(across_left_edge - grey).max(axis=1).max() > 100  # a dark outline, not grey on grey


def test_numbers_and_track_ids_are_drawn_into_the_label(monkeypatch):
    import fer.drawing

    drawn = []
    real = fer.drawing.cv2.putText
    monkeypatch.setattr(fer.drawing.cv2, "putText", lambda img, text, *a, **k: drawn.append(text) or real(img, text, *a, **k))
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
