"""Warm restarts, per-epoch weights and weight averaging (ferlens.training.swa) on synthetic data."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ferlens.training import swa as swa_cli
from ferlens.training import train as train_cli
from ferlens.training.swa import recompute_batchnorm

FAST = ["--batch-size", "16"]


def kernels(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for layer in model.layers if isinstance(layer, keras.layers.Conv2D) for w in layer.weights]


@pytest.fixture
def run_with_epoch_weights(kaggle_layout, tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(kaggle_layout), "--out", str(out), "--epochs", "2", "--save-epoch-weights", "--no-evaluate", *FAST]
    assert train_cli.main(args) == 0
    return out


def test_every_epoch_keeps_its_weights(run_with_epoch_weights):
    files = sorted(p.name for p in (run_with_epoch_weights / "checkpoints/epochs").iterdir())
    assert files == ["epoch001.weights.h5", "epoch002.weights.h5"]


def test_warm_restart_starts_from_the_given_weights(run_with_epoch_weights, kaggle_layout, tmp_path):
    source = keras.saving.load_model(run_with_epoch_weights / "model.keras", compile=False)
    out = tmp_path / "restart"
    # A zero learning rate leaves the trainable weights where the restart put them.
    args = ["--data", str(kaggle_layout), "--out", str(out), "--epochs", "1", "--learning-rate", "0",
            "--init-from", str(run_with_epoch_weights / "model.keras"), *FAST]
    assert train_cli.main(args) == 0
    restarted = keras.saving.load_model(out / "model.keras", compile=False)
    for before, after in zip(kernels(source), kernels(restarted), strict=True):
        np.testing.assert_array_equal(before, after)
    assert json.loads((out / "train_config.json").read_text())["init_from"].endswith("model.keras")
    assert "Warm restart: started from the weights of" in (out / "MODEL_CARD.md").read_text()


def test_init_from_a_missing_file_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--out", str(tmp_path / "m"), "--init-from", str(tmp_path / "nope.keras")])
    assert exc.value.code == 2
    assert "no such model file" in capsys.readouterr().err


def test_averaged_model_is_the_mean_of_the_epochs(run_with_epoch_weights, kaggle_layout, tmp_path):
    out = tmp_path / "swa"
    assert swa_cli.main([str(run_with_epoch_weights), "--last", "2", "--out", str(out),
                         "--data", str(kaggle_layout)]) == 0
    epochs = []
    for n in (1, 2):
        model = keras.saving.load_model(run_with_epoch_weights / "model.keras", compile=False)
        model.load_weights(run_with_epoch_weights / f"checkpoints/epochs/epoch{n:03d}.weights.h5")
        epochs.append(kernels(model))
    averaged = kernels(keras.saving.load_model(out / "model.keras", compile=False))
    for first, second, mean in zip(*epochs, averaged, strict=True):
        np.testing.assert_allclose(mean, (first + second) / 2, rtol=1e-6, atol=1e-7)
    config = json.loads((out / "train_config.json").read_text())
    assert config["weight_averaging"]["epochs"] == [1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["images"] == 14
    assert "Weight averaging: mean of run's epochs 1-2" in (out / "MODEL_CARD.md").read_text()


def test_train_config_reads_back_what_it_wrote(run_with_epoch_weights):
    written = json.loads((run_with_epoch_weights / "train_config.json").read_text())
    config = train_cli.TrainConfig.from_dict(written)
    assert config.save_epoch_weights and config.epochs == 2 and config.batch_size == 16
    assert config.augment.brightness == (0.8, 1.2)
    assert json.loads(json.dumps(config.to_dict())) == written


def test_batchnorm_statistics_become_the_mean_over_batches():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(inputs))
    rng = np.random.default_rng(0)
    batches = [(rng.normal(loc, 1.0, (8, 3)).astype(np.float32),) for loc in (0.0, 5.0, 10.0)]
    assert recompute_batchnorm(model, batches) == 3
    layer = model.layers[-1]
    expected = np.mean([b[0].mean(axis=0) for b in batches], axis=0)
    np.testing.assert_allclose(np.asarray(layer.moving_mean), expected, rtol=1e-5)
    assert layer.momentum == 0.9


def test_averaging_needs_the_epoch_weights(kaggle_layout, tmp_path, run_with_epoch_weights, capsys):
    def average(last: int) -> int:
        return swa_cli.main([str(run_with_epoch_weights), "--last", str(last), "--out", str(tmp_path / "swa"),
                             "--data", str(kaggle_layout)])

    assert average(5) == 2
    assert "between 1 and the 2 epochs" in capsys.readouterr().err
    for path in (run_with_epoch_weights / "checkpoints/epochs").iterdir():
        path.unlink()
    assert average(1) == 2
    assert "--save-epoch-weights" in capsys.readouterr().err
