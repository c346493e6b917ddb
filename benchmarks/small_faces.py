"""How accuracy falls with face resolution:
`python -m benchmarks.small_faces MODEL_DIR [MODEL_DIR ...] [--limit N]` writes benchmarks/small_faces.md.

Two views of the same weakness. FER2013 PublicTest faces are shrunk to 32, 24 and 16 px and scaled
back to 48 (what a small face in a photo or a far-away webcam face gives the classifier), and
ExpW's found faces are split by the size of their detected box. The detector runs once per ExpW
photo and every model classifies the same crops, single centre crop, so rows compare weights only.
ExpW is a validation set for the pipeline: this compares models, it selects none.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from benchmarks.wild_framing import matched_faces
from ferlens.config import DEFAULT_DATA_DIR, DEFAULT_EXPW_DIR, FACE_MARGIN, IMAGE_SIZE
from ferlens.core.recognition import EmotionRecognizer, bounded_crop
from ferlens.training.data import load_dataset
from ferlens.training.wild import load_labels

ROOT = Path(__file__).resolve().parent.parent

SIDES = (IMAGE_SIZE, 32, 24, 16)
#: ExpW detected-box sides (pixels of the photo) that bound each row's faces.
BOX_SIZES = ((0, 48), (48, 80), (80, 120), (120, None))


def shrunk(faces: np.ndarray, side: int) -> np.ndarray:
    """Faces shrunk to side x side (area averaging) and scaled back up bilinearly."""
    if side == faces.shape[1]:
        return faces
    return np.stack([cv2.resize(cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA),
                                faces.shape[1:][::-1], interpolation=cv2.INTER_LINEAR) for face in faces])


def size_label(low: int, high: int | None) -> str:
    return f"{low}+ px" if high is None else f"{low}-{high - 1} px"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="model folders to compare")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--expw", type=Path, default=DEFAULT_EXPW_DIR)
    parser.add_argument("--limit", type=int, default=None, help="class-balanced subset of this many ExpW faces")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "small_faces.md")
    args = parser.parse_args(argv)
    recognizers = [EmotionRecognizer(model, tta="none") for model in args.models]
    val = load_dataset(args.data).val
    faces = load_labels(args.expw, args.limit)
    found, labels = matched_faces(recognizers[0], faces)
    hits = [i for i, (_, box) in enumerate(found) if box is not None]
    crops = np.stack([bounded_crop(found[i][0], found[i][1], IMAGE_SIZE, FACE_MARGIN) for i in hits])
    box_sides = np.array([max(found[i][1][2:]) for i in hits])
    hit_labels = labels[hits]
    buckets = [(low, high, (box_sides >= low) & (box_sides < (high or np.inf))) for low, high in BOX_SIZES]

    lines = [
        "# Accuracy against face resolution", "",
        f"Written by `python -m benchmarks.small_faces {' '.join(m.name for m in args.models)}"
        f"{' --limit ' + str(args.limit) if args.limit else ''}`; single centre crop, no test-time augmentation.", "",
        "## FER2013 PublicTest, faces shrunk and scaled back to 48 px", "",
        "| model | " + " | ".join(f"{side} px" for side in SIDES) + " |",
        "|---" * (1 + len(SIDES)) + "|",
    ]
    for recognizer in recognizers:
        accuracies = [(recognizer.classify(shrunk(val.images, side)).argmax(1) == val.labels).mean() for side in SIDES]
        lines.append(f"| {recognizer.model_dir.name} | " + " | ".join(f"{100 * a:.2f} %" for a in accuracies) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines += [
        "", f"## ExpW found faces by detected box size ({len(hits)} of {len(faces)} faces found, "
            "the same crops for every model)", "",
        "| model | all found | " + " | ".join(f"{size_label(lo, hi)} ({mask.sum()})" for lo, hi, mask in buckets) + " |",
        "|---" * (2 + len(buckets)) + "|",
    ]
    for recognizer in recognizers:
        correct = recognizer.classify(crops).argmax(1) == hit_labels
        cells = [f"{100 * correct[mask].mean():.2f} %" if mask.any() else "n/a" for _, _, mask in buckets]
        lines.append(f"| {recognizer.model_dir.name} | {100 * correct.mean():.2f} % | " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
