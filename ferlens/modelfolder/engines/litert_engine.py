"""The LiteRT engine: float32 and full-integer INT8 `.tflite` files (tf.lite where LiteRT is missing)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ferlens.config import IMAGE_SIZE
from ferlens.modelfolder.engines.base import ModelLoadError, check_file
from ferlens.pool import InstancePool

#: What LiteRT's C++ side prints to stderr when it loads a model: noise in the CLI's one-line-per-error output.
XNNPACK_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextlib.contextmanager
def _native_stderr_without(notice: str) -> Iterator[None]:
    """Hold back one known notice that native code writes to file descriptor 2; pass everything else on."""
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if line.strip() != notice]
            if kept:
                os.write(2, "".join(kept).encode())


def litert_interpreter(path: Path, threads: int | None = None):
    """A LiteRT interpreter for a `.tflite` file, its tensors allocated (XNNPACK's load notice held
    back); tf.lite's where LiteRT is not installed. Not thread-safe: one caller at a time."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the platform's wheels
        try:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        except ImportError as exc:
            raise ModelLoadError("neither ai-edge-litert nor tensorflow is installed") from exc
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    with _native_stderr_without(XNNPACK_NOTICE):
        interpreter.allocate_tensors()
    return interpreter


class _Interpreter:
    """One LiteRT interpreter sized for its last batch (resizing costs a re-allocation)."""

    def __init__(self, path: Path, threads: int | None):
        self.interpreter = litert_interpreter(path, threads)
        self.batch = 1
        self._details()

    def _details(self) -> None:
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self.batch:
            self.interpreter.resize_tensor_input(self.input["index"], [len(batch), IMAGE_SIZE, IMAGE_SIZE, 1])
            self.interpreter.allocate_tensors()
            self._details()
            self.batch = len(batch)
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])


class TFLiteBackend:
    """LiteRT interpreter (float or full-integer INT8); falls back to tf.lite if LiteRT is missing.

    Thread-safe: an interpreter must not run twice at once, so each call borrows one from a pool
    (`ferlens.pool`); concurrent calls run side by side instead of queueing behind one lock.
    """

    def __init__(self, path: Path, name: str = "tflite", threads: int | None = None):
        check_file(path)
        self._interpreters = InstancePool(lambda: _Interpreter(path, threads))
        try:
            with self._interpreters.borrow() as first:
                self._input, self._output = first.input, first.output
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot load TFLite model {path}: {exc}") from exc
        self.name, self.path = name, path

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return batch
        scale, zero = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(batch / scale + zero), info.min, info.max).astype(dtype)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        quantized = self._quantize(batch)
        with self._interpreters.borrow() as interpreter:
            out = interpreter.run(quantized)
        if out.dtype != np.float32:
            scale, zero = self._output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
            # 8-bit probabilities come in steps of 1/256 and need not add up to 1 (1.002 seen)
            out = np.maximum(out, 0.0)
            out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-6)
        return out
