"""Grow a trained net into a deeper one that starts out computing the same function (Net2DeeperNet).

The depth trial of issue 32 restarts the live model with an extra conv block per stage, as the
other trials restart it with one lever changed. Training the deeper net from scratch would compare
70 epochs against 10; growing it keeps the comparison fair. Every layer the two nets share keeps
its trained weights; each new conv starts as the identity (the centre tap of its kernel), and the
BatchNorm behind it is set to undo its own normalisation on real faces, so that in training mode
as well as inference mode the new block passes its input through (the ReLU behind it too, since
its input is already non-negative).
"""

from __future__ import annotations

import keras
import numpy as np


def grow(deeper: keras.Model, shallower: keras.Model, faces: np.ndarray, batch_size: int = 256) -> list[str]:
    """Copy `shallower`'s weights into `deeper` by layer name, make the layers only `deeper` has an
    identity block, and return the names of those conv layers.

    `faces` (N, 48, 48, 1) in 0..255 set the new BatchNorms' statistics; a few hundred suffice.
    Raises ValueError when a shared layer's weights differ in shape or a new layer is not a
    same-width conv with its BatchNorm and ReLU behind it.
    """
    source = {layer.name: layer for layer in shallower.layers}
    new_convs: list[keras.layers.Conv2D] = []
    for layer in deeper.layers:
        if layer.name in source:
            weights = source[layer.name].get_weights()
            shapes = [w.shape for w in weights]
            if shapes != [w.shape for w in layer.get_weights()]:
                raise ValueError(f"layer {layer.name}: weights {shapes} cannot go into {layer.name} of {deeper.name}")
            layer.set_weights(weights)
        elif isinstance(layer, keras.layers.Conv2D):
            new_convs.append(layer)
        elif layer.get_weights() and not isinstance(layer, keras.layers.BatchNormalization):
            raise ValueError(f"layer {layer.name} of {deeper.name} is new and not a conv block")
    inputs_of_new = keras.Model(deeper.inputs, [conv.input for conv in new_convs])
    activations = inputs_of_new.predict(faces.astype(np.float32), batch_size=batch_size, verbose=0)
    if len(new_convs) == 1:
        activations = [activations]
    for conv, seen in zip(new_convs, activations, strict=True):
        _make_identity(deeper, conv, seen)
    return [conv.name for conv in new_convs]


def _make_identity(model: keras.Model, conv: keras.layers.Conv2D, seen: np.ndarray) -> None:
    """Centre-tap identity kernel; the BatchNorm behind it rescales by the statistics `seen` at its input."""
    kernel = np.zeros(conv.kernel.shape, np.float32)
    height, width, channels_in, channels_out = kernel.shape
    if channels_in != channels_out:
        raise ValueError(f"new layer {conv.name} changes width ({channels_in} -> {channels_out}): no identity start")
    kernel[height // 2, width // 2] = np.eye(channels_in, dtype=np.float32)
    conv.set_weights([kernel] + [np.zeros_like(w) for w in conv.get_weights()[1:]])
    norm = _follower(model, conv, keras.layers.BatchNormalization)
    if norm is None or _follower(model, norm, keras.layers.ReLU) is None:
        raise ValueError(f"new layer {conv.name} is not followed by BatchNorm and ReLU")
    mean = seen.mean(axis=(0, 1, 2))
    variance = seen.var(axis=(0, 1, 2))
    # y = gamma * (x - mean) / sqrt(var + eps) + beta == x with gamma = sqrt(var + eps), beta = mean.
    gamma = np.sqrt(variance + norm.epsilon)
    norm.set_weights([gamma, mean, mean, variance])


def _follower(model: keras.Model, layer: keras.layers.Layer, kind: type) -> keras.layers.Layer | None:
    """The layer of type `kind` that takes `layer`'s output, if any."""
    for candidate in model.layers:
        if isinstance(candidate, kind) and candidate.input is layer.output:
            return candidate
    return None
