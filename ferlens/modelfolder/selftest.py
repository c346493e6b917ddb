"""Known answers for a model folder: `selftest.json` holds a few reference faces and, per model file,
the probabilities it gave for them when it was written; every load compares the file's answers with them.

A checksum (`ferlens.modelfolder.manifest`) proves a file is the one exported, but only while `SHA256SUMS` is there
and was not written again over a damaged file. The self-test catches a damaged or swapped file either
way. Each file is held to its own answers (INT8 to INT8), and the file's sha256 is recorded beside them:
a file that is not the one recorded is refused when an answer moves by more than runtimes vary
(`TOLERANCES`, figures beside them), and loads with a warning when none does. The file recorded may
differ by up to `RUNTIME_TOLERANCE` (another runtime's rounding), never more.

Export, the ensemble and `python -m ferlens.modelfolder.known_answers` write the file. Training rewrites model files
without it: `ferlens.modelfolder.manifest.write_manifest`, recording a new version of a file, drops the answers of
the old one, so they cannot refuse the new model.

"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ferlens.config import IMAGE_SIZE, NUM_CLASSES
from ferlens.files import read_text_if_present, write_compact_json
from ferlens.modelfolder.artifacts import SELFTEST_FILENAME
from ferlens.modelfolder.manifest import sha256_file

if TYPE_CHECKING:
    from ferlens.modelfolder.engines.base import Backend

__all__ = ["RUNTIME_TOLERANCE", "SELFTEST_FILENAME", "TOLERANCES", "SelfTest", "SelfTestError", "read_selftest",
           "reference_faces", "write_selftest"]

SELFTEST_VERSION = 1
#: Largest difference allowed between a probability and the recorded one, per format, for a file that is not
#: the one recorded (another sha256). Measured on both shipped models with these faces, each file on the
#: runtime that serves it (docs/robustness.md has the table): under 1 or 2 threads, batches of 1 or 8, ONNX
#: Runtime's graph optimisations off or on, tf.lite instead of LiteRT, TensorFlow with and without oneDNN,
#: and an AVX2-only and an SSE4-only CPU (emulated) beside this AVX-512 VNNI one, a float file's answers vary
#: by at most 1e-6, and an INT8 file on XNNPACK gives the very same 8-bit outputs. 1e-5 is ten times that
#: and above the records' rounding (7 places), and below what one 8-bit step moves an INT8 answer by (1/256,
#: shared out by the normalisation: 1.5e-5 at the least, unless one class takes every step). 64 bytes
#: inverted in the middle of the live model's INT8 file move an answer by 0.016; eight bytes inverted at 19
#: places of each float file of both models moved one by 7.5e-5 at the least.
TOLERANCES: dict[str, float] = {"keras": 1e-5, "onnx": 1e-5, "tflite": 1e-5, "tflite-int8": 1e-5}
#: How far the file recorded (the same sha256) may answer from its record: the runtime alone differs, and one
#: that rounds otherwise must not cost an intact file (LiteRT's built-in kernels answer up to 0.016 from
#: XNNPACK on INT8, and differ between CPUs). Beyond this the runtime is unfit for the file.
RUNTIME_TOLERANCE = 0.05
#: How many reference faces a self-test uses (16 would double its cost at each load for no measured gain).
REFERENCE_COUNT = 8


class SelfTestError(RuntimeError):
    """The self-test file is unreadable or damaged, or a model file's answers differ from it."""


def reference_faces(count: int = REFERENCE_COUNT) -> np.ndarray:
    """`count` (1 to 16) 48x48 uint8 faces drawn from formulas: four schematic faces (a smile lit from the
    left, a frown with lowered brows lit from the right, an open mouth with raised brows at low contrast, a
    plain face under seeded noise), then the same four mirrored and darker, shifted and enlarged, and under
    more noise at lower contrast. No dataset image; the file stores the pixels, so the recorded answers never
    depend on how this drawing comes out under another NumPy."""
    if not 1 <= count <= 16:
        raise ValueError(f"count must be from 1 to 16, got {count}")
    return np.stack([_transformed(_schematic_face(i % 4), i // 4, i) for i in range(count)])


def _schematic_face(variant: int) -> np.ndarray:
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64) + 0.5

    def soft(distance: np.ndarray, edge: float = 0.8) -> np.ndarray:
        """1 inside (distance < 0), 0 outside, with a smooth edge."""
        return 1.0 / (1.0 + np.exp(np.clip(distance / edge, -50, 50)))

    def ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return soft((np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1.0) * min(rx, ry))

    # mouth curvature (+ smiles, - frowns), open mouth, brow slant, light from -1 (left) to +1, contrast, noise
    curve, open_mouth, slant, light, contrast, noise = [
        (0.09, False, 0.0, -1.0, 1.0, 0.0), (-0.08, False, 0.35, 1.0, 0.9, 0.0),
        (0.0, True, -0.25, 0.0, 0.6, 0.0), (0.01, False, 0.0, 0.3, 1.0, 14.0)][variant]
    image = 70.0 + 25.0 * (y / IMAGE_SIZE)  # background
    head = ellipse(24.0, 25.0, 15.5, 20.0)
    skin = 150.0 + 30.0 * light * (x - 24.0) / 16.0 - 20.0 * ((y - 22.0) / 22.0) ** 2
    image = image * (1 - head) + skin * head
    for side in (-1, 1):
        eye_x = 24.0 + 7.0 * side
        image -= 95.0 * ellipse(eye_x, 20.0, 3.2, 1.9 + (0.8 if open_mouth else 0.0))
        # brows: a slant lowers their inner ends (angry) or raises them (surprise)
        brow_y = 15.0 - (2.0 if open_mouth else 0.0) + slant * (7.0 - np.abs(x - 24.0)) * 0.8
        image -= 60.0 * soft(np.abs(x - eye_x) - 4.5) * soft(np.abs(y - brow_y) - 0.9)
    image -= 25.0 * soft(np.abs(x - 24.0) - 1.2) * soft(np.abs(y - 27.0) - 4.0)  # nose shadow
    if open_mouth:
        image -= 90.0 * ellipse(24.0, 36.0, 4.0, 4.5)
    else:
        mouth_y = 36.0 - curve * (x - 24.0) ** 2 + curve * 20.0
        image -= 80.0 * soft(np.abs(x - 24.0) - 7.5) * soft(np.abs(y - mouth_y) - 1.0)
    image = 128.0 + contrast * (image - 128.0)
    if noise:
        image += np.random.default_rng(variant).normal(0.0, noise, image.shape)
    return image


def _transformed(image: np.ndarray, transform: int, seed: int) -> np.ndarray:
    """One of four fixed transforms of a float face: none, mirrored and darker, shifted and enlarged,
    noisier at lower contrast; rounded to uint8."""
    if transform == 1:
        image = image[:, ::-1] * 0.8
    elif transform == 2:
        rows = np.clip(np.round((np.arange(IMAGE_SIZE) - 24.0) / 1.12 + 22.0).astype(int), 0, IMAGE_SIZE - 1)
        columns = np.clip(np.round((np.arange(IMAGE_SIZE) - 24.0) / 1.12 + 26.0).astype(int), 0, IMAGE_SIZE - 1)
        image = image[np.ix_(rows, columns)]
    elif transform == 3:
        image = 128.0 + 0.7 * (image - 128.0) + np.random.default_rng(100 + seed).normal(0.0, 10.0, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def as_batch(faces: np.ndarray) -> np.ndarray:
    """uint8 faces (N, 48, 48) as the float32 batch (N, 48, 48, 1) every backend takes."""
    return faces.astype(np.float32)[..., None]


@dataclass(frozen=True)
class Answers:
    """What one model file (`file`, whose sha256 was `sha256`) answered for the reference faces."""

    file: str
    sha256: str
    probabilities: np.ndarray


@dataclass(frozen=True)
class SelfTest:
    """A folder's reference faces and each format's recorded answers for them."""

    path: Path
    faces: np.ndarray
    answers: dict[str, Answers]

    def difference(self, backend: Backend, fmt: str) -> float | None:
        """The largest difference between `backend`'s probabilities and those recorded for `fmt`
        (None when the file records none for it; inf for unusable ones). Raises whatever the backend raises."""
        recorded = self.answers.get(fmt)
        if recorded is None:
            return None
        got = np.asarray(backend.predict(as_batch(self.faces)), dtype=np.float64)
        if got.shape != recorded.probabilities.shape or not np.isfinite(got).all():
            return float("inf")
        return float(np.abs(got - recorded.probabilities).max())

    def check(self, backend: Backend, fmt: str, digest: str | None = None) -> str | None:
        """Compare `backend` (whose file's sha256 is `digest`, if the caller has it) with the answers recorded
        for `fmt`, which must exist. None when it is the file recorded and answers as recorded: the self-test
        vouches for it. A warning when it answers as recorded but is another file: damage too small to move an
        answer, or a replacement. SelfTestError when it differs by more than `TOLERANCES` (another file) or
        `RUNTIME_TOLERANCE` (the file recorded)."""
        recorded = self.answers[fmt]
        same_file = (digest or sha256_file(backend.path)) == recorded.sha256
        difference = self.difference(backend, fmt)
        allowed = RUNTIME_TOLERANCE if same_file else TOLERANCES[fmt]
        if difference > allowed:
            off = f"a probability off by {difference:.4f} where {allowed} is allowed"
            if same_file:
                raise SelfTestError(f"{backend.path} is the file its self-test was recorded with, but gives other "
                                    f"answers here ({off}): this runtime computes it differently; use another format "
                                    "or update the runtime")
            raise SelfTestError(f"{backend.path} fails its self-test ({off}): the file is damaged or was replaced; "
                                "restore it from the original model folder or re-export the model (a model replaced "
                                "on purpose: record its answers with "
                                f"python -m ferlens.modelfolder.known_answers {backend.path.parent})")
        if same_file:
            return None
        return (f"{backend.path} is not the file its self-test recorded (another sha256), though it gives the same "
                f"answers (to within {allowed}): slightly damaged or replaced; restore it from the original model "
                "folder, or if it was replaced on purpose record it with "
                f"python -m ferlens.modelfolder.known_answers {backend.path.parent}")


def _encode(faces: np.ndarray) -> dict:
    return {"shape": list(faces.shape), "dtype": "uint8", "base64": base64.b64encode(faces.tobytes()).decode("ascii")}


def _decode(record: Mapping) -> np.ndarray:
    shape = tuple(int(n) for n in record["shape"])
    if record.get("dtype") != "uint8" or len(shape) != 3 or shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or shape[0] < 1:
        raise ValueError(f"reference faces of shape {shape} and type {record.get('dtype')}")
    return np.frombuffer(base64.b64decode(record["base64"], validate=True), np.uint8).reshape(shape).copy()


def write_selftest(model_dir: Path, backends: Mapping[str, Backend], faces: np.ndarray | None = None) -> Path:
    """Record in `model_dir/selftest.json` what each of `backends` (format name -> its model file, loaded)
    answers for the reference faces, with the file's sha256; answers recorded before are replaced."""
    faces = reference_faces() if faces is None else faces
    formats = {}
    for fmt, backend in backends.items():
        if fmt not in TOLERANCES:
            raise ValueError(f"unknown model format {fmt!r}")
        probs = np.asarray(backend.predict(as_batch(faces)), dtype=np.float64)
        if probs.shape != (len(faces), NUM_CLASSES) or not np.isfinite(probs).all():
            raise SelfTestError(f"{backend.path} gives unusable probabilities for the reference faces")
        formats[fmt] = {"file": Path(backend.path).name, "sha256": sha256_file(backend.path),
                        "probabilities": [[round(float(p), 7) for p in row] for row in probs]}
    document = {
        "about": "Known answers: what each model file of this folder gave for these reference faces when it was "
                 "written; every load compares (ferlens.modelfolder.selftest). Record them again with "
                 "python -m ferlens.modelfolder.known_answers "
                 "MODEL_DIR.",
        "version": SELFTEST_VERSION,
        "faces": _encode(faces),
        "formats": formats,
    }
    return write_compact_json(Path(model_dir) / SELFTEST_FILENAME, document)


def read_selftest(model_dir: Path) -> SelfTest | None:
    """The folder's self-test, None when it has none; SelfTestError when the file is damaged."""
    path = Path(model_dir) / SELFTEST_FILENAME
    try:
        text = read_text_if_present(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, exc) from exc
    if text is None:
        return None
    try:
        document = json.loads(text)
        if document.get("version") != SELFTEST_VERSION:
            raise ValueError(f"version {document.get('version')!r}, not {SELFTEST_VERSION}")
        faces = _decode(document["faces"])
        answers = {}
        for fmt, record in document["formats"].items():
            probabilities = np.asarray(record["probabilities"], dtype=np.float64)
            if probabilities.shape != (len(faces), NUM_CLASSES) or not np.isfinite(probabilities).all():
                raise ValueError(f"{fmt}: probabilities of shape {probabilities.shape}")
            if fmt in TOLERANCES:  # formats of a later version are left to it
                answers[fmt] = Answers(str(record["file"]), str(record["sha256"]), probabilities)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _damaged(path, exc) from exc
    return SelfTest(path, faces, answers)


def _damaged(path: Path, exc: Exception) -> SelfTestError:
    return SelfTestError(f"{path} is damaged ({exc}); restore it from the original model folder, record it again "
                         f"with python -m ferlens.modelfolder.known_answers {path.parent}, or delete it to load the model "
                         "unchecked")
