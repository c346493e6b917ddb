"""End-to-end training smoke runs on synthetic data: every artifact is written, and runs resume."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ferlens.modelfolder.artifacts import ModelArtifacts, uses_teacher
from ferlens.modelfolder.manifest import read_manifest, sha256_file
from ferlens.training import evaluate as evaluate_cli
from ferlens.training import train as train_cli
from ferlens.training.data import load_dataset
from ferlens.training.evaluate import WILD_NOT_RUN

ARGS = ["--epochs", "1", "--batch-size", "16"]


@pytest.fixture
def trained(kaggle_layout, tmp_path):
    out = tmp_path / "model"
    assert train_cli.main(["--data", str(kaggle_layout), "--out", str(out), *ARGS]) == 0
    return out


def test_training_writes_every_artifact(trained):
    for name in ("model.keras", "architecture.json", "history.json", "metrics.json", "MODEL_CARD.md",
                 "train_config.json", "training.json", "checkpoints/best.keras"):
        assert (trained / name).is_file(), name
    assert any((trained / "tensorboard").rglob("events.out.tfevents.*"))
    history = json.loads((trained / "history.json").read_text())["epochs"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "train_subset_inference_accuracy"):
        assert len(history[key]) == 1
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test"]["images"] == 14 and metrics["val"]["images"] == 14
    assert len(metrics["test"]["confusion_matrix"]) == 7
    assert metrics["dataset"]["splits"]["train"]["total"] == 42
    assert metrics["config"]["epochs"] == 1 and metrics["training"]["epochs_run"] == 1
    assert metrics["in_the_wild"] == {"skipped": WILD_NOT_RUN}  # minutes of photos; ferlens.training.evaluate adds them
    assert json.loads((trained / "architecture.json").read_text())["class_name"] == "Functional"
    card = (trained / "MODEL_CARD.md").read_text()
    assert f"{100 * metrics['test']['accuracy']:.2f} %" in card
    assert read_manifest(trained) == {"model.keras": sha256_file(trained / "model.keras")}  # checked at each load


def test_rerun_resumes_from_the_last_epoch(trained, kaggle_layout):
    first = json.loads((trained / "history.json").read_text())["epochs"]
    args = ["--data", str(kaggle_layout), "--out", str(trained), "--epochs", "2", "--batch-size", "16"]
    assert train_cli.main(args) == 0
    history = json.loads((trained / "history.json").read_text())["epochs"]
    assert history["epoch"] == [1, 2]
    # Epoch 1 was restored from the backup, not trained again: its record is untouched.
    assert history["seconds"][0] == first["seconds"][0]
    assert ModelArtifacts.load(trained).training["epochs_run"] == 2
    # Each epoch records where and in what precision it ran; one stretch is just that machine.
    assert history["compute_dtype"] == ["float32", "float32"]
    assert history["hardware"] == [train_cli.hardware_description()] * 2
    assert ModelArtifacts.load(trained).training["hardware"] == f"{train_cli.hardware_description()}, float32"


def test_a_resumed_run_keeps_its_best_epoch_unless_a_later_one_beats_it(tmp_path, capsys):
    assert train_cli.best_so_far(tmp_path) is None  # a fresh run: any first epoch is the best
    (tmp_path / "history.json").write_text(json.dumps({"epochs": {"epoch": [1, 2, 3], "val_accuracy": [0.5, 0.7, 0.6]}}))
    # Epoch 2's weights are not here (a new machine): say so, and select among the epochs to come.
    assert train_cli.best_so_far(tmp_path) is None
    assert "best epoch so far (2, PublicTest 70.00%) has no weights on this machine" in capsys.readouterr().err
    (tmp_path / train_cli.BEST_CHECKPOINT).parent.mkdir(parents=True)
    (tmp_path / train_cli.BEST_CHECKPOINT).write_bytes(b"epoch 2")
    assert train_cli.best_so_far(tmp_path) == 0.7  # a resumed epoch must beat epoch 2 to replace it


def test_history_of_a_run_resumed_elsewhere_keeps_columns_aligned_and_names_each_stretch():
    history = {"epoch": [1, 2], "loss": [1.0, 0.9]}  # written before machines were recorded
    for epoch, loss, machine, dtype in [(3, 0.8, "fast", "bfloat16"), (3, 0.7, "fast", "bfloat16"),
                                        (4, 0.6, "slow", "float32"), (5, 0.5, "slow", "float32")]:
        train_cli.append_history_row(history, {"epoch": epoch, "loss": loss, "hardware": machine,
                                               "compute_dtype": dtype})
    assert history["epoch"] == [1, 2, 3, 4, 5]
    assert history["loss"] == [1.0, 0.9, 0.7, 0.6, 0.5]  # the repeated epoch 3 keeps its last row
    assert history["hardware"] == [None, None, "fast", "slow", "slow"]
    assert train_cli.run_segments(history) == (
        "epochs 1-2: not recorded; epoch 3: fast, bfloat16; epochs 4-5: slow, float32")


def test_evaluate_cli_recomputes_metrics(trained, kaggle_layout, tmp_path, capsys):
    before = json.loads((trained / "metrics.json").read_text())
    (trained / "metrics.json").unlink()
    no_photos = tmp_path / "no-expw"
    assert evaluate_cli.main([str(trained), "--data", str(kaggle_layout), "--expw", str(no_photos)]) == 0
    after = json.loads((trained / "metrics.json").read_text())
    assert after["test"]["confusion_matrix"] == before["test"]["confusion_matrix"]
    assert str(no_photos) in after["in_the_wild"]["skipped"]
    out = capsys.readouterr().out
    assert "PrivateTest accuracy" in out and "in the wild: skipped" in out
    assert "no-expw" in ModelArtifacts.load(trained).in_the_wild_skipped and not ModelArtifacts.load(trained).in_the_wild


def test_bad_arguments_are_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--out", str(tmp_path / "m"), "--epochs", "0"])
    assert exc.value.code == 2
    assert train_cli.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")]) == 2
    assert "dataset not found" in capsys.readouterr().err


def test_bfloat16_support_is_read_from_the_cpu_flags():
    zen3 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
    sapphire = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16\n"
    assert train_cli.cpu_has_bfloat16(zen3) is False
    assert train_cli.cpu_has_bfloat16(sapphire) is True
    assert train_cli.cpu_has_bfloat16("no flags line here") is None


def test_mixed_precision_on_a_cpu_without_bfloat16_warns(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_cli, "cpu_has_bfloat16", lambda: False)
    assert train_cli.main(["--out", str(tmp_path / "m"), "--mixed-precision", "--data", str(tmp_path / "absent")]) == 2
    assert "without bfloat16 instructions" in capsys.readouterr().err


def test_distillation_targets_blend_the_teacher_into_the_labels():
    labels = np.array([0, 3])
    teacher = np.array([[0.5, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05], [0.0, 0.0, 0.0, 0.2, 0.8, 0.0, 0.0]], np.float32)
    targets = train_cli.training_targets(labels, teacher, 0.7)
    assert targets.shape == (2, 7) and np.allclose(targets.sum(axis=1), 1.0)
    assert targets[0, 0] == pytest.approx(0.3 + 0.7 * 0.5) and targets[0, 1] == pytest.approx(0.07)
    # The teacher may outvote the label: that is the point of its soft targets.
    assert targets[1].argmax() == 4 and targets[1, 3] == pytest.approx(0.3 + 0.7 * 0.2)
    assert np.array_equal(train_cli.training_targets(labels, None, 0.7), np.eye(7, dtype=np.float32)[labels])


def test_training_distils_a_teacher_and_caches_its_probabilities(trained, kaggle_layout, tmp_path, capsys):
    out = tmp_path / "student"
    teacher = trained / "model.keras"
    assert train_cli.main(["--data", str(kaggle_layout), "--out", str(out), *ARGS, "--teacher", str(teacher),
                           "--distill-weight", "0.5", "--no-evaluate"]) == 0
    assert "targets are 50% its probabilities" in capsys.readouterr().out
    config = json.loads((out / "train_config.json").read_text())
    assert config["teacher"] == str(teacher) and config["distill_weight"] == 0.5
    [cache_file] = (out / "checkpoints").glob("teacher_probs-*.npy")  # keyed by the teacher file
    cached = np.load(cache_file)
    assert cached.shape == (42, 7) and np.allclose(cached.sum(axis=1), 1.0, atol=1e-4)
    # The cache holds the teacher's own predictions on the training faces, in the loader's order.
    data = load_dataset(kaggle_layout)
    fresh = keras.saving.load_model(teacher, compile=False).predict(data.train.images[..., None].astype(np.float32),
                                                                     verbose=0)
    assert np.allclose(cached, fresh, atol=1e-5)


def _tiny_teacher(path, seed: int) -> None:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(7, activation="softmax")])
    model.save(path)


def test_a_changed_teacher_is_not_served_stale_probabilities(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    teacher, cache = tmp_path / "teacher.keras", tmp_path / "run" / "teacher_probs.npy"
    _tiny_teacher(teacher, seed=1)
    first = train_cli.teacher_probabilities(teacher, images, cache)
    assert np.array_equal(train_cli.teacher_probabilities(teacher, images, cache), first)  # served from the cache
    _tiny_teacher(teacher, seed=2)  # same path, different weights
    second = train_cli.teacher_probabilities(teacher, images, cache)
    fresh = keras.saving.load_model(teacher, compile=False).predict(images[..., None].astype(np.float32), verbose=0)
    assert not np.allclose(second, first, atol=1e-3) and np.allclose(second, fresh, atol=1e-5)
    # Only the current teacher's file stays: a run re-distilled many times does not pile up caches.
    (cache.parent / "other_probs-1-2.npy").write_bytes(b"not ours")
    assert [p.name for p in cache.parent.glob("teacher_probs-*.npy")] == [
        f"teacher_probs-{teacher.stat().st_size}-{teacher.stat().st_mtime_ns}.npy"]
    assert (cache.parent / "other_probs-1-2.npy").exists()


def test_one_rule_says_which_runs_distilled():
    assert uses_teacher({"teacher": "t.keras", "distill_weight": 0.7})
    assert not uses_teacher({"teacher": "t.keras", "distill_weight": 0.0})
    assert not uses_teacher({"teacher": None, "distill_weight": 0.7}) and not uses_teacher({})


def test_distillation_arguments_are_checked(tmp_path, capsys):
    for args in (["--teacher", str(tmp_path / "absent.keras")], ["--distill-weight", "0.5"]):
        with pytest.raises(SystemExit) as exc:
            train_cli.main(["--out", str(tmp_path / "m"), *args])
        assert exc.value.code == 2
    (tmp_path / "t.keras").write_bytes(b"x")
    with pytest.raises(SystemExit):
        train_cli.main(["--out", str(tmp_path / "m"), "--teacher", str(tmp_path / "t.keras"), "--distill-weight", "0"])
    err = capsys.readouterr().err
    assert "no such model file" in err and "needs --teacher" in err and "above 0" in err
