"""Export a trained model for edge devices: `python -m ferlens.training.export MODEL_DIR [--data PATH]`.

Writes, next to `model.keras`: a float32 TFLite model, a full-integer INT8 TFLite model
(uint8 in/out, calibrated on training images) and an ONNX model, and records every model
file's sha256 in `SHA256SUMS` (checked at each load), with each file's answers for a few reference
faces in `selftest.json` (compared at each load). Then re-runs the evaluation so that
`metrics.json` lists each file's size and PrivateTest accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ferlens.config import DEFAULT_MODEL_DIR, IMAGE_SIZE  # noqa: E402
from ferlens.modelfolder.loading import BACKEND_FILES, ModelLoadError, open_model_file  # noqa: E402
from ferlens.modelfolder.manifest import ManifestError, verify_model_file, write_manifest  # noqa: E402
from ferlens.modelfolder.selftest import write_selftest  # noqa: E402
from ferlens.training.data import load_dataset  # noqa: E402
from ferlens.training.evaluate import default_data_for, faces_cropped_for  # noqa: E402

CALIBRATION_IMAGES = 500


def load_checked_model(model_dir: Path):
    """The folder's Keras model, refused (ModelLoadError) when model.keras is missing or fails its manifest."""
    import keras

    import ferlens.training.architectures  # noqa: F401  (registers the custom layers)

    path = model_dir / BACKEND_FILES["keras"]
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        unchecked = verify_model_file(path)  # never export from a damaged or swapped model.keras
    except ManifestError as exc:
        raise ModelLoadError(str(exc)) from exc
    if unchecked:
        print(f"warning: {unchecked}", file=sys.stderr)
    return keras.saving.load_model(path, compile=False)


def _concrete_function(model):
    import tensorflow as tf

    spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32, name="pixels")
    fn = tf.function(lambda pixels: model(pixels, training=False), input_signature=[spec])
    return fn, fn.get_concrete_function()


def export_tflite(model, out: Path, calibration: np.ndarray | None = None) -> Path:
    """Float TFLite, or full-integer INT8 (uint8 input/output) when calibration images are given."""
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        # Our own endpoint with training=False: model.export() traced BatchNorm in training mode here.
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve", lambda pixels: model(pixels, training=False),
            input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32, name="pixels")],
        )
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        return _convert(converter, out, calibration)


def _convert(converter, out: Path, calibration: np.ndarray | None) -> Path:
    import tensorflow as tf

    if calibration is not None:
        def representative():
            for image in calibration:
                yield [image[None, :, :, None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    out.write_bytes(converter.convert())
    return out


def export_onnx(model, out: Path) -> Path:
    """ONNX (opset 17) through tf2onnx, with a dynamic batch dimension."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32, name="pixels"),)
    fn, _concrete = _concrete_function(model)
    with tempfile.TemporaryDirectory():
        tf2onnx.convert.from_function(fn, input_signature=spec, opset=17, output_path=str(out))
    return out


def calibration_sample(train_images: np.ndarray, seed: int = 0, size: int = CALIBRATION_IMAGES) -> np.ndarray:
    """The seeded sample of training images that sets the INT8 model's activation ranges."""
    return train_images[np.random.default_rng(seed).permutation(len(train_images))[:size]]


def export_all(model_dir: Path, train_images: np.ndarray, seed: int = 0) -> dict[str, Path]:
    """Write every format into `model_dir`, record them with model.keras in its manifest and their
    known answers in its self-test (`ferlens.modelfolder.selftest`); calibration uses a seeded sample of training images."""
    model = load_checked_model(model_dir)
    files = {
        "tflite": export_tflite(model, model_dir / BACKEND_FILES["tflite"]),
        "tflite-int8": export_tflite(model, model_dir / BACKEND_FILES["tflite-int8"], calibration_sample(train_images, seed)),
        "onnx": export_onnx(model, model_dir / BACKEND_FILES["onnx"]),
    }
    # Known answers of each file as written, so that a load can tell a damaged copy even without the manifest.
    formats = {"keras": model_dir / BACKEND_FILES["keras"], **files}
    write_selftest(model_dir, {fmt: open_model_file(path, fmt) for fmt, path in formats.items()})
    write_manifest(model_dir, [path.name for path in formats.values()])
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlens.training.export", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, nargs="?", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--data", type=Path, help="images for INT8 calibration and evaluation (default: the folder a "
                        "fine-tuned model was trained on, as its metrics.json records it, else FER2013)")
    parser.add_argument("--no-evaluate", action="store_true", help="skip re-computing metrics.json")
    args = parser.parse_args(argv)
    args.data = args.data or default_data_for(args.model_dir)
    try:
        data = load_dataset(args.data, crop_faces=faces_cropped_for(args.model_dir))
        files = export_all(args.model_dir, data.train.images)
    except (OSError, ValueError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, path in files.items():
        print(f"{name:<12} {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if not args.no_evaluate:
        from ferlens.training.evaluate import main as evaluate_main

        return evaluate_main([str(args.model_dir), "--data", str(args.data)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
