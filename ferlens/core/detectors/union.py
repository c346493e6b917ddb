"""Two detectors as one: the first one's faces, plus those of the second that the first missed."""

from __future__ import annotations

import numpy as np

from ferlens.core.detectors.base import MERGE_IOU, Detection, FaceDetector, box_iou, largest_first


class UnionDetector:
    """`first`'s faces, plus each of `second`'s that overlaps none of them by `MERGE_IOU` (the
    second's boxes must already be framed like the first's). Thread-safe when both are."""

    def __init__(self, first: FaceDetector, second: FaceDetector):
        self.first, self.second = first, second
        self.name = f"{first.name}+{second.name}"
        self.settings = first.settings
        self.uses_color = first.uses_color or second.uses_color
        self.default_min_size, self.default_max_side = first.default_min_size, first.default_max_side
        self.default_score_threshold = first.default_score_threshold

    def detect(self, image: np.ndarray, downscale: float | None = None) -> list[Detection]:
        faces = self.first.detect(image, downscale)
        extra = [d for d in self.second.detect(image, downscale)
                 if all(box_iou(d.box, known.box) < MERGE_IOU for known in faces)]
        return largest_first(faces + extra)
