"""Sharpness-aware minimisation (ferlens.training.sam): the step it takes, and a run that uses it."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ferlens.training import train as train_cli
from ferlens.training.sam import SharpnessAwareModel, sharpness_aware


def tiny_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, activation="softmax")(inputs)
    return keras.Model(inputs, outputs)


def test_a_sam_step_takes_the_gradient_at_the_climbed_weights():
    x = np.array([[1.0, -2.0, 0.5], [0.3, 0.8, -1.0], [2.0, 0.1, 0.4]], np.float32)
    y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    rho, lr = 0.5, 0.1
    model = sharpness_aware(tiny_model(3), rho)
    start = [np.array(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="categorical_crossentropy")
    model.train_on_batch(x, y)
    after = [np.array(w) for w in model.trainable_weights]

    # The same step by hand: gradient g at w, climb e = rho g / |g|, gradient at w + e, applied at w.
    reference = tiny_model(3)
    loss_fn = keras.losses.CategoricalCrossentropy()

    def gradient(weights):
        reference.set_weights(weights)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, reference(x, training=True))
        return [g.numpy() for g in tape.gradient(loss, reference.trainable_weights)]

    g = gradient(start)
    norm = np.sqrt(sum((gi ** 2).sum() for gi in g))
    sharp = gradient([w + rho * gi / norm for w, gi in zip(start, g)])
    expected = [w - lr * gi for w, gi in zip(start, sharp)]
    plain = [w - lr * gi for w, gi in zip(start, g)]
    for got, want in zip(after, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    # ...which is not the plain step: the test would catch SAM silently doing nothing.
    assert max(np.abs(got - naive).max() for got, naive in zip(after, plain)) > 1e-4


def test_sam_flag_is_checked(tmp_path):
    for bad in ("0", "-0.1", "2"):
        with pytest.raises(SystemExit):
            train_cli.parse_args(["--out", str(tmp_path / "m"), "--sam", bad])
    args = train_cli.parse_args(["--out", str(tmp_path / "m"), "--sam", "0.05"])
    assert args.sam == 0.05


def test_a_sam_run_ships_a_plain_model_that_loads_without_fer(kaggle_layout, tmp_path):
    out = tmp_path / "sam-run"
    assert train_cli.main(["--data", str(kaggle_layout), "--out", str(out), "--epochs", "2", "--batch-size", "16",
                           "--sam", "0.05", "--no-evaluate"]) == 0
    assert json.loads((out / "train_config.json").read_text())["sam_rho"] == 0.05
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    assert "accuracy" in history  # the compiled metric reached the logs under its own name
    # A fresh interpreter that loads models as the app does (ferlens.training.architectures' layers), never importing
    # ferlens.training.sam, loads and runs the shipped model.
    code = ("import sys, keras, numpy as np, ferlens.training.architectures; "
            "m = keras.saving.load_model(sys.argv[1], compile=False); "
            "assert 'ferlens.training.sam' not in sys.modules; "
            "print(type(m).__name__, m.predict(np.zeros((1, 48, 48, 1), np.float32), verbose=0).shape)")
    loaded = subprocess.run([sys.executable, "-c", code, str(out / "model.keras")], capture_output=True, text=True,
                            timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split()[0] == "Functional" and "(1, 7)" in loaded.stdout
    trained = keras.saving.load_model(out / "model.keras", compile=False)
    assert not isinstance(trained, SharpnessAwareModel)
