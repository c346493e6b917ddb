"""FER+ crowd votes: the join to FER2013's files, the training targets and the figures on FER+ labels."""

from __future__ import annotations

import numpy as np
import pytest

from ferlens.config import CLASS_NAMES, DEFAULT_FERPLUS_DIR
from ferlens.training.data import DatasetError, Split
from ferlens.training.ferplus import (
    VOTE_COLUMNS,
    attach_votes,
    figures,
    majority_labels,
    read_votes,
    training_targets,
    vote_distribution,
)

ANGRY, DISGUST, FEAR, HAPPY, NEUTRAL, SAD, SURPRISE = range(7)


def votes_row(**counts: float) -> np.ndarray:
    """One face's ten vote counts, by FER+ column name."""
    row = np.zeros(len(VOTE_COLUMNS), np.float32)
    for name, count in counts.items():
        row[VOTE_COLUMNS.index(name)] = count
    return row


def split_with_votes(labels: list[int], rows: list[np.ndarray]) -> Split:
    return Split(np.zeros((len(labels), 48, 48), np.uint8), np.asarray(labels, np.int64), votes=np.stack(rows))


# ---------------------------------------------------------------- arithmetic on synthetic votes


def test_distribution_drops_contempt_unknown_and_not_a_face_and_renormalises():
    votes = np.stack([votes_row(happiness=6, contempt=2, unknown=1, NF=1), votes_row(contempt=5, NF=5)])
    dist = vote_distribution(votes)
    assert dist[0, HAPPY] == pytest.approx(1.0) and dist[0].sum() == pytest.approx(1.0)
    assert dist[1].sum() == 0  # no emotion votes at all: no usable distribution


def test_distribution_maps_ferplus_names_to_our_classes():
    votes = np.stack([votes_row(anger=1, disgust=2, fear=3, happiness=4)]).repeat(1, axis=0)
    dist = vote_distribution(votes)[0]
    assert dist[ANGRY] == pytest.approx(0.1) and dist[DISGUST] == pytest.approx(0.2)
    assert dist[FEAR] == pytest.approx(0.3) and dist[HAPPY] == pytest.approx(0.4)
    votes = np.stack([votes_row(neutral=5, sadness=3, surprise=2)])
    dist = vote_distribution(votes)[0]
    assert (dist[NEUTRAL], dist[SAD], dist[SURPRISE]) == pytest.approx((0.5, 0.3, 0.2))


def test_majority_leaves_out_contempt_unknown_not_a_face_and_no_votes():
    votes = np.stack([
        votes_row(sadness=6, neutral=4),
        votes_row(contempt=5, anger=4, neutral=1),
        votes_row(unknown=6, happiness=4),
        votes_row(NF=10),
        np.zeros(len(VOTE_COLUMNS), np.float32),
    ])
    assert majority_labels(votes).tolist() == [SAD, -1, -1, -1, -1]


def test_each_target_kind():
    split = split_with_votes(
        [ANGRY, FEAR, HAPPY],
        [votes_row(neutral=8, anger=2), votes_row(fear=3, surprise=7), votes_row(NF=10)],
    )
    fer2013 = training_targets(split, "fer2013")
    assert fer2013.argmax(1).tolist() == [ANGRY, FEAR, HAPPY] and np.all(fer2013.sum(1) == 1)
    majority = training_targets(split, "ferplus-majority")
    assert majority.argmax(1).tolist() == [NEUTRAL, SURPRISE, HAPPY]  # not-a-face keeps its FER2013 label
    assert set(np.unique(majority)) == {0.0, 1.0}
    votes = training_targets(split, "ferplus-votes")
    assert votes[0, NEUTRAL] == pytest.approx(0.8) and votes[0, ANGRY] == pytest.approx(0.2)
    assert votes[2, HAPPY] == 1.0
    blend = training_targets(split, "blend", fer2013_weight=0.25)
    assert blend[0, ANGRY] == pytest.approx(0.25 + 0.75 * 0.2) and blend[0, NEUTRAL] == pytest.approx(0.75 * 0.8)
    assert blend[1, FEAR] == pytest.approx(0.25 + 0.75 * 0.3)
    np.testing.assert_allclose(blend.sum(1), 1.0, rtol=1e-6)
    assert blend[2].tolist() == fer2013[2].tolist()  # no usable votes: its FER2013 label
    np.testing.assert_allclose(training_targets(split, "blend", fer2013_weight=1.0)[:2], fer2013[:2])
    np.testing.assert_allclose(training_targets(split, "blend", fer2013_weight=0.0)[:2], votes[:2])


def test_targets_refuse_what_they_cannot_build():
    split = split_with_votes([ANGRY], [votes_row(anger=10)])
    with pytest.raises(ValueError, match="unknown label set"):
        training_targets(split, "crowd")
    with pytest.raises(ValueError, match="from 0 to 1"):
        training_targets(split, "blend", fer2013_weight=1.5)
    without = Split(split.images, split.labels)
    with pytest.raises(ValueError, match="votes joined first"):
        training_targets(without, "ferplus-votes")
    assert training_targets(without, "fer2013").argmax(1).tolist() == [ANGRY]


def test_figures_by_hand():
    votes = np.stack([
        votes_row(happiness=10),
        votes_row(neutral=6, sadness=4),
        votes_row(contempt=6, anger=4),  # left out of the majority protocol, kept for the cross-entropy
        votes_row(NF=10),  # left out of both
    ])
    probs = np.array([
        [0.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.3, 0.7, 0.0],
        [0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
    ], np.float32)
    result = figures(votes, probs)
    assert result["images"] == 2 and result["accuracy"] == pytest.approx(0.5)
    assert result["balanced_accuracy"] == pytest.approx(0.5)  # happy recall 1, neutral recall 0
    expected = np.mean([-np.log(0.9), -(0.6 * np.log(0.3) + 0.4 * np.log(0.7)), -np.log(0.5)])
    assert result["cross_entropy"] == pytest.approx(expected, rel=1e-5)
    assert result["faces_with_votes"] == 3
    # Clear expressions: 8 or more of 10 votes on one emotion other than neutral (only the happy face here).
    assert result["clear_expressions"] == {"faces": 1, "accuracy": 1.0, "called_neutral": 0.0}
    probs[0] = [0.0, 0.0, 0.0, 0.4, 0.6, 0.0, 0.0]
    assert figures(votes, probs)["clear_expressions"] == {"faces": 1, "accuracy": 0.0, "called_neutral": 1.0}


def test_votes_file_problems_are_refused_with_a_message(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_votes(tmp_path)
    (tmp_path / "labels.csv").write_text("file,neutral\nx.jpg,3\n")
    with pytest.raises(DatasetError, match="lacks the column"):
        read_votes(tmp_path)
    header = "file," + ",".join(VOTE_COLUMNS)
    (tmp_path / "labels.csv").write_text(header + "\nx.jpg," + ",".join(["a"] * 10) + "\n")
    with pytest.raises(DatasetError, match="not numbers"):
        read_votes(tmp_path)


# ---------------------------------------------------------------- the real join (needs the datasets)


@pytest.fixture(scope="module")
def ferplus_dir():
    if not (DEFAULT_FERPLUS_DIR / "labels.csv").is_file():
        pytest.skip(f"FER+ votes not found at {DEFAULT_FERPLUS_DIR} (set FERPLUS_DIR); CI has them")
    return DEFAULT_FERPLUS_DIR


@pytest.mark.fer2013
def test_every_row_names_an_existing_fer2013_file(ferplus_dir, fer2013_dir):
    table = read_votes(ferplus_dir)
    assert len(table) == 35_711  # the README: 35,711 of the 35,887 images
    missing = [name for name in table if not (fer2013_dir / name).is_file()]
    assert missing == []
    assert all(abs(row.sum() - 10) <= 1 for row in table.values())  # ten votes a face, or close


@pytest.mark.fer2013
def test_join_gives_the_readme_counts_per_split(fer2013_ferplus):
    data = fer2013_ferplus
    assert sum(int((split.votes.sum(axis=1) > 0).sum()) for split in (data.train, data.val, data.test)) == 35_711
    # The README's majority counts (neutral, happiness, surprise, sadness, anger, fear, disgust) per split.
    readme = {
        "train": (10_305, 7_528, 3_564, 3_514, 2_467, 652, 191),
        "val": (1_329, 899, 458, 415, 324, 72, 32),
        "test": (1_258, 929, 446, 446, 322, 96, 20),
    }
    order = [NEUTRAL, HAPPY, SURPRISE, SAD, ANGRY, FEAR, DISGUST]
    for name, expected in readme.items():
        split = getattr(data, name)
        majority = majority_labels(split.votes)
        counts = np.bincount(majority[majority >= 0], minlength=len(CLASS_NAMES))
        assert tuple(int(counts[c]) for c in order) == expected, name
    test_majority = majority_labels(data.test.votes)
    assert int((test_majority >= 0).sum()) == 3_517  # the faces of "FER+ test accuracy"
    # The README: the majority agrees with the FER2013 folder label for 62.4 % of the PrivateTest images FER+ kept.
    kept = data.test.votes.sum(axis=1) > 0
    agree = np.mean(test_majority[kept] == data.test.labels[kept])
    assert agree == pytest.approx(0.624, abs=0.001)
    # A face whose votes are joined is the same file: its FER2013 label is its folder's name.
    assert all(f"/{CLASS_NAMES[label]}/" in str(f) for f, label in zip(data.test.files[:50], data.test.labels[:50]))


def test_attach_refuses_votes_that_name_few_of_the_files(kaggle_layout, tmp_path):
    from ferlens.training.data import load_dataset

    ferplus = write_votes_for(kaggle_layout)
    data = load_dataset(kaggle_layout)
    table = (ferplus / "labels.csv").read_text().splitlines()
    (ferplus / "labels.csv").write_text("\n".join(table[:3]) + "\n")  # two of 70 files
    with pytest.raises(DatasetError, match="not for this dataset"):
        attach_votes(data, ferplus)
    assert data.test.votes is None and data.train.votes is None  # nothing half-joined


def test_attach_refuses_a_dataset_without_file_names(tmp_path):
    from ferlens.training.data import Dataset

    empty = Split(np.zeros((1, 48, 48), np.uint8), np.zeros(1, np.int64))
    data = Dataset(empty, empty, empty, source="fer2013.csv", layout="fer2013-csv")
    with pytest.raises(DatasetError, match="by file name"):
        attach_votes(data, tmp_path)


# ---------------------------------------------------------------- training and evaluation on FER+ labels


def write_votes_for(layout, rng_seed: int = 0):
    """A labels.csv for a synthetic FER2013 layout: every face's votes favour the class after its folder's,
    except one face per split left without a row (as FER+ dropped some)."""
    import csv

    rng = np.random.default_rng(rng_seed)
    files = sorted(p for p in layout.rglob("*.jpg"))
    dropped = {next(p for p in files if p.name.startswith(prefix)) for prefix in ("Training", "PublicTest", "PrivateTest")}
    path = layout.parent / "ferplus" / "labels.csv"
    path.parent.mkdir()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", *VOTE_COLUMNS])
        for file in files:
            if file in dropped:
                continue
            shifted = CLASS_NAMES[(CLASS_NAMES.index(file.parent.name) + 1) % len(CLASS_NAMES)]
            row = votes_row(**{dict(zip(CLASS_NAMES, ("anger", "disgust", "fear", "happiness", "neutral", "sadness",
                                                      "surprise")))[shifted]: 7, "unknown": int(rng.integers(0, 4))})
            writer.writerow([file.relative_to(layout).as_posix(), *row.astype(int).tolist()])
    return path.parent


def test_a_blend_run_learns_from_both_label_sets_and_reports_both(kaggle_layout, tmp_path):
    import json

    from ferlens.modelfolder.artifacts import ModelArtifacts
    from ferlens.training import train as train_cli

    ferplus = write_votes_for(kaggle_layout)
    out = tmp_path / "model"
    assert train_cli.main(["--data", str(kaggle_layout), "--out", str(out), "--epochs", "2", "--batch-size", "16",
                           "--labels", "blend", "--fer2013-weight", "0.3", "--ferplus", str(ferplus)]) == 0
    config = json.loads((out / "train_config.json").read_text())
    assert (config["labels"], config["fer2013_weight"]) == ("blend", 0.3)
    history = json.loads((out / "history.json").read_text())["epochs"]
    for key in ("val_fer2013_accuracy", "val_ferplus_accuracy", "val_selection"):
        assert len(history[key]) == 2, key
    assert history["val_selection"] == pytest.approx(
        [(a + b) / 2 for a, b in zip(history["val_fer2013_accuracy"], history["val_ferplus_accuracy"])])
    metrics = ModelArtifacts.load(out).metrics
    assert "30% FER2013 label, 70% FER+ vote distribution" in metrics["labels"]
    ferplus_test = metrics["ferplus"]["test"]
    assert ferplus_test["images"] == 13  # 14 PrivateTest faces, one without votes
    assert 0 <= ferplus_test["balanced_accuracy"] <= 1 and ferplus_test["cross_entropy"] > 0
    assert metrics["ferplus"]["val"]["images"] == 13
    assert set(metrics["tta"]["flip"]) >= {"ferplus_test_accuracy", "ferplus_val_accuracy"}


def test_fer2013_weight_needs_a_blend_and_a_missing_votes_file_is_an_error(kaggle_layout, tmp_path, capsys):
    from ferlens.training import train as train_cli

    with pytest.raises(SystemExit):
        train_cli.parse_args(["--out", str(tmp_path), "--fer2013-weight", "0.5"])
    assert "--fer2013-weight needs --labels blend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--out", str(tmp_path), "--labels", "blend", "--fer2013-weight", "2"])
    assert train_cli.main(["--data", str(kaggle_layout), "--out", str(tmp_path / "m"), "--labels", "ferplus-votes",
                           "--ferplus", str(tmp_path / "nowhere")]) == 2
    assert "FER+ votes not found" in capsys.readouterr().err
