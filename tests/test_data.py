"""Loaders: Kaggle folder layout, the original csv, generic class folders, and bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferlens.config import CLASS_NAMES
from ferlens.training.data import DatasetError, class_weights, load_dataset
from tests.conftest import synthetic_face


def test_kaggle_layout_recovers_the_official_split(kaggle_layout):
    data = load_dataset(kaggle_layout, use_cache=False)
    assert data.layout == "fer2013-folders"
    assert (len(data.train), len(data.val), len(data.test)) == (42, 14, 14)
    assert data.train.images.shape == (42, 48, 48) and data.train.images.dtype == np.uint8
    assert data.train.class_counts() == {name: 6 for name in CLASS_NAMES}
    assert data.test.class_counts() == {name: 2 for name in CLASS_NAMES}
    # Labels follow the folder names: the disgust image has its bright band in columns 6..11.
    disgust = data.train.images[data.train.labels == CLASS_NAMES.index("disgust")][0]
    assert disgust[:, 6:12].mean() > disgust[:, 30:].mean() + 40


def test_csv_maps_the_original_emotion_numbering(fer_csv):
    data = load_dataset(fer_csv)
    assert data.layout == "fer2013-csv"
    assert (len(data.train), len(data.val), len(data.test)) == (28, 7, 7)
    # csv index 4 is "sad" and 6 is "neutral"; our order is alphabetical.
    for split in (data.train, data.val, data.test):
        for image, label in zip(split.images, split.labels):
            band = int(np.argmax([image[:, c * 6:c * 6 + 6].mean() for c in range(7)]))
            assert band == label


def test_csv_bad_rows_are_skipped_and_reported(fer_csv):
    good = fer_csv.read_text()
    fer_csv.write_text(good + "3,1 2 3,Training\n9," + " ".join(["0"] * 2304) + ",Training\nx,y,z\n")
    data = load_dataset(fer_csv)
    assert len(data.train) == 28
    assert len(data.skipped) == 3
    reasons = " ".join(why for _, why in data.skipped)
    assert "pixels" in reasons and "out of range" in reasons


def test_csv_without_required_columns_is_a_clear_error(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="lacks the column"):
        load_dataset(path)


def test_corrupt_and_wrongly_sized_images_are_skipped_and_counted(kaggle_layout):
    angry = kaggle_layout / "train" / "angry"
    (angry / "Training_900.jpg").write_bytes(b"this is not a jpeg")
    good = (angry / next(p.name for p in angry.iterdir() if p.name.startswith("Training_1"))).read_bytes()
    (angry / "Training_901.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (angry / "Training_902.jpg").write_bytes(b"")
    cv2.imwrite(str(angry / "Training_903.png"), np.zeros((64, 64), np.uint8))
    data = load_dataset(kaggle_layout, use_cache=False)
    skipped = {name.rsplit("/", 1)[-1]: why for name, why in data.skipped}
    assert set(skipped) == {"Training_900.jpg", "Training_901.jpg", "Training_902.jpg", "Training_903.png"}
    assert "wrong size 64x64" in skipped["Training_903.png"]
    assert "truncated" in skipped["Training_901.jpg"]
    assert len(data.train) == 42
    assert "skipped" in data.describe()


def test_generic_class_folders_get_a_seeded_stratified_split(tmp_path):
    for cls, name in enumerate(CLASS_NAMES):
        (tmp_path / name).mkdir()
        for i in range(20):
            # any size is accepted for generic datasets and resized to 48x48
            cv2.imwrite(str(tmp_path / name / f"img{i}.png"), cv2.resize(synthetic_face(cls, i), (64, 64)))
    a = load_dataset(tmp_path, val_fraction=0.1, seed=3, use_cache=False)
    b = load_dataset(tmp_path, val_fraction=0.1, seed=3, use_cache=False)
    assert a.layout == "class-folders"
    assert (len(a.train), len(a.val), len(a.test)) == (7 * 16, 7 * 2, 7 * 2)
    assert a.val.class_counts() == {name: 2 for name in CLASS_NAMES}
    np.testing.assert_array_equal(a.val.images, b.val.images)
    assert a.train.images.shape[1:] == (48, 48)


def test_cache_returns_the_same_arrays(kaggle_layout):
    first = load_dataset(kaggle_layout)
    second = load_dataset(kaggle_layout)
    np.testing.assert_array_equal(first.train.images, second.train.images)
    np.testing.assert_array_equal(first.test.labels, second.test.labels)


@pytest.mark.parametrize("bad", ["missing", "file"])
def test_unusable_paths_raise_dataset_error(tmp_path, bad):
    path = tmp_path / "nothing"
    if bad == "file":
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    with pytest.raises(DatasetError):
        load_dataset(path)


def test_class_weights_favour_rare_classes():
    labels = np.array([0] * 100 + [1] * 10 + [2] * 50 + [3] * 100 + [4] * 100 + [5] * 100 + [6] * 100)
    weights = class_weights(labels, power=0.5)
    assert weights[1] > weights[2] > weights[0]
    assert np.isclose((weights[labels]).mean(), 1.0)


@pytest.mark.fer2013
def test_real_fer2013_split_and_class_counts(fer2013):
    """Counts from the dataset README: the loader must recover the official split exactly."""
    assert (len(fer2013.train), len(fer2013.val), len(fer2013.test)) == (28709, 3589, 3589)
    assert fer2013.test.class_counts() == {
        "angry": 491, "disgust": 55, "fear": 528, "happy": 879, "neutral": 626, "sad": 594, "surprise": 416,
    }
    assert fer2013.train.class_counts()["disgust"] == 436
    assert fer2013.skipped == []
