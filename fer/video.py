"""Per-frame pipeline for live video: detect, classify in one batch, smooth, draw, measure.

`LiveProcessor.process` is what a streamlit-webrtc frame callback calls. It runs on the
callback thread, so results leave through a bounded, thread-safe queue, and a bad frame
is logged and passed through rather than killing the stream.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from fer.detection import FaceFollower
from fer.drawing import draw_faces
from fer.recognition import EmotionRecognizer, Face
from fer.smoothing import FaceSmoother

log = logging.getLogger(__name__)


@dataclass
class FrameResult:
    """What one frame produced; the page turns these into a timeline and a CSV."""

    frame_index: int
    timestamp: float
    latency_ms: float
    faces: list[Face] = field(default_factory=list)
    error: str | None = None

    def main_face_record(self) -> dict:
        """One flat row per frame for the main (largest) face, empty emotions when there is none."""
        row = {"frame": self.frame_index, "time_s": round(self.timestamp, 3),
               "latency_ms": round(self.latency_ms, 2), "faces": len(self.faces)}
        if self.faces:
            face = self.faces[0]
            row["label"] = face.label
            row.update({name: round(p, 4) for name, p in face.probabilities.items()})
        return row


class LiveProcessor:
    """Stateful frame processor: one per video session.

    Settings (`smoothing`, `detect_downscale`) may be changed from another thread between
    frames; they are read once per frame. Faces are found with a full scan every
    `full_scan_every` frames and re-detected near their last box in between (`FaceFollower`),
    which is what makes the pipeline real-time: the full scan is most of a frame's cost.
    """

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        *,
        smoothing: bool = True,
        detect_downscale: float = 0.5,
        full_scan_every: int = 5,
        max_queue: int = 1000,
    ):
        self.recognizer = recognizer
        self.smoothing = smoothing
        self.detect_downscale = detect_downscale
        self.follower = FaceFollower(recognizer.detector, full_scan_every, detect_downscale)
        self.smoother = FaceSmoother()
        self.results: queue.Queue[FrameResult] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._pipeline_lock = threading.Lock()
        self._frame_times: deque[float] = deque(maxlen=30)
        self._latencies: deque[float] = deque(maxlen=30)
        self._frames = 0
        self._faces_seen = 0
        self._started = time.perf_counter()

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
            gray = self.recognizer.to_gray(frame_bgr, "bgr")
            with self._pipeline_lock:  # follower and smoother carry state from frame to frame
                self.follower.downscale = self.detect_downscale
                faces = self.recognizer.predict(gray, boxes=self.follower.update(gray))
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
