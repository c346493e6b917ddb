"""On-the-fly augmentation of batches of 48x48 faces, as a tf.data map.

One random affine per image (rotation, zoom, shift, flip) plus photometric changes
(brightness, contrast) and random erasing. They model the variation a webcam or photo
brings: head tilt, framing, lighting and partial occlusion (hands, glasses, hair).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; the paper's are rotation 10 deg, zoom 10 %, brightness 0.8-1.2."""

    rotation_deg: float = 10.0
    zoom: float = 0.1
    shift_px: float = 4.0
    flip: bool = True
    brightness: tuple[float, float] = (0.8, 1.2)
    contrast: tuple[float, float] = (0.8, 1.2)
    erase_prob: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.15)

    def to_dict(self) -> dict:
        return asdict(self)


def augment_batch(images: tf.Tensor, config: AugmentConfig, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Augment a float32 batch (B, H, W, 1) with values in 0..255; returns the same shape and range."""
    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)

    def uniform(low: float, high: float) -> tf.Tensor:
        return tf.random.uniform([batch], low, high)

    angle = uniform(-config.rotation_deg, config.rotation_deg) * (math.pi / 180.0)
    scale = uniform(1.0 - config.zoom, 1.0 + config.zoom)
    shift_x = uniform(-config.shift_px, config.shift_px)
    shift_y = uniform(-config.shift_px, config.shift_px)
    flip = tf.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if config.flip else tf.ones([batch])

    # Inverse map (output pixel -> input pixel) about the image centre, as the transform op expects.
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    a2 = cx - a0 * (cx + shift_x) - a1 * (cy + shift_y)
    b2 = cy - b0 * (cx + shift_x) - b1 * (cy + shift_y)
    zeros = tf.zeros([batch])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )

    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    contrast = tf.reshape(uniform(*config.contrast), [-1, 1, 1, 1])
    brightness = tf.reshape(uniform(*config.brightness), [-1, 1, 1, 1])
    images = ((images - mean) * contrast + mean) * brightness

    if config.erase_prob > 0:
        images = _random_erase(images, config, batch, height, width)
    return tf.clip_by_value(images, 0.0, 255.0)


def _random_erase(images, config: AugmentConfig, batch, height, width):
    """Blank a random rectangle with a flat grey in a fraction of the images (occlusion robustness)."""
    area = tf.random.uniform([batch], *config.erase_area) * height * width
    aspect = tf.exp(tf.random.uniform([batch], math.log(0.5), math.log(2.0)))
    eh = tf.minimum(tf.sqrt(area * aspect), height)
    ew = tf.minimum(tf.sqrt(area / aspect), width)
    y0 = tf.random.uniform([batch]) * (height - eh)
    x0 = tf.random.uniform([batch]) * (width - ew)
    ys = tf.range(height)[None, :, None]
    xs = tf.range(width)[None, None, :]
    inside = (
        (ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
        & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None])
    )
    chosen = tf.random.uniform([batch]) < config.erase_prob
    mask = (inside & chosen[:, None, None])[..., None]
    # A flat patch of random grey, as a hand, a cup or a microphone in front of the face would leave.
    fill = tf.random.uniform([batch, 1, 1, 1], 0.0, 255.0)
    return tf.where(mask, fill, images)
