"""How the crop around a detected face changes in-the-wild accuracy:
`python -m benchmarks.wild_framing [--limit N]` writes benchmarks/wild_framing.md.

The detector runs once per ExpW photo (as the upload page runs it); every matched face is then
cropped again with each framing (margin around the box, vertical offset) and classified, so the
table isolates what the framing alone does. ExpW is a validation set for the pipeline: this
chooses a crop, never weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ferlens.config import CLASS_NAMES, DEFAULT_EXPW_DIR, IMAGE_SIZE
from ferlens.core.images import as_gray
from ferlens.core.recognition import EmotionRecognizer, bounded_crop
from ferlens.training.wild import load_labels, pipeline_answer, wild_report

ROOT = Path(__file__).resolve().parent.parent

MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)
#: Vertical offset of the crop's centre, as a fraction of the box side (negative: up).
OFFSETS = (-0.05, 0.0, 0.05, 0.1)


def matched_faces(recognizer: EmotionRecognizer, faces) -> tuple[list, np.ndarray]:
    """(gray image, matched box) per labelled face, box None when the detector missed it (or the file
    cannot be read): `ferlens.training.wild.pipeline_answer`'s detection and matching, the gray image beside it."""
    detecting = recognizer.with_settings(tta="none")  # only the boxes are used here: no augmented views
    found = []
    for i, face in enumerate(faces):
        rgb, detections, hit = pipeline_answer(detecting, face)
        if rgb is None:
            found.append((None, None))
            continue
        found.append((as_gray(rgb, "rgb"), detections[hit].box if hit is not None else None))
        if (i + 1) % 500 == 0:
            print(f"  detected {i + 1}/{len(faces)}", file=sys.stderr, flush=True)
    return found, np.array([face.label for face in faces])


def framed(gray: np.ndarray, box, margin: float, offset: float) -> np.ndarray:
    x, y, w, h = box
    return bounded_crop(gray, (x, y + round(offset * h), w, h), IMAGE_SIZE, margin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--expw", type=Path, default=DEFAULT_EXPW_DIR)
    parser.add_argument("--limit", type=int, default=None, help="class-balanced subset of this many faces")
    parser.add_argument("--tta", default="none")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "wild_framing.md")
    args = parser.parse_args(argv)
    recognizer = EmotionRecognizer(args.model, tta=args.tta, threads=1)
    faces = load_labels(args.expw, args.limit)
    started = time.time()
    found, labels = matched_faces(recognizer, faces)
    print(f"detection: {time.time() - started:.0f} s for {len(faces)} photos", file=sys.stderr)
    hits = [i for i, (_, box) in enumerate(found) if box is not None]
    rows = []
    for margin in MARGINS:
        for offset in OFFSETS:
            crops = np.stack([framed(found[i][0], found[i][1], margin, offset) for i in hits])
            predicted = np.full(len(faces), -1)
            predicted[hits] = recognizer.classify(crops).argmax(1)
            report = wild_report(labels, predicted)
            rows.append((margin, offset, report))
            print(f"margin {margin:.2f} offset {offset:+.2f}: on found {100 * report['accuracy_found']:.2f} %, "
                  f"macro-F1 {100 * report['macro_f1']:.2f} %", file=sys.stderr, flush=True)
    lines = [
        "# Crop framing on ExpW", "",
        f"Written by `python -m benchmarks.wild_framing{' --limit ' + str(args.limit) if args.limit else ''}"
        f"{' --tta ' + args.tta if args.tta != 'none' else ''}`. Model `{recognizer.model_dir.name}` "
        f"({recognizer.backend_name}, test-time augmentation: {args.tta}); {len(faces)} labelled faces, "
        f"{len(hits)} found by the photo detector (Haar + HOG), the same boxes for every row.", "",
        "| margin | vertical offset | accuracy, all faces | accuracy, found faces | macro-F1 | "
        + " | ".join(f"{name} recall" for name in CLASS_NAMES) + " |",
        "|---" * (5 + len(CLASS_NAMES)) + "|",
    ]
    for margin, offset, r in rows:
        recalls = " | ".join(f"{100 * r['per_class_recall'][name]:.1f} %" for name in CLASS_NAMES)
        lines.append(f"| {margin:.2f} | {offset:+.2f} | {100 * r['accuracy_all']:.2f} % | "
                     f"{100 * r['accuracy_found']:.2f} % | {100 * r['macro_f1']:.2f} % | {recalls} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
