"""Test-time augmentation: the views are the right images, and the recognizer averages over them."""

from __future__ import annotations

import numpy as np
import pytest

from ferlens.core.framing import crop_face
from ferlens.core.recognition import EmotionRecognizer
from ferlens.core.tta import TEN_CROP_SHIFT, TTA_MODES, predict_with_tta, tta_views


def _faces(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48)).astype(np.uint8)


def test_views_are_the_face_its_mirror_and_its_shifts():
    faces = _faces()
    assert tta_views(faces, "none") is faces
    flip = tta_views(faces, "flip")
    assert flip.shape == (6, 48, 48)
    np.testing.assert_array_equal(flip[:3], faces)
    np.testing.assert_array_equal(flip[3:], faces[:, :, ::-1])
    ten = tta_views(faces, "ten-crop")
    assert ten.shape == (30, 48, 48)
    np.testing.assert_array_equal(ten[:3], faces)  # view 0: unshifted
    s = TEN_CROP_SHIFT
    # view 1 is shifted by (-s, -s): its interior is the face moved down-right by s pixels
    np.testing.assert_array_equal(ten[3:6, s:, s:], faces[:, :-s, :-s])
    np.testing.assert_array_equal(ten[15:18], faces[:, :, ::-1])  # view 5: mirror of view 0
    assert len({v.tobytes() for v in ten[::3]}) == 10  # ten different views of face 0


def test_prediction_is_the_mean_over_views_in_one_call():
    faces = _faces(4)
    calls = []

    def predict(batch):  # a stand-in "model": probabilities from the left half's brightness
        calls.append(batch.shape)
        left = batch[:, :, :24, 0].mean(axis=(1, 2)) / 255
        return np.stack([left, 1 - left], axis=1)

    for mode, views in (("none", 1), ("flip", 2), ("ten-crop", 10)):
        calls.clear()
        probs = predict_with_tta(predict, faces, mode)
        assert calls == [(4 * views, 48, 48, 1)]
        manual = predict(tta_views(faces, mode)[..., None].astype(np.float32)).reshape(views, 4, 2).mean(axis=0)
        np.testing.assert_allclose(probs, manual, rtol=1e-6)
    # mirroring really changes what this model sees: flip averages the left and right halves
    left, right = faces[:, :, :24].mean(axis=(1, 2)) / 255, faces[:, :, 24:].mean(axis=(1, 2)) / 255
    np.testing.assert_allclose(predict_with_tta(predict, faces, "flip")[:, 0], (left + right) / 2, rtol=1e-5)


def test_unknown_mode_is_rejected(shipped_model_dir):
    with pytest.raises(ValueError, match="ten-crop"):
        tta_views(_faces(), "twenty-crop")
    with pytest.raises(ValueError, match="test-time augmentation"):
        EmotionRecognizer(shipped_model_dir, tta="rotate")


@pytest.mark.parametrize("mode", TTA_MODES)
def test_recognizer_averages_the_models_views(shipped_model_dir, astronaut_rgb, mode):
    plain = EmotionRecognizer(shipped_model_dir, backend="onnx", tta="none")
    recognizer = plain.with_settings(tta=mode)
    assert recognizer.tta == mode and plain.tta == "none" and recognizer.backend is plain.backend
    face = recognizer.predict(astronaut_rgb, color_order="rgb")[0]
    gray = recognizer.to_gray(astronaut_rgb, "rgb")
    crop = crop_face(gray, face.box, 48, recognizer.margin)[None]
    views = tta_views(crop, mode)
    expected = plain.classify(views).mean(axis=0)
    assert list(face.probabilities.values()) == pytest.approx(expected.tolist(), abs=1e-5)
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_recognizer_defaults_to_flip(shipped_model_dir):
    assert EmotionRecognizer(shipped_model_dir, backend="onnx").tta == "flip"
