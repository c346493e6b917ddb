"""A blinded look at ExpW's labels where the photo pipeline disagrees with them.

ExpW's labels are noisy (its README: about 57 % looked right in a 20-per-class check), so a low
in-the-wild accuracy may be the model's fault or the label's. This tells the two apart, by eye:

    python -m benchmarks.wild_audit sheets --out /tmp/wild-audit
        runs the photo pipeline (`EmotionRecognizer`, the upload page's model and test-time
        augmentation) on a seeded random sample of ExpW faces, keeps the first faces on which its
        answer differs from the label, and writes numbered contact sheets plus `judgements.txt`.
        Each tile offers two emotions, A and B, in random order: one is the label, the other the
        model's answer, and the sheet does not say which. Sheets hold dataset images: keep them
        outside the repository.
    (a person looks at each tile and writes A, B or N (neither) after it in judgements.txt)
    python -m benchmarks.wild_audit score benchmarks/wild_audit_judgements.txt
        looks the labels up again in ExpW's labels.csv and writes benchmarks/wild_audit.md: how
        often the label, the model or neither fits the face better.

ExpW stays a validation set: this judges labels, it chooses no weights and no setting.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ferlens.config import CLASS_NAMES, DEFAULT_EXPW_DIR, PHOTO_MODEL_DIR
from ferlens.core.framing import crop_face
from ferlens.core.recognition import EmotionRecognizer
from ferlens.core.tta import PHOTO_TTA
from ferlens.training.wild import load_labels, pipeline_answer

ROOT = Path(__file__).resolve().parent.parent

TILE_PX = 160
TILES_PER_SHEET = 20
SHEET_COLUMNS = 5
#: Context shown around the labelled box, as a fraction of its side on each side.
TILE_MARGIN = 0.25
CHOICES = ("A", "B", "N")


def disagreements(recognizer: EmotionRecognizer, root: Path, count: int, seed: int) -> list[tuple]:
    """(face, its RGB image, predicted class) for the first `count` found faces, in a seeded random
    order, on which the pipeline's answer is not the label."""
    faces = load_labels(root)
    order = np.random.default_rng(seed).permutation(len(faces))
    picked = []
    for i in order:
        face = faces[i]
        rgb, found, hit = pipeline_answer(recognizer, face)
        if hit is None:
            continue
        predicted = CLASS_NAMES.index(found[hit].label)
        if predicted != face.label:
            picked.append((face, rgb, predicted))
            if len(picked) == count:
                break
    return picked


def write_sheets(args: argparse.Namespace) -> int:
    recognizer = EmotionRecognizer(args.model or PHOTO_MODEL_DIR, tta=PHOTO_TTA)
    picked = disagreements(recognizer, args.expw, args.count, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [f"# model {recognizer.model_dir.name}, test-time augmentation {PHOTO_TTA}, seed {args.seed}, "
             f"{len(picked)} disagreements; columns: tile, file, A, B, choice (A, B or N)"]
    tiles = []
    for k, (face, rgb, predicted) in enumerate(picked):
        options = [CLASS_NAMES[face.label], CLASS_NAMES[predicted]]
        if rng.random() < 0.5:
            options.reverse()
        lines.append(f"{k} {face.path.name} {options[0]} {options[1]} ?")
        tile = np.stack([crop_face(np.ascontiguousarray(rgb[..., c]), face.box, TILE_PX, TILE_MARGIN)
                         for c in range(3)], axis=-1)[..., ::-1].copy()
        cv2.putText(tile, str(k), (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
        tiles.append(tile)
    for start in range(0, len(tiles), TILES_PER_SHEET):
        chunk = tiles[start:start + TILES_PER_SHEET]
        chunk += [np.zeros_like(tiles[0])] * (-len(chunk) % SHEET_COLUMNS)
        rows = [np.hstack(chunk[r:r + SHEET_COLUMNS]) for r in range(0, len(chunk), SHEET_COLUMNS)]
        cv2.imwrite(str(args.out / f"sheet{start // TILES_PER_SHEET}.png"), np.vstack(rows))
    (args.out / "judgements.txt").write_text("\n".join(lines) + "\n")
    print(f"{len(picked)} tiles in {args.out}; fill in judgements.txt (A, B or N per tile)")
    return 0


def score(args: argparse.Namespace) -> int:
    labels = {face.path.name: CLASS_NAMES[face.label] for face in load_labels(args.expw)}
    text = args.judgements.read_text().splitlines()
    rows = [line.split() for line in text if line and not line.startswith("#")]
    header = text[0].lstrip("# ").split(";")[0]
    verdicts, pairs = Counter(), Counter()
    for row in rows:
        if len(row) != 5 or row[4] not in CHOICES:
            raise SystemExit(f"{args.judgements}: a line is 'tile file A B choice' with choice A, B or N: {row}")
        _, name, first, second, choice = row
        label = labels[name]
        if label not in (first, second):
            raise SystemExit(f"{name}: its label {label} is neither option; the judgements belong to another copy")
        model = second if label == first else first
        verdict = "neither" if choice == "N" else "label" if (first if choice == "A" else second) == label else "model"
        verdicts[verdict] += 1
        pairs[(label, model, verdict)] += 1
    total = sum(verdicts.values())
    lines = [
        "# ExpW labels where the photo pipeline disagrees: a blinded look", "",
        f"Scored by `python -m benchmarks.wild_audit score benchmarks/{args.judgements.name}` "
        f"from sheets made by `python -m benchmarks.wild_audit sheets` ({header}). "
        "Each face was shown with two emotions in random order, the label and the model's answer, "
        "without saying which was which; the judge picked the one that fits the face better, or neither.",
        "", "| the better fit | faces | share |", "|---|---|---|",
    ]
    lines += [f"| {name} | {verdicts[name]} | {100 * verdicts[name] / total:.0f} % |" for name in ("label", "model", "neither")]
    lines += ["", "| label | model's answer | judged: label | model | neither |", "|---|---|---|---|---|"]
    for label, model in sorted({(lab, mod) for lab, mod, _ in pairs}):
        counts = [pairs[(label, model, v)] for v in ("label", "model", "neither")]
        lines.append(f"| {label} | {model} | " + " | ".join(str(c) for c in counts) + " |")
    lines += ["", "One judge on a small sample, and not an independent one: the developer who trained the "
              "model, who knows it leans to angry and could guess which option is its answer. Read it as "
              "whether a miss is more often the model's or the label's, not as an accuracy on clean labels."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[6:9]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expw", type=Path, default=DEFAULT_EXPW_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    sheets = commands.add_parser("sheets", help="blinded contact sheets of disagreements")
    sheets.add_argument("--out", type=Path, required=True, help="a folder outside the repository")
    sheets.add_argument("--model", type=Path, default=None, help="model folder (default: the photo model)")
    sheets.add_argument("--count", type=int, default=60)
    sheets.add_argument("--seed", type=int, default=0)
    scoring = commands.add_parser("score", help="tally filled-in judgements")
    scoring.add_argument("judgements", type=Path)
    scoring.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "wild_audit.md")
    args = parser.parse_args(argv)
    return write_sheets(args) if args.command == "sheets" else score(args)


if __name__ == "__main__":
    raise SystemExit(main())
