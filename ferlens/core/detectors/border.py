"""A second look at a photo inside a border, for the faces its edge cuts.

A face cut by the picture's edge (a half face at the side of a group photo), or one that fills the
picture, is missed more often: the detectors were trained on faces with room around them. Scanning
the picture again inside a plain border finds many of them. Only the faces that the first scan did
not find are added, so the boxes of the others stay exactly as they were (the crop framing was tuned
on them). Still photos get it (`EmotionRecognizer(edge_pad=...)`); the live camera and videos,
whose faces the follower tracks between frames, do not. Measured in benchmarks/edge_faces.md.
"""

from __future__ import annotations

import cv2
import numpy as np

from ferlens.core.detectors.base import MERGE_IOU, Detection, FaceDetector, box_iou, largest_first

#: The border's width as a fraction of the picture's longer side, on every side; 0 turns the second
#: look off. Chosen on ExpW (a validation set: detector settings only) and on face-free pictures:
#: more faces found, no new false face (benchmarks/edge_faces.md).
EDGE_PAD = 0.25
#: How the border is filled: "constant" (mid grey), "replicate" (the edge pixels) or "reflect".
EDGE_FILL = "constant"
BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}
#: A face from the second look is kept when at least this share of its box lies inside the picture
#: (a half face at the edge does; nothing real is found in the border alone) ...
MIN_INSIDE = 0.3
#: ... and when the detector scores it at least this (a face seen only the second time is less sure;
#: detectors that give no score are not held to it). Chosen with the border, same benchmark.
EDGE_MIN_SCORE = 0.75


def detect_with_border(detector: FaceDetector, image: np.ndarray, downscale: float | None = None,
                       pad: float = EDGE_PAD, fill: str = EDGE_FILL, min_score: float = EDGE_MIN_SCORE
                       ) -> list[Detection]:
    """`detector`'s faces in `image`, plus those it finds in the picture inside a border of `pad`
    times its longer side (filled as `fill` says) that overlap none of them and score `min_score` or
    more; boxes in `image`'s pixels, largest first. A box of an added face may reach past the
    picture's edge, as the face does."""
    if fill not in BORDERS or not 0.0 <= pad <= 1.0:
        raise ValueError(f"the border must be 0..1 of the picture's side and filled as one of {', '.join(BORDERS)}")
    faces = detector.detect(image, downscale)
    height, width = image.shape[:2]
    border = round(pad * max(height, width))
    if border == 0:
        return faces
    # Shrink before bordering to the scale the detector would scan the bordered picture at: the same
    # scan, without a full-size bordered copy (a 48-megapixel photo's would be 2.25 times its size).
    scale = detector.settings.scale_for((height + 2 * border, width + 2 * border), detector.default_max_side, downscale)
    small = image if scale == 1.0 else cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    edge = round(border * scale)
    bordered = cv2.copyMakeBorder(small, edge, edge, edge, edge, BORDERS[fill], value=(128, 128, 128))
    smallest = detector.settings.min_face(detector.default_min_size)
    extra = []
    for found in detector.detect(bordered, 1.0):
        x, y, w, h = (round(v / scale) for v in (found.box[0] - edge, found.box[1] - edge, *found.box[2:]))
        moved = Detection((x, y, w, h), found.score,
                          tuple(((px - edge) / scale, (py - edge) / scale) for px, py in found.landmarks))
        sure = found.score is None or found.score >= min_score
        if sure and min(w, h) >= smallest and _inside_share(moved.box, image.shape) >= MIN_INSIDE and \
                all(box_iou(moved.box, known.box) < MERGE_IOU for known in faces):
            extra.append(moved)
    return largest_first(faces + extra)


def _inside_share(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> float:
    x, y, w, h = box
    height, width = shape[:2]
    inside = max(0, min(x + w, width) - max(x, 0)) * max(0, min(y + h, height) - max(y, 0))
    return inside / max(1, w * h)
