"""End-to-end training smoke runs on synthetic data: every artifact is written, and runs resume."""

from __future__ import annotations

import json

import pytest

from fer import evaluate as evaluate_cli
from fer import train as train_cli
from fer.evaluate import WILD_NOT_RUN
from fer.manifest import read_manifest, sha256_file
from fer.report import ModelArtifacts

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
    assert metrics["in_the_wild"] == {"skipped": WILD_NOT_RUN}  # minutes of photos; fer.evaluate adds them
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
