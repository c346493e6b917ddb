"""Faces cut by the picture's edge, on ExpW: `python -m benchmarks.edge_faces [--limit N]`.

How many of ExpW's labelled faces touch the picture's edge (the dataset's crops are cut from the
original photo and clipped at its edges, so a labelled box at the crop's edge is a face at the
photo's), how many of them the photo detector finds (BlazeFace as the upload page runs it, matched
by the dataset's protocol, IoU >= 0.3), and whether a second look at the picture inside a border
(`ferlens.core.detectors.border`: the faces found only then are added) finds more of them without false
faces: counted on the face-free pictures of `benchmarks.face_free`, and as detections other than
the labelled face on ExpW (which may be real faces: ExpW's crops show other people too).

ExpW is a validation set: the detector's settings may be chosen on it, never a classifier trained.
Writes benchmarks/edge_faces.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks import publish
from benchmarks.face_free import face_free_pictures
from ferlens.config import DEFAULT_EXPW_DIR
from ferlens.core.detectors import PHOTO_DETECTOR, make_detector
from ferlens.core.detectors.border import detect_with_border
from ferlens.core.images import InvalidImageError, read_image
from ferlens.machine import cpu_model_name
from ferlens.training.wild import load_labels, match_face

ROOT = Path(__file__).resolve().parent.parent
#: A labelled box within this many pixels of a border touches the edge.
EDGE_TOLERANCE = 2
#: (border as a fraction of the longer side, fill, lowest score of a face added by the second look)
#: tried; the first is the detector without a second look, the second adds at the detector's own threshold.
VARIANTS: tuple[tuple[float, str, float], ...] = (
    (0.0, "constant", 0.0), (0.1, "constant", 0.0), (0.1, "constant", 0.75), (0.1, "constant", 0.8),
    (0.25, "constant", 0.75), (0.1, "replicate", 0.75), (0.1, "reflect", 0.75),
)


def touches_edge(box: tuple[int, int, int, int], shape: tuple[int, ...], tolerance: int = EDGE_TOLERANCE) -> bool:
    """Whether a (x, y, w, h) box reaches within `tolerance` pixels of (or past) a border of an image of `shape`."""
    x, y, w, h = box
    height, width = shape[:2]
    return x <= tolerance or y <= tolerance or x + w >= width - tolerance or y + h >= height - tolerance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expw", type=Path, default=DEFAULT_EXPW_DIR)
    parser.add_argument("--limit", type=int, default=None, help="a class-balanced subset of this many faces")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "edge_faces.md")
    parser.add_argument("--note", default="", help="added to the set-up line, e.g. ', a training run beside it'")
    args = parser.parse_args(argv)
    faces = load_labels(args.expw, args.limit)
    images = []
    for face in faces:
        try:
            images.append(read_image(face.path))
        except InvalidImageError:
            images.append(None)
    edge = np.array([img is not None and touches_edge(f.box, img.shape) for f, img in zip(faces, images)])
    readable = np.array([img is not None for img in images])
    face_free = face_free_pictures()
    load = os.getloadavg()[0]

    detector = make_detector(PHOTO_DETECTOR)  # at the upload page's settings
    rows = []
    for pad, fill, min_score in VARIANTS:
        found = np.zeros(len(faces), bool)
        others = np.zeros(len(faces), np.int64)
        started = time.process_time()
        for i, (face, rgb) in enumerate(zip(faces, images)):
            if rgb is None:
                continue
            boxes = [d.box for d in detect_with_border(detector, rgb, None, pad, fill, min_score)]
            hit = match_face(boxes, face.box)
            found[i] = hit is not None
            others[i] = len(boxes) - found[i]
        cpu_ms = 1000 * (time.process_time() - started) / max(1, readable.sum())
        false = [(name, len(detect_with_border(detector, rgb, None, pad, fill, min_score))) for name, rgb in face_free]
        rows.append({"pad": pad, "fill": fill, "min_score": min_score, "edge": found[edge].mean(),
                     "inner": found[~edge & readable].mean(),
                     "all": found.mean(), "edge_found": int(found[edge].sum()), "others": others.mean(),
                     "false": sum(n for _, n in false), "false_in": [name for name, n in false for _ in range(n)],
                     "cpu_ms": cpu_ms})
        print(rows[-1], flush=True)

    def variant(row: dict) -> str:
        name = "no second look" if row["pad"] == 0 else (
            f"{row['pad']:.0%} border, {row['fill']}, " + (f"added faces scored >= {row['min_score']}"
                                                          if row["min_score"] else "at the detector's own threshold"))
        return name + (" (**chosen**)" if row is chosen else "")

    # The bar: more faces found without false faces. Fewest false faces first, then most faces found.
    chosen = min(rows, key=lambda r: (r["false"], -r["all"]))
    lines = [
        "# Faces cut by the picture's edge (ExpW)",
        "",
        f"{len(faces)} labelled faces of ExpW ({int(readable.sum())} readable); {cpu_model_name() or 'unknown CPU'}, "
        f"{os.cpu_count()} cores, "
        f"load average {load:.1f} when the run started{args.note}. Generated by `python -m benchmarks.edge_faces`.",
        "",
        f"**{int(edge.sum())} of the labelled faces ({edge.sum() / max(1, readable.sum()):.1%}) touch the picture's "
        f"edge** (their box within {EDGE_TOLERANCE} px of it or past it). The photo detector (BlazeFace, back-camera "
        "model, the upload page's settings) scans each picture as it is; with a border, it looks a second time at "
        "the picture inside it, and the faces found only then are added (the others keep their boxes). Found: a "
        "detection overlaps the labelled box by IoU >= 0.3.",
        "",
        "| detector | found, faces at the edge | found, other faces | found, all | other detections a picture "
        f"(ExpW) | false faces on {len(face_free)} face-free pictures | CPU ms a picture |",
        "|---|---|---|---|---|---|---|",
        *[f"| {variant(r)} | {r['edge']:.1%} ({r['edge_found']}) | {r['inner']:.1%} | {r['all']:.1%} | "
          f"{r['others']:.3f} | {r['false']} ({', '.join(r['false_in']) or '-'}) | {r['cpu_ms']:.1f} |" for r in rows],
        "",
        "Chosen: the fewest false faces on the face-free pictures, then the most labelled faces found; the photo "
        "pipeline uses it (`EDGE_PAD`, `EDGE_FILL`, `EDGE_MIN_SCORE` in `ferlens/core/detectors/border.py`, which a test "
        "holds to this table). \"Other detections\" "
        "may be real faces (ExpW's crops show other people too): a rise there, with no new false face on the "
        "face-free pictures, is the border finding faces, not inventing them.",
        "",
    ]
    return publish(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
