"""Live-page pieces that live in the library: tracking without smoothing keeps face IDs."""

from __future__ import annotations

from fer.config import CLASS_NAMES
from fer.recognition import Face
from fer.smoothing import FaceSmoother


def _face(box, label: str) -> Face:
    return Face(box=box, probabilities={n: 0.7 if n == label else 0.05 for n in CLASS_NAMES})


def test_tracking_without_smoothing_keeps_ids_and_this_frames_probabilities():
    smoother = FaceSmoother(alpha=0.3)
    smoother.update([_face((0, 0, 50, 50), "happy"), _face((200, 0, 50, 50), "sad")], smooth=False)
    moved = smoother.update([_face((204, 2, 50, 50), "angry"), _face((3, 1, 50, 50), "happy")], smooth=False)
    assert [f.extra["track_id"] for f in moved] == [2, 1]  # followed by overlap, whatever the order
    assert moved[0].label == "angry" and abs(moved[0].confidence - 0.7) < 1e-6  # no averaging with "sad"
    smoothed = smoother.update([_face((204, 2, 50, 50), "sad")])  # smoothing back on: averages from here
    assert smoothed[0].extra["track_id"] == 2 and smoothed[0].probabilities["angry"] > 0.05
