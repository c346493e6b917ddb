"""Augmentation keeps shape and pixel range, and each web-photo change really changes the images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from fer.augment import PHOTO_AUGMENT, AugmentConfig, augment_batch

IDENTITY = AugmentConfig(rotation_deg=0.0, zoom=0.0, shift_px=0.0, flip=False, brightness=(1.0, 1.0),
                         contrast=(1.0, 1.0), erase_prob=0.0)


@pytest.fixture(scope="module")
def faces(astronaut_rgb):
    import cv2

    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)[20:220, 150:350]
    face = cv2.resize(gray, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
    return tf.constant(np.repeat(face[None, :, :, None], 16, axis=0))


def test_identity_config_returns_the_input(faces):
    np.testing.assert_allclose(augment_batch(faces, IDENTITY).numpy(), faces.numpy(), atol=1e-3)


@pytest.mark.parametrize("change", [
    {"shear_deg": 15.0}, {"gamma": (0.5, 0.6)}, {"low_res_prob": 1.0}, {"jpeg_prob": 1.0, "jpeg_quality": (10, 20)},
])
def test_each_photo_change_alters_the_images(faces, change):
    out = augment_batch(faces, replace(IDENTITY, **change)).numpy()
    assert out.shape == faces.shape
    assert 0.0 <= out.min() and out.max() <= 255.0
    assert np.abs(out - faces.numpy()).mean() > 1.0


def test_low_resolution_removes_fine_detail(faces):
    out = augment_batch(faces, replace(IDENTITY, low_res_prob=1.0, low_res_side=(12, 12))).numpy()

    def detail(x):
        return np.abs(np.diff(x, axis=2)).mean()

    assert detail(out) < 0.7 * detail(faces.numpy())


def test_photo_preset_runs_on_a_batch(faces):
    out = augment_batch(faces, PHOTO_AUGMENT).numpy()
    assert out.shape == faces.shape and np.isfinite(out).all()


def test_low_res_prob_flag_sets_only_that_share():
    from fer import train as train_cli

    plain = train_cli.augment_config(train_cli.parse_args(["--out", "y"]))
    low_res = train_cli.augment_config(train_cli.parse_args(["--out", "y", "--low-res-prob", "0.3"]))
    photo = train_cli.augment_config(train_cli.parse_args(["--out", "y", "--photo-augment", "--low-res-prob", "0.5"]))
    assert plain == AugmentConfig()
    assert low_res == replace(AugmentConfig(), low_res_prob=0.3)
    assert photo == replace(PHOTO_AUGMENT, low_res_prob=0.5)
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--out", "y", "--low-res-prob", "1.5"])
