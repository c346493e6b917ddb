"""Command line: `python -m fer.predict IMG [IMG ...] [--json]` prints the faces found in each image.

A file that fails is reported and the others still get their results; the exit status
is 1 if any file failed, 2 if the model could not be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer.backends import BACKEND_FILES, ModelLoadError
from fer.config import DEFAULT_MODEL_DIR
from fer.images import InvalidImageError
from fer.recognition import EmotionRecognizer
from fer.tta import PHOTO_TTA, TTA_MODES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer.predict", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files (jpg, png, webp, bmp, ...)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder")
    parser.add_argument("--backend", default="auto", choices=["auto", *BACKEND_FILES])
    parser.add_argument("--whole-image", action="store_true", help="treat each image as one pre-cropped face")
    parser.add_argument("--min-size", type=int, default=40, help="smallest face in pixels")
    parser.add_argument("--min-neighbors", type=int, default=5)
    parser.add_argument("--scale-factor", type=float, default=1.1)
    parser.add_argument("--tta", choices=TTA_MODES, default=PHOTO_TTA,
                        help="test-time augmentation (ten-crop: most accurate; none: fastest)")
    args = parser.parse_args(argv)

    try:
        recognizer = EmotionRecognizer(
            args.model, args.backend, scale_factor=args.scale_factor,
            min_neighbors=args.min_neighbors, min_size=args.min_size, tta=args.tta,
        )
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    results, failed = [], 0
    for path in args.images:
        try:
            faces = recognizer.predict(path, whole_image=args.whole_image)
            results.append({"image": str(path), "faces": [f.to_dict() for f in faces]})
        except InvalidImageError as exc:
            failed += 1
            results.append({"image": str(path), "error": str(exc)})
            if not args.json:
                print(f"error: {exc}", file=sys.stderr)

    if args.json:
        print(json.dumps({"model": str(args.model), "backend": recognizer.backend_name, "results": results}, indent=1))
    else:
        for result in results:
            if "error" in result:
                continue
            faces = result["faces"]
            print(f"{result['image']}: {len(faces)} face(s)" + ("" if faces else " - try --whole-image for a cropped face"))
            for i, face in enumerate(faces, 1):
                box = face["box"]
                top3 = sorted(face["probabilities"].items(), key=lambda kv: -kv[1])[:3]
                print(f"  #{i} at x={box['x']} y={box['y']} {box['width']}x{box['height']}: "
                      f"{face['label']} {face['confidence']:.0%}  ("
                      + ", ".join(f"{k} {v:.0%}" for k, v in top3) + ")")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
