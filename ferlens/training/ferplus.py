"""FER+ crowd votes (ten a face) for the FER2013 files: joining them, training targets, figures.

FER2013's labels come from one annotator a face; FER+ (Barsoum et al., ICMI 2016) had every image
labelled again by ten. The FER+ majority disagrees with the FER2013 label for 37 % of the faces, so
a model can learn from both: FER2013's label, the FER+ majority, the FER+ vote distribution over our
seven classes, or a blend of FER2013's label and that distribution (`training_targets`).

`labels.csv` has one row per kept image: `file,neutral,happiness,surprise,sadness,anger,disgust,
fear,contempt,unknown,NF` (vote counts). Contempt (no FER2013 class), unknown and not-a-face are
dropped from the distribution; the majority protocol of the literature leaves out faces whose
most voted column is one of them (`majority_labels`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ferlens.config import CLASS_NAMES, DEFAULT_FERPLUS_DIR, NUM_CLASSES
from ferlens.training.data import Dataset, DatasetError, Split

LABELS_FILE = "labels.csv"
#: The vote columns of labels.csv, in file order.
VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
#: FER+'s name for each of our classes (CLASS_NAMES order).
FERPLUS_NAMES: dict[str, str] = {
    "angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
    "neutral": "neutral", "sad": "sadness", "surprise": "surprise",
}
#: Column of `votes` holding each of our classes, in CLASS_NAMES order.
EMOTION_COLUMNS = np.array([VOTE_COLUMNS.index(FERPLUS_NAMES[name]) for name in CLASS_NAMES])

#: What a training run can learn from (`python -m ferlens.training.train --labels KIND`).
TARGET_KINDS: tuple[str, ...] = ("fer2013", "ferplus-majority", "ferplus-votes", "blend")
#: Share of a "blend" target that is FER2013's one-hot label; the rest is the FER+ vote distribution.
DEFAULT_FER2013_WEIGHT = 0.5


def read_votes(ferplus_dir: str | Path = DEFAULT_FERPLUS_DIR) -> dict[str, np.ndarray]:
    """Vote counts (10,) float32 for each FER2013 file named in `labels.csv`, by its path in the dataset."""
    path = Path(ferplus_dir)
    path = path / LABELS_FILE if path.is_dir() else path
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"FER+ votes not found: {path} ({exc.strerror})") from exc
    votes: dict[str, np.ndarray] = {}
    with handle:
        reader = csv.DictReader(handle)
        missing = {"file", *VOTE_COLUMNS} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
        for line_no, row in enumerate(reader, start=2):
            try:
                counts = np.array([float(row[c]) for c in VOTE_COLUMNS], dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"{path}:{line_no}: vote counts are not numbers") from exc
            if not np.all(np.isfinite(counts)) or counts.min() < 0:
                raise DatasetError(f"{path}:{line_no}: vote counts must be finite and not negative")
            votes[row["file"]] = counts
    if not votes:
        raise DatasetError(f"{path} holds no votes")
    return votes


def attach_votes(dataset: Dataset, ferplus_dir: str | Path = DEFAULT_FERPLUS_DIR) -> int:
    """Join the FER+ votes to every split of FER2013's own layout (in place); returns how many faces got
    votes. A face FER+ dropped gets a row of zeros, i.e. no usable votes. Votes naming fewer than half
    of the dataset's files are refused (another dataset in FER2013's layout), and nothing is joined."""
    splits = (dataset.train, dataset.val, dataset.test)
    if any(split.files is None for split in splits):
        raise DatasetError(f"FER+ votes join FER2013's own folder layout by file name; {dataset.source} "
                           f"({dataset.layout}) has no such names")
    table = read_votes(ferplus_dir)
    joined = 0
    for split in splits:
        split.votes = np.zeros((len(split), len(VOTE_COLUMNS)), np.float32)
        for i, name in enumerate(split.files):
            row = table.get(str(name))
            if row is not None:
                split.votes[i] = row
                joined += 1
    total = sum(len(split) for split in splits)
    if joined < total / 2:  # FER+ covers 99.5 % of FER2013: a few matches are a coincidence of names
        for split in splits:
            split.votes = None
        raise DatasetError(f"only {joined} of the {total} files of {dataset.source} are named in the FER+ votes at "
                           f"{ferplus_dir}: these votes are not for this dataset")
    return joined


def has_votes(split: Split) -> bool:
    return split.votes is not None


def vote_distribution(votes: np.ndarray) -> np.ndarray:
    """(N, 7) share of each face's votes per class (CLASS_NAMES order), contempt, unknown and not-a-face
    dropped and the rest renormalised; a face with no emotion votes gets a row of zeros."""
    emotions = votes[:, EMOTION_COLUMNS].astype(np.float32)
    total = emotions.sum(axis=1, keepdims=True)
    return np.divide(emotions, total, out=np.zeros_like(emotions), where=total > 0)


def majority_labels(votes: np.ndarray) -> np.ndarray:
    """The FER+ majority label per face (CLASS_NAMES index), or -1 where the most voted column is
    contempt, unknown or not-a-face, or there are no votes: the faces the majority protocol leaves out."""
    top = votes.argmax(axis=1)
    ours = np.full(len(votes), -1, np.int64)
    for class_index, column in enumerate(EMOTION_COLUMNS):
        ours[top == column] = class_index
    ours[votes.sum(axis=1) <= 0] = -1
    return ours


def training_targets(split: Split, kind: str, fer2013_weight: float = DEFAULT_FER2013_WEIGHT) -> np.ndarray:
    """(N, 7) float32 targets of `kind` (TARGET_KINDS) for a split; faces without usable FER+ votes keep
    their FER2013 one-hot label whatever the kind."""
    if kind not in TARGET_KINDS:
        raise ValueError(f"unknown label set {kind!r}; use one of {', '.join(TARGET_KINDS)}")
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[split.labels]
    if kind == "fer2013":
        return onehot
    if split.votes is None:
        raise ValueError(f"label set {kind!r} needs the FER+ votes joined first (ferlens.training.ferplus.attach_votes)")
    if kind == "ferplus-majority":
        majority = majority_labels(split.votes)
        usable = majority >= 0
        soft = np.eye(NUM_CLASSES, dtype=np.float32)[np.where(usable, majority, 0)]
    else:
        soft = vote_distribution(split.votes)
        usable = soft.sum(axis=1) > 0
        if kind == "blend":
            if not 0.0 <= fer2013_weight <= 1.0:
                raise ValueError(f"the FER2013 weight of a blend must be from 0 to 1, got {fer2013_weight:g}")
            soft = fer2013_weight * onehot + (1.0 - fer2013_weight) * soft
    return np.where(usable[:, None], soft, onehot).astype(np.float32)


#: A face counts as a clear expression when at least this share of all its votes name one
#: emotion other than neutral (8 of 10 people agreeing).
CLEAR_SHARE = 0.8


def figures(votes: np.ndarray, probabilities: np.ndarray) -> dict:
    """FER+ figures of a model's probabilities on one split: the majority protocol's classification
    report (accuracy, balanced accuracy, macro-F1, per class) on the faces it keeps, the mean
    cross-entropy (nats) against the vote distribution on every face with emotion votes (how well
    the confidences match ten people), and on the clear expressions (`CLEAR_SHARE`) the accuracy and
    the share called neutral: a model that learned FER+'s neutral-heavy prior must not trade clearly
    expressed faces for "neutral"."""
    from ferlens.training.metrics import classification_report

    majority = majority_labels(votes)
    kept = majority >= 0
    report = classification_report(majority[kept], probabilities[kept].argmax(1))
    distribution = vote_distribution(votes)
    voted = distribution.sum(axis=1) > 0
    clipped = np.clip(probabilities[voted], 1e-7, 1.0)
    report["cross_entropy"] = float(-(distribution[voted] * np.log(clipped)).sum(axis=1).mean()) if voted.any() else None
    report["faces_with_votes"] = int(voted.sum())
    neutral = CLASS_NAMES.index("neutral")
    # Shares of all ten votes (contempt, unknown and not-a-face included): 8 of 10 people, not 8 of the few left.
    total = votes.sum(axis=1, keepdims=True)
    shares = np.divide(votes[:, EMOTION_COLUMNS], total, out=np.zeros_like(distribution), where=total > 0)
    clear = (shares.max(axis=1) >= CLEAR_SHARE) & (shares.argmax(axis=1) != neutral)
    predicted = probabilities[clear].argmax(1)
    report["clear_expressions"] = {
        "faces": int(clear.sum()),
        "accuracy": float(np.mean(predicted == distribution[clear].argmax(1))) if clear.any() else None,
        "called_neutral": float(np.mean(predicted == neutral)) if clear.any() else None,
    }
    return report
