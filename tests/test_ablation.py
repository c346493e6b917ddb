"""The ablation table is computed from the runs' artifacts, changes included."""

from __future__ import annotations

import json

import pytest

from ferlens.config import MODELS_DIR
from ferlens.modelfolder.artifacts import ModelArtifacts
from ferlens.training.ablation import PAPER_REPORTED_CURVE, ablation_rows, config_changes, main, paper_curve, render


def _run(folder, config: dict, val_acc: float, epochs: int):
    folder.mkdir()
    (folder / "train_config.json").write_text(json.dumps(config))
    (folder / "training.json").write_text(json.dumps(
        {"epochs_run": epochs, "total_epoch_seconds": 1800 * epochs, "images_per_second": 300.0,
         "hardware": "2 x test CPU"}))
    (folder / "metrics.json").write_text(json.dumps({
        "model": {"parameters": 1234},
        "val": {"accuracy": val_acc, "macro_f1": val_acc - 0.1},
        "test": {"accuracy": val_acc + 0.01},
    }))
    return folder


def test_config_changes_lists_only_what_differs():
    before = {"epochs": 16, "augment": {"flip": True, "zoom": 0.1}, "optimizer": "adam"}
    after = {"epochs": 40, "augment": {"flip": True, "zoom": 0.2}, "optimizer": "adam", "new": 1}
    assert config_changes(before, after) == ["augment.zoom: 0.1 -> 0.2", "epochs: 16 -> 40", "new: None -> 1"]


def test_ablation_table_from_runs(tmp_path, capsys):
    base = _run(tmp_path / "base", {"architecture": "vgg", "epochs": 16}, 0.5, 16)
    longer = _run(tmp_path / "longer", {"architecture": "vgg", "epochs": 40}, 0.55, 40)
    out = tmp_path / "ablation.md"
    assert main([str(base), str(longer), "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| base", "| longer"))]
    assert rows[0].startswith(
        "| base | baseline | 1,234 | 50.00 % | 40.00 % | 51.00 % | n/a / n/a | 16 | 8.00 | 300 | 2 x test CPU |")
    assert rows[1].startswith(
        "| longer | epochs: 16 -> 40 | 1,234 | 55.00 % | 45.00 % | 56.00 % | n/a / n/a | 40 | 20.00 | 300 | 2 x test CPU |")
    assert out.read_text() in capsys.readouterr().out


def test_runs_built_on_other_runs_say_their_time_is_their_own(tmp_path):
    base = _run(tmp_path / "base", {"epochs": 40}, 0.5, 40)
    restart = _run(tmp_path / "restart", {"epochs": 10, "init_from": "base/model.keras"}, 0.51, 10)
    student = _run(tmp_path / "student", {"epochs": 40, "teacher": "ens/model.keras", "distill_weight": 0.7}, 0.52, 40)
    rows = ablation_rows([ModelArtifacts.load(p) for p in (base, restart, student)])
    assert rows[1]["change"].endswith("time: this restart only, not the run it starts from")
    assert "distill_weight: 0.0 -> 0.7" in rows[2]["change"] and "teacher: None -> ens/model.keras" in rows[2]["change"]
    assert rows[2]["change"].endswith("time: this run only, not its teacher's")
    assert "time:" not in rows[0]["change"]


def test_unevaluated_run_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    assert main([str(tmp_path / "raw")]) == 2
    assert "no evaluated metrics.json" in capsys.readouterr().err


def test_last_runs_test_time_augmentation_closes_the_table(tmp_path):
    base = _run(tmp_path / "base", {"epochs": 16}, 0.5, 16)
    last = _run(tmp_path / "last", {"epochs": 40}, 0.55, 40)
    metrics = json.loads((last / "metrics.json").read_text())
    metrics["tta"] = {"flip": {"val_accuracy": 0.56, "val_macro_f1": 0.47, "test_accuracy": 0.58}}
    (last / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "ablation.md"
    assert main([str(base), str(last), "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| base", "| last"))]
    assert len(rows) == 3
    assert rows[2].startswith(
        "| last + TTA | test-time augmentation: none -> flip | 1,234 | 56.00 % | 47.00 % | 58.00 % | n/a / n/a | 40 |")


@pytest.mark.parametrize("which", ["real-time model", "photo model"])
def test_shipped_ablation_table_is_what_the_script_writes_from_the_recorded_runs(shipped_model_dir, photo_model_dir,
                                                                                 which):
    """Every row of each shipped model's table comes from a run folder in the repository, unchanged."""
    shipped_model_dir = shipped_model_dir if which == "real-time model" else photo_model_dir
    text = (shipped_model_dir / "ablation.md").read_text()
    table = text.split("\n## ")[0]  # the runs' table; a paper-curve section may follow
    names = [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()
             if line.startswith("| ") and not line.startswith(("| run ", "|---")) and " + TTA " not in line]
    runs_dir = MODELS_DIR / "ablation-runs"
    candidates = [*MODELS_DIR.iterdir(), *(runs_dir.iterdir() if runs_dir.is_dir() else [])]
    folders = {d.name: d for d in candidates if d.is_dir()}
    assert names[-1] == shipped_model_dir.name
    runs = [ModelArtifacts.load(folders[name]) for name in names]
    assert render(ablation_rows(runs), paper_curve(runs)) == text


def test_shipped_tables_start_from_the_papers_cnn_beside_its_reported_curve(shipped_model_dir, photo_model_dir):
    """Issue 11: the paper's own CNN, trained with this pipeline for >= 15 epochs, is a row of the
    tables, and its recorded per-epoch PublicTest accuracy sits beside the paper's curve."""
    for model_dir in (shipped_model_dir, photo_model_dir):
        text = (model_dir / "ablation.md").read_text()
        first_row = next(line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| run "))
        first = first_row.split(" | ")[0].removeprefix("| ")
        run = ModelArtifacts.load(MODELS_DIR / "ablation-runs" / first)
        assert run.config["architecture"] == "paper" and run.training["epochs_run"] >= 15
        history = dict(zip(run.history["epoch"], run.history["val_accuracy"]))
        for epoch, reported in PAPER_REPORTED_CURVE.items():
            reached = f"{100 * history[epoch]:.2f} %" if epoch in history else "not run"
            assert f"| {first} | {epoch} | {100 * reported:.2f} % | {reached} |" in text


def test_shipped_tables_set_mobilenet_beside_the_papers_cnn(shipped_model_dir, photo_model_dir):
    """Issue 32: the paper's edge architecture, MobileNet trained from scratch, is the row after the
    paper's CNN in both shipped tables, whatever it scored."""
    for model_dir in (shipped_model_dir, photo_model_dir):
        text = (model_dir / "ablation.md").read_text().split("\n## ")[0]
        rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| run ")]
        second = rows[1].split(" | ")[0].removeprefix("| ")
        run = ModelArtifacts.load(MODELS_DIR / "ablation-runs" / second)
        assert run.config["architecture"].startswith("mobilenet") and run.config.get("init_from") is None
        assert f"{100 * run.metrics['val']['accuracy']:.2f} %" in rows[1]


def test_paper_curve_sets_a_paper_run_beside_the_reported_figures(tmp_path):
    paper = _run(tmp_path / "paper", {"architecture": "paper"}, 0.5, 12)
    (paper / "history.json").write_text(json.dumps(
        {"epochs": {"epoch": list(range(1, 13)), "val_accuracy": [0.3 + 0.01 * e for e in range(1, 13)]}}))
    other = _run(tmp_path / "vgg", {"architecture": "vgg"}, 0.6, 12)
    rows = paper_curve([ModelArtifacts.load(paper), ModelArtifacts.load(other)])
    assert [(r["epoch"], r["paper"]) for r in rows] == [(5, 0.486), (10, 0.551), (12, None), (25, 0.603)]
    assert rows[0]["run_accuracy"] == pytest.approx(0.35) and rows[2]["run_accuracy"] == pytest.approx(0.42)
    assert rows[3]["run_accuracy"] is None
    text = render(ablation_rows([ModelArtifacts.load(paper), ModelArtifacts.load(other)]), rows)
    assert "| paper | 5 | 48.60 % | 35.00 % |" in text and "| paper | 25 | 60.30 % | not run |" in text


def test_a_prior_shift_is_one_change_and_ferplus_figures_have_their_column(tmp_path):
    base = _run(tmp_path / "blend", {"architecture": "vgg", "labels": "blend", "fer2013_weight": 0.3}, 0.65, 4)
    shift = {"source": "blend", "tau_ferplus": 0.125, "tau_balance": 0.0, "chosen_on": "PublicTest: the mean"}
    shifted = _run(tmp_path / "shifted", {"architecture": "vgg", "labels": "blend", "fer2013_weight": 0.3,
                                          "prior_shift": shift}, 0.64, 4)
    metrics = json.loads((shifted / "metrics.json").read_text())
    metrics["ferplus"] = {"val": {"accuracy": 0.797}, "test": {"accuracy": 0.778}}
    (shifted / "metrics.json").write_text(json.dumps(metrics))
    rows = ablation_rows([ModelArtifacts.load(base), ModelArtifacts.load(shifted)])
    assert rows[1]["change"] == ("class prior shifted (`ferlens.training.prior`): tau FER+ 0.125, tau balance 0.0, "
                                 "chosen on PublicTest: the mean")
    text = render(rows)
    assert "| n/a / n/a |" in text.splitlines()[6]  # the unshifted run was evaluated without votes
    assert "| 79.70 % / 77.80 % |" in text.splitlines()[7]
