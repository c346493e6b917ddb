"""Fine-tuning on a user's own labelled folder: `python -m ferlens.training.train --data MY_FOLDER --init-from .../model.keras`.

A small synthetic folder with two of the seven classes, some ordinary photos among the face crops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ferlens.config import CLASS_NAMES, FACE_MARGIN, PROJECT_ROOT
from ferlens.core.detectors import PHOTO_DETECTOR, make_detector_or_fallback
from ferlens.core.framing import crop_face
from ferlens.modelfolder.artifacts import list_model_dirs
from ferlens.training import evaluate as evaluate_cli
from ferlens.training import train as train_cli
from ferlens.training.data import load_dataset
from tests.conftest import synthetic_face


@pytest.fixture
def user_folder(tmp_path, astronaut_rgb):
    """happy/ and sad/ only: 48x48 crops, two 512x512 photos of a face and one photo without any."""
    root = tmp_path / "my_faces"
    for name in ("happy", "sad"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(root / name / f"{i}.png"), synthetic_face(CLASS_NAMES.index(name), 1000 + i))
    photo = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(root / "happy" / "photo_a.jpg"), photo)
    cv2.imwrite(str(root / "happy" / "photo_b.jpg"), cv2.flip(photo, 1))
    cv2.imwrite(str(root / "sad" / "wall.jpg"), np.random.default_rng(0).integers(0, 255, (200, 300), np.uint8))
    return root


def test_photos_in_class_folders_are_cropped_to_their_face(user_folder):
    data = load_dataset(user_folder, use_cache=False)
    assert data.layout == "class-folders"
    assert len(data.train) + len(data.val) + len(data.test) == 27 and not data.skipped
    assert data.uncropped == [str(user_folder / "sad" / "wall.jpg")]  # no face: used whole, and said so
    assert "no face found in 1 image(s)" in data.describe()
    bgr = cv2.imread(str(user_folder / "happy" / "photo_a.jpg"))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    detector = make_detector_or_fallback(PHOTO_DETECTOR)[0]  # the photo pipeline's own detector
    view = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if detector.uses_color else gray
    expected = crop_face(gray, detector.detect(view)[0].box, 48, FACE_MARGIN)
    everything = np.concatenate([data.train.images, data.val.images, data.test.images])
    assert any(np.array_equal(image, expected) for image in everything)  # framed as the app frames faces
    whole = load_dataset(user_folder, use_cache=False, crop_faces=False)
    assert not any(np.array_equal(image, expected) for image in np.concatenate(
        [whole.train.images, whole.val.images, whole.test.images]))


def test_a_folder_of_fer2013_training_files_is_split_like_any_other(tmp_path):
    """Faces picked from FER2013's Training images keep its file names but not its test splits."""
    for cls, name in enumerate(("happy", "sad")):
        (tmp_path / "picks" / name).mkdir(parents=True)
        for i in range(10):
            cv2.imwrite(str(tmp_path / "picks" / name / f"Training_{cls}{i}.jpg"), synthetic_face(cls, i))
    data = load_dataset(tmp_path / "picks", use_cache=False, crop_faces=False)
    assert data.layout == "class-folders"
    assert (len(data.train), len(data.val), len(data.test)) == (16, 2, 2)


def test_a_folder_too_small_to_hold_out_images_is_refused(tmp_path, capsys):
    for cls, name in enumerate(("happy", "sad")):
        (tmp_path / "tiny" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "tiny" / name / "only.jpg"), synthetic_face(cls, 0))
    assert train_cli.main(["--data", str(tmp_path / "tiny"), "--out", str(tmp_path / "m"), "--whole-images"]) == 2
    assert "gives no validation and no test images" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_defaults_suit_fine_tuning(tmp_path):
    model_dir = tmp_path / "base"
    model_dir.mkdir()
    (model_dir / "model.keras").write_bytes(b"placeholder")
    (model_dir / "train_config.json").write_text(json.dumps({"architecture": "vgg-fast"}))
    tuned = train_cli.parse_args(["--data", "x", "--out", "y", "--init-from", str(model_dir / "model.keras")])
    scratch = train_cli.parse_args(["--data", "x", "--out", "y"])
    assert tuned.learning_rate < scratch.learning_rate and tuned.epochs < scratch.epochs
    assert (tuned.architecture, scratch.architecture) == ("vgg-fast", train_cli.DEFAULT_ARCHITECTURE)
    explicit = train_cli.parse_args(["--data", "x", "--out", "y", "--init-from", str(model_dir / "model.keras"),
                                     "--epochs", "40", "--learning-rate", "5e-4", "--architecture", "vgg"])
    assert (explicit.epochs, explicit.learning_rate, explicit.architecture) == (40, 5e-4, "vgg")
    assert train_cli.fit_batch_size(128, 28_000) == 128  # FER2013 keeps its batch size
    assert train_cli.fit_batch_size(128, 400) == 50 and train_cli.fit_batch_size(128, 20) == 16
    assert train_cli.fit_batch_size(128, 10) == 10


def test_fine_tuning_a_model_on_a_small_folder(kaggle_layout, user_folder, tmp_path):
    base = tmp_path / "base"
    assert train_cli.main(["--data", str(kaggle_layout), "--out", str(base), "--epochs", "1", "--batch-size", "16",
                           "--architecture", "vgg-fast", "--no-evaluate"]) == 0
    models = tmp_path / "models"
    mine = models / "mine"
    # Two epochs keep the test short; the default epochs are checked in test_defaults_suit_fine_tuning.
    assert train_cli.main(["--data", str(user_folder), "--init-from", str(base / "model.keras"), "--out", str(mine),
                           "--epochs", "2"]) == 0

    config = json.loads((mine / "train_config.json").read_text())
    assert config["init_from"] == str(base / "model.keras")
    assert (config["architecture"], config["learning_rate"]) == ("vgg-fast", train_cli.FINE_TUNE_LEARNING_RATE)
    assert len(json.loads((mine / "history.json").read_text())["epochs"]["epoch"]) == 2
    metrics = json.loads((mine / "metrics.json").read_text())
    counts = metrics["dataset"]["splits"]["train"]["per_class"]
    assert {name for name, n in counts.items() if n} == {"happy", "sad"}
    # Re-evaluating (as ferlens.training.export does) uses the folder it was tested on, not FER2013.
    assert evaluate_cli.default_data_for(mine) == user_folder and evaluate_cli.faces_cropped_for(mine)
    (mine / "metrics.json").unlink()
    assert evaluate_cli.main([str(mine), "--expw", str(tmp_path / "no-expw")]) == 0
    again = json.loads((mine / "metrics.json").read_text())
    assert again["test"]["confusion_matrix"] == metrics["test"]["confusion_matrix"]
    assert again["dataset"]["source"] == str(user_folder)

    import keras

    base_weights = keras.saving.load_model(base / "model.keras", compile=False).get_weights()
    tuned_weights = keras.saving.load_model(mine / "model.keras", compile=False).get_weights()
    fresh_weights = train_cli.build_model("vgg-fast").get_weights()
    moved = sum(float(np.abs(t - b).sum()) for t, b in zip(tuned_weights, base_weights))
    apart = sum(float(np.abs(f - b).sum()) for f, b in zip(fresh_weights, base_weights))
    assert 0 < moved < apart / 5, "fine-tuning starts from the given weights and adjusts them"

    assert mine in list_model_dirs(models)
    # Chosen with FER_MODEL_DIR, the app loads it and the report page offers and shows it.
    script = (
        "from streamlit.testing.v1 import AppTest\n"
        "from ferlens.config import DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR\n"
        "from ferlens.core.recognition import EmotionRecognizer\n"
        "import numpy as np\n"
        "recognizer = EmotionRecognizer()\n"
        "face = recognizer.predict(np.full((48, 48), 120, np.uint8), whole_image=True)[0]\n"
        "app = AppTest.from_file('app_pages/3_Model_report.py', default_timeout=120).run()\n"
        "assert not app.exception, [e.value for e in app.exception]\n"
        "options = app.selectbox[0].options if app.selectbox else []\n"
        f"print(DEFAULT_MODEL_DIR.name, PHOTO_MODEL_DIR.name, recognizer.backend_name, face.label in {CLASS_NAMES!r}, "
        "options)\n"
    )
    env = {**os.environ, "FER_MODEL_DIR": str(mine)}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    name, photo_name, backend, labelled, options = done.stdout.strip().splitlines()[-1].split(" ", 4)
    assert (name, photo_name, backend, labelled) == ("mine", "mine", "keras", "True")  # photos use the user's model too
    assert "'mine: the model of every page'" in options


def test_re_evaluation_reads_the_folder_as_training_did(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    model_dir = tmp_path / "mine"
    model_dir.mkdir()
    record = {"data": {"source": str(folder), "layout": "class-folders", "faces_cropped": False}}
    (model_dir / "training.json").write_text(json.dumps(record))
    assert evaluate_cli.default_data_for(model_dir) == folder
    assert evaluate_cli.faces_cropped_for(model_dir) is False  # trained with --whole-images
    folder.rmdir()  # the folder is gone: FER2013, read as always
    assert evaluate_cli.default_data_for(model_dir) != folder and evaluate_cli.faces_cropped_for(model_dir) is True
