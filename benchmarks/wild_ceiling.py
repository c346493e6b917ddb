"""How far FER2013-trained nets can go on ExpW's found faces, even when ExpW itself is allowed to choose:
`python -m benchmarks.wild_ceiling MODEL_DIR [MODEL_DIR ...]` writes benchmarks/wild_ceiling.md.

The photo detector runs once on every ExpW photo; the matched faces are cropped as the upload page
crops them and classified by each model with the photo test-time augmentation. Then two bounds that
no shipped model may use, because they are chosen on ExpW (a validation set, never for selection):

- the best average of any subset of the given models, picked by its ExpW accuracy;
- per-class biases added to the photo model's log-probabilities, fitted to ExpW's labels (coordinate
  ascent over a grid), i.e. the best any re-weighting of the seven classes could do.

If even these stay near a bar, no choice among these nets (and no prior correction) reaches it
honestly: the nets would have to see differently, which FER2013 alone has not taught them.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from benchmarks import publish
from benchmarks.wild_framing import matched_faces
from ferlens.config import CLASS_NAMES, DEFAULT_EXPW_DIR, FACE_MARGIN, IMAGE_SIZE, PHOTO_MODEL_DIR
from ferlens.core.recognition import EmotionRecognizer, bounded_crop
from ferlens.core.tta import PHOTO_TTA
from ferlens.training.wild import load_labels

ROOT = Path(__file__).resolve().parent.parent

#: Subsets are enumerated exhaustively up to this many models (2^12 - 1 = 4095 averages).
MAX_EXHAUSTIVE = 12
BIAS_GRID = np.linspace(-3.0, 3.0, 61)


def fit_class_biases(log_probs: np.ndarray, labels: np.ndarray, rounds: int = 20) -> tuple[np.ndarray, float]:
    """Per-class offsets to the log-probabilities that maximise accuracy on (log_probs, labels),
    one class at a time over BIAS_GRID until no class changes; returns (biases, accuracy)."""
    biases = np.zeros(log_probs.shape[1])
    for _ in range(rounds):
        before = biases.copy()
        for cls in range(len(biases)):
            scores = []
            for value in BIAS_GRID:
                trial = biases.copy()
                trial[cls] = value
                scores.append(float(((log_probs + trial).argmax(1) == labels).mean()))
            biases[cls] = BIAS_GRID[int(np.argmax(scores))]
        if np.array_equal(before, biases):
            break
    return biases, float(((log_probs + biases).argmax(1) == labels).mean())


def best_subset(probabilities: dict[str, np.ndarray], labels: np.ndarray) -> tuple[tuple[str, ...], float]:
    """The subset of models whose averaged probabilities are most accurate on `labels`."""
    names = list(probabilities)
    if len(names) > MAX_EXHAUSTIVE:
        raise ValueError(f"at most {MAX_EXHAUSTIVE} models can be compared exhaustively, got {len(names)}")
    best: tuple[tuple[str, ...], float] = ((), -1.0)
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            accuracy = float((np.mean([probabilities[n] for n in subset], axis=0).argmax(1) == labels).mean())
            if accuracy > best[1]:
                best = (subset, accuracy)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="model folders (the candidate nets)")
    parser.add_argument("--photo-model", type=Path, default=PHOTO_MODEL_DIR, help="the shipped photo model")
    parser.add_argument("--expw", type=Path, default=DEFAULT_EXPW_DIR)
    parser.add_argument("--tta", default=PHOTO_TTA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "wild_ceiling.md")
    args = parser.parse_args(argv)
    if len(args.models) > MAX_EXHAUSTIVE:
        parser.error(f"at most {MAX_EXHAUSTIVE} model folders (every subset is scored), got {len(args.models)}")

    photo = EmotionRecognizer(args.photo_model, tta=args.tta, threads=1)
    faces = load_labels(args.expw)
    found, labels = matched_faces(photo, faces)
    hits = [i for i, (_, box) in enumerate(found) if box is not None]
    crops = np.stack([bounded_crop(found[i][0], found[i][1], IMAGE_SIZE, FACE_MARGIN) for i in hits])
    truth = labels[hits]

    angry = CLASS_NAMES.index("angry")

    def accuracy(probs: np.ndarray) -> float:
        return float((probs.argmax(1) == truth).mean())

    def angry_share(probs: np.ndarray) -> float:
        return float((probs.argmax(1) == angry).mean())

    photo_probs = photo.classify(crops)
    probabilities = {}
    for model_dir in args.models:
        probabilities[model_dir.name] = EmotionRecognizer(model_dir, tta=args.tta, threads=1).classify(crops)
        print(f"{model_dir.name}: {100 * accuracy(probabilities[model_dir.name]):.2f} %", file=sys.stderr, flush=True)
    subset, subset_accuracy = best_subset(probabilities, truth)
    biases, biased_accuracy = fit_class_biases(np.log(np.clip(photo_probs, 1e-9, None)), truth)

    lines = [
        "# How far these nets can go on ExpW's found faces", "",
        f"Written by `python -m benchmarks.wild_ceiling {' '.join(str(m) for m in args.models)}`. "
        f"{len(faces)} ExpW faces, {len(hits)} found by the photo detector (Haar + HOG) and matched to the "
        f"labelled box; every model classifies the same crops (margin {FACE_MARGIN}, test-time augmentation "
        f"`{args.tta}`). Accuracy here is on the found faces.", "",
        "| model | accuracy on found faces | share called angry |", "|---|---|---|",
        f"| `{photo.model_dir.name}` (shipped photo model) | {100 * accuracy(photo_probs):.2f} % | "
        f"{100 * angry_share(photo_probs):.1f} % |",
        *[f"| `{name}` | {100 * accuracy(p):.2f} % | {100 * angry_share(p):.1f} % |"
          for name, p in probabilities.items()],
        "",
        "Bounds chosen on ExpW itself (for the record only: selecting on ExpW is not allowed, and none is shipped):", "",
        "| bound | accuracy on found faces |", "|---|---|",
        f"| best average of any subset of the {len(probabilities)} models above ({' + '.join(subset)}) "
        f"| {100 * subset_accuracy:.2f} % |",
        f"| shipped photo model with per-class log-probability offsets fitted to ExpW's labels "
        f"({', '.join(f'{n} {b:+.1f}' for n, b in zip(CLASS_NAMES, biases))}) | {100 * biased_accuracy:.2f} % |",
        "",
        "ExpW's labels per class in this set: 815 each. The share of found faces whose label is each class: "
        + ", ".join(f"{n} {100 * float((truth == i).mean()):.1f} %" for i, n in enumerate(CLASS_NAMES)) + ".",
        "",
    ]
    return publish(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
