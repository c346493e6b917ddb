"""Model card and artifacts: sentences computed from the numbers, damaged files reported instead of fatal."""

from __future__ import annotations

import json

import pytest

from ferlens.config import CLASS_NAMES
from ferlens.modelfolder.artifacts import ModelArtifacts
from ferlens.modelfolder.report import render_model_card


def _metrics(recalls: dict[str, float], train_counts: dict[str, int], **extra) -> dict:
    per_class = {n: {"precision": 0.5, "recall": recalls[n], "f1": 0.5, "support": 100} for n in CLASS_NAMES}
    return {
        "test": {"accuracy": 0.55, "macro_f1": 0.52, "images": 700, "per_class": per_class},
        "val": {"accuracy": 0.54},
        "model": {"parameters": 1000, "size_bytes": 2_000_000},
        "dataset": {"splits": {"train": {"total": sum(train_counts.values()), "per_class": train_counts}}},
        **extra,
    }


def _folder(tmp_path, metrics) -> ModelArtifacts:
    (tmp_path / "metrics.json").write_text(json.dumps(metrics) if isinstance(metrics, dict) else metrics)
    return ModelArtifacts.load(tmp_path)


@pytest.mark.parametrize("weakest, strongest, fewest", [("fear", "happy", "disgust"), ("surprise", "angry", "sad")])
def test_limits_name_the_classes_the_numbers_point_to(tmp_path, weakest, strongest, fewest):
    recalls = {n: 0.5 for n in CLASS_NAMES} | {weakest: 0.2, strongest: 0.9}
    counts = {n: 4000 for n in CLASS_NAMES} | {fewest: 400}
    card = render_model_card(_folder(tmp_path, _metrics(recalls, counts)))
    limits = card.split("## Limits")[1]
    assert f"{weakest.capitalize()} has the weakest PrivateTest recall (20.0 %), {strongest} the strongest (90.0 %)" in limits
    assert f"{fewest.capitalize()} has the fewest training images: 400 of 24,400" in limits
    assert "has not been measured" in limits  # no in-the-wild figures recorded


def test_card_uses_percentages_and_the_page_version_drops_title_and_tables(tmp_path):
    recalls = {n: 0.5 for n in CLASS_NAMES} | {"happy": 0.875}
    art = _folder(tmp_path, _metrics(recalls, {n: 100 for n in CLASS_NAMES},
                                     formats={"onnx": {"file": "model.onnx", "size_bytes": 10, "test_accuracy": 0.5}}))
    card = render_model_card(art)
    assert card.startswith("# Model card:") and "| happy | 50.0 % | 87.5 % | 50.0 % | 100 |" in card
    assert "| onnx | model.onnx |" in card and "0.875" not in card
    page = render_model_card(art, standalone=False)
    assert "# Model card" not in page and "|" not in page  # the page shows these as tables of its own
    assert "## Limits" in page


def test_in_the_wild_figures_appear_when_recorded(tmp_path):
    wild = {"accuracy_all": 0.31, "found_rate": 0.62, "accuracy_found": 0.5, "macro_f1": 0.4,
            "per_class_recall": {n: 0.5 for n in CLASS_NAMES}, "faces": 1234}
    card = render_model_card(_folder(tmp_path, _metrics({n: 0.5 for n in CLASS_NAMES}, {n: 10 for n in CLASS_NAMES},
                                                        in_the_wild=wild)))
    assert "## In the wild (ExpW, 1234 labelled faces)" in card
    assert "62.0 % faces found by the detector" in card
    assert "accuracy on found faces is 50.0 %, against 55.0 % on FER2013's PrivateTest" in card


def test_a_skipped_in_the_wild_section_gives_its_reason_and_no_figures(tmp_path):
    art = _folder(tmp_path, _metrics({n: 0.5 for n in CLASS_NAMES}, {n: 10 for n in CLASS_NAMES},
                                     in_the_wild={"skipped": "no in-the-wild dataset at /x"}))
    assert art.in_the_wild == {} and art.in_the_wild_skipped == "no in-the-wild dataset at /x"
    card = render_model_card(art)
    assert "In the wild (ExpW" not in card and "has not been measured" in card


@pytest.mark.parametrize("content, problem", [("{not json", "metrics.json could not be read"),
                                              ("[1, 2]", "metrics.json does not hold a JSON object"),
                                              (None, "metrics.json is missing")])
def test_a_damaged_or_missing_metrics_file_is_reported_not_fatal(tmp_path, content, problem):
    if content is not None:
        (tmp_path / "metrics.json").write_text(content)
    art = ModelArtifacts.load(tmp_path)
    assert art.metrics == {} and art.problems[0].startswith(problem)
    assert art.missing_figures() == list(art.headline())
    render_model_card(art)  # still renders, with n/a figures


def test_history_note_says_a_warm_restart_shows_only_its_own_run(tmp_path):
    (tmp_path / "history.json").write_text(json.dumps({"epochs": {"epoch": [1, 2, 3], "accuracy": [0.1, 0.2, 0.3]}}))
    (tmp_path / "train_config.json").write_text(json.dumps({"init_from": "models/gone/model.keras"}))
    note = ModelArtifacts.load(tmp_path).history_note()
    assert "show only" in note and "(3 epochs)" in note and "models/gone/model.keras" in note
    (tmp_path / "train_config.json").write_text(json.dumps({"epochs": 3}))
    assert ModelArtifacts.load(tmp_path).history_note() == ""


def test_curves_of_a_warm_restart_chain_run_end_to_end(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, epochs, start in ((first, [1, 2, 3], None), (second, [1, 2], first / "model.keras")):
        folder.mkdir()
        history = {"epoch": epochs, "val_accuracy": [0.1 * e for e in epochs]}
        (folder / "history.json").write_text(json.dumps({"epochs": history}))
        (folder / "train_config.json").write_text(json.dumps({"init_from": str(start)} if start else {}))
    art = ModelArtifacts.load(second)
    history, starts = art.full_history()
    assert history["epoch"] == [1, 2, 3, 4, 5] and history["val_accuracy"][3] == pytest.approx(0.1)
    assert starts == [(1, "first"), (4, "second")]
    assert "whole training: first (3 epochs) then second (2 epochs)" in art.history_note()


def test_a_fine_tuned_model_is_reported_on_its_own_folder_parts(tmp_path):
    metrics = _metrics({n: 0.5 for n in CLASS_NAMES}, {n: 10 for n in CLASS_NAMES})
    metrics["dataset"] |= {"layout": "class-folders", "source": "/home/me/my_faces"}
    art = _folder(tmp_path, metrics)
    assert art.splits == {"train": "training", "val": "validation", "test": "held-out test"}
    assert set(art.headline()) >= {"held-out test accuracy", "validation accuracy"}
    card = render_model_card(art)
    assert "held-out test accuracy: **55.00 %**" in card and "PrivateTest" not in card and "PublicTest" not in card
    fer2013 = _folder(tmp_path, _metrics({n: 0.5 for n in CLASS_NAMES}, {n: 10 for n in CLASS_NAMES}))
    assert "PrivateTest accuracy" in fer2013.headline()  # no layout recorded: FER2013's names


def test_card_of_a_distilled_model_names_its_teacher_and_share(tmp_path):
    (tmp_path / "train_config.json").write_text(json.dumps({"epochs": 64, "teacher": "models/trio/model.keras",
                                                            "distill_weight": 0.7}))
    card = render_model_card(_folder(tmp_path, _metrics({n: 0.5 for n in CLASS_NAMES}, {n: 10 for n in CLASS_NAMES})))
    assert "- Distillation: each target is 70 % the probabilities of `models/trio/model.keras`" in card
    (tmp_path / "train_config.json").write_text(json.dumps({"epochs": 64}))
    assert "Distillation" not in render_model_card(ModelArtifacts.load(tmp_path))
