"""Study, ExpW: does any change to the face crop raise the photo model's accuracy on web faces?
`python -m benchmarks.wild_preprocess [--limit 800] [--tta none]`.

The photo detector finds the faces once; every variant then classifies the same matched faces, so
the figures differ only by the crop: blur and sharpening (FER2013's faces are soft), histogram
equalisation and CLAHE, contrast stretch, a low-resolution pass, box scale, and averages over
scales, vertical shifts or equalised copies (framing as test-time augmentation). Writes
benchmarks/wild_preprocess.md. ExpW is a validation set: no weights are chosen on it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from benchmarks import publish
from ferlens.config import CLASS_NAMES, IMAGE_SIZE, PHOTO_MODEL_DIR
from ferlens.core.framing import crop_face
from ferlens.core.images import read_image
from ferlens.core.recognition import EmotionRecognizer
from ferlens.core.tta import predict_with_tta
from ferlens.machine import machine_summary
from ferlens.training.wild import load_labels, match_face

OUT = Path(__file__).with_suffix(".md")
Crop = Callable[[np.ndarray, tuple], np.ndarray]


def sharpen(img: np.ndarray, amount: float, sigma: float = 1.0) -> np.ndarray:
    blur = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.clip(img * (1.0 + amount) - blur * amount, 0, 255).astype(np.uint8)


def stretch(img: np.ndarray) -> np.ndarray:
    low, high = np.percentile(img, (1, 99))
    return np.clip((img.astype(np.float32) - low) * 255 / max(high - low, 1), 0, 255).astype(np.uint8)


def variants(margin: float) -> dict[str, list[Crop]]:
    """Each variant: the crops whose probabilities are averaged (one crop: a plain transform)."""
    def base(g, b):
        return crop_face(g, b, IMAGE_SIZE, margin)

    def scaled(k: float) -> Crop:
        def crop(g, b):
            x, y, w, h = b
            cx, cy = x + w / 2, y + h / 2
            box = (round(cx - w * k / 2), round(cy - h * k / 2), round(w * k), round(h * k))
            return crop_face(g, box, IMAGE_SIZE, margin)
        return crop

    def shifted(dy: float) -> Crop:
        return lambda g, b: crop_face(g, (b[0], round(b[1] + dy * b[3]), b[2], b[3]), IMAGE_SIZE, margin)

    clahe = cv2.createCLAHE(2.0, (4, 4))
    return {
        "as served (baseline)": [base],
        "Gaussian blur, sigma 0.6": [lambda g, b: cv2.GaussianBlur(base(g, b), (0, 0), 0.6)],
        "Gaussian blur, sigma 1.0": [lambda g, b: cv2.GaussianBlur(base(g, b), (0, 0), 1.0)],
        "through 32 px and back": [lambda g, b: cv2.resize(crop_face(g, b, 32, margin), (IMAGE_SIZE, IMAGE_SIZE))],
        "unsharp mask 0.5": [lambda g, b: sharpen(base(g, b).astype(np.float32), 0.5)],
        "unsharp mask 1.0": [lambda g, b: sharpen(base(g, b).astype(np.float32), 1.0)],
        "histogram equalisation": [lambda g, b: cv2.equalizeHist(base(g, b))],
        "CLAHE 2.0, 4x4": [lambda g, b: clahe.apply(base(g, b))],
        "contrast stretch 1-99 %": [lambda g, b: stretch(base(g, b))],
        "box x0.9": [scaled(0.9)],
        "box x1.1": [scaled(1.1)],
        "average: box x0.9, x1, x1.1": [base, scaled(0.9), scaled(1.1)],
        "average: shift -5 %, 0, +5 %": [base, shifted(-0.05), shifted(0.05)],
        "average: plain and equalised": [base, lambda g, b: cv2.equalizeHist(base(g, b))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wild_preprocess", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=800, help="random ExpW faces (seed 0)")
    parser.add_argument("--tta", default="none", help="test-time augmentation on top of each variant")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    faces = load_labels()
    pick = np.random.default_rng(0).permutation(len(faces))[: args.limit]
    recognizer = EmotionRecognizer(PHOTO_MODEL_DIR)
    matched, labels = [], []
    started = time.perf_counter()
    for i in pick:
        rgb = read_image(faces[i].path)
        image = rgb if recognizer.detector.uses_color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found = recognizer.detector.detect(image)
        hit = match_face([d.box for d in found], faces[i].box)
        if hit is not None:
            matched.append((cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), found[hit].box))
            labels.append(faces[i].label)
    labels = np.array(labels)
    print(f"{len(matched)} of {len(pick)} faces found in {time.perf_counter() - started:.0f} s", flush=True)

    rows = []
    for name, crops in variants(recognizer.margin).items():
        probs = 0.0
        for crop in crops:
            batch = np.stack([crop(gray, box) for gray, box in matched])
            probs = probs + np.concatenate([predict_with_tta(recognizer.backend.predict, batch[s:s + 256], args.tta)
                                            for s in range(0, len(batch), 256)])
        predicted = probs.argmax(1)
        right = int((predicted == labels).sum())
        rows.append((name, right / len(labels), right / len(pick), float((predicted == 0).mean())))
        print(f"{name:32s} found {rows[-1][1]:.4f} all {rows[-1][2]:.4f}", flush=True)
    base_right = rows[0][1] * len(labels)
    lines = [
        "# ExpW: changes to the face crop, on the same detected faces",
        "",
        f"`python -m benchmarks.wild_preprocess --limit {args.limit} --tta {args.tta}` on {machine_summary()}. "
        f"Photo model `{PHOTO_MODEL_DIR.name}`, its detector `{recognizer.detector.name}`; {len(matched)} of "
        f"{len(pick)} random ExpW faces (seed 0) found. One face is {100 / len(labels):.2f} points of the accuracy on "
        "found faces; a change of a point or less is inside this sample's noise.",
        "",
        "| crop | accuracy, found faces | accuracy, all faces | change (faces) | share called angry |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {100 * found:.2f} % | {100 * all_faces:.2f} % | {round(found * len(labels) - base_right):+d} | "
              f"{100 * angry:.0f} % |" for name, found, all_faces, angry in rows]
    lines += ["", f"Classes: {', '.join(CLASS_NAMES)}. The baseline is the crop the upload page classifies."]
    return publish(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
