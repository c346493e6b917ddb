"""ferlens.training.prior: a post-hoc shift of the class prior, exact in the saved model and chosen on PublicTest only."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ferlens.training.architectures import build_model
from ferlens.training.data import Dataset, Split
from ferlens.training.ensemble import build_ensemble
from ferlens.training.prior import (
    apply_shift,
    choose_shift,
    class_priors,
    members_of,
    prior_shift,
    selection_scores,
    shifted_probabilities,
    write_shifted,
)

NEUTRAL, FEAR = 4, 2


def random_faces(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48)).astype(np.uint8)


def votes_for(majority: np.ndarray) -> np.ndarray:
    """Ten votes a face, eight of them for `majority` (our class index), in FER+ column order."""
    from ferlens.training.ferplus import EMOTION_COLUMNS

    votes = np.zeros((len(majority), 10), np.float32)
    votes[np.arange(len(majority)), EMOTION_COLUMNS[majority]] = 8
    votes[:, 8] = 2  # "unknown"
    return votes


@pytest.fixture(scope="module")
def data() -> Dataset:
    """FER2013 labels spread over the classes; FER+ majority mostly neutral, as in the real data."""
    rng = np.random.default_rng(0)

    def split(n: int, seed: int) -> Split:
        labels = rng.integers(0, 7, n)
        majority = np.where(rng.random(n) < 0.6, NEUTRAL, labels)
        return Split(random_faces(n, seed), labels, votes=votes_for(majority))

    return Dataset(split(400, 1), split(120, 2), split(120, 3), source="synthetic", layout="fer2013-folders")


def test_priors_and_the_shift_point_the_right_way(data):
    fer2013, ferplus = class_priors(data)
    assert fer2013.sum() == pytest.approx(1) and ferplus.sum() == pytest.approx(1)
    assert ferplus[NEUTRAL] > fer2013[NEUTRAL]
    towards_ferplus = prior_shift(data, 1.0, 0.0)
    assert towards_ferplus.argmax() == NEUTRAL  # FER+ calls more faces neutral than FER2013 does
    assert np.allclose(prior_shift(data, 0.0, 0.0), 0)
    balancing = prior_shift(data, 0.0, 1.0)
    assert balancing[NEUTRAL] == balancing.min()  # the most frequent class is lowered most


@pytest.mark.parametrize("kind", ["single net", "ensemble"])
def test_shifting_the_saved_model_equals_the_shift_computed_from_its_probabilities(kind):
    keras.utils.set_random_seed(3)
    nets = [build_model("vgg") for _ in range(2)]
    model = nets[0] if kind == "single net" else build_ensemble(nets)
    faces = random_faces(16, 5)[..., None].astype(np.float32)
    member_probs = [np.asarray(m.predict(faces, verbose=0)) for m in members_of(model)]
    assert len(member_probs) == (1 if kind == "single net" else 2)
    shift = np.array([0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 0.25], np.float32)
    expected = shifted_probabilities(member_probs, shift)
    assert apply_shift(model, shift) == len(member_probs)
    np.testing.assert_allclose(model.predict(faces, verbose=0), expected, atol=1e-5)
    assert not np.allclose(expected, np.mean(member_probs, axis=0), atol=1e-3)  # the shift really changed them


def test_the_choice_maximises_the_mean_of_both_accuracies_on_publictest(data):
    rng = np.random.default_rng(9)
    probs = rng.dirichlet(np.ones(7), len(data.val)).astype(np.float32)
    (tau_ferplus, tau_balance), rows = choose_shift([probs], data)
    best = max(r["selection"] for r in rows)
    assert rows[0]["selection"] == best and (rows[0]["tau_ferplus"], rows[0]["tau_balance"]) == (tau_ferplus, tau_balance)
    recomputed = selection_scores(shifted_probabilities([probs], prior_shift(data, tau_ferplus, tau_balance)),
                                  data.val.labels, data.val.votes)
    assert recomputed["selection"] == pytest.approx(best)
    # With no information in the probabilities, leaning towards FER+'s neutral majority pays.
    assert tau_ferplus > 0 and recomputed["ferplus"] > selection_scores(probs, data.val.labels, data.val.votes)["ferplus"]


def test_a_fer2013_floor_keeps_the_choice_above_it(data):
    rng = np.random.default_rng(9)
    probs = rng.dirichlet(np.ones(7), len(data.val)).astype(np.float32)
    unshifted = selection_scores(probs, data.val.labels, data.val.votes)["fer2013"]
    (free, _), rows = choose_shift([probs], data)
    floor = unshifted  # no shift meets it by construction
    (tau_ferplus, tau_balance), floored = choose_shift([probs], data, min_fer2013=floor)
    assert floored[0]["fer2013"] >= floor
    assert max(r["selection"] for r in floored if r["fer2013"] >= floor) == floored[0]["selection"]
    assert floored[0]["selection"] <= rows[0]["selection"]
    if rows[0]["fer2013"] < floor:  # the free choice broke the floor, so the floored one differs
        assert (tau_ferplus, tau_balance) != (rows[0]["tau_ferplus"], rows[0]["tau_balance"])


def test_write_shifted_records_the_choice_and_refuses_its_own_folder(data, tmp_path):
    from ferlens.modelfolder.artifacts import MODEL_FILE
    from ferlens.modelfolder.manifest import write_manifest

    source = tmp_path / "source"
    source.mkdir()
    keras.utils.set_random_seed(4)
    build_model("vgg").save(source / MODEL_FILE)
    write_manifest(source, [MODEL_FILE])
    (source / "train_config.json").write_text(json.dumps({"architecture": "vgg", "labels": "blend"}))
    with pytest.raises(ValueError, match="new folder"):
        write_shifted(source, source, data)
    chosen = write_shifted(source, tmp_path / "shifted", data, taus=(0.5, 0.25))
    config = json.loads((tmp_path / "shifted" / "train_config.json").read_text())
    assert config["labels"] == "blend" and config["prior_shift"]["tau_ferplus"] == 0.5
    assert config["prior_shift"]["logit_shift"] == pytest.approx(prior_shift(data, 0.5, 0.25).tolist(), abs=1e-4)
    assert chosen["grid"] == []  # given taus: nothing chosen
    shifted = keras.saving.load_model(tmp_path / "shifted" / MODEL_FILE, compile=False)
    original = keras.saving.load_model(source / MODEL_FILE, compile=False)
    faces = data.val.images[:8, ..., None].astype(np.float32)
    np.testing.assert_allclose(shifted.predict(faces, verbose=0),
                               shifted_probabilities([original.predict(faces, verbose=0)], prior_shift(data, 0.5, 0.25)),
                               atol=1e-5)
