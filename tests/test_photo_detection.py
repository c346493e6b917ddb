"""Still photos: the Haar cascade plus dlib's HOG detector, merged without duplicates and framed alike."""

from __future__ import annotations

import cv2
import pytest

from fer.detection import MERGE_IOU, DetectorSettings, HaarFaceDetector, HogFaceDetector, box_iou

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def gray(astronaut_rgb):
    return cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)


def test_hog_finds_the_face_haar_finds(gray):
    haar = HaarFaceDetector().detect(gray)
    hog = HogFaceDetector().detect(gray, 1.0, 40)
    assert len(haar) == 1 and len(hog) == 1
    # Mapped onto Haar's framing, the HOG box covers the same face.
    assert box_iou(haar[0], hog[0]) > 0.6


def test_a_face_both_find_is_reported_once(gray):
    both = HaarFaceDetector().detect_photo(gray)
    assert both == HaarFaceDetector().detect(gray)


def test_hog_adds_a_face_the_cascade_misses(gray):
    """A face turned 30 degrees in the image plane defeats the upright Haar cascade, not HOG here."""
    height, width = gray.shape
    turned = cv2.warpAffine(gray, cv2.getRotationMatrix2D((width / 2, height / 2), 25, 1.0), (width, height),
                            borderMode=cv2.BORDER_REPLICATE)
    detector = HaarFaceDetector()
    haar_only = HaarFaceDetector(DetectorSettings(second_detector=False)).detect_photo(turned)
    merged = detector.detect_photo(turned)
    assert len(merged) > len(haar_only)
    for i, a in enumerate(merged):
        assert all(box_iou(a, b) < MERGE_IOU for b in merged[i + 1:])


def test_hog_frame_mapping_enlarges_and_raises_the_box():
    x, y, w, h = HogFaceDetector.to_haar_frame((100, 100, 100, 100))
    assert w == h == round(100 * HogFaceDetector.SIDE_RATIO)
    assert y + h / 2 < 150 and x + w / 2 == pytest.approx(150, abs=1)


def test_video_keeps_the_cascade_alone(gray, monkeypatch):
    """FaceFollower's full scans call `detect`, which never runs the second detector; photos do."""
    import fer.detection

    calls = []
    monkeypatch.setattr(fer.detection, "second_detector", lambda: calls.append(1) or None)
    detector = HaarFaceDetector()
    detector.detect(gray)
    fer.detection.FaceFollower(detector).update(gray)
    assert calls == []
    detector.detect_photo(gray)
    assert calls == [1]
