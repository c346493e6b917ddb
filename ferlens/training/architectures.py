"""CNN architectures, selectable by name.

Every model takes raw 48x48x1 pixels in 0..255 and returns 7 softmax probabilities, so the
recognizer, the exporters and the evaluation never need to know which one they hold.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers, ops

from ferlens.config import IMAGE_SIZE, NUM_CLASSES

#: Input crop of the efficient model: training shifts the face by up to 4 px (a random crop),
#: inference takes the centre, as in the 40x40 ten-crop literature on FER2013.
CROP_SIZE = 40


@keras.saving.register_keras_serializable(package="fer")
class PerImageStandardization(layers.Layer):
    """Zero mean, unit variance per image: removes global brightness and contrast, which vary
    between cameras and lighting far more than expressions do."""

    def call(self, inputs):
        mean = ops.mean(inputs, axis=(1, 2, 3), keepdims=True)
        std = ops.sqrt(ops.mean(ops.square(inputs - mean), axis=(1, 2, 3), keepdims=True))
        return (inputs - mean) / ops.maximum(std, 1.0)


def build_paper(num_classes: int = NUM_CLASSES) -> keras.Model:
    """The seed paper's CNN, exactly: 4 conv blocks (128-256-512-512), valid padding, BN, pool, dropout 0.4."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="pixels")
    x = layers.Rescaling(1.0 / 255, name="scale_0_1")(inputs)
    for i, filters in enumerate((128, 256, 512, 512), start=1):
        x = layers.Conv2D(
            filters, 3, padding="valid", activation="relu",
            kernel_initializer="glorot_uniform", name=f"conv{i}",
        )(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Dropout(0.4, name=f"drop{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.4, name="fc1_drop")(x)
    x = layers.Dense(256, activation="relu", name="fc2")(x)
    x = layers.Dropout(0.3, name="fc2_drop")(x)
    # Float32 output and input statistics even under a mixed-precision training policy.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="paper")


def build_vgg(
    num_classes: int = NUM_CLASSES,
    widths: tuple[int, ...] = (32, 64, 128, 256),
    convs_per_stage: int = 2,
    dropout: float = 0.4,
    bn_momentum: float = 0.9,
    downsample: int = 1,
    name: str = "vgg",
) -> keras.Model:
    """A VGG-style net on a 40x40 centre crop (optionally average-pooled by `downsample`).

    BatchNorm momentum is 0.9, not Keras' 0.99: with compiled steps the slow moving averages
    left inference-mode accuracy far behind training accuracy for several epochs.
    """
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="pixels")
    x = layers.CenterCrop(CROP_SIZE, CROP_SIZE, name="center_crop")(inputs)
    x = PerImageStandardization(dtype="float32", name="standardize")(x)
    if downsample > 1:
        x = layers.AveragePooling2D(downsample, name="downsample")(x)
    for stage, filters in enumerate(widths, start=1):
        for j in range(1, convs_per_stage + 1):
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False,
                kernel_initializer="he_normal", name=f"s{stage}_conv{j}",
            )(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"s{stage}_bn{j}")(x)
            x = layers.ReLU(name=f"s{stage}_relu{j}")(x)
        if stage < len(widths):
            x = layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="head_drop")(x)
    # Float32 output and input statistics even under a mixed-precision training policy.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def build_vgg_fast(num_classes: int = NUM_CLASSES, **kwargs) -> keras.Model:
    """A real-time candidate: `vgg` on a 2x average-pooled 20x20 crop with 32-80-160 channels.

    About a quarter of `vgg`'s multiply-adds (~20 M against ~81 M), at the price of the finest
    detail of the face; the ablation table records what that costs in accuracy on sharp data.
    """
    kwargs = {"widths": (32, 80, 160), "downsample": 2, "name": "vgg_fast", **kwargs}
    return build_vgg(num_classes, **kwargs)


def build_vgg_wide(num_classes: int = NUM_CLASSES, **kwargs) -> keras.Model:
    """An accuracy candidate for photos: `vgg` with 1.5x the channels (48-96-192-384), about 2.25x
    its multiply-adds and parameters; width is one of the levers the 73 % FER2013 results pull."""
    kwargs = {"widths": (48, 96, 192, 384), "name": "vgg_wide", **kwargs}
    return build_vgg(num_classes, **kwargs)


def build_vgg_deep(num_classes: int = NUM_CLASSES, **kwargs) -> keras.Model:
    """The depth candidate: `vgg` with three convs per stage instead of two (1.96 M parameters,
    about 1.7x the multiply-adds). `ferlens.training.deepen.grow` starts it from a trained `vgg`."""
    kwargs = {"convs_per_stage": 3, "name": "vgg_deep", **kwargs}
    return build_vgg(num_classes, **kwargs)


def build_mobilenet(
    num_classes: int = NUM_CLASSES,
    version: str = "v2",
    side: int = 96,
    alpha: float = 1.0,
    bn_momentum: float = 0.9,
    dropout: float = 0.3,
) -> keras.Model:
    """The seed paper's edge architecture, MobileNet from `keras.applications`, trained from scratch.

    No ImageNet weights can be had here (`weights=None`), so the paper's transfer learning is
    replaced by training on FER2013 alone. Sized for grey faces: one input channel, the same 40x40
    centre crop and standardisation as `vgg`, upsampled to `side` px so that the stride-32 backbone
    ends on a 3x3 map rather than 2x2. BatchNorm momentum is lowered from 0.999 to `bn_momentum`
    for the reason `build_vgg` gives. `version`: "v2" or "v3-small".
    """
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="pixels")
    x = layers.CenterCrop(CROP_SIZE, CROP_SIZE, name="center_crop")(inputs)
    x = PerImageStandardization(dtype="float32", name="standardize")(x)
    x = layers.Resizing(side, side, interpolation="bilinear", name="upsample")(x)
    common = {"input_tensor": x, "alpha": alpha, "include_top": False, "weights": None, "pooling": "avg"}
    if version == "v2":
        backbone = keras.applications.MobileNetV2(**common)
    elif version == "v3-small":
        backbone = keras.applications.MobileNetV3Small(**common, include_preprocessing=False)
    else:
        raise ValueError(f"unknown MobileNet version {version!r}; choose v2 or v3-small")
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    x = layers.Dropout(dropout, name="head_drop")(backbone.output)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"mobilenet_{version.replace('-', '_')}")


def build_mobilenet_v2(num_classes: int = NUM_CLASSES, **kwargs) -> keras.Model:
    """`build_mobilenet` with MobileNetV2 (width 1.0: 2.27 M parameters)."""
    return build_mobilenet(num_classes, version="v2", **kwargs)


def build_mobilenet_v3_small(num_classes: int = NUM_CLASSES, **kwargs) -> keras.Model:
    """`build_mobilenet` with MobileNetV3-Small (width 1.0)."""
    return build_mobilenet(num_classes, version="v3-small", **kwargs)


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "paper": build_paper,
    "vgg": build_vgg,
    "vgg-fast": build_vgg_fast,
    "vgg-wide": build_vgg_wide,
    "vgg-deep": build_vgg_deep,
    "mobilenet-v2": build_mobilenet_v2,
    "mobilenet-v3-small": build_mobilenet_v3_small,
}
DEFAULT_ARCHITECTURE = "vgg"


def build_model(name: str = DEFAULT_ARCHITECTURE, **kwargs) -> keras.Model:
    """Build an architecture by name; unknown names list the valid ones."""
    try:
        builder = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None
    return builder(**kwargs)
