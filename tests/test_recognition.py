"""EmotionRecognizer on a real face photo, every input form, and every kind of bad input."""

from __future__ import annotations

import io
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

from ferlens.config import CLASS_NAMES
from ferlens.core.framing import crop_face
from ferlens.core.images import InvalidImageError
from ferlens.core.recognition import EmotionRecognizer
from ferlens.modelfolder.loading import ModelLoadError


@pytest.fixture(scope="module")
def recognizer(shipped_model_dir):
    return EmotionRecognizer(shipped_model_dir, backend="keras")


def _check_face(face, image_shape):
    assert set(face.probabilities) == set(CLASS_NAMES)
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert face.label == max(face.probabilities, key=face.probabilities.get)
    x, y, w, h = face.box
    assert 0 <= x and 0 <= y and x + w <= image_shape[1] and y + h <= image_shape[0]


def test_finds_the_astronauts_face(recognizer, astronaut_rgb):
    faces = recognizer.predict(astronaut_rgb, color_order="rgb")
    assert len(faces) == 1
    face = faces[0]
    _check_face(face, astronaut_rgb.shape)
    x, y, w, h = face.box
    # Eileen Collins' face sits around x 180-270, y 60-160 in the 512x512 photo.
    assert 150 < x + w / 2 < 290 and 50 < y + h / 2 < 180 and 60 < w < 160
    # She is smiling broadly: happy must be the top label.
    assert face.label == "happy"


def test_input_forms_agree(recognizer, astronaut_rgb, tmp_path):
    reference = recognizer.predict(astronaut_rgb, color_order="rgb")[0]
    bgr = astronaut_rgb[..., ::-1].copy()
    rgba = np.dstack([astronaut_rgb, np.full(astronaut_rgb.shape[:2], 255, np.uint8)])
    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut_rgb).save(path)
    variants = [
        recognizer.predict(bgr),
        recognizer.predict(rgba, color_order="rgb"),
        recognizer.predict(gray),
        recognizer.predict(gray[..., None]),
        recognizer.predict(astronaut_rgb.astype(np.float32) / 255.0, color_order="rgb"),
        recognizer.predict((astronaut_rgb.astype(np.uint16) * 257), color_order="rgb"),
        recognizer.predict(path),
        recognizer.predict(str(path)),
        recognizer.predict(path.read_bytes()),
    ]
    for faces in variants:
        assert len(faces) == 1
        assert faces[0].box == pytest.approx(reference.box, abs=3)
        assert faces[0].label == reference.label
        assert faces[0].confidence == pytest.approx(reference.confidence, abs=0.03)


def test_predict_faces_batches_crops_and_matches_detection(recognizer, astronaut_rgb):
    detected = recognizer.predict(astronaut_rgb, color_order="rgb")[0]
    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    crop = crop_face(gray, detected.box, 48, recognizer.margin)
    faces = recognizer.predict_faces([crop, crop[::-1], cv2.resize(crop, (96, 96))])
    assert len(faces) == 3
    assert all(f.whole_image for f in faces)
    assert faces[0].probabilities == pytest.approx(detected.probabilities, abs=1e-4)
    assert faces[2].label == detected.label
    assert recognizer.predict_faces([]) == []


def test_many_crops_are_classified_in_chunks_with_the_same_result(recognizer):
    from ferlens.core.recognition import CLASSIFY_CHUNK

    crops = np.random.default_rng(1).integers(0, 256, (2 * CLASSIFY_CHUNK + 5, 48, 48), dtype=np.uint8)
    calls = []
    predict = recognizer.backend.predict
    recognizer.backend.predict = lambda batch: calls.append(len(batch)) or predict(batch)
    try:
        together = recognizer.classify(crops)
    finally:
        recognizer.backend.predict = predict
    one_by_one = np.concatenate([recognizer.classify(crop[None]) for crop in crops[:3]])
    views = calls[0] // CLASSIFY_CHUNK
    assert calls == [views * CLASSIFY_CHUNK, views * CLASSIFY_CHUNK, views * 5]
    assert together.shape == (len(crops), 7)
    np.testing.assert_allclose(together[:3], one_by_one, atol=1e-5)


def test_given_boxes_skip_detection(recognizer, astronaut_rgb):
    detected = recognizer.predict(astronaut_rgb, color_order="rgb")[0]
    other = (10, 10, 120, 120)
    faces = recognizer.predict(astronaut_rgb, color_order="rgb", boxes=[detected.box, other])
    assert [f.box for f in faces] == [detected.box, other]
    assert faces[0].probabilities == pytest.approx(detected.probabilities, abs=1e-5)
    assert recognizer.predict(astronaut_rgb, color_order="rgb", boxes=[]) == []


def test_whole_image_mode_classifies_a_precropped_face(recognizer, astronaut_rgb):
    detected = recognizer.predict(astronaut_rgb, color_order="rgb")[0]
    x, y, w, h = detected.box
    m = int(w * recognizer.margin)
    crop = astronaut_rgb[y - m:y + h + m, x - m:x + w + m]
    faces = recognizer.predict(crop, color_order="rgb", whole_image=True)
    assert len(faces) == 1 and faces[0].whole_image
    assert faces[0].box == (0, 0, crop.shape[1], crop.shape[0])
    assert faces[0].label == detected.label


def test_no_face_gives_an_empty_list(recognizer):
    sky = np.full((480, 640, 3), 200, np.uint8)
    assert recognizer.predict(sky) == []


def test_huge_image_is_downscaled_for_detection(recognizer, astronaut_rgb):
    big = cv2.resize(astronaut_rgb, (4096, 4096), interpolation=cv2.INTER_LINEAR)
    faces = recognizer.predict(big, color_order="rgb")
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 150 * 8 < x + w / 2 < 290 * 8
    assert faces[0].label == "happy"


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 3), np.complex64), "unsupported pixel type"),
        (np.zeros((10, 10, 3), bool), "unsupported pixel type"),
        (np.zeros((20, 20, 5), np.uint8), "expected HxW"),
        (np.zeros((4, 4), np.uint8), "too small"),
        (np.full((20, 20), np.nan, np.float32), "NaN"),
        ("not an array", "no such file"),
        ([[1, 2], [3, 4]], "expected a numpy array"),
    ],
)
def test_bad_arrays_raise_invalid_image_error(recognizer, bad, message):
    with pytest.raises(InvalidImageError, match=message):
        recognizer.predict(bad)


def test_bad_files_raise_invalid_image_error(recognizer, tmp_path, astronaut_rgb):
    text = tmp_path / "notes.jpg"
    text.write_text("hello, this is not an image")
    buffer = io.BytesIO()
    Image.fromarray(astronaut_rgb).save(buffer, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[:5000])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, message in ((text, "not a supported image"), (truncated, "truncated"), (empty, "empty"),
                          (tmp_path, "folder"), (tmp_path / "missing.png", "no such file")):
        with pytest.raises(InvalidImageError, match=message):
            recognizer.predict(path)


def test_bad_settings_are_rejected(shipped_model_dir):
    with pytest.raises(ValueError, match="scale_factor"):
        EmotionRecognizer(shipped_model_dir, scale_factor=1.0)
    with pytest.raises(ValueError, match="backend"):
        EmotionRecognizer(shipped_model_dir, backend="tensorrt")
    with pytest.raises(ValueError, match="color_order"):
        EmotionRecognizer(shipped_model_dir, backend="keras").predict(np.zeros((50, 50, 3), np.uint8), color_order="hsv")


def test_missing_or_corrupt_model_raises_model_load_error(tmp_path, shipped_model_dir):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        EmotionRecognizer(tmp_path / "no-such-model")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ModelLoadError, match="no usable model"):
        EmotionRecognizer(empty_dir)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.keras").write_bytes(b"PK\x03\x04 definitely not a keras archive")
    with pytest.raises(ModelLoadError, match="cannot load Keras model"):
        EmotionRecognizer(corrupt, backend="keras")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = (shipped_model_dir / "model.keras").read_bytes()
    (truncated / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        EmotionRecognizer(truncated, backend="keras")
    shutil.rmtree(truncated)
