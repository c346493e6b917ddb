"""Exports (float TFLite, INT8 TFLite, ONNX) and the inference backends that run them."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ferlens.modelfolder.loading
from ferlens.core.recognition import EmotionRecognizer
from ferlens.modelfolder.loading import BACKEND_FILES, expected_format, load_backend, realtime_order
from ferlens.modelfolder.manifest import check_folder, read_manifest
from ferlens.training.architectures import build_model
from ferlens.training.evaluate import predict_split
from ferlens.training.export import export_all
from ferlens.training.metrics import classification_report
from tests.conftest import synthetic_face

EXPORTED = ("tflite", "tflite-int8", "onnx")


@pytest.fixture(scope="module")
def exported_dir(tmp_path_factory):
    """A freshly built (untrained) efficient model, exported to every format."""
    folder = tmp_path_factory.mktemp("exported")
    build_model("vgg").save(folder / "model.keras")
    calibration = np.stack([synthetic_face(i % 7, i) for i in range(64)])
    files = export_all(folder, calibration)
    assert set(files) == set(EXPORTED)
    return folder


def test_export_writes_every_format(exported_dir):
    sizes = {name: (exported_dir / BACKEND_FILES[name]).stat().st_size for name in BACKEND_FILES}
    assert all(size > 10_000 for size in sizes.values())
    assert sizes["tflite-int8"] < sizes["tflite"] / 3  # weights really are 8-bit


def test_backends_agree_with_keras(exported_dir):
    faces = np.stack([synthetic_face(i % 7, 1000 + i) for i in range(20)])[..., None].astype(np.float32)
    reference = load_backend(exported_dir, "keras").predict(faces)
    for name in EXPORTED:
        probs = load_backend(exported_dir, name).predict(faces)
        assert probs.shape == reference.shape
        tolerance = 0.05 if name == "tflite-int8" else 1e-4
        np.testing.assert_allclose(probs, reference, atol=tolerance, err_msg=name)
    # batch size changes on the same interpreter work
    tflite = load_backend(exported_dir, "tflite")
    np.testing.assert_allclose(tflite.predict(faces[:1]), reference[:1], atol=1e-4)
    np.testing.assert_allclose(tflite.predict(faces[:7]), reference[:7], atol=1e-4)


def test_export_records_every_model_file_in_the_manifest(exported_dir):
    assert set(read_manifest(exported_dir)) == set(BACKEND_FILES.values())
    assert check_folder(exported_dir) == []


def test_auto_backend_prefers_onnx(exported_dir):
    assert load_backend(exported_dir).name == "onnx"


def test_realtime_backend_prefers_int8_and_falls_back_to_float(exported_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(ferlens.modelfolder.loading, "_this_cpu_has_int8_dot", lambda: True)  # a CPU with VNNI
    assert load_backend(exported_dir, "realtime").name == "tflite-int8"
    without_int8 = tmp_path / "no-int8"
    without_int8.mkdir()
    for name in ("keras", "onnx"):
        (without_int8 / BACKEND_FILES[name]).write_bytes((exported_dir / BACKEND_FILES[name]).read_bytes())
    with pytest.warns(UserWarning):  # no manifest to check the copies against
        assert load_backend(without_int8, "realtime").name == "onnx"
    # The pages quote the figures of the format they will open, without opening it.
    assert expected_format(exported_dir, "realtime") == "tflite-int8"
    assert expected_format(without_int8, "realtime") == "onnx"
    assert expected_format(without_int8, "auto") == "onnx" and expected_format(without_int8, "keras") == "keras"
    assert expected_format(tmp_path / "nothing-here", "realtime") is None


def test_realtime_backend_prefers_float_where_int8_is_no_faster(exported_dir, monkeypatch):
    """Without 8-bit dot-product instructions (AVX2 only) INT8 buys no speed, only a point less accuracy."""
    monkeypatch.setattr(ferlens.modelfolder.loading, "_this_cpu_has_int8_dot", lambda: False)
    assert load_backend(exported_dir, "realtime").name == "tflite"
    assert expected_format(exported_dir, "realtime") == "tflite"
    monkeypatch.setattr(ferlens.modelfolder.loading, "_this_cpu_has_int8_dot", lambda: None)  # the CPU cannot say: INT8 as before
    assert expected_format(exported_dir, "realtime") == "tflite-int8"


def test_realtime_order_reads_the_cpu_flags():
    zen3 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
    sapphire = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_int8\n"
    graviton = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n"
    assert realtime_order(zen3)[0] == "tflite" and realtime_order(zen3)[-2:] == ("tflite-int8", "keras")
    assert realtime_order(sapphire)[0] == "tflite-int8"
    assert realtime_order(graviton)[0] == "tflite-int8"
    assert realtime_order("no flags line here")[0] == "tflite-int8"


def test_recognizer_backends_give_the_same_answer_on_a_real_face(shipped_model_dir, astronaut_rgb):
    available = [b for b in ("keras", *EXPORTED) if (shipped_model_dir / BACKEND_FILES[b]).exists()]
    assert available == ["keras", *EXPORTED], "the shipped model's exports are missing; run python -m ferlens.training.export"
    results = {b: EmotionRecognizer(shipped_model_dir, b).predict(astronaut_rgb, color_order="rgb") for b in available}
    reference = results["keras"][0]
    for name, faces in results.items():
        assert len(faces) == 1 and faces[0].box == reference.box
        assert faces[0].label == reference.label, name
        tolerance = 0.05 if name == "tflite-int8" else 1e-4
        assert faces[0].probabilities == pytest.approx(reference.probabilities, abs=tolerance), name


@pytest.mark.fer2013
def test_int8_loses_at_most_one_point_and_metrics_list_every_format(shipped_model_dir, fer2013):
    accuracy = {}
    for name in ("keras", "tflite-int8"):
        backend = load_backend(shipped_model_dir, name)
        accuracy[name] = classification_report(fer2013.test.labels, predict_split(backend, fer2013.test).argmax(1))["accuracy"]
    assert accuracy["keras"] - accuracy["tflite-int8"] <= 0.010
    formats = json.loads((shipped_model_dir / "metrics.json").read_text())["formats"]
    assert set(formats) == {"keras", *EXPORTED}
    assert formats["tflite-int8"]["test_accuracy"] == pytest.approx(accuracy["tflite-int8"], abs=0.001)
    for name, entry in formats.items():
        assert entry["size_bytes"] == (shipped_model_dir / BACKEND_FILES[name]).stat().st_size
