"""What every inference engine is: a loaded model file that turns face batches into probabilities,
the errors loading one can raise, and the checks every loaded file must pass."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ferlens.config import IMAGE_SIZE, NUM_CLASSES


class ModelLoadError(RuntimeError):
    """A model file is missing, corrupt, replaced, gives non-finite output, or needs a runtime that is not installed."""


class ModelLoadWarning(UserWarning):
    """The model loaded, but not as asked: another format was used, or its files could not be checked."""


class Backend(Protocol):
    """A loaded model. Every implementation is safe to call from several threads at once."""

    name: str
    path: Path

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def check_file(path: Path) -> None:
    """A clear `ModelLoadError` for a model file that is missing or empty."""
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file is empty: {path}")


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
