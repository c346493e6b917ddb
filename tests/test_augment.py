"""Augmentation keeps shape and pixel range, and each web-photo change really changes the images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from ferlens.training.augment import PHOTO_AUGMENT, AugmentConfig, augment_batch, cut_mix_batch, mix_batch

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
    from ferlens.training import train as train_cli

    plain = train_cli.augment_config(train_cli.parse_args(["--out", "y"]))
    low_res = train_cli.augment_config(train_cli.parse_args(["--out", "y", "--low-res-prob", "0.3"]))
    photo = train_cli.augment_config(train_cli.parse_args(["--out", "y", "--photo-augment", "--low-res-prob", "0.5"]))
    assert plain == AugmentConfig()
    assert low_res == replace(AugmentConfig(), low_res_prob=0.3)
    assert photo == replace(PHOTO_AUGMENT, low_res_prob=0.5)
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--out", "y", "--low-res-prob", "1.5"])


def test_erase_prob_flag_sets_the_share_of_blanked_faces():
    from ferlens.training import train as train_cli

    erase = train_cli.augment_config(train_cli.parse_args(["--out", "y", "--photo-augment", "--erase-prob", "0.5"]))
    assert erase == replace(PHOTO_AUGMENT, erase_prob=0.5) and PHOTO_AUGMENT.erase_prob != 0.5
    for bad in ("-0.1", "1.5"):
        with pytest.raises(SystemExit):
            train_cli.parse_args(["--out", "y", "--erase-prob", bad])
    # Every face blanked: each output differs from its input by one flat grey rectangle.
    faces = tf.constant(np.random.default_rng(1).uniform(0, 255, (32, 48, 48, 1)).astype(np.float32))
    out = augment_batch(faces, replace(IDENTITY, erase_prob=1.0)).numpy()
    for before, after in zip(faces.numpy(), out, strict=True):
        changed = ~np.isclose(before, after, atol=1e-2)  # the identity warp rounds in the last bits
        assert changed.any() and len(np.unique(after[changed])) == 1


def test_mixup_blends_faces_and_targets_with_the_same_weight():
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (64, 48, 48, 1)).astype(np.float32))
    labels = np.arange(64) % 7
    targets = tf.constant(np.eye(7, dtype=np.float32)[labels])
    weights = tf.constant(np.linspace(0.5, 2.0, 64).astype(np.float32))
    mixed, mixed_targets, mixed_weights = (t.numpy() for t in mix_batch(images, targets, weights, 0.4))
    assert np.allclose(mixed_targets.sum(axis=1), 1.0, atol=1e-5)
    own = mixed_targets[np.arange(64), labels]
    # Every face stays mostly itself, and some really are blends.
    assert (own >= 0.5 - 1e-6).all() and (own < 0.95).sum() > 10
    # Recover each face's partner from its target and check pixels and class weights used the same blend.
    for i in np.flatnonzero(own < 0.95)[:10]:
        [other_class] = [c for c in np.flatnonzero(mixed_targets[i] > 1e-6) if c != labels[i]]
        partners = np.flatnonzero(labels == other_class)
        lam = own[i]
        expected = [lam * images.numpy()[i] + (1 - lam) * images.numpy()[j] for j in partners]
        assert min(np.abs(mixed[i] - e).max() for e in expected) < 1e-2
        expected_w = [lam * weights.numpy()[i] + (1 - lam) * weights.numpy()[j] for j in partners]
        assert min(abs(mixed_weights[i] - w) for w in expected_w) < 1e-4


def test_mixup_flag_is_recorded_and_checked():
    from ferlens.training import train as train_cli

    assert train_cli.augment_config(train_cli.parse_args(["--out", "y", "--mixup", "0.2"])) == replace(
        AugmentConfig(), mixup_alpha=0.2)
    assert AugmentConfig().mixup_alpha == 0.0  # off unless asked for, so older recipes are unchanged
    for bad in ("0", "-1", "50"):
        with pytest.raises(SystemExit):
            train_cli.parse_args(["--out", "y", "--mixup", bad])


def test_mixup_reaches_the_training_batches(kaggle_layout):
    from ferlens.training import train as train_cli
    from ferlens.training.data import load_dataset

    data = load_dataset(kaggle_layout)
    config = train_cli.TrainConfig(batch_size=16, augment=replace(IDENTITY, mixup_alpha=1.0))
    train, _, _ = train_cli.make_datasets(data, config)
    _, targets, _ = next(iter(train))
    assert np.allclose(targets.numpy().sum(axis=1), 1.0, atol=1e-5)
    assert (targets.numpy().max(axis=1) < 0.99).any()  # soft targets: the faces were mixed
    plain, _, _ = train_cli.make_datasets(data, replace(config, augment=IDENTITY))
    assert set(np.unique(next(iter(plain))[1].numpy())) <= {0.0, 1.0}


def test_cutmix_pastes_one_box_of_a_partner_and_blends_targets_by_its_area():
    batch = 64
    # Face i is flat grey i, so every output pixel says which face it came from.
    images = tf.constant(np.arange(batch, dtype=np.float32)[:, None, None, None] * np.ones((1, 48, 48, 1), np.float32))
    labels = np.arange(batch) % 7
    targets = tf.constant(np.eye(7, dtype=np.float32)[labels])
    weights = tf.constant(np.linspace(0.5, 2.0, batch).astype(np.float32))
    mixed, mixed_targets, mixed_weights = (t.numpy() for t in cut_mix_batch(images, targets, weights, 1.0))
    assert mixed.shape == images.shape
    assert np.allclose(mixed_targets.sum(axis=1), 1.0, atol=1e-5)
    cut = 0
    for i in range(batch):
        values = np.unique(mixed[i])
        assert values.size <= 2 and i in values or values.size == 1
        others = [v for v in values if v != i]
        if not others:
            continue
        j = int(others[0])
        pasted = mixed[i, ..., 0] == j
        rows, cols = np.flatnonzero(pasted.any(1)), np.flatnonzero(pasted.any(0))
        # One solid rectangle.
        assert pasted[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        share = pasted.mean()
        expected = (1 - share) * np.eye(7)[labels[i]] + share * np.eye(7)[labels[j]]
        np.testing.assert_allclose(mixed_targets[i], expected, atol=1e-5)
        np.testing.assert_allclose(mixed_weights[i], (1 - share) * weights.numpy()[i] + share * weights.numpy()[j],
                                   rtol=1e-5)
        cut += 1
    assert cut > batch // 2  # with alpha 1 most faces get a box of a partner


def test_cutmix_flag_is_recorded_and_checked(kaggle_layout):
    from ferlens.training import train as train_cli
    from ferlens.training.data import load_dataset

    assert train_cli.augment_config(train_cli.parse_args(["--out", "y", "--cutmix", "1"])) == replace(
        AugmentConfig(), cutmix_alpha=1.0)
    assert AugmentConfig().cutmix_alpha == 0.0
    for bad in ("0", "-1", "50"):
        with pytest.raises(SystemExit):
            train_cli.parse_args(["--out", "y", "--cutmix", bad])
    data = load_dataset(kaggle_layout)
    config = train_cli.TrainConfig(batch_size=16, augment=replace(IDENTITY, cutmix_alpha=1.0))
    train, _, _ = train_cli.make_datasets(data, config)
    _, targets, _ = next(iter(train))
    assert (targets.numpy().max(axis=1) < 0.99).any()  # soft targets: boxes were pasted
