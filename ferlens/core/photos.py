"""One photo through the whole pipeline, as the upload page runs it: decode, detect, classify, annotate.

Never raises: a photo that fails gets a one-line reason, so the rest of a batch goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ferlens.core.drawing import draw_faces, fit_for_display, reading_order
from ferlens.core.images import InvalidImageError, read_image
from ferlens.core.memory import ANALYSES
from ferlens.core.recognition import EmotionRecognizer, Face

log = logging.getLogger(__name__)


@dataclass
class PhotoResult:
    """One photo after detection and classification, or the one-line reason it could not be analysed.

    `faces` are in reading order; face n of the table, charts and downloads is `faces[n - 1]`
    and carries the label "#n" on `annotated`.
    """

    name: str
    faces: list[Face] = field(default_factory=list)
    annotated: np.ndarray | None = None
    error: str | None = None
    size: tuple[int, int] = (0, 0)  # (height, width) of the photo the boxes refer to


def analyse_photo(
    recognizer: EmotionRecognizer, name: str, source: bytes | np.ndarray, *, whole_image: bool = False
) -> PhotoResult:
    """Decode, detect, classify and annotate one photo. Never raises: a photo that fails gets a
    one-line `error` saying what to do, and the rest of a batch goes on."""
    try:
        with ANALYSES.running():
            rgb = source if isinstance(source, np.ndarray) else read_image(source)
            faces = reading_order(recognizer.predict(rgb, color_order="rgb", whole_image=whole_image))
            display, shown = fit_for_display(rgb, faces)
            annotated = draw_faces(display, shown, numbers=range(1, len(faces) + 1))
    except InvalidImageError as exc:
        reason = " ".join(str(exc).split()).rstrip(".")
        return PhotoResult(name, error=f"{name} could not be read: {reason}.")  # the reason says what to do
    except Exception:  # whatever else goes wrong with one photo must not end the page
        log.exception("analysing %r failed", name)
        return PhotoResult(name, error=f"{name} could not be analysed because of an error on our side; the other "
                                       "photos are not affected. Try another photo, or a smaller copy of this one.")
    return PhotoResult(name, faces, annotated, size=rgb.shape[:2])
