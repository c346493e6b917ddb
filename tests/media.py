"""Synthetic test videos, written with PyAV into a test's tmp folder (no media file is committed)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np


def two_faces_frames(astronaut_rgb: np.ndarray, count: int, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """BGR frames with the astronaut's head twice (once mirrored), moving towards and away from
    each other on a grey background without ever overlapping."""
    width, height = size
    head = cv2.resize(cv2.cvtColor(astronaut_rgb[30:230, 130:320], cv2.COLOR_RGB2BGR), (150, 158))
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), 60, np.uint8)
        shift = int(60 * (1 + np.sin(i / 8)))
        frame[100:258, 40 + shift:190 + shift] = head
        frame[200:358, width - 200 - shift:width - 50 - shift] = head[:, ::-1]
        frames.append(frame)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: int = 30, *, codec: str = "libx264",
                rotation: int = 0) -> Path:
    """Encode BGR frames; `rotation` stores them turned and asks players to turn them back upright
    (as phones do with portrait video)."""
    quarter_turns = rotation // 90
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stored = np.rot90(frames[0], -quarter_turns)
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            upright = np.ascontiguousarray(np.rot90(frame, -quarter_turns))
            for packet in stream.encode(av.VideoFrame.from_ndarray(upright, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An M4A-like MP4 with one AAC track and no video."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
