"""Shared fixtures: synthetic datasets in every supported layout, real FER2013 when present."""

from __future__ import annotations

# The app's pages load streamlit-webrtc, whose SRTP bindings segfault when imported after TensorFlow
# (its BoringSSL clashes with OpenSSL). streamlit_app.py loads them first in a server; in this one
# test process TensorFlow comes first (training tests), so load them before anything else.
try:  # noqa: SIM105
    import pylibsrtp  # noqa: F401
except ImportError:
    pass

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ferlens.config import CLASS_NAMES, CSV_EMOTION_ORDER, DEFAULT_DATA_DIR, DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the decoded-array cache of synthetic datasets out of the user's home."""
    import ferlens.training.data

    real = ferlens.training.data.CACHE_DIR
    ferlens.training.data.CACHE_DIR = tmp_path_factory.mktemp("cache")
    yield
    ferlens.training.data.CACHE_DIR = real


@pytest.fixture(scope="session")
def fer2013_dir() -> Path:
    if not (DEFAULT_DATA_DIR / "train").is_dir():
        pytest.skip(f"FER2013 not found at {DEFAULT_DATA_DIR} (set FER2013_DIR); CI has it")
    return DEFAULT_DATA_DIR


@pytest.fixture(scope="session")
def fer2013(fer2013_dir):
    import ferlens.training.data

    return ferlens.training.data.load_dataset(fer2013_dir)


@pytest.fixture(scope="session")
def fer2013_ferplus(fer2013):
    """FER2013 with the FER+ votes joined (new Split objects: the shared `fer2013` stays as it is)."""
    from dataclasses import replace

    import ferlens.training.ferplus
    from ferlens.config import DEFAULT_FERPLUS_DIR

    if not (DEFAULT_FERPLUS_DIR / "labels.csv").is_file():
        pytest.skip(f"FER+ votes not found at {DEFAULT_FERPLUS_DIR} (set FERPLUS_DIR); CI has them")
    data = replace(fer2013, train=replace(fer2013.train), val=replace(fer2013.val), test=replace(fer2013.test))
    ferlens.training.ferplus.attach_votes(data, DEFAULT_FERPLUS_DIR)
    return data


@pytest.fixture(scope="session")
def shipped_model_dir() -> Path:
    assert (DEFAULT_MODEL_DIR / "model.keras").exists(), f"the shipped model is missing from {DEFAULT_MODEL_DIR}"
    return DEFAULT_MODEL_DIR


@pytest.fixture(scope="session")
def photo_model_dir() -> Path:
    """The model for still photos (upload page, CLI on images): the shipped ensemble, else the default model."""
    assert (PHOTO_MODEL_DIR / "model.keras").exists(), f"the shipped photo model is missing from {PHOTO_MODEL_DIR}"
    return PHOTO_MODEL_DIR


def synthetic_face(label: int, seed: int) -> np.ndarray:
    """A 48x48 image whose brightness pattern depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 20, (48, 48))
    image[:, label * 6:label * 6 + 6] += 80
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def kaggle_layout(tmp_path) -> Path:
    """train/test class folders with official-split prefixes: per class 6 Training, 2 PublicTest, 2 PrivateTest."""
    return write_kaggle_layout(tmp_path / "fer2013")


def write_kaggle_layout(root: Path) -> Path:
    """The `kaggle_layout` fixture's folders under `root` (for fixtures of a wider scope)."""
    seed = 0
    for cls, name in enumerate(CLASS_NAMES):
        for prefix, folder, count in (("Training", "train", 6), ("PublicTest", "test", 2), ("PrivateTest", "test", 2)):
            (root / folder / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                seed += 1
                cv2.imwrite(str(root / folder / name / f"{prefix}_{seed}{i}.jpg"), synthetic_face(cls, seed))
    return root


@pytest.fixture
def fer_csv(tmp_path) -> Path:
    """A miniature fer2013.csv with the original column names and emotion numbering."""
    lines = ["emotion,pixels,Usage"]
    seed = 0
    for csv_index, name in enumerate(CSV_EMOTION_ORDER):
        for usage, count in (("Training", 4), ("PublicTest", 1), ("PrivateTest", 1)):
            for _ in range(count):
                seed += 1
                pixels = " ".join(map(str, synthetic_face(CLASS_NAMES.index(name), seed).ravel()))
                lines.append(f"{csv_index},{pixels},{usage}")
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """A real photo of a face (Eileen Collins), shipped with scikit-image."""
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()
