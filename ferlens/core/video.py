"""The one per-frame engine for video: detect, classify in one batch, track, smooth, draw, measure.

`LiveProcessor` is the engine. The live page's streamlit-webrtc callback calls `process` on the
callback thread, so results leave through a bounded, thread-safe queue, and a bad frame is
logged and passed through rather than killing the stream. Video files go through the same
engine (`analyse_video`): a PyAV source streams decoded frames one at a time (`read_frames`),
and sinks keep each face's rows (`FaceTracks`: timeline, summary, CSV) and write an annotated
MP4 (`AnnotatedVideoWriter`).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.logging
import numpy as np

from ferlens import files
from ferlens.config import (
    VIDEO_ANALYSIS_MAX_SIDE,
    VIDEO_FRAME_BUDGET,
    VIDEO_MAX_FPS,
    VIDEO_MAX_PIXELS,
    VIDEO_MAX_SECONDS,
)
from ferlens.core.detectors import LIVE_DETECTOR, VIDEO_DETECTOR, FaceFollower, make_detector
from ferlens.core.drawing import draw_faces
from ferlens.core.images import as_gray, as_rgb
from ferlens.core.recognition import EmotionRecognizer, Face
from ferlens.core.smoothing import FaceSmoother
from ferlens.core.tracks import FaceTracks, FrameResult
from ferlens.files import UnreadableInputError

log = logging.getLogger(__name__)


#: Live video: a full Haar scan every this many frames, re-detection near the known faces in between.
#: A face that enters the picture waits at most this many frames (0.27 s at a webcam's 30 fps) to be
#: found. The full scan is most of a frame's cost: every 8th frame instead of every 5th lifts the live
#: pipeline (one face, 640x480, one thread) from 86 to about 106 frames a second on the AVX2 machine
#: (benchmarks/detectors.md), with every frame's face still found.
LIVE_FULL_SCAN_EVERY = 8


class LiveProcessor:
    """Stateful frame processor: one per video session.

    Thread-safe: frames from several threads are processed one at a time (the tracks and smoothing
    carry state from frame to frame), and many processors may share one recognizer.

    Settings (`smoothing`, `detect_downscale`, `use_detector`) may be changed from another thread
    between frames; they are read once per frame. `detector` names the face detector (default: the
    live page's Haar cascade; `ferlens.core.detectors.DETECTORS`), with the recognizer's detection settings.
    With the Haar cascade, faces are found with a full scan every `full_scan_every` frames and
    re-detected near their last box in between (`FaceFollower`), which is what makes the pipeline
    real-time: the full scan is most of a frame's cost.
    """

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        *,
        smoothing: bool = True,
        detect_downscale: float = 0.5,
        full_scan_every: int = LIVE_FULL_SCAN_EVERY,
        max_queue: int = 1000,
        detector: str = LIVE_DETECTOR,
    ):
        self.recognizer = recognizer
        self.smoothing = smoothing
        self.detect_downscale = detect_downscale
        self.full_scan_every = full_scan_every
        self.follower = self._follower(detector)
        # A face that re-detection loses is found again by the next full scan: its track must outlive
        # that wait, or it comes back under a new number.
        self.smoother = FaceSmoother(max_missed=max(FaceSmoother.max_missed, full_scan_every))
        self.results: queue.Queue[FrameResult] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._pipeline_lock = threading.Lock()
        self._frame_times: deque[float] = deque(maxlen=30)
        self._latencies: deque[float] = deque(maxlen=30)
        self._frames = 0
        self._faces_seen = 0
        self._started = time.perf_counter()

    def _follower(self, detector: str) -> FaceFollower:
        return FaceFollower(make_detector(detector, self.recognizer.detector.settings), self.full_scan_every,
                            self.detect_downscale)

    @property
    def detector_name(self) -> str:
        return self.follower.detector.name

    def use_detector(self, name: str) -> None:
        """Find faces with the detector `name` from the next frame on (known faces are found afresh)."""
        if name != self.detector_name:
            follower = self._follower(name)
            with self._pipeline_lock:
                self.follower = follower

    def process(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Annotate one BGR frame. Never raises: on error the frame comes back unannotated."""
        annotated, result = self.analyse(frame_bgr)
        self._publish(result)
        return annotated

    def analyse(
        self, frame_bgr: np.ndarray, *, frame_index: int | None = None, timestamp: float | None = None,
    ) -> tuple[np.ndarray, FrameResult]:
        """The annotated frame and its result, without queueing it (video files call this directly).

        `frame_index` and `timestamp` default to the processor's own count and clock (live video);
        a video file passes the frame's position in the file. Every face carries a stable
        `extra["track_id"]`; with `smoothing` off its probabilities are this frame's own.
        Never raises: on error the frame comes back unannotated and the result says why.
        """
        start = time.perf_counter()
        error = None
        faces: list[Face] = []
        try:
            gray = as_gray(frame_bgr, "bgr")
            with self._pipeline_lock:  # follower and smoother carry state from frame to frame
                self.follower.downscale = self.detect_downscale
                view = as_rgb(frame_bgr, "bgr") if self.follower.detector.uses_color else gray
                faces = self.recognizer.predict(gray, boxes=self.follower.update(view))
                tracked = self.smoother.update(faces)
                faces = tracked if self.smoothing else [
                    replace(raw, extra={**raw.extra, "track_id": t.extra["track_id"]}) for raw, t in zip(faces, tracked)
                ]
            annotated = draw_faces(frame_bgr, faces, color_order="bgr")
        except Exception as exc:  # one bad frame must not end the stream
            log.exception("frame processing failed")
            error = f"{type(exc).__name__}: {exc}"
            annotated = frame_bgr
        end = time.perf_counter()
        with self._lock:
            self._frames += 1
            self._faces_seen += bool(faces)
            self._frame_times.append(end)
            self._latencies.append((end - start) * 1000)
            index = self._frames if frame_index is None else frame_index
        when = end - self._started if timestamp is None else timestamp
        return annotated, FrameResult(index, when, (end - start) * 1000, faces, error)

    def _publish(self, result: FrameResult) -> None:
        """Queue a result for the page's thread; when nobody reads, the oldest is dropped."""
        try:
            self.results.put_nowait(result)
        except queue.Full:  # nobody is reading: drop the oldest, keep memory bounded
            try:
                self.results.get_nowait()
            except queue.Empty:
                pass
            self.results.put_nowait(result)

    def drain(self) -> list[FrameResult]:
        """Everything produced since the last call (called from the page's thread)."""
        out = []
        while True:
            try:
                out.append(self.results.get_nowait())
            except queue.Empty:
                return out

    def stats(self) -> dict:
        """Frames processed, frames with a face, FPS over the last 30 frames, median latency."""
        with self._lock:
            times = list(self._frame_times)
            latencies = sorted(self._latencies)
            frames, with_face = self._frames, self._faces_seen
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return {
            "frames": frames,
            "frames_with_face": with_face,
            "fps": fps,
            "latency_ms": latencies[len(latencies) // 2] if latencies else 0.0,
        }


# ---------------------------------------------------------------- video files: source, engine, sinks

class InvalidVideoError(UnreadableInputError):
    """The file is not a video we can analyse; the message says why in words a user can act on."""


VideoSource = str | os.PathLike | BinaryIO


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header (and, when the header is silent, a pass over its packets) says."""

    width: int  # as displayed, after any rotation the file asks for
    height: int
    fps: float
    duration_s: float
    frame_count: int  # from the header or estimated from duration x fps
    codec: str
    rotation: int  # degrees counter-clockwise applied to each decoded frame


@dataclass(frozen=True)
class Sampling:
    """Which frames to analyse: every `every`-th decoded frame, or `fps` frames per second of video.

    Time-based sampling follows each frame's own timestamp, so variable-frame-rate phone videos
    are sampled evenly too. Neither set: every frame.
    """

    every: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.every is not None and self.fps is not None:
            raise ValueError("give either every or fps, not both")
        if self.every is not None and self.every < 1:
            raise ValueError(f"every must be at least 1, got {self.every}")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be a positive number, got {self.fps}")

    def rate(self, info: VideoInfo) -> float:
        """Analysed frames per second of video."""
        if self.fps is not None:
            return min(self.fps, info.fps)
        return info.fps / (self.every or 1)

    def expected_frames(self, info: VideoInfo) -> int:
        return max(1, math.ceil(info.frame_count / (self.every or 1)) if self.fps is None
                   else math.ceil(info.duration_s * self.rate(info)))

    def describe(self, info: VideoInfo) -> str:
        if self.fps is None and (self.every or 1) == 1:
            return f"every frame, {info.fps:.3g} a second"
        return f"{self.rate(info):.3g} frames a second"


def app_sampling(info: VideoInfo) -> Sampling:
    """The app's rule: every frame up to `VIDEO_MAX_FPS`, and no more than `VIDEO_FRAME_BUDGET`
    frames in all, so a long video is sampled evenly instead of being cut off."""
    rate = min(VIDEO_MAX_FPS, VIDEO_FRAME_BUDGET / max(info.duration_s, 1e-6))
    return Sampling() if rate >= info.fps else Sampling(fps=rate)


def check_app_limits(info: VideoInfo) -> None:
    """Refuse, with a message, what the app will not analyse (the CLI takes any length)."""
    if info.duration_s > VIDEO_MAX_SECONDS:
        raise InvalidVideoError(
            f"the video lasts {info.duration_s / 60:.0f} minutes; the limit is {VIDEO_MAX_SECONDS // 60} minutes. "
            "Cut it into parts, or use the command line (python -m ferlens.core.predict VIDEO --fps 2)."
        )


def _open_container(source: VideoSource):
    """av.open with PyAV's errors turned into `InvalidVideoError`; paths must be regular files."""
    name = files.display_name(source if isinstance(source, (str, os.PathLike)) else str(getattr(source, "name", "upload")))
    if isinstance(source, (str, os.PathLike)):
        check_regular_file(source)
        empty = os.path.getsize(source) == 0
    else:
        empty = source.seek(0, os.SEEK_END) == 0
        source.seek(0)
    if empty:  # FFmpeg would only say "Invalid data found when processing input"
        raise InvalidVideoError(f"{name}: the file is empty (0 bytes)")
    try:
        container = av.open(_openable(source), "r")
    except av.FFmpegError as exc:
        raise InvalidVideoError(f"{name}: not a video file that can be read ({_open_failure(source, exc)})") from exc
    except UnicodeDecodeError as exc:  # PyAV decodes the container's metadata as UTF-8
        raise InvalidVideoError(f"{name}: not a video file that can be read (its metadata is damaged: text that is "
                                "not UTF-8); re-save it as MP4") from exc
    if not container.streams.video:
        has_audio = bool(container.streams.audio)
        container.close()
        raise InvalidVideoError(f"{name}: " + ("has sound only, no video track" if has_audio else "has no video frames"))
    return container, name


def check_regular_file(path: str | os.PathLike) -> None:
    """A regular, readable file, or InvalidVideoError saying why not (`ferlens.files.check_regular_file`)."""
    files.check_regular_file(path, "video", InvalidVideoError)


def _plain(exc: Exception) -> str:
    """PyAV's error text without the errno prefix and file name it repeats."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '", 1)[0]


def _openable(source: VideoSource):
    return os.fspath(source) if isinstance(source, os.PathLike) else source


#: FFmpeg log lines that say nothing about the file.
_LOG_NOISE = ("Statistics:", "If you want to help", "is not implemented. Update your FFmpeg")
#: FFmpeg's trace of the MP4/MOV box being read: "type:'stts' parent:'stbl' sz: 24 183 663".
_BOX = re.compile(r"type:'([^']{4})' parent:")
_logging_lock = threading.Lock()


def _open_failure(source: VideoSource, exc: av.FFmpegError) -> str:
    """Why FFmpeg could not open `source`, in its demuxer's words. Its error code alone misleads: a damaged MP4
    header (a table claiming 268 M entries) gives "Cannot allocate memory" whatever memory there is. So the
    file is opened again with FFmpeg's log captured: the warnings and errors it wrote, and for MP4 the last box
    it read with the last value it traced there."""
    with _logging_lock:  # the log level is process-wide: one capture at a time, then put back
        level = av.logging.get_level()
        av.logging.set_level(av.logging.TRACE)
        try:
            with av.logging.Capture() as logs:
                if hasattr(source, "seek"):
                    source.seek(0)
                try:
                    av.open(_openable(source), "r").close()
                except Exception:  # the failure being explained
                    pass
        finally:
            av.logging.set_level(level)
    findings: list[str] = []
    box = detail = None
    for log_level, _origin, message in logs:
        text = " ".join(str(message).split())
        if not text or any(noise in text for noise in _LOG_NOISE):
            continue
        if log_level <= av.logging.WARNING:
            if text not in findings:
                findings.append(text[:120])
        elif (match := _BOX.search(text)) is not None:
            box, detail = match.group(1), None
        elif box is not None and " = " in text:
            detail = text[:80]
    if box is not None:
        findings.append(f"in its '{box}' box" + (f", {detail}" if detail else ""))
    if not findings:
        return "its header cannot be read" if exc.errno == errno.ENOMEM else _plain(exc)
    return "the decoder found: " + "; ".join(findings[-3:])


def probe_video(source: VideoSource) -> VideoInfo:
    """Read a video's size, rate, length and codec, decoding only its first frame.

    Refuses files that are not videos, have no video track, no decodable frame, or frames
    over `VIDEO_MAX_PIXELS`. Containers that do not record their length (WebM from a
    browser) get it from one pass over the packets, which reads but does not decode.
    """
    container, name = _open_container(source)
    with container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > VIDEO_MAX_PIXELS:
            raise InvalidVideoError(
                f"{name}: {width}x{height} frames are larger than 4K ({VIDEO_MAX_PIXELS / 1e6:.1f} M pixels); "
                "scale the video down first"
            )
        duration, frames = _header_duration(container, stream), stream.frames
        scan = duration <= 0 or not frames
        first = None
        packets, start, end = 0, math.inf, -math.inf
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                packets += 1
                start = min(start, float(packet.pts * packet.time_base))
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            if first is None:
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    continue
                first = decoded[0] if decoded else None
            if first is not None and not scan:
                break
        if first is None:
            raise InvalidVideoError(f"{name}: no frame could be decoded (an empty or damaged video)")
        if scan:
            duration, frames = max(0.0, end - start) if packets else 0.0, frames or packets
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not (0 < fps <= 1000):
            fps = frames / duration if duration > 0 else 25.0
        rotation = round((first.rotation or 0) / 90) % 4 * 90
        width, height = first.width, first.height
        if rotation % 180:
            width, height = height, width
        return VideoInfo(width, height, fps, duration, int(frames or max(1, round(duration * fps))),
                         stream.codec_context.name, rotation)


def _header_duration(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # in av.time_base units
    return 0.0


@dataclass
class VideoFrame:
    """One decoded frame, upright, in BGR, at most `VIDEO_ANALYSIS_MAX_SIDE` on its longer side."""

    index: int  # position among all decoded frames, from 0
    time_s: float
    bgr: np.ndarray
    scale: float  # source pixels per pixel of `bgr`


def read_frames(
    source: VideoSource, sampling: Sampling | None = None, *, max_side: int = VIDEO_ANALYSIS_MAX_SIDE,
    max_errors: int = 100, span: tuple[float, float | None] | None = None,
) -> Iterator[VideoFrame]:
    """Decode a video one frame at a time (memory stays at a few frames, whatever its length).

    `span` (start, end) in seconds keeps the frames from start up to, not including, end (None: to
    the end): a long video is split into parts that workers analyse apart. A part after the first
    seeks to the key frame before its start, and numbers frames by their time, as a whole pass would.
    Damaged packets are skipped (up to `max_errors`); a file from which no frame at all
    can be decoded raises `InvalidVideoError`. Closing the generator closes the file.
    """
    sampling = sampling or Sampling()
    start_s, end_s = span or (0.0, None)
    container, name = _open_container(source)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        decoded = errors = 0
        if start_s > 0 and stream.time_base:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True, any_frame=False)
            decoded = None  # numbered from the first frame's time instead
        next_time: float | None = None
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                errors += 1
                if errors > max_errors:
                    raise InvalidVideoError(f"{name}: too many damaged frames ({_plain(exc)})") from exc
                continue
            for frame in frames:
                if decoded is None:  # after a seek: the position a whole pass would have given
                    decoded = round(float(frame.time or 0.0) * rate)
                index = decoded
                decoded += 1
                time_s = float(frame.time) if frame.time is not None else index / rate
                if time_s < start_s - 1e-6:
                    continue
                if end_s is not None and time_s >= end_s - 1e-6:
                    return
                if sampling.fps is not None:
                    if next_time is not None and time_s < next_time - 1e-6:
                        continue
                    next_time = (time_s if next_time is None else next_time) + 1.0 / sampling.fps
                    next_time = max(next_time, time_s)  # after a gap, do not burst to catch up
                elif index % (sampling.every or 1):
                    continue
                yield _to_bgr(frame, index, time_s, max_side)
        if not decoded:
            raise InvalidVideoError(f"{name}: no frame could be decoded (empty or damaged video)")


def _to_bgr(frame, index: int, time_s: float, max_side: int) -> VideoFrame:
    """Scale (in the decoder's own scaler) and rotate a decoded frame into an upright BGR array."""
    scale = max(1.0, max(frame.width, frame.height) / max_side)
    width, height = 2 * round(frame.width / scale / 2), 2 * round(frame.height / scale / 2)
    bgr = frame.reformat(width=width, height=height, format="bgr24", interpolation="AREA").to_ndarray()
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    if quarter_turns:
        bgr = np.ascontiguousarray(np.rot90(bgr, quarter_turns))
    return VideoFrame(index, time_s, bgr, frame.width / width)


# ---------------------------------------------------------------- engine and sinks

def video_encoder() -> str:
    """H.264 (plays in every browser) when this PyAV build has an encoder for it, else MPEG-4 part 2
    (plays in desktop players such as VLC, but not in browsers)."""
    for name in BROWSER_PLAYABLE_ENCODERS + ("mpeg4",):
        try:
            av.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    raise RuntimeError("this PyAV build has no H.264 or MPEG-4 encoder")


BROWSER_PLAYABLE_ENCODERS: tuple[str, ...] = ("libx264", "libopenh264")


class AnnotatedVideoWriter:
    """Annotated frames to an MP4 file, one at a time, at their own timestamps (so a sampled or
    variable-rate video keeps its timing). The size is taken from the first frame."""

    def __init__(self, path: str | os.PathLike, fps: float, encoder: str | None = None):
        self.path = Path(path)
        self.encoder = encoder or video_encoder()
        self.fps = fps
        self._container = None
        self._stream = None
        self._last_pts = -1

    def write(self, bgr: np.ndarray, time_s: float) -> None:
        if self._container is None:
            self._open(bgr.shape[1], bgr.shape[0])
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        pts = max(self._last_pts + 1, round(time_s * 1000))
        frame.pts, frame.time_base, self._last_pts = pts, Fraction(1, 1000), pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _open(self, width: int, height: int) -> None:
        self._container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_stream(self.encoder, rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        if self.encoder == "libx264":
            stream.options = {"crf": "26", "preset": "veryfast"}
        else:
            stream.bit_rate = 2_000_000
        self._stream = stream

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass
class VideoAnalysis:
    """What `analyse_video` found: the video's facts, every face of every analysed frame, and cost."""

    info: VideoInfo
    sampling: Sampling
    tracks: FaceTracks
    frames_analysed: int = 0
    frames_with_faces: int = 0
    failed_frames: int = 0
    seconds: float = 0.0  # wall time of the analysis
    encoder: str | None = None  # of the annotated copy, if one was written

    @property
    def frame_seconds(self) -> float:
        """The stretch of video one analysed frame stands for."""
        return 1.0 / self.sampling.rate(self.info)

    @property
    def speed(self) -> float:
        """Video seconds analysed per second of wall time (above 1: faster than real time)."""
        return self.frames_analysed * self.frame_seconds / self.seconds if self.seconds else 0.0

    def summary(self) -> list[dict]:
        return self.tracks.summary(self.frame_seconds)


ProgressCallback = Callable[[int, int], None]

#: Video files: a full Haar scan every this many seconds of video (5 frames at 30 fps: a file is not
#: analysed against the clock, so new faces are looked for more often than live) ...
FULL_SCAN_INTERVAL_S = 1 / 6
#: ... and a face missing for up to this long keeps its ID.
TRACK_MEMORY_S = 1.0


def analyse_video(
    source: VideoSource,
    recognizer: EmotionRecognizer,
    *,
    sampling: Sampling | None = None,
    smoothing: bool = False,
    annotated_path: str | os.PathLike | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every_s: float = 0.25,
    detector: str = VIDEO_DETECTOR,
    span: tuple[float, float | None] | None = None,
) -> VideoAnalysis:
    """Run a video file through the live page's per-frame engine (`LiveProcessor`), frame by frame.

    Faces get stable track IDs; `smoothing` averages each face's probabilities over time as the
    live page does (off: each frame's own). `annotated_path` also writes the annotated frames as
    an MP4. `span` (start, end) in seconds analyses that part only (`read_frames`).
    `on_progress(done, expected)` is called every `progress_every_s` seconds; whatever it
    raises (a Streamlit rerun, Ctrl-C) stops the analysis with the files closed.
    """
    info = probe_video(source)
    sampling = sampling or Sampling()
    rate = sampling.rate(info)
    # The live page's timing, in seconds of video rather than frames, so that a sampled video
    # gets a full scan as often and keeps a briefly hidden face's ID as long.
    processor = LiveProcessor(recognizer, smoothing=smoothing, detector=detector,
                              full_scan_every=max(1, round(rate * FULL_SCAN_INTERVAL_S)))
    processor.smoother = FaceSmoother(max_missed=max(5, round(rate * TRACK_MEMORY_S)),
                                      min_iou=0.3 if rate >= 10 else 0.1)
    analysis = VideoAnalysis(info, sampling, FaceTracks())
    expected = sampling.expected_frames(info)
    writer = AnnotatedVideoWriter(annotated_path, sampling.rate(info)) if annotated_path else None
    analysis.encoder = writer.encoder if writer else None
    started = last_report = time.perf_counter()
    try:
        for frame in read_frames(source, sampling, span=span):
            annotated, result = processor.analyse(frame.bgr, frame_index=frame.index, timestamp=frame.time_s)
            analysis.tracks.add(result, frame.scale)
            analysis.frames_analysed += 1
            analysis.frames_with_faces += bool(result.faces)
            analysis.failed_frames += result.error is not None
            if writer:
                writer.write(annotated, frame.time_s)
            now = time.perf_counter()
            if on_progress and now - last_report >= progress_every_s:
                last_report = now
                on_progress(analysis.frames_analysed, max(expected, analysis.frames_analysed))
    finally:
        if writer:
            writer.close()
    analysis.seconds = time.perf_counter() - started
    if on_progress:
        on_progress(analysis.frames_analysed, analysis.frames_analysed)
    return analysis
