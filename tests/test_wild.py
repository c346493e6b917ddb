"""The in-the-wild (ExpW) protocol: arithmetic by hand, and the shipped figures recomputed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import wild_audit as audit
from ferlens.config import CLASS_NAMES, DEFAULT_EXPW_DIR, PROJECT_ROOT
from ferlens.core.detectors import box_iou
from ferlens.training.wild import CHECK_SUBSET, evaluate_wild_section, load_labels, match_face, wild_report


def test_box_iou_by_hand():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_match_takes_the_best_overlap_above_the_threshold():
    labelled = (10, 10, 100, 100)
    assert match_face([], labelled) is None
    assert match_face([(200, 200, 50, 50)], labelled) is None
    assert match_face([(0, 0, 40, 40), (15, 12, 95, 95), (300, 0, 10, 10)], labelled) == 1


def test_a_missed_face_counts_as_wrong():
    labels = np.array([0, 0, 3, 3])
    predicted = np.array([0, -1, 3, 0])  # one right, one missed, one right, one wrong
    report = wild_report(labels, predicted, other_detections=2)
    assert report["accuracy_all"] == pytest.approx(2 / 4)
    assert report["found_rate"] == pytest.approx(3 / 4)
    assert report["accuracy_found"] == pytest.approx(2 / 3)
    assert report["per_class_recall"]["angry"] == pytest.approx(1 / 2)
    assert report["per_class_recall"]["happy"] == pytest.approx(1 / 2)
    assert report["missed_per_class"]["angry"] == 1
    assert report["other_detections_per_photo"] == pytest.approx(0.5)
    # angry: precision 1/2 (one of two "angry" predictions right), recall 1/2; happy: precision 1, recall 1/2.
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3) / len(CLASS_NAMES))


def test_absent_data_is_skipped_with_a_reason(tmp_path):
    section = evaluate_wild_section(recognizer=None, root=tmp_path / "nowhere")
    assert "skipped" in section and "nowhere" in section["skipped"]


@pytest.fixture(scope="module")
def expw_dir():
    if not (DEFAULT_EXPW_DIR / "labels.csv").is_file():
        pytest.skip(f"ExpW not found at {DEFAULT_EXPW_DIR} (set EXPW_DIR); CI has it")
    return DEFAULT_EXPW_DIR


def test_check_subset_is_class_balanced_and_fixed(expw_dir):
    subset = load_labels(expw_dir, CHECK_SUBSET)
    counts = np.bincount([f.label for f in subset], minlength=len(CLASS_NAMES))
    assert counts.min() == counts.max() == CHECK_SUBSET // len(CLASS_NAMES)
    assert [f.path for f in subset] == [f.path for f in load_labels(expw_dir, CHECK_SUBSET)]


def test_shipped_in_the_wild_figures_match_a_fresh_run(expw_dir, shipped_model_dir):
    from ferlens.core.recognition import EmotionRecognizer
    from ferlens.training.wild import run_pipeline

    stored = json.loads((shipped_model_dir / "metrics.json").read_text())["in_the_wild"]
    assert stored["faces"] == len(load_labels(expw_dir))
    settings = {k: v for k, v in stored["settings"].items() if k not in ("tta", "backend")}
    recognizer = EmotionRecognizer(shipped_model_dir, stored["settings"]["backend"], tta=stored["settings"]["tta"])
    assert {k: v for k, v in recognizer_settings(recognizer).items() if k in settings} == settings
    fresh = run_pipeline(recognizer, load_labels(expw_dir, CHECK_SUBSET)).report()
    expected = stored["check_subset"]
    assert fresh["faces"] == expected["faces"]
    for key in ("accuracy_all", "found_rate", "accuracy_found", "macro_f1"):
        assert fresh[key] == pytest.approx(expected[key], abs=0.005), key
    assert fresh["single_crop"]["accuracy_all"] == pytest.approx(expected["single_crop"]["accuracy_all"], abs=0.005)


def recognizer_settings(recognizer) -> dict:
    from ferlens.training.wild import pipeline_settings

    return pipeline_settings(recognizer)


def test_label_audit_figures_match_a_fresh_tally(expw_dir, tmp_path):
    """benchmarks/wild_audit.md is the committed judgements scored again against ExpW's labels."""
    folder = PROJECT_ROOT / "benchmarks"
    out = tmp_path / "audit.md"
    assert audit.main(["--expw", str(expw_dir), "score", str(folder / "wild_audit_judgements.txt"),
                       "--out", str(out)]) == 0
    assert out.read_text() == (folder / "wild_audit.md").read_text()


def test_label_audit_refuses_judgements_for_other_labels(expw_dir, tmp_path):
    face = load_labels(expw_dir)[0]
    others = [name for name in CLASS_NAMES if name != CLASS_NAMES[face.label]]
    judgements = tmp_path / "judgements.txt"
    judgements.write_text(f"# header\n0 {face.path.name} {others[0]} {others[1]} A\n")
    with pytest.raises(SystemExit, match="neither option"):
        audit.main(["--expw", str(expw_dir), "score", str(judgements), "--out", str(tmp_path / "a.md")])
    judgements.write_text(f"# header\n0 {face.path.name} {CLASS_NAMES[face.label]} {others[0]} maybe\n")
    with pytest.raises(SystemExit, match="choice A, B or N"):
        audit.main(["--expw", str(expw_dir), "score", str(judgements), "--out", str(tmp_path / "a.md")])


def test_label_audit_sheets_offer_the_label_and_the_pipelines_answer(expw_dir, tmp_path):
    from ferlens.config import PHOTO_MODEL_DIR
    from ferlens.core.recognition import EmotionRecognizer
    from ferlens.core.tta import PHOTO_TTA
    from ferlens.training.wild import pipeline_answer

    assert audit.main(["--expw", str(expw_dir), "sheets", "--out", str(tmp_path), "--count", "3", "--seed", "5"]) == 0
    rows = [line.split() for line in (tmp_path / "judgements.txt").read_text().splitlines()[1:]]
    assert len(rows) == 3 and (tmp_path / "sheet0.png").is_file()
    faces = {face.path.name: face for face in load_labels(expw_dir)}
    recognizer = EmotionRecognizer(PHOTO_MODEL_DIR, tta=PHOTO_TTA)
    for _, name, first, second, choice in rows:
        face = faces[name]
        _, found, hit = pipeline_answer(recognizer, face)
        answer = found[hit].label
        assert choice == "?" and answer != CLASS_NAMES[face.label]
        assert {first, second} == {answer, CLASS_NAMES[face.label]}


def test_class_bias_fit_recovers_a_known_prior_shift():
    """The ExpW bound re-weights classes: on scores whose class 2 was pushed up by 1.5, fitting must undo it."""
    from benchmarks.wild_ceiling import fit_class_biases

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 2000)
    clean = rng.normal(0, 1, (2000, 7))
    clean[np.arange(2000), labels] += 2.0
    shifted = clean.copy()
    shifted[:, 2] += 1.5
    before = float((shifted.argmax(1) == labels).mean())
    biases, after = fit_class_biases(shifted, labels)
    assert after > before + 0.05
    assert after >= float((clean.argmax(1) == labels).mean()) - 0.01
    assert biases[2] - np.median(biases) < -0.5


def test_best_subset_prefers_the_models_that_help():
    from benchmarks.wild_ceiling import best_subset

    labels = np.array([0, 1, 2, 0, 1, 2])
    right = np.eye(3)[labels] * 0.8 + 0.1
    wrong = np.eye(3)[(labels + 1) % 3] * 0.9 + 0.05
    subset, accuracy = best_subset({"right": right, "wrong": wrong, "also right": right.copy()}, labels)
    assert accuracy == 1.0 and "wrong" not in subset
