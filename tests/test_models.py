"""Architectures: the paper's net exactly as specified, the efficient default, the registry."""

from __future__ import annotations

import numpy as np
import pytest

from ferlens.training.architectures import ARCHITECTURES, DEFAULT_ARCHITECTURE, build_model


def test_paper_net_matches_the_specification():
    model = build_model("paper")
    assert model.count_params() == 4_237_831
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [128, 256, 512, 512]
    for conv in convs:
        assert conv.kernel_size == (3, 3) and conv.padding == "valid"
        assert conv.activation.__name__ == "relu"
        assert conv.kernel_initializer.__class__.__name__ == "GlorotUniform"
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 4 and kinds.count("MaxPooling2D") == 4
    dropouts = [layer.rate for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    assert dropouts == [0.4, 0.4, 0.4, 0.4, 0.4, 0.3]
    dense = [layer.units for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert dense == [512, 256, 7]
    assert model.input_shape == (None, 48, 48, 1)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_returns_probabilities(name):
    model = build_model(name)
    x = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype(np.float32)
    probs = model.predict(x, verbose=0)
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_vgg_nets_are_much_smaller_than_the_paper_net():
    paper = build_model("paper").count_params()
    assert build_model("vgg").count_params() < paper / 3
    assert build_model("vgg-fast").count_params() < paper / 6
    wide = build_model("vgg-wide")
    convs = [layer for layer in wide.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [48, 48, 96, 96, 192, 192, 384, 384]
    assert 2.0 < wide.count_params() / build_model("vgg").count_params() < 2.5 and wide.count_params() < paper


def test_default_is_the_full_resolution_vgg():
    model = build_model()
    assert DEFAULT_ARCHITECTURE == "vgg" and model.name == "vgg"
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert tuple(convs[0].input.shape[1:3]) == (40, 40)  # the 40x40 centre crop, no downsampling
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256]
    assert not any("blur" in layer.name for layer in model.layers)


def test_mixed_precision_keeps_float32_statistics_and_outputs():
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("vgg")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("s1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("standardize").compute_dtype == "float32"
    assert model.output.dtype == "float32"


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(ValueError, match="paper"):
        build_model("resnet9000")


@pytest.mark.parametrize("name", ["mobilenet-v2", "mobilenet-v3-small"])
def test_mobilenets_are_sized_for_grey_faces_and_survive_saving(name, tmp_path):
    import keras

    model = build_model(name)
    assert model.count_params() < 5_000_000
    assert model.get_layer("upsample").output.shape[1:] == (96, 96, 1)  # one grey channel, no ImageNet weights
    last_map = [layer.output.shape for layer in model.layers if len(layer.output.shape) == 4][-1]
    assert tuple(last_map[1:3]) == (3, 3), "the stride-32 backbone should end on a 3x3 map"
    momenta = {layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}, "keras.applications' slow 0.999 BatchNorm averages would lag for epochs"
    x = np.random.default_rng(1).integers(0, 256, (2, 48, 48, 1)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
