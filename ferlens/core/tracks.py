"""Every face of every analysed frame, kept compactly: what the video engine, the live page and their
CSV files read timelines, summaries and rows from."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ferlens.config import CLASS_NAMES
from ferlens.core.recognition import Face
from ferlens.core.results import FaceRow, to_csv


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


class FaceTracks:
    """Every face of every analysed frame, 15 numbers each (120 bytes): an hour of one face at
    30 fps is 13 MB, so a whole video's results stay in memory while its frames do not.

    `table()` columns: FRAME, TIME, FACE_ID, BOX (x, y, width, height), PROBABILITIES (7) and
    SCORE (the detection score, NaN where the detector gives none)."""

    _FIELDS = ("frame", "time_s", "face", "x", "y", "width", "height", *CLASS_NAMES, "detection_score")
    FRAME, TIME, FACE_ID, BOX = 0, 1, 2, slice(3, 7)
    PROBABILITIES = slice(7, 7 + len(CLASS_NAMES))
    SCORE = 7 + len(CLASS_NAMES)

    def __init__(self) -> None:
        self._data = array("d")

    def add(self, result: FrameResult, scale: float = 1.0) -> None:
        for face in result.faces:
            self._data.extend((result.frame_index, result.timestamp, face.extra.get("track_id", 0),
                               *(round(v * scale) for v in face.box),
                               *(face.probabilities[name] for name in CLASS_NAMES),
                               math.nan if face.detection_score is None else face.detection_score))

    def __len__(self) -> int:
        return len(self._data) // len(self._FIELDS)

    def table(self) -> np.ndarray:
        """(rows, 15): frame, time_s, face ID, x, y, width, height, the 7 probabilities, the detection score."""
        return np.frombuffer(self._data, dtype=np.float64).reshape(-1, len(self._FIELDS)) if self._data else \
            np.zeros((0, len(self._FIELDS)))

    def face_ids(self) -> list[int]:
        """Track IDs, the faces seen longest first."""
        ids, counts = np.unique(self.table()[:, self.FACE_ID].astype(int), return_counts=True)
        return [int(i) for i in ids[np.argsort(-counts, kind="stable")]]

    def timeline(self, face_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Times (N,) and probabilities (N, 7) of one face, in time order."""
        rows = self.table()
        rows = rows[rows[:, self.FACE_ID] == face_id]
        return rows[:, self.TIME], rows[:, self.PROBABILITIES]

    def rows(self, source: str = "") -> Iterator[FaceRow]:
        """Result rows (`ferlens.core.results`), in frame order."""
        for row in self.table():
            probabilities = dict(zip(CLASS_NAMES, row[self.PROBABILITIES].tolist()))
            score = float(row[self.SCORE])
            face = Face(box=tuple(int(v) for v in row[self.BOX]), probabilities=probabilities,
                        detection_score=None if math.isnan(score) else score)
            yield FaceRow.from_face(face, int(row[self.FACE_ID]), source=source, frame=int(row[self.FRAME]),
                                    time_s=float(row[self.TIME]))

    def summary(self, frame_seconds: float) -> list[dict]:
        """Per face: when it was seen, for how long, the share of its time in each emotion (by the
        per-frame label) and the dominant one. `frame_seconds` is the time one analysed frame stands for.

        `first_s`/`last_s` are the times of its first and last frames; `until_s` is where its last frame
        ends (`last_s` + `frame_seconds`), so `seconds_seen` never exceeds `until_s` - `first_s`."""
        rows = self.table()
        out = []
        for face_id in self.face_ids():
            mine = rows[rows[:, self.FACE_ID] == face_id]
            labels = mine[:, self.PROBABILITIES].argmax(axis=1)
            share = np.bincount(labels, minlength=len(CLASS_NAMES)) / len(mine)
            out.append({
                "face": face_id, "first_s": round(float(mine[0, 1]), 2), "last_s": round(float(mine[-1, 1]), 2),
                "until_s": round(float(mine[-1, 1]) + frame_seconds, 2),
                "seconds_seen": round(len(mine) * frame_seconds, 2), "frames": len(mine),
                "dominant": CLASS_NAMES[int(share.argmax())],
                **{name: round(float(s), 4) for name, s in zip(CLASS_NAMES, share)},
            })
        return out


#: The live page keeps at most this many face rows (about 110 bytes each, ~20 minutes of one face at
#: 30 FPS); when full, the older half is dropped.
LIVE_MAX_ROWS = 40_000
#: Each face's timeline shows this many seconds, for at most this many faces ...
TIMELINE_WINDOW_S, MAX_TIMELINES = 30.0, 4
#: A face gets a timeline once it has been seen in this many frames.
MIN_TIMELINE_FRAMES = 5
#: ... and the page says "no face in view" once frames have come this long without one.
NO_FACE_HINT_S = 1.5


class LiveSession:
    """What the live page keeps between reruns: every face's rows since START, with face IDs.

    Times count from the first frame after START (the processor's own clock starts at page load).
    Rows live in two `FaceTracks` halves so memory stays bounded: when the newer half is full,
    the older one is dropped.
    """

    def __init__(self, max_rows: int = LIVE_MAX_ROWS):
        self.max_rows = max_rows
        self.reset()

    def reset(self) -> None:
        self._older, self._newer = FaceTracks(), FaceTracks()
        self.start: float | None = None
        self.frames = 0
        self.last_frame_s: float | None = None
        self.last_face_s: float | None = None

    def add(self, results: Sequence[FrameResult]) -> None:
        for result in results:
            if self.start is None:
                self.start = result.timestamp
            rebased = replace(result, timestamp=result.timestamp - self.start)
            if len(self._newer) >= self.max_rows // 2:
                self._older, self._newer = self._newer, FaceTracks()
            self._newer.add(rebased)
            self.frames += 1
            self.last_frame_s = rebased.timestamp
            if result.faces:
                self.last_face_s = rebased.timestamp

    def __len__(self) -> int:
        return len(self._older) + len(self._newer)

    def _table(self) -> np.ndarray:
        """`FaceTracks.table` rows of both halves: frame, time_s, face ID, box, 7 probabilities."""
        return np.concatenate([self._older.table(), self._newer.table()])

    def no_face_in_view(self) -> bool:
        """Frames have been arriving for `NO_FACE_HINT_S` seconds without a face in them."""
        if self.last_frame_s is None:
            return False
        return self.last_frame_s - (self.last_face_s if self.last_face_s is not None else 0.0) >= NO_FACE_HINT_S

    def recent_faces(self, window_s: float = TIMELINE_WINDOW_S, limit: int = MAX_TIMELINES,
                     min_frames: int = MIN_TIMELINE_FRAMES) -> list[int]:
        """IDs of the (at most `limit`) faces seen most recently within `window_s`, in ID order.

        A face needs `min_frames` frames in the window to count: a track that lived for a frame or
        two (a face found again after a jump, a false detection) would only give an empty chart.
        """
        rows = self._table()
        if not len(rows):
            return []
        time, face_id = FaceTracks.TIME, FaceTracks.FACE_ID
        rows = rows[rows[:, time] >= self.last_frame_s - window_s]
        ids, counts = np.unique(rows[:, face_id].astype(int), return_counts=True)
        last_seen = {int(i): float(rows[rows[:, face_id] == i, time].max()) for i, n in zip(ids, counts) if n >= min_frames}
        return sorted(sorted(last_seen, key=last_seen.get, reverse=True)[:limit])

    def timeline(self, face_id: int, window_s: float = TIMELINE_WINDOW_S) -> tuple[np.ndarray, np.ndarray]:
        """Times (seconds since START) and probabilities (N, 7) of one face over the last `window_s`."""
        rows = self._table()
        recent = rows[:, FaceTracks.TIME] >= (self.last_frame_s or 0.0) - window_s
        rows = rows[(rows[:, FaceTracks.FACE_ID] == face_id) & recent]
        return rows[:, FaceTracks.TIME], rows[:, FaceTracks.PROBABILITIES]

    def csv(self) -> str:
        """One row per face per frame, with its face ID (the video page's CSV columns)."""
        return to_csv([*self._older.rows("live camera"), *self._newer.rows("live camera")])
