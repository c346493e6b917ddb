"""Live pipeline pieces: IoU tracking with EMA smoothing, and the per-frame processor."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from fer.config import CLASS_NAMES
from fer.detection import FaceFollower, HaarFaceDetector
from fer.recognition import EmotionRecognizer, Face
from fer.smoothing import FaceSmoother, iou
from fer.video import LiveProcessor


def _face(box, label, p=0.9):
    rest = (1 - p) / 6
    return Face(box=box, probabilities={n: (p if n == label else rest) for n in CLASS_NAMES})


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_smoother_keeps_ids_and_damps_a_one_frame_flicker():
    smoother = FaceSmoother(alpha=0.3)
    for _ in range(5):
        out = smoother.update([_face((100, 100, 50, 50), "happy"), _face((300, 100, 50, 50), "sad")])
    ids = [f.extra["track_id"] for f in out]
    flicker = smoother.update([_face((102, 101, 50, 50), "angry"), _face((301, 99, 50, 50), "sad")])
    assert [f.extra["track_id"] for f in flicker] == ids
    assert flicker[0].label == "happy"  # one angry frame does not flip a steady happy face
    assert sum(flicker[0].probabilities.values()) == pytest.approx(1.0)
    for _ in range(6):
        changed = smoother.update([_face((102, 101, 50, 50), "angry")])
    assert changed[0].label == "angry"  # a lasting change comes through


def test_smoother_forgets_faces_that_left():
    smoother = FaceSmoother(max_missed=2)
    first = smoother.update([_face((0, 0, 40, 40), "happy")])[0].extra["track_id"]
    for _ in range(3):
        smoother.update([])
    again = smoother.update([_face((0, 0, 40, 40), "happy")])[0].extra["track_id"]
    assert again != first
    with pytest.raises(ValueError):
        FaceSmoother(alpha=0.0)


@pytest.fixture(scope="module")
def processor(shipped_model_dir):
    return LiveProcessor(EmotionRecognizer(shipped_model_dir))


def test_processor_annotates_frames_and_reports_through_the_queue(processor, astronaut_rgb):
    frame = cv2.resize(astronaut_rgb[..., ::-1], (640, 640))[80:560].copy()  # 640x480 BGR
    outputs = [processor.process(frame) for _ in range(3)]
    assert all(out.shape == frame.shape for out in outputs)
    assert np.abs(outputs[0].astype(int) - frame.astype(int)).sum() > 0  # a box was drawn
    results = processor.drain()
    assert len(results) == 3 and all(r.error is None for r in results)
    assert all(len(r.faces) == 1 for r in results)
    record = results[-1].main_face_record()
    assert record["faces"] == 1 and record["label"] in CLASS_NAMES
    stats = processor.stats()
    assert stats["frames"] >= 3 and stats["frames_with_face"] >= 3 and stats["latency_ms"] > 0


def test_processor_survives_a_bad_frame(processor):
    bad = np.zeros((0, 0, 3), np.uint8)
    assert processor.process(bad) is bad
    result = processor.drain()[-1]
    assert "InvalidImageError" in result.error
    good = np.full((480, 640, 3), 128, np.uint8)
    assert processor.process(good).shape == good.shape  # the stream goes on


def test_processor_queue_is_bounded_and_thread_safe(shipped_model_dir):
    processor = LiveProcessor(EmotionRecognizer(shipped_model_dir), max_queue=5)
    frame = np.full((120, 160, 3), 90, np.uint8)
    threads = [threading.Thread(target=lambda: [processor.process(frame) for _ in range(5)]) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert processor.stats()["frames"] == 15
    assert len(processor.drain()) == 5


def _moving_face_frames(astronaut_rgb, count: int) -> list[np.ndarray]:
    """640x480 BGR frames of the astronaut's head sliding left-right and up-down."""
    frame = np.full((480, 640, 3), 60, np.uint8)
    head = cv2.resize(astronaut_rgb[30:230, 130:320, ::-1], (209, 220))
    frame[130:350, 220:429] = head
    return [
        cv2.warpAffine(frame, np.float32([[1, 0, 80 * np.sin(i / 6)], [0, 1, 30 * np.sin(i / 9)]]), (640, 480),
                       borderMode=cv2.BORDER_REPLICATE)
        for i in range(count)
    ]


class _CountingDetector(HaarFaceDetector):
    def __init__(self):
        super().__init__()
        self.full_scans = 0

    def detect(self, gray, downscale=None):
        self.full_scans += 1
        return super().detect(gray, downscale)


def test_follower_keeps_boxes_on_a_moving_face_with_few_full_scans(astronaut_rgb):
    frames = _moving_face_frames(astronaut_rgb, 40)
    detector = _CountingDetector()
    follower = FaceFollower(detector, full_every=5, downscale=0.5)
    reference = HaarFaceDetector()
    overlaps = []
    for frame in frames:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        boxes = follower.update(gray)
        truth = reference.detect(gray, 0.5)
        assert len(truth) == 1, "the reference scan must see the one face"
        assert len(boxes) == 1
        overlaps.append(iou(boxes[0], truth[0]))
    # The face moves up to ~13 px a frame; every followed box still matches a full scan's box.
    assert min(overlaps) >= 0.6 and np.mean(overlaps) >= 0.8, overlaps
    assert detector.full_scans <= len(frames) // 5 + 3


def test_follower_rescans_at_once_when_the_face_is_lost(astronaut_rgb):
    face, empty = _moving_face_frames(astronaut_rgb, 1)[0], np.full((480, 640, 3), 60, np.uint8)
    detector = _CountingDetector()
    follower = FaceFollower(detector, full_every=100)
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    assert len(follower.update(gray)) == 1 and detector.full_scans == 1
    assert len(follower.update(gray)) == 1 and detector.full_scans == 1  # found near its last box
    assert follower.update(cv2.cvtColor(empty, cv2.COLOR_BGR2GRAY)) == [] and detector.full_scans == 2
    with pytest.raises(ValueError):
        FaceFollower(detector, full_every=0)
