"""Temporal smoothing for video: follow faces across frames by box overlap, average their probabilities.

Per-frame predictions flicker between neighbouring emotions; an exponential moving
average per tracked face keeps the label steady without hiding real changes for long.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ferlens.config import CLASS_NAMES
from ferlens.core.detectors import Box, box_iou
from ferlens.core.recognition import Face


@dataclass
class Track:
    track_id: int
    box: Box
    probabilities: np.ndarray
    missed: int = 0
    age: int = 1


@dataclass
class FaceSmoother:
    """Greedy IoU tracker with an exponential moving average of each face's probabilities.

    Not thread-safe: one per stream (`LiveProcessor` calls it under its lock).

    `alpha` is the weight of the newest frame (1.0 turns smoothing off); a track survives
    `max_missed` frames without a matching detection, so a face lost for a frame keeps its id.
    """

    alpha: float = 0.4
    min_iou: float = 0.3
    max_missed: int = 5
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")

    def reset(self) -> None:
        self.tracks.clear()
        self._next_id = 1

    def update(self, faces: list[Face]) -> list[Face]:
        """Match this frame's faces to tracks and return them with smoothed probabilities and a track id."""
        pairs = sorted(
            ((box_iou(t.box, f.box), ti, fi) for ti, t in enumerate(self.tracks) for fi, f in enumerate(faces)),
            reverse=True,
        )
        matched_tracks: set[int] = set()
        assignment: dict[int, int] = {}
        for overlap, ti, fi in pairs:
            if overlap < self.min_iou:
                break
            if ti in matched_tracks or fi in assignment:
                continue
            matched_tracks.add(ti)
            assignment[fi] = ti

        out = []
        for fi, face in enumerate(faces):
            probs = np.array([face.probabilities[name] for name in CLASS_NAMES])
            if fi in assignment:
                track = self.tracks[assignment[fi]]
                track.probabilities = self.alpha * probs + (1.0 - self.alpha) * track.probabilities
                track.box, track.missed = face.box, 0
                track.age += 1
            else:
                track = Track(self._next_id, face.box, probs)
                self._next_id += 1
                self.tracks.append(track)
                matched_tracks.add(len(self.tracks) - 1)
            smoothed = track.probabilities / track.probabilities.sum()
            out.append(Face(
                box=face.box,
                probabilities={name: float(p) for name, p in zip(CLASS_NAMES, smoothed)},
                whole_image=face.whole_image,
                extra={**face.extra, "track_id": track.track_id},
            ))
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return out
