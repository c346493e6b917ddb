"""Every FER+ candidate model on every figure: `python -m benchmarks.ferplus_candidates DIR DIR ... --out FILE.md`.

FER2013 and FER+ figures (PrivateTest for the record, PublicTest for choosing) are read from each
folder's metrics.json, which `python -m ferlens.training.evaluate` writes and the tests recompute. ExpW figures
are computed here through the upload page's pipeline: the photo detector runs once per photo
(`benchmarks.wild_framing.matched_faces`), and every candidate classifies the same matched crops
with the page's test-time augmentation, so the rows differ by their weights alone. ExpW is a
validation set for the whole pipeline: it is reported, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.wild_framing import matched_faces
from ferlens.config import CLASS_NAMES, DEFAULT_EXPW_DIR, IMAGE_SIZE
from ferlens.core.recognition import EmotionRecognizer, bounded_crop
from ferlens.core.tta import PHOTO_TTA
from ferlens.machine import machine_summary
from ferlens.modelfolder.artifacts import METRICS_FILE
from ferlens.training.wild import load_labels, wild_report


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def stored_figures(model_dir: Path) -> dict:
    """The FER2013 and FER+ figures of a candidate, from its metrics.json."""
    metrics = json.loads((model_dir / METRICS_FILE).read_text())
    ferplus = metrics.get("ferplus", {})
    return {
        "labels": metrics.get("labels", "FER2013 labels (one annotator a face)"),
        "parameters": metrics.get("model", {}).get("parameters"),
        "ferplus_test": ferplus.get("test", {}),
        "ferplus_val": ferplus.get("val", {}),
        "fer2013_test": metrics.get("test", {}),
        "fer2013_val": metrics.get("val", {}),
        "flip": metrics.get("tta", {}).get("flip", {}),
    }


def expw_figures(model_dir: Path, found: list, labels: np.ndarray, margin: float) -> dict:
    """ExpW through the upload page's pipeline with this model, on the boxes found once for all."""
    recognizer = EmotionRecognizer(model_dir, tta=PHOTO_TTA)
    hits = [i for i, (_, box) in enumerate(found) if box is not None]
    crops = np.stack([bounded_crop(found[i][0], found[i][1], IMAGE_SIZE, margin) for i in hits])
    predicted = np.full(len(labels), -1)
    predicted[hits] = recognizer.classify(crops).argmax(1)
    return wild_report(labels, predicted)


def table(rows: list[tuple[str, dict, dict]]) -> list[str]:
    lines = [
        "| candidate | parameters | learned from | FER+ PrivateTest: accuracy / balanced / macro-F1 | cross-entropy "
        "| clear expressions: accuracy / called neutral "
        "| FER2013 PrivateTest: accuracy / balanced / macro-F1 | PublicTest FER+ / FER2013 (choosing) "
        "| ExpW: all faces / found / macro-F1 | ExpW recall: " + " / ".join(CLASS_NAMES) + " |",
        "|---" * 10 + "|",
    ]
    for name, fig, wild in rows:
        fp, f13 = fig["ferplus_test"], fig["fer2013_test"]
        ce = fp.get("cross_entropy")
        clear = fp.get("clear_expressions", {})
        recalls = " / ".join(f"{100 * wild['per_class_recall'][c]:.0f}" for c in CLASS_NAMES)
        params = f"{fig['parameters'] / 1e6:.2f} M" if fig["parameters"] else "n/a"
        lines.append(
            f"| `{name}` | {params} | {fig['labels']} | {pct(fp.get('accuracy'))} / {pct(fp.get('balanced_accuracy'))} / "
            f"{pct(fp.get('macro_f1'))} | {'n/a' if ce is None else f'{ce:.3f}'} | {pct(clear.get('accuracy'))} / "
            f"{pct(clear.get('called_neutral'))} | {pct(f13.get('accuracy'))} / "
            f"{pct(f13.get('balanced_accuracy'))} / {pct(f13.get('macro_f1'))} | {pct(fig['ferplus_val'].get('accuracy'))} / "
            f"{pct(fig['fer2013_val'].get('accuracy'))} | {pct(wild['accuracy_all'])} / {pct(wild['accuracy_found'])} / "
            f"{pct(wild['macro_f1'])} | {recalls} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ferplus_candidates", description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", type=Path, nargs="+", help="evaluated model folders (metrics.json with FER+ figures)")
    parser.add_argument("--expw", type=Path, default=DEFAULT_EXPW_DIR)
    parser.add_argument("--out", type=Path, required=True, help="the Markdown table to write")
    args = parser.parse_args(argv)
    faces = load_labels(args.expw)
    labels = np.array([face.label for face in faces])
    detecting = EmotionRecognizer(args.model_dirs[0])
    started = time.time()
    found, labels = matched_faces(detecting, faces)
    print(f"detection: {time.time() - started:.0f} s for {len(faces)} photos", file=sys.stderr)
    rows = []
    for model_dir in args.model_dirs:
        rows.append((model_dir.name, stored_figures(model_dir), expw_figures(model_dir, found, labels, detecting.margin)))
        wild = rows[-1][2]
        print(f"{model_dir.name}: ExpW all {wild['accuracy_all']:.4f}, macro-F1 {wild['macro_f1']:.4f}", file=sys.stderr)
    lines = [
        "# FER+ candidates on every figure", "",
        f"Written by `python -m benchmarks.ferplus_candidates {' '.join(str(d) for d in args.model_dirs)} --out {args.out}` "
        f"on {machine_summary()}. FER2013 and FER+ figures: single centre crop, from each folder's metrics.json; "
        f"FER+ is the majority protocol (faces whose majority is contempt, unknown or not a face left out); clear "
        f"expressions are the PrivateTest faces where 8 of 10 voters named one emotion other than neutral. ExpW: "
        f"{len(faces)} labelled faces through the upload page's pipeline (detector `{detecting.detector.name}`, "
        f"test-time augmentation `{PHOTO_TTA}`), the same detections for every row; a missed face counts as wrong "
        "under \"all faces\".", "",
        *table(rows), "",
    ]
    args.out.write_text("\n".join(lines))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
