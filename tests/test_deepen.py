"""Growing a trained net into a deeper one (ferlens.training.deepen), and the training run that starts from it."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ferlens.training import train as train_cli
from ferlens.training.architectures import build_model
from ferlens.training.deepen import grow


def trained_looking_vgg(seed: int) -> keras.Model:
    """A `vgg` whose BatchNorms carry non-trivial statistics, as a trained net's do."""
    keras.utils.set_random_seed(seed)
    model = build_model("vgg")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, variance.shape)])
    return model


def test_a_grown_net_starts_out_computing_what_its_source_did():
    faces = np.random.default_rng(0).uniform(0, 255, (64, 48, 48, 1)).astype(np.float32)
    shallow = trained_looking_vgg(1)
    deep = build_model("vgg-deep")
    fresh = deep.predict(faces, verbose=0)
    grown = grow(deep, shallow, faces)
    assert grown == [f"s{stage}_conv3" for stage in range(1, 5)]
    want = shallow.predict(faces, verbose=0)
    np.testing.assert_allclose(deep.predict(faces, verbose=0), want, atol=1e-4)
    assert np.abs(fresh - want).max() > 1e-2  # an ungrown deep net does not: the check has teeth
    assert deep.count_params() > shallow.count_params() + 700_000


def test_growing_into_a_net_of_other_widths_is_refused():
    with pytest.raises(ValueError, match="cannot go into"):
        grow(build_model("vgg-wide"), build_model("vgg"), np.zeros((4, 48, 48, 1), np.float32))


def test_a_new_conv_without_batchnorm_behind_it_is_refused():
    def net(extra: bool) -> keras.Model:
        inputs = keras.Input((48, 48, 1))
        x = keras.layers.Conv2D(4, 3, padding="same", name="first")(inputs)
        if extra:
            x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="new")(x)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(x))

    with pytest.raises(ValueError, match="not followed by BatchNorm"):
        grow(net(extra=True), net(extra=False), np.zeros((4, 48, 48, 1), np.float32))


def test_a_deeper_run_grows_from_the_init_from_model(kaggle_layout, tmp_path, capsys):
    shallow = tmp_path / "shallow"
    common = ["--data", str(kaggle_layout), "--epochs", "1", "--batch-size", "16", "--no-evaluate"]
    assert train_cli.main([*common, "--out", str(shallow)]) == 0
    deep = tmp_path / "deep"
    assert train_cli.main([*common, "--out", str(deep), "--init-from", str(shallow / "model.keras"),
                           "--architecture", "vgg-deep"]) == 0
    assert "grown from" in capsys.readouterr().out
    config = json.loads((deep / "train_config.json").read_text())
    assert config["architecture"] == "vgg-deep" and config["init_from"].endswith("model.keras")
    model = keras.saving.load_model(deep / "model.keras", compile=False)
    assert model.name == "vgg_deep" and model.get_layer("s4_conv3") is not None
