"""The 48x48 face a model is trained on and the one it is served are framed alike.

Training on a folder of ordinary photos (`ferlens.training.data.load_dataset(..., crop_faces=True)`) crops each
photo to its largest face with the photo detector, `ferlens.core.framing.crop_face` and `FACE_MARGIN`. Serving
(`EmotionRecognizer.predict`: the upload page, the CLI) detects with its own detector and crops with
`bounded_crop` and its `margin`. Those are two code paths (OpenCV decodes the training file, Pillow
the served one); this checks that they hand the classifier the very same pixels.

FER2013 itself is not covered: its faces come pre-cropped at 48x48 by the dataset's authors, and
`FACE_MARGIN` was chosen to match their framing by measurement (benchmarks/wild_framing.md), not by code.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferlens.config import FACE_MARGIN, IMAGE_SIZE
from ferlens.core.detectors import box_iou
from ferlens.core.framing import crop_face
from ferlens.core.recognition import EmotionRecognizer
from ferlens.training.data import load_dataset

#: Where the astronaut photo is pasted on the canvas, and where her face then is (x, y, w, h).
PASTE_AT = (200, 40)
KNOWN_FACE = (367, 99, 114, 114)


@pytest.fixture(scope="module")
def photo(astronaut_rgb) -> np.ndarray:
    """An 800x600 RGB picture with one face at a known place, off-centre on a flat background."""
    canvas = np.full((600, 800, 3), 90, np.uint8)
    x, y = PASTE_AT
    height, width = astronaut_rgb.shape[:2]
    canvas[y:y + height, x:x + width] = astronaut_rgb
    return canvas


def served_crops(recognizer: EmotionRecognizer, source, **kwargs) -> tuple[list, np.ndarray]:
    """The faces `recognizer.predict` finds and the 48x48 batch it hands to the classifier."""
    seen = []
    classify = recognizer.classify
    recognizer.classify = lambda faces48: (seen.append(faces48.copy()), classify(faces48))[1]
    try:
        faces = recognizer.predict(source, **kwargs)
    finally:
        del recognizer.classify
    return faces, seen[0] if seen else np.empty((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def test_training_and_serving_crop_a_photo_s_face_identically(tmp_path, photo, shipped_model_dir):
    # Lossless PNG, so that both decoders must give the same pixels: any difference is framing.
    folder = tmp_path / "photos" / "happy"
    folder.mkdir(parents=True)
    for i in range(3):  # the split needs more than one image per class; all three are the same photo
        cv2.imwrite(str(folder / f"photo{i}.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    data = load_dataset(tmp_path / "photos", use_cache=False)
    assert data.uncropped == [], "the photo detector found no face: the training side fell back to the whole image"
    trained = np.concatenate([data.train.images, data.val.images, data.test.images])
    assert trained.shape == (3, IMAGE_SIZE, IMAGE_SIZE)

    recognizer = EmotionRecognizer(shipped_model_dir, threads=1)  # the photo detector and FACE_MARGIN, as served
    for source, kwargs in ((folder / "photo0.png", {}), (photo, {"color_order": "rgb"})):  # a file, an upload's array
        faces, served = served_crops(recognizer, source, **kwargs)
        assert len(faces) == 1 and box_iou(faces[0].box, KNOWN_FACE) > 0.5, [f.box for f in faces]
        for face in trained:
            np.testing.assert_array_equal(face, served[0])

    # The comparison can tell framings apart: a slightly wider border gives other pixels.
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    wider = crop_face(gray, faces[0].box, IMAGE_SIZE, FACE_MARGIN + 0.05)
    assert np.abs(wider.astype(int) - served[0]).mean() > 5
