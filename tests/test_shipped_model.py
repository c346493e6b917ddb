"""The shipped models' figures are recomputed from CI's FER2013 copy, never trusted from a file.

Two models are shipped: the real-time default (live camera, video) and the accurate photo model
(upload page, CLI on images); each one's metrics.json is checked against a fresh evaluation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferlens.modelfolder.loading import load_backend
from ferlens.training.evaluate import predict_split
from ferlens.training.metrics import classification_report

pytestmark = pytest.mark.fer2013


@pytest.fixture(scope="module", params=["real-time model", "photo model"])
def model_dir(request, shipped_model_dir, photo_model_dir):
    if request.param == "photo model" and photo_model_dir == shipped_model_dir:
        pytest.skip("no separate photo model is shipped")
    return shipped_model_dir if request.param == "real-time model" else photo_model_dir


@pytest.fixture(scope="module")
def keras_backend(model_dir):
    return load_backend(model_dir, "keras")


@pytest.fixture(scope="module")
def fresh_report(keras_backend, fer2013):
    return classification_report(fer2013.test.labels, predict_split(keras_backend, fer2013.test).argmax(1))


def test_metrics_json_matches_a_fresh_evaluation(model_dir, fresh_report):
    stored = json.loads((model_dir / "metrics.json").read_text())
    assert stored["test"]["images"] == 3589
    assert abs(stored["test"]["accuracy"] - fresh_report["accuracy"]) <= 0.001
    assert abs(stored["test"]["macro_f1"] - fresh_report["macro_f1"]) <= 0.001
    diff = np.abs(np.array(stored["test"]["confusion_matrix"]) - np.array(fresh_report["confusion_matrix"]))
    assert diff.sum() <= 4  # float rounding may flip a handful of near-ties between runtimes


@pytest.mark.parametrize("mode", ["flip", "ten-crop"])
def test_test_time_augmented_figures_match_a_fresh_evaluation(model_dir, keras_backend, fer2013, fresh_report, mode):
    stored = json.loads((model_dir / "metrics.json").read_text())["tta"][mode]
    fresh = classification_report(fer2013.test.labels, predict_split(keras_backend, fer2013.test, tta=mode).argmax(1))
    assert abs(stored["test_accuracy"] - fresh["accuracy"]) <= 0.001
    assert abs(stored["test_macro_f1"] - fresh["macro_f1"]) <= 0.001
    assert fresh["accuracy"] != fresh_report["accuracy"]  # the views really changed the predictions


def test_photo_model_beats_the_fer_package_on_fer2013(model_dir, photo_model_dir, fresh_report):
    """> 65.9 % FER2013 PrivateTest accuracy, single crop: the `fer` package's model scores 65.9 %. The live
    model, chosen on both label sets, gives FER2013 points for FER+ ones (docs/models.md) and is not held to it."""
    if model_dir != photo_model_dir:
        pytest.skip("the photo model's bar")
    assert fresh_report["accuracy"] >= 0.675


def test_both_models_read_ferplus_labels_far_better_than_the_fer2013_only_models(model_dir, fresh_ferplus):
    """Issue 43: the FER2013-only models reached 65.1 % (live) and 66.5 % (photo) FER+ PrivateTest accuracy,
    single crop; the live model's bar is 75 %, and the photo model must read FER+ at least as well."""
    assert fresh_ferplus["accuracy"] >= 0.75


def test_the_new_models_do_not_trade_clear_expressions_for_neutral(fresh_ferplus):
    """On faces where 8 of 10 voters named one emotion other than neutral, the FER2013-only live model was
    right on 89.8 % and called 1.6 % neutral: the FER+ models must stay at least as right, and call few neutral."""
    clear = fresh_ferplus["clear_expressions"]
    assert clear["faces"] == 1269
    assert clear["accuracy"] >= 0.898 and clear["called_neutral"] <= 0.05


def test_two_models_are_shipped_and_the_photo_model_is_the_more_accurate(shipped_model_dir, photo_model_dir):
    """The photo model is the more accurate on FER2013's labels (the live model leans further towards FER+'s;
    both were chosen by the mean of the two label sets' PublicTest accuracy)."""
    realtime = json.loads((shipped_model_dir / "metrics.json").read_text())
    photo = json.loads((photo_model_dir / "metrics.json").read_text())
    assert photo_model_dir != shipped_model_dir and photo["test"]["accuracy"] > realtime["test"]["accuracy"]


# ---------------------------------------------------------------- FER+ labels (ten votes a face)


@pytest.fixture(scope="module")
def fresh_ferplus(keras_backend, fer2013_ferplus):
    """The FER+ figures of a fresh single-crop evaluation on PrivateTest."""
    from ferlens.training.ferplus import figures

    return figures(fer2013_ferplus.test.votes, predict_split(keras_backend, fer2013_ferplus.test))


def test_ferplus_figures_in_metrics_json_match_a_fresh_evaluation(model_dir, fresh_ferplus):
    stored = json.loads((model_dir / "metrics.json").read_text())["ferplus"]["test"]
    assert stored["images"] == fresh_ferplus["images"] == 3517  # the majority protocol's PrivateTest faces
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert abs(stored[key] - fresh_ferplus[key]) <= 0.001, key
    assert stored["cross_entropy"] == pytest.approx(fresh_ferplus["cross_entropy"], rel=0.002)
    assert stored["clear_expressions"]["faces"] == fresh_ferplus["clear_expressions"]["faces"]
    assert abs(stored["clear_expressions"]["called_neutral"] - fresh_ferplus["clear_expressions"]["called_neutral"]) <= 0.003


def test_each_shipped_model_says_which_labels_it_learned_from(model_dir):
    stored = json.loads((model_dir / "metrics.json").read_text())
    assert "FER+" in stored["labels"] and "FER2013" in stored["labels"]
    assert f"Learned from: {stored['labels']}." in (model_dir / "MODEL_CARD.md").read_text()
