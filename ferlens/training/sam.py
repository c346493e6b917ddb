"""Sharpness-aware minimisation (Foret et al., 2021) for `python -m ferlens.training.train --sam RHO`.

Each step first climbs to the worst point within a ball of radius `rho` around the weights (one
gradient step, normalised), takes the gradient there, and applies it at the original weights. It
seeks flat minima, which generalise better on small, noisy-labelled sets such as FER2013, at the
cost of a second forward and backward pass: a step costs about twice a plain one.

Only training changes. `ferlens.training.train.as_float32` rebuilds the trained model as an ordinary functional
model, so the saved `model.keras` and every export load without this module.
"""

from __future__ import annotations

import keras
import tensorflow as tf

#: The neighbourhood radius the SAM paper uses for CIFAR-scale image nets.
DEFAULT_RHO = 0.05


@keras.saving.register_keras_serializable(package="fer")
class SharpnessAwareModel(keras.Model):
    """A functional model whose `fit` takes SAM steps: `SharpnessAwareModel(inputs, outputs, rho=...)`."""

    def __init__(self, *args, rho: float = DEFAULT_RHO, **kwargs):
        super().__init__(*args, **kwargs)
        self.rho = float(rho)

    def get_config(self) -> dict:
        return {**super().get_config(), "rho": self.rho}

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        weights = self.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        gradients = tape.gradient(loss, weights)
        # Climb to the sharpest nearby point: the gradient direction, scaled to length rho.
        scale = self.rho / (tf.linalg.global_norm(gradients) + 1e-12)
        climbs = [None if g is None else tf.cast(g * scale, w.dtype) for g, w in zip(gradients, weights)]
        for weight, climb in zip(weights, climbs):
            if climb is not None:
                weight.assign_add(climb)
        with tf.GradientTape() as tape:
            sharp_loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True),
                                           sample_weight=sample_weight, training=True)
        sharp_gradients = tape.gradient(sharp_loss, weights)
        for weight, climb in zip(weights, climbs):
            if climb is not None:
                weight.assign_sub(climb)
        self.optimizer.apply(sharp_gradients, weights)
        # Metrics describe the weights as they were at the start of the step (the first pass).
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=tf.shape(x)[0])
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def sharpness_aware(model: keras.Model, rho: float) -> SharpnessAwareModel:
    """The same layers (and weights) as `model`, trained with SAM steps of radius `rho`."""
    return SharpnessAwareModel(inputs=model.inputs, outputs=model.outputs, rho=rho, name=model.name)
