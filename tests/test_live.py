"""The live page's session: times from START, face IDs, bounded memory, and the no-face hint."""

from __future__ import annotations

from ferlens.config import CLASS_NAMES
from ferlens.core.recognition import Face
from ferlens.core.tracks import FrameResult, LiveSession


def _frame(index: int, time_s: float, face_ids: list[int]) -> FrameResult:
    faces = [Face(box=(10 * i, 0, 50, 50), probabilities={n: 1 / len(CLASS_NAMES) for n in CLASS_NAMES},
                  extra={"track_id": i}) for i in face_ids]
    return FrameResult(index, time_s, 5.0, faces)


def test_times_count_from_the_first_frame_and_rows_keep_face_ids():
    session = LiveSession()
    session.add([_frame(1, 6.2, [1]), _frame(2, 6.7, [1, 2]), _frame(3, 7.2, [2])])
    times, probabilities = session.timeline(1)
    assert list(times) == [0.0, 0.5] and probabilities.shape == (2, len(CLASS_NAMES))
    assert session.recent_faces(min_frames=1) == [1, 2]
    rows = session.csv().splitlines()
    assert [r.split(",")[3] for r in rows[1:]] == ["1", "1", "2", "2"]


def test_memory_is_bounded_and_the_newest_rows_stay():
    session = LiveSession(max_rows=100)
    session.add([_frame(i, i / 30, [1]) for i in range(1000)])
    assert 50 <= len(session) <= 100
    times, _ = session.timeline(1, window_s=1e9)
    assert times[-1] == (999 - 0) / 30 and times[0] > 0


def test_recent_faces_are_at_most_the_limit_and_drop_faces_gone_for_long_or_seen_briefly():
    session = LiveSession()
    session.add([_frame(0, 0.0, [9])] + [_frame(i, i, [1, 2, 3, 4, 5]) for i in range(1, 60)])
    session.add([_frame(60, 60, [1, 2, 3, 4, 5, 6])])  # face 6: one frame so far
    assert session.recent_faces(window_s=30, limit=4) == [1, 2, 3, 4]
    assert session.recent_faces(window_s=30, limit=10) == [1, 2, 3, 4, 5]  # not 9 (gone), not 6 (new)
    assert session.recent_faces(window_s=30, limit=10, min_frames=1) == [1, 2, 3, 4, 5, 6]


def test_no_face_hint_after_frames_without_a_face():
    session = LiveSession()
    session.add([_frame(0, 0.0, [1]), _frame(1, 1.0, [])])
    assert not session.no_face_in_view()
    session.add([_frame(2, 2.0, [])])
    assert session.no_face_in_view()
    session.add([_frame(3, 2.1, [1])])
    assert not session.no_face_in_view()
