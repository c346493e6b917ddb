"""On-the-fly augmentation of batches of 48x48 faces, as a tf.data map.

One random affine per image (rotation, zoom, shift, flip) plus photometric changes
(brightness, contrast) and random erasing. They model the variation a webcam or photo
brings: head tilt, framing, lighting and partial occlusion (hands, glasses, hair).

`PHOTO_AUGMENT` adds what web photos bring on top and FER2013 lacks: small faces upscaled
from a few dozen pixels, JPEG artefacts, gamma (exposure) changes and shear (head pose).
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
    #: Shear in degrees (a turned head's foreshortening, roughly).
    shear_deg: float = 0.0
    #: Gamma range (exposure): pixel = 255 * (pixel / 255) ** gamma.
    gamma: tuple[float, float] = (1.0, 1.0)
    #: Share of images shrunk to `low_res_side` px and scaled back (a small face in a photo).
    low_res_prob: float = 0.0
    low_res_side: tuple[int, int] = (16, 32)
    #: Share of images passed through JPEG at a quality in `jpeg_quality`.
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 90)
    #: Mixup (Zhang et al. 2018): each face is blended with another of the batch, and so are their
    #: targets, with a weight drawn from Beta(alpha, alpha). 0 turns it off. It penalises confident
    #: guesses on ambiguous blends, a regulariser for long schedules (`mix_batch`).
    mixup_alpha: float = 0.0
    #: CutMix (Yun et al. 2019): a box of each face is replaced by the same box of another face of
    #: the batch, and the targets are blended by area. Box area ~ Beta(alpha, alpha); 0 turns it off.
    #: Unlike mixup, every pixel stays a real face's pixel (`cut_mix_batch`).
    cutmix_alpha: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


#: Web-photo augmentations on top of the defaults (`python -m ferlens.training.train --photo-augment`).
PHOTO_AUGMENT = AugmentConfig(
    rotation_deg=15.0, shear_deg=10.0, gamma=(0.7, 1.4), low_res_prob=0.25, jpeg_prob=0.25,
)


def augment_batch(images: tf.Tensor, config: AugmentConfig, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Augment a float32 batch (B, H, W, 1) with values in 0..255; returns the same shape and range."""
    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)

    def uniform(low: float, high: float) -> tf.Tensor:
        return tf.random.uniform([batch], low, high)

    angle = uniform(-config.rotation_deg, config.rotation_deg) * (math.pi / 180.0)
    shear = tf.tan(uniform(-config.shear_deg, config.shear_deg) * (math.pi / 180.0))
    scale = uniform(1.0 - config.zoom, 1.0 + config.zoom)
    shift_x = uniform(-config.shift_px, config.shift_px)
    shift_y = uniform(-config.shift_px, config.shift_px)
    flip = tf.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if config.flip else tf.ones([batch])

    # Inverse map (output pixel -> input pixel) about the image centre, as the transform op expects.
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1 = cos * flip, -sin + cos * shear
    b0, b1 = sin * flip, cos + sin * shear
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

    if config.gamma != (1.0, 1.0):
        gamma = tf.reshape(uniform(*config.gamma), [-1, 1, 1, 1])
        images = 255.0 * tf.pow(tf.clip_by_value(images, 0.0, 255.0) / 255.0, gamma)
    if config.low_res_prob > 0:
        images = _low_resolution(images, config, batch)
    if config.jpeg_prob > 0:
        images = _jpeg(images, config, batch)
    if config.erase_prob > 0:
        images = _random_erase(images, config, batch, height, width)
    return tf.clip_by_value(images, 0.0, 255.0)


def mix_batch(images: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor, alpha: float,
              ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Mixup: blend each face, its target and its class weight with a random partner of the batch.

    The blend weight is max(lam, 1 - lam) with lam ~ Beta(alpha, alpha), so every mixed face is
    mostly its own (its class weight still applies) and the targets stay probability vectors.
    """
    batch = tf.shape(images)[0]
    lam = _beta(batch, alpha)
    lam = tf.maximum(lam, 1.0 - lam)
    partner = tf.random.shuffle(tf.range(batch))
    return tuple(_blend_with_partner(t, partner, lam) for t in (images, targets, weights))


def cut_mix_batch(images: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor, alpha: float,
                  ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """CutMix: paste a random box of a random partner of the batch into each face.

    The box covers a share 1 - lam of the face, lam ~ Beta(alpha, alpha), centred anywhere and
    clipped to the face; the targets and class weights are blended by the area actually pasted.
    """
    batch = tf.shape(images)[0]
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    side = tf.sqrt(1.0 - _beta(batch, alpha))
    centre_y = tf.random.uniform([batch]) * height
    centre_x = tf.random.uniform([batch]) * width
    y0 = tf.maximum(centre_y - side * height / 2, 0.0)
    x0 = tf.maximum(centre_x - side * width / 2, 0.0)
    y1 = tf.minimum(centre_y + side * height / 2, height)
    x1 = tf.minimum(centre_x + side * width / 2, width)
    inside = _inside_boxes(height, width, y0, x0, y1 - y0, x1 - x0)
    pasted = tf.reduce_mean(tf.cast(inside, tf.float32), axis=[1, 2])
    partner = tf.random.shuffle(tf.range(batch))
    mixed = tf.where(inside[..., None], tf.gather(images, partner), images)
    return (mixed, _blend_with_partner(targets, partner, 1.0 - pasted),
            _blend_with_partner(weights, partner, 1.0 - pasted))


def _beta(batch, alpha: float) -> tf.Tensor:
    """One draw per image from Beta(alpha, alpha), as a ratio of two Gamma(alpha) draws."""
    first = tf.random.gamma([batch], alpha)
    second = tf.random.gamma([batch], alpha)
    return first / tf.maximum(first + second, 1e-12)


def _blend_with_partner(values: tf.Tensor, partner: tf.Tensor, own: tf.Tensor) -> tf.Tensor:
    """own * values + (1 - own) * values[partner], with one `own` share per image of the batch."""
    own = tf.reshape(tf.cast(own, values.dtype), [-1] + [1] * (values.shape.rank - 1))
    return own * values + (1 - own) * tf.gather(values, partner)


def _inside_boxes(height, width, y0, x0, box_height, box_width) -> tf.Tensor:
    """(B, H, W) booleans: which pixels of each image fall in its box (top-left y0, x0; float sizes)."""
    ys = tf.range(height)[None, :, None]
    xs = tf.range(width)[None, None, :]
    return ((ys >= y0[:, None, None]) & (ys < (y0 + box_height)[:, None, None])
            & (xs >= x0[:, None, None]) & (xs < (x0 + box_width)[:, None, None]))


def _low_resolution(images, config: AugmentConfig, batch):
    """Shrink a share of the batch to one random side (per batch) and scale it back up."""
    size = tf.shape(images)[1:3]
    side = tf.random.uniform([], config.low_res_side[0], config.low_res_side[1] + 1, dtype=tf.int32)
    small = tf.image.resize(images, tf.stack([side, side]), method="area")
    blurred = tf.image.resize(small, size, method="bilinear")
    chosen = tf.reshape(tf.random.uniform([batch]) < config.low_res_prob, [-1, 1, 1, 1])
    return tf.where(chosen, blurred, images)


def _jpeg(images, config: AugmentConfig, batch):
    """JPEG-compress a share of the batch at one random quality per batch."""
    quality = tf.random.uniform([], config.jpeg_quality[0], config.jpeg_quality[1] + 1, dtype=tf.int32)
    pixels = tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)
    compressed = tf.map_fn(lambda image: tf.image.adjust_jpeg_quality(image, quality), pixels,
                           fn_output_signature=tf.uint8)
    chosen = tf.reshape(tf.random.uniform([batch]) < config.jpeg_prob, [-1, 1, 1, 1])
    return tf.where(chosen, tf.cast(compressed, tf.float32), images)


def _random_erase(images, config: AugmentConfig, batch, height, width):
    """Blank a random rectangle with a flat grey in a fraction of the images (occlusion robustness)."""
    area = tf.random.uniform([batch], *config.erase_area) * height * width
    aspect = tf.exp(tf.random.uniform([batch], math.log(0.5), math.log(2.0)))
    eh = tf.minimum(tf.sqrt(area * aspect), height)
    ew = tf.minimum(tf.sqrt(area / aspect), width)
    y0 = tf.random.uniform([batch]) * (height - eh)
    x0 = tf.random.uniform([batch]) * (width - ew)
    inside = _inside_boxes(height, width, y0, x0, eh, ew)
    chosen = tf.random.uniform([batch]) < config.erase_prob
    mask = (inside & chosen[:, None, None])[..., None]
    # A flat patch of random grey, as a hand, a cup or a microphone in front of the face would leave.
    fill = tf.random.uniform([batch, 1, 1, 1], 0.0, 255.0)
    return tf.where(mask, fill, images)
