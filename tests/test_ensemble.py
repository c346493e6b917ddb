"""Ensembles (ferlens.training.ensemble): one model folder whose output is the mean of its members', on synthetic data."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from ferlens.core.recognition import EmotionRecognizer
from ferlens.modelfolder.loading import load_backend
from ferlens.training import ensemble as ensemble_cli
from ferlens.training import train as train_cli
from tests.conftest import write_kaggle_layout

FAST = ["--batch-size", "16", "--architecture", "vgg-fast"]


@pytest.fixture(scope="module")
def kaggle_layout(tmp_path_factory):
    return write_kaggle_layout(tmp_path_factory.mktemp("data") / "fer2013")


@pytest.fixture(scope="module")
def two_runs(kaggle_layout, tmp_path_factory):
    """Two one-epoch nets from different seeds, trained once for the module (the tests only read them)."""
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for seed in (1, 2):
        out = root / f"run{seed}"
        assert train_cli.main(["--data", str(kaggle_layout), "--out", str(out), "--epochs", "1", "--seed", str(seed),
                               "--no-evaluate", *FAST]) == 0
        runs.append(out)
    return runs


def test_ensemble_is_the_mean_of_its_members(two_runs, kaggle_layout, tmp_path):
    out = tmp_path / "ensemble"
    assert ensemble_cli.main([*map(str, two_runs), "--out", str(out), "--data", str(kaggle_layout)]) == 0
    pixels = np.random.default_rng(0).integers(0, 256, (6, 48, 48, 1)).astype(np.float32)
    members = [load_backend(run, "keras").predict(pixels) for run in two_runs]
    assert not np.allclose(members[0], members[1])  # two different nets, or the test proves nothing
    combined = load_backend(out, "keras").predict(pixels)
    np.testing.assert_allclose(combined, (members[0] + members[1]) / 2, atol=1e-6)

    config = json.loads((out / "train_config.json").read_text())
    assert config["architecture"] == "ensemble"
    assert config["ensemble"]["members"] == ["run1", "run2"] and config["ensemble"]["member_seeds"] == [1, 2]
    training = json.loads((out / "training.json").read_text())
    member_seconds = [json.loads((run / "training.json").read_text())["total_epoch_seconds"] for run in two_runs]
    assert training["total_epoch_seconds"] == pytest.approx(sum(member_seconds))
    metrics = json.loads((out / "metrics.json").read_text())
    size = keras.saving.load_model(two_runs[0] / "model.keras", compile=False).count_params()
    assert metrics["model"]["parameters"] == 2 * size
    # A normal model folder: the recognizer serves it like any other.
    face = EmotionRecognizer(out, "keras", tta="none").predict_faces([pixels[0, :, :, 0]])[0]
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_ensemble_hardware_names_each_member_only_when_they_differ(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    same = [{"hardware": "2 x EPYC (AVX2), float32"}] * 2
    assert ensemble_cli.members_hardware(dirs, same) == "2 x EPYC (AVX2), float32"
    mixed = [{"hardware": "2 x EPYC (AVX-512 BF16), bfloat16"}, {}]
    assert ensemble_cli.members_hardware(dirs, mixed) == "a: 2 x EPYC (AVX-512 BF16), bfloat16; b: not recorded"


def test_ensemble_exports_agree_with_keras(two_runs, tmp_path):
    from ferlens.training.export import export_all

    out = tmp_path / "ensemble"
    ensemble_cli.ensemble_dirs(two_runs, out)
    calibration = np.random.default_rng(1).integers(0, 256, (20, 48, 48)).astype(np.uint8)
    export_all(out, calibration)
    pixels = np.random.default_rng(2).integers(0, 256, (4, 48, 48, 1)).astype(np.float32)
    reference = load_backend(out, "keras").predict(pixels)
    for name in ("onnx", "tflite"):
        np.testing.assert_allclose(load_backend(out, name).predict(pixels), reference, atol=1e-5)


def test_bad_ensembles_are_refused_with_a_reason(two_runs, tmp_path, capsys):
    assert ensemble_cli.main([str(two_runs[0]), "--out", str(tmp_path / "one"), "--no-evaluate"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert ensemble_cli.main([str(two_runs[0]), str(two_runs[0]), "--out", str(tmp_path / "same"), "--no-evaluate"]) == 2
    assert "only once" in capsys.readouterr().err
    assert ensemble_cli.main([str(two_runs[0]), str(tmp_path / "missing"), "--out", str(tmp_path / "x"),
                              "--no-evaluate"]) == 2
    assert "missing" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    shutil.copytree(two_runs[1], damaged)
    (damaged / "model.keras").write_bytes(b"damaged")
    assert ensemble_cli.main([str(two_runs[0]), str(damaged), "--out", str(tmp_path / "bad"), "--no-evaluate"]) == 2
    assert "sha256" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ensemble_cli.main([*map(str, two_runs), "--out", str(two_runs[0])])


def test_compare_scores_every_combination_against_its_own_mean(two_runs, kaggle_layout, tmp_path, capsys):
    from ferlens.training.data import load_dataset

    table = tmp_path / "compare.md"
    assert ensemble_cli.main([*map(str, two_runs), "--compare", str(table), "--data", str(kaggle_layout)]) == 0
    assert capsys.readouterr().out == table.read_text()
    data = load_dataset(kaggle_layout)
    rows = ensemble_cli.compare_combinations(two_runs, data)
    assert sorted(tuple(r["members"]) for r in rows) == [("run1",), ("run1", "run2"), ("run2",)]
    assert [r["val_accuracy"] for r in rows] == sorted((r["val_accuracy"] for r in rows), reverse=True)
    # The pair's figure is the accuracy of the averaged probabilities, recomputed here.
    pixels = data.val.images[..., None].astype(np.float32)
    mean = sum(load_backend(run, "keras").predict(pixels) for run in two_runs)
    pair = next(r for r in rows if len(r["members"]) == 2)
    assert pair["val_accuracy"] == pytest.approx(float((mean.argmax(1) == data.val.labels).mean()))
    assert f"| run1 + run2 | {100 * pair['val_accuracy']:.2f} % |" in table.read_text()
    assert ensemble_cli.main([str(two_runs[0]), "--compare", str(tmp_path / "x.md"), "--data", str(kaggle_layout)]) == 2
    assert "at least two" in capsys.readouterr().err


def test_compare_with_ferplus_votes_ranks_by_both_label_sets(two_runs, kaggle_layout, tmp_path, capsys):
    from ferlens.training.data import load_dataset
    from ferlens.training.ferplus import attach_votes, majority_labels
    from tests.test_ferplus import write_votes_for

    ferplus = kaggle_layout.parent / "ferplus"  # the module's data: written once
    if not ferplus.exists():
        write_votes_for(kaggle_layout)
    table = tmp_path / "compare.md"
    assert ensemble_cli.main([*map(str, two_runs), "--compare", str(table), "--data", str(kaggle_layout),
                              "--ferplus", str(ferplus)]) == 0
    data = load_dataset(kaggle_layout)
    attach_votes(data, ferplus)
    rows = ensemble_cli.compare_combinations(two_runs, data)
    means = [(r["val_accuracy"] + r["ferplus_val_accuracy"]) / 2 for r in rows]
    assert means == sorted(means, reverse=True)
    pixels = data.val.images[..., None].astype(np.float32)
    mean = sum(load_backend(run, "keras").predict(pixels) for run in two_runs)
    truth = majority_labels(data.val.votes)
    kept = truth >= 0
    pair = next(r for r in rows if len(r["members"]) == 2)
    assert pair["ferplus_val_accuracy"] == pytest.approx(float((mean.argmax(1)[kept] == truth[kept]).mean()))
    assert "ranked by the mean of the FER2013 and FER+ majority accuracies" in table.read_text()
