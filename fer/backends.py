"""Inference runtimes for a trained model folder: Keras, TFLite (LiteRT) float/INT8, ONNX Runtime.

Each backend takes a float32 batch (N, 48, 48, 1) of raw 0..255 pixels and returns (N, 7)
probabilities, so the recognizer and the evaluation treat them alike.

A model file is used only if it matches the folder's `SHA256SUMS` (`fer.manifest`), gives finite
probabilities on a test input and, where the folder records them, the known answers of its
`selftest.json` (`fer.selftest`); "auto" falls back to the next format only with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from fer.config import IMAGE_SIZE, MODEL_FILENAME, NUM_CLASSES
from fer.machine import INT8_DOT_CPU_FLAGS, has_any
from fer.manifest import ManifestError, sha256_file, verify_model_file
from fer.pool import InstancePool

# ONNX Runtime's telemetry would write a device id and an event database under ~/.cache/Microsoft;
# the app promises that nothing is stored. Read once, when ONNX Runtime initialises.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

#: File names inside a model folder, per backend; `fer.export` writes the non-Keras ones.
BACKEND_FILES: dict[str, str] = {
    "keras": MODEL_FILENAME,
    "tflite": "model_float32.tflite",
    "tflite-int8": "model_int8.tflite",
    "onnx": "model.onnx",
}
#: The formats each automatic choice tries in turn, taking the first whose file exists and loads.
#: "auto" (photos, the CLI, evaluation): the float formats, fastest first, as accurate as the Keras model.
#: "realtime" (live camera, video): INT8 TFLite first, much faster a face than ONNX on an
#: AVX-512 VNNI CPU for a little PrivateTest accuracy (speed and live FPS: benchmarks/results-avx512.md;
#: the INT8 accuracy is in each model's metrics.json). On a CPU without 8-bit dot products INT8 is no
#: faster, so there it comes after the float formats (`realtime_order`).
AUTO_ORDERS: dict[str, tuple[str, ...]] = {
    "auto": ("onnx", "tflite", "keras"),
    "realtime": ("tflite-int8", "onnx", "tflite", "keras"),
}
#: "realtime" on a CPU without 8-bit dot products (AVX2-only EPYC): float TFLite and ONNX classify a face
#: about equally fast and INT8 no faster (benchmarks/results.md); the live pipeline ran fewer frames a
#: second in INT8 than in float TFLite when this order was chosen, and float is a little more accurate.
REALTIME_ORDER_WITHOUT_INT8_DOT = ("tflite", "onnx", "tflite-int8", "keras")


@functools.cache
def _this_cpu_has_int8_dot() -> bool | None:
    return has_any(INT8_DOT_CPU_FLAGS)


def realtime_order(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The formats "realtime" tries on this CPU (or on the one `cpuinfo` describes): INT8 first only
    where it is faster, or where the CPU cannot say."""
    has_int8_dot = _this_cpu_has_int8_dot() if cpuinfo is None else has_any(INT8_DOT_CPU_FLAGS, cpuinfo)
    if has_int8_dot is False:
        return REALTIME_ORDER_WITHOUT_INT8_DOT
    return AUTO_ORDERS["realtime"]


def format_order(backend: str) -> tuple[str, ...]:
    """The formats the automatic choice `backend` tries, in turn, on this machine."""
    return realtime_order() if backend == "realtime" else AUTO_ORDERS[backend]


#: What the live camera and video pages load, and the CLI for videos unless `--backend` says otherwise.
LIVE_BACKEND = "realtime"
#: What the upload page and the CLI load for still photos: float, as accurate as the Keras model.
PHOTO_BACKEND = "auto"
#: Formats as the pages name them.
FORMAT_NAMES: dict[str, str] = {"keras": "Keras", "tflite": "float32 TFLite", "tflite-int8": "INT8 TFLite",
                                "onnx": "ONNX"}


class ModelLoadError(RuntimeError):
    """A model file is missing, corrupt, replaced, gives non-finite output, or needs a runtime that is not installed."""


class ModelLoadWarning(UserWarning):
    """The model loaded, but not as asked: another format was used, or its files could not be checked."""


class Backend(Protocol):
    """A loaded model. Every implementation is safe to call from several threads at once."""

    name: str
    path: Path

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file is empty: {path}")


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


class KerasBackend:
    """The `.keras` model behind one traced function: a plain `model(x)` costs ~30 ms of overhead.

    Thread-safe: a traced function may be called from several threads at once."""

    name = "keras"

    def __init__(self, path: Path):
        _check_file(path)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        import fer.models  # noqa: F401  (registers the custom layers the saved model uses)

        try:
            self.model = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # keras raises many types for a bad archive
            raise ModelLoadError(f"cannot load Keras model {path}: {exc}") from exc
        self.path = path
        spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32)
        self._fn = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._fn(batch).numpy()


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
    (`fer.pool`); concurrent calls run side by side instead of queueing behind one lock.
    """

    def __init__(self, path: Path, name: str = "tflite", threads: int | None = None):
        _check_file(path)
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


class OnnxBackend:
    """ONNX Runtime session; per-call overhead is a few microseconds.

    Thread-safe: ONNX Runtime documents `InferenceSession.run` as safe to call from several threads."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        _check_file(path)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelLoadError("onnxruntime is not installed") from exc
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # Without its arena, ONNX Runtime frees each call's buffers instead of keeping the largest
        # burst of concurrent calls for good; no slower here (benchmarks/app_load.md).
        options.enable_cpu_mem_arena = False
        try:
            # On a damaged file ONNX Runtime prints "EP Error ... Falling back" on stdout, where the CLI's
            # results go; the error raised says the same.
            with contextlib.redirect_stdout(io.StringIO()):
                self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"cannot load ONNX model {path}: {exc}") from exc
        self.session.disable_fallback()  # a failing call raises instead of printing and retrying
        self.path = path
        self._input = self.session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: batch})[0]


def load_backend(
    model_dir: Path, backend: str = "auto", threads: int | None = None, *,
    on_warning: Callable[[str], None] | None = None,
) -> Backend:
    """Open the model in `model_dir` with the named runtime, or the first that loads of an `AUTO_ORDERS` list.

    The file must match the folder's manifest, give finite probabilities and match the known answers its
    `selftest.json` records for this format, else `ModelLoadError`. "auto" and "realtime" then try the next
    format of their list, and say so through `on_warning` (default: a `ModelLoadWarning`). It also warns when
    neither the manifest nor the self-test vouches for the file, and when the file answers as recorded but is
    not the file the self-test recorded (damage too small to change the answers, or a replacement).
    """
    warn = on_warning or (lambda message: warnings.warn(message, ModelLoadWarning, stacklevel=3))
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        if model_dir.exists():
            raise ModelLoadError(f"{model_dir} is a file, not a model folder; give the folder that holds the model "
                                 "files")
        raise ModelLoadError(f"model folder not found: {model_dir}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive whole number or None, got {threads!r}")
    if backend in AUTO_ORDERS:
        refused = []
        for name in _present_formats(model_dir, backend):
            try:
                loaded = load_backend(model_dir, name, threads, on_warning=warn)
            except ModelLoadError as exc:
                refused.append(str(exc))
                continue
            for reason in refused:
                warn(f"{reason} - using {loaded.path.name} instead")
            return loaded
        if not refused:
            looked_for = ", ".join(BACKEND_FILES[name] for name in format_order(backend))
            raise ModelLoadError(f"no usable model in {model_dir}: it has no model file (looked for {looked_for})")
        raise ModelLoadError(f"no usable model in {model_dir}: " + "; ".join(dict.fromkeys(refused)))
    if backend not in BACKEND_FILES:
        raise ValueError(f"unknown backend {backend!r}; choose {', '.join([*AUTO_ORDERS, *BACKEND_FILES])}")
    path = model_dir / BACKEND_FILES[backend]
    _check_file(path)
    digest = sha256_file(path)  # once, for the manifest and the self-test
    try:
        unchecked = verify_model_file(path, digest)
    except ManifestError as exc:
        raise ModelLoadError(str(exc)) from exc
    from fer.selftest import SelfTestError, read_selftest  # here: `python -m fer.selftest` imports this module

    try:
        selftest = read_selftest(model_dir)
    except SelfTestError as exc:
        raise ModelLoadError(str(exc)) from exc
    loaded = open_model_file(path, backend, threads)
    check_outputs(loaded)
    if selftest is None or backend not in selftest.answers:
        if unchecked:  # neither a checksum nor known answers vouch for the file
            warn(unchecked)
        return loaded
    try:
        doubt = selftest.check(loaded, backend, digest)
    except SelfTestError as exc:
        raise ModelLoadError(str(exc)) from exc
    except Exception as exc:  # a damaged graph can fail in any runtime call
        raise ModelLoadError(f"{path} fails on its self-test faces ({str(exc).splitlines()[0][:200]}); "
                             "the file is damaged: restore or re-export it") from exc
    if doubt:  # it answers as recorded, but is not the file recorded
        warn(doubt)
    return loaded


def open_model_file(path: Path, backend: str, threads: int | None = None) -> Backend:
    """The model file `path` opened as the format `backend`, unchecked: `load_backend` is the checked way.
    Export uses it to record the known answers of files it has just written."""
    if backend == "keras":
        return KerasBackend(path)
    if backend == "onnx":
        return OnnxBackend(path, threads)
    if backend in ("tflite", "tflite-int8"):
        return TFLiteBackend(path, backend, threads)
    raise ValueError(f"unknown model format {backend!r}; choose {', '.join(BACKEND_FILES)}")


def check_outputs(backend: Backend) -> None:
    """Refuse a model whose probabilities for a plain test face are not finite, in 0..1 and summing to 1.

    Damaged weights that still load show up here (NaN, or nonsense sums) before any visitor sees them.
    """
    probe = np.full((1, IMAGE_SIZE, IMAGE_SIZE, 1), 128.0, np.float32)
    probe[0, 12:36, 12:36, 0] = np.linspace(60.0, 200.0, 24)[None, :]
    try:
        probs = np.asarray(backend.predict(probe), dtype=np.float64)
    except Exception as exc:  # a damaged graph can fail in any runtime call
        raise ModelLoadError(f"{backend.path} fails on a test input ({str(exc).splitlines()[0][:200]}); "
                             "the file is damaged: restore or re-export it") from exc
    problem = describe_bad_probabilities(probs, 1)
    if problem:
        raise ModelLoadError(f"{backend.path} gives {problem} for a test input; the file is damaged: restore or re-export it")


def describe_bad_probabilities(probs: np.ndarray, batch: int) -> str | None:
    """What is wrong with a (batch, NUM_CLASSES) probability array, or None if it is sound."""
    if probs.shape != (batch, NUM_CLASSES):
        return f"output of shape {probs.shape} instead of ({batch}, {NUM_CLASSES})"
    if not np.isfinite(probs).all():
        return "NaN or infinite probabilities"
    # INT8 models quantise each probability to 1/256, so a sum may be off by a few hundredths.
    if probs.min() < -0.01 or probs.max() > 1.01 or np.abs(probs.sum(axis=1) - 1.0).max() > 0.05:
        return "probabilities outside 0..1 or not summing to 1"
    return None


def available_backends(model_dir: Path) -> list[str]:
    """Backends whose model file exists in `model_dir`."""
    return [name for name, filename in BACKEND_FILES.items() if (Path(model_dir) / filename).exists()]


def expected_format(model_dir: Path, backend: str) -> str | None:
    """The format `load_backend(model_dir, backend)` opens when its file loads: the first present file of an
    automatic choice (None when there is none), or the named format itself; pages quote its figures."""
    if backend not in AUTO_ORDERS:
        return backend
    return next(iter(_present_formats(model_dir, backend)), None)


def _present_formats(model_dir: Path, backend: str) -> list[str]:
    """The formats of the automatic choice `backend` whose files exist in `model_dir`, in the order tried."""
    return [name for name in format_order(backend) if (Path(model_dir) / BACKEND_FILES[name]).exists()]
