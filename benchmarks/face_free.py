"""Pictures with no human face in them, to count false faces: `python -m benchmarks.face_free`.

scikit-image's bundled pictures without a person (a cat, coffee, coins, a rocket, text, textures,
microscopy, ...) and synthetic ones made here (noise, stripes, gradients, printed text, a
checkerboard, shapes). Prints and writes benchmarks/face_free.md: false faces per picture for
each detector, at its default settings as the upload page runs it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks import publish

ROOT = Path(__file__).resolve().parent.parent
#: scikit-image pictures that show no human face (astronaut and camera do), bundled with the wheel.
SKIMAGE_PICTURES = (
    "binary_blobs", "brick", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins", "colorwheel",
    "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon",
    "page", "retina", "rocket", "shepp_logan_phantom", "text",
)


def synthetic_pictures(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Face-free RGB pictures made from scratch: noise, stripes, gradients, text, shapes."""
    rng = np.random.default_rng(seed)
    out = [
        ("uniform noise", rng.integers(0, 256, (480, 640, 3), np.uint8)),
        ("smooth noise", cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), np.uint8), (0, 0), 6)),
        ("grey", np.full((480, 640, 3), 128, np.uint8)),
    ]
    ramp = np.linspace(0, 255, 640, dtype=np.float32)
    out.append(("gradient", np.repeat(np.stack([ramp, ramp[::-1], np.full(640, 128.0)], -1)[None], 480, 0)
                .astype(np.uint8)))
    stripes = ((np.sin(np.arange(640) / 6.0) > 0) * 255).astype(np.uint8)
    out.append(("stripes", np.repeat(np.repeat(stripes[None, :, None], 480, 0), 3, 2)))
    page = np.full((600, 800, 3), 245, np.uint8)
    for row in range(14):
        cv2.putText(page, "The quick brown fox jumps over 0123456789 (o) (O) :-)", (20, 40 + 40 * row),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8, (20, 20, 20), 2)
    out.append(("printed text", page))
    shapes = np.full((480, 640, 3), 200, np.uint8)
    for _ in range(40):
        centre = tuple(int(v) for v in rng.integers(0, (640, 480)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(shapes, centre, int(rng.integers(5, 60)), colour, -1)
    out.append(("circles", shapes))
    return out


def face_free_pictures() -> list[tuple[str, np.ndarray]]:
    """Every face-free picture, as RGB uint8."""
    from skimage import data

    from ferlens.core.images import as_rgb

    def picture(name: str) -> np.ndarray:
        image = getattr(data, name)()
        return as_rgb(image.astype(np.uint8) * 255 if image.dtype == bool else image, "rgb")

    out = [(name, picture(name)) for name in SKIMAGE_PICTURES]
    return out + synthetic_pictures()


def false_faces(detector_name: str, pictures: list[tuple[str, np.ndarray]]) -> tuple[int, list[str], float]:
    """Faces found in face-free pictures by a recognizer's detector as the upload page sets it up:
    (how many, in which pictures, ms a picture)."""
    from ferlens.core.detectors import make_detector

    detector = make_detector(detector_name)
    count, where, seconds = 0, [], 0.0
    for name, rgb in pictures:
        view = rgb if detector.uses_color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        start = time.perf_counter()
        found = detector.detect(view)
        seconds += time.perf_counter() - start
        count += len(found)
        where += [name] * len(found)
    return count, where, 1000 * seconds / len(pictures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "face_free.md")
    args = parser.parse_args(argv)
    from ferlens.core.detectors import detector_names
    from ferlens.machine import machine_summary

    pictures = face_free_pictures()
    lines = [
        "# False faces on face-free pictures",
        "",
        f"Written by `python -m benchmarks.face_free` on {time.strftime('%Y-%m-%d')}, {machine_summary()}. "
        f"{len(pictures)} pictures: {len(SKIMAGE_PICTURES)} of scikit-image's without a person, and "
        f"{len(pictures) - len(SKIMAGE_PICTURES)} synthetic ones. Each detector at its default settings.",
        "",
        "| detector | false faces | per picture | in | ms a picture |",
        "|---|---|---|---|---|",
    ]
    for name in detector_names():
        count, where, ms = false_faces(name, pictures)
        lines.append(f"| {name} | {count} | {count / len(pictures):.2f} | {', '.join(where) or '-'} | {ms:.1f} |")
        print(lines[-1], flush=True)
    return publish(lines + [""], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
