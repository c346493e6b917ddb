"""The per-frame engine: IoU tracking with EMA smoothing, the live processor, and video files through it."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc

import av
import cv2
import numpy as np
import pytest

from ferlens.config import CLASS_NAMES, VIDEO_FRAME_BUDGET, VIDEO_MAX_FPS, VIDEO_MAX_SECONDS
from ferlens.core.detectors import FaceFollower, HaarFaceDetector
from ferlens.core.detectors import box_iou as iou
from ferlens.core.recognition import EmotionRecognizer, Face
from ferlens.core.results import CSV_COLUMNS
from ferlens.core.smoothing import FaceSmoother
from ferlens.core.tracks import FaceTracks
from ferlens.core.video import (
    InvalidVideoError,
    LiveProcessor,
    Sampling,
    VideoInfo,
    analyse_video,
    app_sampling,
    check_app_limits,
    probe_video,
    read_frames,
    video_encoder,
)
from tests.media import two_faces_frames, write_audio_only, write_video


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
        overlaps.append(iou(boxes[0].box, truth[0].box))
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


# ---------------------------------------------------------------- video files


def test_track_ids_without_smoothing_keep_each_frames_own_probabilities(shipped_model_dir, astronaut_rgb):
    recognizer = EmotionRecognizer(shipped_model_dir)
    processor = LiveProcessor(recognizer, smoothing=False)
    frames = two_faces_frames(astronaut_rgb, 6)
    ids = []
    for frame in frames:
        _, result = processor.analyse(frame, frame_index=7, timestamp=1.5)
        assert (result.frame_index, result.timestamp) == (7, 1.5)
        raw = recognizer.predict(frame, boxes=[f.box for f in result.faces])
        assert [f.probabilities for f in result.faces] == [f.probabilities for f in raw]
        ids.append(sorted(f.extra["track_id"] for f in result.faces))
    assert ids[0] == [1, 2] and all(i == ids[0] for i in ids)
    assert processor.drain() == []  # analyse() does not queue; process() does


def test_a_face_lost_until_the_next_full_scan_keeps_its_number(shipped_model_dir, astronaut_rgb):
    """Re-detection loses a briefly covered face; only the next full scan finds it again. Its track
    must outlive that wait (up to `full_scan_every` frames) or it returns under a new number."""
    processor = LiveProcessor(EmotionRecognizer(shipped_model_dir), smoothing=False)
    both = two_faces_frames(astronaut_rgb, 1)[0]
    covered = both.copy()
    covered[200:358, 380:] = 60  # the second (mirrored) face hidden behind the background grey
    frames = [both] + [covered] * 3 + [both] * processor.full_scan_every
    ids = [sorted(f.extra["track_id"] for f in processor.analyse(frame)[1].faces) for frame in frames]
    assert ids[0] == [1, 2] and len(ids[1]) == 1, ids
    assert ids[-1] == [1, 2], f"the face came back as {ids[-1]}"
    assert ids[4] == ids[1], "re-detection found the face again: this test no longer waits for a full scan"


@pytest.fixture(scope="module")
def recognizer(shipped_model_dir):
    return EmotionRecognizer(shipped_model_dir)


@pytest.fixture(scope="module")
def two_faces_video(tmp_path_factory, astronaut_rgb):
    return write_video(tmp_path_factory.mktemp("video") / "two_faces.mp4", two_faces_frames(astronaut_rgb, 45))


def test_video_faces_keep_their_ids_and_are_summarised(recognizer, two_faces_video, tmp_path):
    info = probe_video(two_faces_video)
    assert (info.width, info.height, info.frame_count, info.codec) == (640, 480, 45, "h264")
    assert info.fps == pytest.approx(30) and info.duration_s == pytest.approx(1.5, abs=0.05)
    analysis = analyse_video(two_faces_video, recognizer)
    assert analysis.frames_analysed == 45 and analysis.failed_frames == 0
    assert analysis.frames_with_faces >= 40
    table = analysis.tracks.table()
    ids = analysis.tracks.face_ids()
    assert len(ids) == 2, f"two heads should make two tracks, got {ids}"
    # The upper head (y ~ 100) and the lower one (y ~ 200) never swap IDs.
    for face_id in ids:
        tops = table[table[:, 2] == face_id, 4]
        assert tops.max() - tops.min() < 40, tops
        assert (table[:, FaceTracks.FACE_ID] == face_id).sum() >= 40
    summary = analysis.summary()
    assert [s["face"] for s in summary] == ids
    for face in summary:
        shares = [face[name] for name in CLASS_NAMES]
        assert sum(shares) == pytest.approx(1.0, abs=1e-3)
        assert face["dominant"] == CLASS_NAMES[int(np.argmax(shares))]
        assert face["seconds_seen"] == pytest.approx(face["frames"] / 30, abs=0.01)
        assert face["seconds_seen"] <= face["until_s"] - face["first_s"] + 0.01  # never seen for longer than its span
        assert face["until_s"] == pytest.approx(face["last_s"] + 1 / 30, abs=0.01)
        times, probabilities = analysis.tracks.timeline(face["face"])
        assert len(times) == face["frames"] and probabilities.shape == (face["frames"], 7)
        assert np.all(np.diff(times) > 0)
    rows = [row.as_dict() for row in analysis.tracks.rows("two_faces.mp4")]
    assert len(rows) == len(table) and list(rows[0]) == list(CSV_COLUMNS)
    assert rows[0]["source"] == "two_faces.mp4" and rows[0]["label"] in CLASS_NAMES


def test_sampling_by_rate_and_by_step(recognizer, two_faces_video):
    by_rate = list(read_frames(two_faces_video, Sampling(fps=10)))
    assert len(by_rate) == 15
    assert np.allclose(np.diff([f.time_s for f in by_rate]), 0.1, atol=0.01)
    by_step = list(read_frames(two_faces_video, Sampling(every=4)))
    assert [f.index for f in by_step] == list(range(0, 45, 4))
    analysis = analyse_video(two_faces_video, recognizer, sampling=Sampling(fps=10))
    assert analysis.frames_analysed == 15
    first = analysis.summary()[0]
    assert first["seconds_seen"] == pytest.approx(first["frames"] * 0.1)
    assert first["seconds_seen"] <= first["until_s"] - first["first_s"] + 0.01
    with pytest.raises(ValueError):
        Sampling(every=2, fps=3)
    with pytest.raises(ValueError):
        Sampling(fps=float("inf"))


def test_app_sampling_keeps_long_videos_within_the_frame_budget():
    def info(seconds, fps):
        return VideoInfo(640, 480, fps, seconds, round(seconds * fps), "h264", 0)

    assert app_sampling(info(60, 25)) == Sampling()  # short: every frame
    assert app_sampling(info(60, 60)).fps == pytest.approx(VIDEO_MAX_FPS)
    long = info(20 * 60, 30)
    assert app_sampling(long).expected_frames(long) <= VIDEO_FRAME_BUDGET
    assert app_sampling(long).fps == pytest.approx(VIDEO_FRAME_BUDGET / 1200)
    with pytest.raises(InvalidVideoError, match="minutes"):
        check_app_limits(info(VIDEO_MAX_SECONDS + 60, 30))


def test_large_frames_are_analysed_downscaled_with_boxes_in_source_pixels(recognizer, astronaut_rgb, tmp_path):
    small = two_faces_frames(astronaut_rgb, 3)
    big = write_video(tmp_path / "big.mp4", [cv2.resize(f, (2560, 1920)) for f in small])
    frames = list(read_frames(big))
    assert frames[0].bgr.shape == (960, 1280, 3) and frames[0].scale == pytest.approx(2.0)
    rows_big = analyse_video(big, recognizer).tracks.table()
    rows_small = analyse_video(write_video(tmp_path / "small.mp4", small), recognizer).tracks.table()
    assert len(rows_big) == len(rows_small) == 6
    for a, b in zip(sorted(map(tuple, rows_big[:, 3:7])), sorted(map(tuple, rows_small[:, 3:7] * 4))):
        assert iou(a, b) > 0.7, (a, b)


def test_rotated_phone_video_is_turned_upright(recognizer, astronaut_rgb, tmp_path):
    frames = two_faces_frames(astronaut_rgb, 3)
    rotated = write_video(tmp_path / "portrait.mp4", frames, rotation=90)
    info = probe_video(rotated)
    assert (info.width, info.height, info.rotation) == (640, 480, 90)
    decoded = next(read_frames(rotated))
    assert decoded.bgr.shape == (480, 640, 3)
    assert np.abs(decoded.bgr.astype(int) - frames[0]).mean() < 6  # upright again, up to compression
    assert analyse_video(rotated, recognizer).frames_with_faces == 3


def test_annotated_copy_is_an_h264_mp4_with_every_analysed_frame(recognizer, two_faces_video, tmp_path):
    out = tmp_path / "annotated.mp4"
    analysis = analyse_video(two_faces_video, recognizer, sampling=Sampling(every=3), annotated_path=out)
    assert analysis.encoder == video_encoder() == "libx264"  # PyAV's wheels ship x264
    info = probe_video(out)
    assert info.codec == "h264" and (info.width, info.height) == (640, 480)
    assert info.frame_count == analysis.frames_analysed == 15
    assert info.duration_s == pytest.approx(1.5, abs=0.15)  # the source's timing, not 15 frames at 30 fps
    original = next(read_frames(two_faces_video)).bgr
    annotated = next(read_frames(out)).bgr
    assert np.abs(annotated.astype(int) - original).mean() > 1  # boxes and labels were drawn


def test_cancelling_closes_the_annotated_copy(recognizer, two_faces_video, tmp_path):
    class Cancelled(Exception):
        pass

    def cancel_after_ten(done, expected):
        assert expected == 45
        if done >= 10:
            raise Cancelled

    out = tmp_path / "partial.mp4"
    with pytest.raises(Cancelled):
        analyse_video(two_faces_video, recognizer, annotated_path=out, on_progress=cancel_after_ten, progress_every_s=0)
    assert probe_video(out).frame_count == 10  # a finished, playable file of what was done


def test_frames_are_streamed_not_held(tmp_path, astronaut_rgb):
    frame_bytes = 640 * 480 * 3
    video = write_video(tmp_path / "long.mp4", two_faces_frames(astronaut_rgb, 150))
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_frames(video))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 150
    assert peak < 10 * frame_bytes, f"peak {peak / 1e6:.1f} MB for {count * frame_bytes / 1e6:.0f} MB of frames"


def test_bad_videos_get_clear_messages(tmp_path, astronaut_rgb):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(InvalidVideoError, match="not a video file"):
        probe_video(text)
    with pytest.raises(InvalidVideoError, match="sound only, no video track"):
        probe_video(write_audio_only(tmp_path / "voice.mp4"))
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(InvalidVideoError, match="no video frames"):
        probe_video(empty)
    good = write_video(tmp_path / "good.mp4", two_faces_frames(astronaut_rgb, 10))
    blank = bytearray(good.read_bytes())  # the frames' data zeroed, the container intact
    start, end = blank.index(b"mdat") + 4, blank.index(b"moov") - 4
    blank[start:end] = bytes(end - start)
    (tmp_path / "blank.mp4").write_bytes(blank)
    with pytest.raises(InvalidVideoError, match="no frame could be decoded"):
        probe_video(tmp_path / "blank.mp4")
    with pytest.raises(InvalidVideoError, match="no frame could be decoded"):
        list(read_frames(tmp_path / "blank.mp4"))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InvalidVideoError):
        probe_video(truncated)
    huge = write_video(tmp_path / "huge.mp4", [np.zeros((2400, 4000, 3), np.uint8)], codec="mpeg4")
    with pytest.raises(InvalidVideoError, match="larger than 4K"):
        probe_video(huge)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(InvalidVideoError, match="not a regular file"):
        probe_video(fifo)
    with pytest.raises(InvalidVideoError, match="not a regular file"):
        list(read_frames("/dev/zero"))
    with pytest.raises(InvalidVideoError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(InvalidVideoError, match=r"zero.mp4: the file is empty \(0 bytes\)"):
        probe_video(tmp_path / "zero.mp4")
    with pytest.raises(InvalidVideoError, match="the file is empty"):
        probe_video(io.BytesIO(b""))


def test_a_damaged_mp4_header_is_explained_not_blamed_on_memory(tmp_path, astronaut_rgb):
    """Issue 41: a time-to-sample table claiming 268 M entries made FFmpeg answer "Cannot allocate memory", which
    the message passed on. It now says what the decoder found, for a path and for uploaded bytes alike."""
    data = write_video(tmp_path / "good.mp4", two_faces_frames(astronaut_rgb, 5)).read_bytes()
    damaged = bytearray(data)
    entries = data.index(b"stts") + 8  # after the box type and its version and flags
    damaged[entries:entries + 4] = (0x10000000).to_bytes(4, "big")
    (tmp_path / "damaged.mp4").write_bytes(damaged)
    for source in (tmp_path / "damaged.mp4", io.BytesIO(bytes(damaged))):
        with pytest.raises(InvalidVideoError) as caught:
            probe_video(source)
        message = str(caught.value)
        assert "not a video file that can be read (the decoder found: " in message, message
        assert "'stts' box" in message and "268435456" in message and "memory" not in message, message
        assert "\n" not in message
    with pytest.raises(InvalidVideoError, match="the decoder found: .*'stts' box"):
        list(read_frames(tmp_path / "damaged.mp4"))
    assert av.logging.get_level() is None  # FFmpeg's log is quiet again


def test_a_container_with_damaged_metadata_text_is_refused_with_a_message(tmp_path):
    """Metadata that is not UTF-8 made PyAV raise UnicodeDecodeError from av.open, past the video checks."""
    path = tmp_path / "titled.mp4"
    with av.open(str(path), "w") as container:
        container.metadata["title"] = "TITLE-TO-DAMAGE"
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="bgr24")),
                       *stream.encode()]:
            container.mux(packet)
    path.write_bytes(path.read_bytes().replace(b"TITLE-TO-DAMAGE", b"\xff" * 15))
    with pytest.raises(InvalidVideoError, match="its metadata is damaged"):
        probe_video(path)


def test_uploaded_bytes_are_read_without_a_temporary_file(recognizer, two_faces_video):
    upload = io.BytesIO(two_faces_video.read_bytes())
    assert probe_video(upload).frame_count == 45
    assert analyse_video(upload, recognizer, sampling=Sampling(every=9)).frames_analysed == 5


@pytest.mark.parametrize("suffix, codec", [(".mov", "libx264"), (".webm", "libvpx-vp9"), (".avi", "mpeg4"), (".mkv", "libx264")])
def test_the_page_s_containers_and_codecs_are_read(recognizer, astronaut_rgb, tmp_path, suffix, codec):
    video = write_video(tmp_path / f"clip{suffix}", two_faces_frames(astronaut_rgb, 12), codec=codec)
    info = probe_video(video)
    assert (info.width, info.height) == (640, 480) and info.duration_s == pytest.approx(0.4, abs=0.05)
    analysis = analyse_video(video, recognizer)
    assert analysis.frames_analysed == 12 and len(analysis.tracks.face_ids()) == 2
