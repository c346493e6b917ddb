"""The ONNX Runtime engine: `model.onnx`, the photos' float format."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from ferlens.modelfolder.engines.base import ModelLoadError, check_file

# ONNX Runtime's telemetry would write a device id and an event database under ~/.cache/Microsoft;
# the app promises that nothing is stored. Read once, when ONNX Runtime initialises.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


class OnnxBackend:
    """ONNX Runtime session; per-call overhead is a few microseconds.

    Thread-safe: ONNX Runtime documents `InferenceSession.run` as safe to call from several threads."""

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None):
        check_file(path)
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
