"""Loading a model folder's files: the checked way into an inference engine, and the automatic choices.

Each engine (`ferlens.modelfolder.engines`) takes a float32 batch (N, 48, 48, 1) of raw 0..255 pixels
and returns (N, 7) probabilities, so the recognizer and the evaluation treat them alike.

A model file is used only if it matches the folder's `SHA256SUMS` (`ferlens.modelfolder.manifest`), gives finite
probabilities on a test input and, where the folder records them, the known answers of its
`selftest.json` (`ferlens.modelfolder.selftest`); "auto" falls back to the next format only with a warning.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path

from ferlens.config import MODEL_FILENAME
from ferlens.machine import INT8_DOT_CPU_FLAGS, has_any
from ferlens.modelfolder.engines.base import (
    Backend,
    ModelLoadError,
    ModelLoadWarning,
    check_file,
    check_outputs,
    describe_bad_probabilities,
)
from ferlens.modelfolder.engines.keras_engine import KerasBackend
from ferlens.modelfolder.engines.litert_engine import TFLiteBackend, litert_interpreter
from ferlens.modelfolder.engines.onnx_engine import OnnxBackend
from ferlens.modelfolder.manifest import ManifestError, sha256_file, verify_model_file
from ferlens.modelfolder.selftest import SelfTestError, read_selftest

__all__ = [
    "AUTO_ORDERS", "BACKEND_FILES", "FORMAT_NAMES", "LIVE_BACKEND", "PHOTO_BACKEND", "Backend", "KerasBackend",
    "ModelLoadError", "ModelLoadWarning", "OnnxBackend", "TFLiteBackend", "available_backends", "check_outputs",
    "describe_bad_probabilities", "expected_format", "format_order", "litert_interpreter", "load_backend",
    "open_model_file", "realtime_order",
]

#: File names inside a model folder, per backend; `ferlens.training.export` writes the non-Keras ones.
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
    check_file(path)
    digest = sha256_file(path)  # once, for the manifest and the self-test
    try:
        unchecked = verify_model_file(path, digest)
    except ManifestError as exc:
        raise ModelLoadError(str(exc)) from exc
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
