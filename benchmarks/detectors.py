"""The face detectors side by side: `python -m benchmarks.detectors [--fer-package-dir DIR]`.

1. ExpW web photos (800 drawn with seed 0): faces found (IoU >= 0.3 with the labelled box, as
   `ferlens.training.wild` counts it), other detections per photo, ms a photo.
2. False faces on face-free pictures (`benchmarks.face_free`).
3. Speed on one thread: detection on a 1280x960 photo; `predict` on a 640x480 frame with one face
   (`EmotionRecognizer()` with each photo detector), beside the `fer` package's `detect_emotions`
   on the same frame when it is installed in DIR (`pip install --no-deps --target DIR fer`: its
   own dependencies are ours but facenet-pytorch, which its default Haar path does not import);
   the live pipeline's frames a second at 640x480 with one face, per detector.

Writes benchmarks/detectors.md, and benchmarks/detectors.json, whose live FPS the live page shows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks import publish

ROOT = Path(__file__).resolve().parent.parent
JSON_OUT = ROOT / "benchmarks" / "detectors.json"
EXPW_PHOTOS, EXPW_SEED = 800, 0

FER_PACKAGE = r"""
import json, statistics, sys, time
import cv2, numpy as np
from fer.fer import FER
frame = np.load(sys.argv[1])
cv2.setNumThreads(1)
detector = FER()
for _ in range(5): detector.detect_emotions(frame)
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter(); faces = detector.detect_emotions(frame); times.append(time.perf_counter() - start)
print(json.dumps({"ms": 1000 * statistics.median(times), "faces": len(faces)}))
"""


def timed_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def expw_rows(names: list[str]) -> list[dict]:
    from ferlens.core.detectors import make_detector
    from ferlens.core.images import read_image
    from ferlens.training.wild import load_labels, match_face

    faces = load_labels()
    faces = random.Random(EXPW_SEED).sample(faces, min(EXPW_PHOTOS, len(faces)))
    photos = [read_image(face.path) for face in faces]
    rows = []
    for name in names:
        detector = make_detector(name)
        found = others = 0
        seconds = 0.0
        for face, rgb in zip(faces, photos):
            view = rgb if detector.uses_color else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            start = time.perf_counter()
            detections = detector.detect(view)
            seconds += time.perf_counter() - start
            hit = match_face([d.box for d in detections], face.box)
            found += hit is not None
            others += len(detections) - (hit is not None)
        rows.append({"detector": name, "found": found / len(faces), "others_per_photo": others / len(faces),
                     "ms_per_photo": 1000 * seconds / len(faces), "photos": len(faces)})
        print(rows[-1], flush=True)
    return rows


def face_frame(width: int, height: int) -> np.ndarray:
    """A BGR frame of the given size with the astronaut's head (one face) in it."""
    from skimage import data

    head = cv2.cvtColor(data.astronaut()[0:300, 100:360], cv2.COLOR_RGB2BGR)
    frame = np.full((height, width, 3), 70, np.uint8)
    side = height // 2
    frame[height // 4:height // 4 + side, width // 3:width // 3 + round(side * 260 / 300)] = cv2.resize(
        head, (round(side * 260 / 300), side))
    return frame


def speed_rows(names: list[str], repeats: int) -> dict:
    from ferlens.core.detectors import LIVE_DETECTORS, make_detector
    from ferlens.core.recognition import EmotionRecognizer
    from ferlens.core.video import LiveProcessor

    cv2.setNumThreads(1)
    photo = face_frame(1280, 960)
    frame = face_frame(640, 480)
    out = {"detect_1280x960_ms": {}, "predict_640x480_ms": {}, "live_fps": {}}
    for name in names:
        detector = make_detector(name)
        view = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB) if detector.uses_color else cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
        out["detect_1280x960_ms"][name] = timed_ms(lambda d=detector, v=view: d.detect(v), repeats)
    for name in ("blazeface", "haar+hog", "haar"):
        recognizer = EmotionRecognizer(detector=name, threads=1)
        found = len(recognizer.predict(frame))
        out["predict_640x480_ms"][name] = {"ms": timed_ms(lambda r=recognizer: r.predict(frame), repeats),
                                           "faces": found}
    live = EmotionRecognizer(backend="realtime", threads=1)
    moving = [np.roll(frame, 6 * (i % 20) - 60, axis=1) for i in range(200)]
    for name in LIVE_DETECTORS:
        processor = LiveProcessor(live, smoothing=True, detector=name)
        for f in moving[:10]:
            processor.analyse(f)
        start = time.perf_counter()
        with_face = sum(bool(processor.analyse(f)[1].faces) for f in moving)
        out["live_fps"][name] = {"fps": len(moving) / (time.perf_counter() - start), "frames_with_face": with_face,
                                 "frames": len(moving)}
    return out


def fer_package_ms(folder: Path | None, repeats: int) -> dict | None:
    """The `fer` package's `detect_emotions` on the same 640x480 frame, in a process of its own."""
    if folder is None:
        return None
    frame_file = ROOT / "benchmarks" / ".frame.npy"
    np.save(frame_file, face_frame(640, 480))
    try:
        env = {**os.environ, "PYTHONPATH": str(folder), "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1",
               "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", FER_PACKAGE, str(frame_file), str(repeats)], cwd="/",
                              env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        frame_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "detectors.md")
    parser.add_argument("--fer-package-dir", type=Path, default=None,
                        help="a folder holding the `fer` package (pip install --no-deps --target DIR fer)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    from benchmarks.face_free import face_free_pictures, false_faces
    from ferlens.core.detectors import PHOTO_DETECTOR, describe, detector_names
    from ferlens.machine import machine_summary

    names = detector_names()
    expw = expw_rows(names)
    pictures = face_free_pictures()
    false = {name: false_faces(name, pictures) for name in names}
    speed = speed_rows(names, args.repeats)
    fer_package = fer_package_ms(args.fer_package_dir, args.repeats)
    JSON_OUT.write_text(json.dumps({"machine": machine_summary(), "expw": expw, "speed": speed,
                                    "fer_package": fer_package}, indent=1))
    lines = [
        "# Face detectors",
        "",
        f"Written by `python -m benchmarks.detectors` on {time.strftime('%Y-%m-%d')}, {machine_summary()}, one "
        f"thread, nothing else running. The photo default is `{PHOTO_DETECTOR}`.",
        "",
        f"## Real photos: {expw[0]['photos']} ExpW photos (seed {EXPW_SEED}), each detector at its defaults",
        "",
        "| detector | what it is | faces found | other detections a photo | ms a photo (<= 320 px) | false faces on "
        f"{len(pictures)} face-free pictures |",
        "|---|---|---|---|---|---|",
    ]
    for row in expw:
        count, where, _ = false[row["detector"]]
        lines.append(f"| {row['detector']} | {describe(row['detector'])} | {100 * row['found']:.1f} % | "
                     f"{row['others_per_photo']:.2f} | {row['ms_per_photo']:.1f} | {count} ({', '.join(where) or '-'}) |")
    lines += ["", "## Speed", "", "| detector | detection, 1280x960 photo (ms) | live pipeline at 640x480, one face (FPS) "
              "| frames with the face |", "|---|---|---|---|"]
    for name in names:
        live = speed["live_fps"].get(name)
        lines.append(f"| {name} | {speed['detect_1280x960_ms'][name]:.1f} | "
                     + (f"{live['fps']:.0f} | {live['frames_with_face']}/{live['frames']} |" if live else "- | - |"))
    lines += ["", "`predict` on a 640x480 frame with one face (`EmotionRecognizer()`: the real-time model, flip):", "",
              "| pipeline | ms | faces |", "|---|---|---|"]
    for name, row in speed["predict_640x480_ms"].items():
        lines.append(f"| ours, detector {name} | {row['ms']:.1f} | {row['faces']} |")
    lines.append("| the `fer` package's `detect_emotions` (Haar + its CNN) | "
                 + (f"{fer_package['ms']:.1f} | {fer_package['faces']} |" if fer_package else
                    "not measured (give --fer-package-dir) | |"))
    return publish(lines + [""], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
