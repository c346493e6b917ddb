"""Model folders prove what they hold: a damaged, swapped or unlisted model file is refused by name,
"auto" falls back only with a warning, and non-finite output is an error, never a percentage."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from ferlens.config import IMAGE_SIZE, NUM_CLASSES
from ferlens.core.recognition import EmotionRecognizer
from ferlens.modelfolder.loading import BACKEND_FILES, ModelLoadError, ModelLoadWarning, load_backend
from ferlens.modelfolder.manifest import MANIFEST_FILENAME, check_folder, main, read_manifest, write_manifest

ONNX, TFLITE = BACKEND_FILES["onnx"], BACKEND_FILES["tflite"]


@pytest.fixture
def model_dir(tmp_path, shipped_model_dir):
    """The shipped ONNX and float TFLite files in a folder of their own, with a manifest."""
    pytest.importorskip("onnxruntime")
    for name in (ONNX, TFLITE):
        if not (shipped_model_dir / name).exists():
            pytest.skip(f"the shipped model has no {name}; run python -m ferlens.training.export")
        shutil.copy(shipped_model_dir / name, tmp_path / name)
    write_manifest(tmp_path)
    return tmp_path


def _onnx_model(weights: np.ndarray) -> bytes:
    """A different, valid model with the same input and output: softmax(pixels . weights)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["pixels", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "other-model",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, IMAGE_SIZE, IMAGE_SIZE, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, NUM_CLASSES])],
        [numpy_helper.from_array(np.array([-1, IMAGE_SIZE * IMAGE_SIZE], np.int64), "shape"),
         numpy_helper.from_array(weights.astype(np.float32), "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _flip_bytes(path, count=200):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes(255 - b for b in data[middle:middle + count])
    path.write_bytes(bytes(data))


def test_the_manifest_lists_each_model_file_in_sha256sum_format(model_dir):
    entries = read_manifest(model_dir)
    assert entries == {name: hashlib.sha256((model_dir / name).read_bytes()).hexdigest() for name in (ONNX, TFLITE)}
    assert check_folder(model_dir) == []
    if shutil.which("sha256sum"):
        checked = subprocess.run(["sha256sum", "-c", MANIFEST_FILENAME], cwd=model_dir, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checked folder loads without any warning
        recognizer = EmotionRecognizer(model_dir)
    assert recognizer.backend_name == "onnx" and recognizer.load_warnings == []


def test_a_damaged_file_is_refused_by_name_and_auto_falls_back_with_a_warning(model_dir):
    _flip_bytes(model_dir / ONNX)
    with pytest.raises(ModelLoadError, match=f"{ONNX} does not match its sha256"):
        load_backend(model_dir, "onnx")
    with pytest.raises(ModelLoadError, match=ONNX):
        EmotionRecognizer(model_dir, "onnx")  # an explicit backend never falls back
    with pytest.warns(ModelLoadWarning, match=f"{ONNX} does not match.*using {TFLITE} instead"):
        recognizer = EmotionRecognizer(model_dir)
    assert recognizer.backend_name == "tflite"
    assert len(recognizer.load_warnings) == 1 and ONNX in recognizer.load_warnings[0]
    _flip_bytes(model_dir / TFLITE)
    with pytest.raises(ModelLoadError, match=f"no usable model.*{ONNX}.*{TFLITE}"):
        EmotionRecognizer(model_dir)


def test_another_models_file_is_refused_though_it_would_load(model_dir):
    other = _onnx_model(np.random.default_rng(0).normal(0, 0.01, (IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES)))
    (model_dir / ONNX).write_bytes(other)
    with pytest.raises(ModelLoadError, match="damaged or was replaced"):
        load_backend(model_dir, "onnx")
    (model_dir / MANIFEST_FILENAME).unlink()
    with pytest.warns(ModelLoadWarning, match=f"no {MANIFEST_FILENAME}"):
        backend = load_backend(model_dir, "onnx")  # only the checksum could tell it apart
    assert backend.predict(np.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)).shape == (2, NUM_CLASSES)


def test_a_file_the_manifest_does_not_list_is_refused(model_dir):
    write_manifest(model_dir, [TFLITE])  # e.g. training rewrote the folder; the old export stayed
    with pytest.raises(ModelLoadError, match=f"{ONNX} is not listed"):
        load_backend(model_dir, "onnx")
    with pytest.warns(ModelLoadWarning, match=f"not listed.*using {TFLITE}"):
        assert load_backend(model_dir).name == "tflite"


def test_a_folder_without_manifest_loads_with_a_warning(model_dir):
    (model_dir / MANIFEST_FILENAME).unlink()
    with pytest.warns(ModelLoadWarning, match="cannot be checked"):
        recognizer = EmotionRecognizer(model_dir)
    assert recognizer.backend_name == "onnx"
    assert recognizer.load_warnings == [f"{model_dir} has no {MANIFEST_FILENAME}, so {ONNX} cannot be checked for damage; "
                                        f"record it with python -m ferlens.modelfolder.manifest {model_dir}"]


def test_a_damaged_manifest_is_refused(model_dir):
    (model_dir / MANIFEST_FILENAME).write_text("not a checksum line\n")
    with pytest.raises(ModelLoadError, match=f"{MANIFEST_FILENAME} is damaged"):
        load_backend(model_dir, "onnx")


def test_a_model_giving_nan_is_refused_at_load(model_dir):
    (model_dir / ONNX).write_bytes(_onnx_model(np.full((IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES), np.nan)))
    write_manifest(model_dir)  # the file is what the folder says: only its output gives it away
    with pytest.raises(ModelLoadError, match="NaN"):
        load_backend(model_dir, "onnx")
    with pytest.warns(ModelLoadWarning, match=f"NaN.*using {TFLITE}"):
        assert load_backend(model_dir).name == "tflite"


def test_non_finite_probabilities_at_predict_time_are_an_error(model_dir):
    recognizer = EmotionRecognizer(model_dir, tta="none")
    recognizer.backend.predict = lambda batch: np.full((len(batch), NUM_CLASSES), np.nan, np.float32)
    with pytest.raises(ModelLoadError, match="NaN"):
        recognizer.predict(np.full((64, 64), 128, np.uint8), whole_image=True)


def test_the_command_line_records_and_checks_a_folder(model_dir, capsys):
    (model_dir / MANIFEST_FILENAME).unlink()
    assert main([str(model_dir)]) == 0
    assert set(read_manifest(model_dir)) == {ONNX, TFLITE}
    assert main([str(model_dir), "--check"]) == 0
    _flip_bytes(model_dir / TFLITE)
    capsys.readouterr()
    assert main([str(model_dir), "--check"]) == 1
    assert f"{TFLITE} does not match" in capsys.readouterr().err
    assert main([str(model_dir / "missing"), "--check"]) == 2
