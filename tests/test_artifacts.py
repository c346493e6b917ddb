"""The model-folder contract (`ferlens.modelfolder.artifacts`): readers validate, writers never leave half a file."""

from __future__ import annotations

import json

import pytest

from ferlens.modelfolder.artifacts import METRICS_FILE, ModelArtifacts, checked_metrics, write_json


def test_figures_of_the_wrong_type_are_dropped_and_named():
    raw = {"test": {"accuracy": "high", "macro_f1": 0.61, "confusion_matrix": [[1, 2]]},
           "val": "not an object", "model": {"parameters": 1200000, "size_bytes": -3},
           "formats": {"onnx": {"test_accuracy": 0.7}, "tflite": ["x"]},
           "in_the_wild": {"found_rate": 7, "accuracy_all": 0.33, "protocol": "text kept as it is"}}
    metrics, problems = checked_metrics(raw)
    assert metrics["test"] == {"macro_f1": 0.61}
    assert "val" not in metrics and metrics["model"] == {"parameters": 1200000}
    assert metrics["formats"] == {"onnx": {"test_accuracy": 0.7}}
    assert metrics["in_the_wild"] == {"accuracy_all": 0.33, "protocol": "text kept as it is"}
    assert sorted(p.split(" ")[0] for p in problems) == [
        "formats.tflite", "in_the_wild.found_rate", "model.size_bytes", "test.accuracy", "test.confusion_matrix", "val"]


def test_a_damaged_metrics_file_costs_its_figures_not_the_folder(tmp_path):
    (tmp_path / METRICS_FILE).write_text(json.dumps({"test": {"accuracy": "0.7"}, "val": {"accuracy": 0.69},
                                                     "in_the_wild": "oops"}))
    art = ModelArtifacts.load(tmp_path)
    assert art.headline()["PrivateTest accuracy"] is None and art.headline()["PublicTest accuracy"] == 0.69
    assert art.in_the_wild == {} and len(art.problems) == 2
    assert all(p.startswith(f"{METRICS_FILE}: ") for p in art.problems)


def test_writing_an_artifact_is_atomic(tmp_path):
    write_json(tmp_path, METRICS_FILE, {"test": {"accuracy": 0.5}})
    with pytest.raises(TypeError):
        write_json(tmp_path, METRICS_FILE, {"test": {"accuracy": object()}})  # fails halfway through dumping
    assert json.loads((tmp_path / METRICS_FILE).read_text()) == {"test": {"accuracy": 0.5}}
    assert [p.name for p in tmp_path.iterdir()] == [METRICS_FILE]  # no temporary file left behind
