"""The Keras engine: a `.keras` file, for training-side evaluation (needs TensorFlow)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ferlens.config import IMAGE_SIZE
from ferlens.modelfolder.engines.base import ModelLoadError, check_file


class KerasBackend:
    """The `.keras` model behind one traced function: a plain `model(x)` costs ~30 ms of overhead.

    Thread-safe: a traced function may be called from several threads at once."""

    name = "keras"

    def __init__(self, path: Path):
        check_file(path)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        import ferlens.training.architectures  # noqa: F401  (registers the custom layers the saved model uses)

        try:
            self.model = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # keras raises many types for a bad archive
            raise ModelLoadError(f"cannot load Keras model {path}: {exc}") from exc
        self.path = path
        spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32)
        self._fn = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._fn(batch).numpy()
