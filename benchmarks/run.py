"""Speed, memory and size of the shipped models in every format: `python -m benchmarks.run`.

The real-time model (live camera, video) gets every row; the photo model (upload page, CLI on
images), where one is shipped, gets the test-time augmentation and photo rows beside it.

Every row is measured in this one run on this machine; times are medians and p95 over
repeated calls. Prints a Markdown report and writes it to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ferlens.config import DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR  # noqa: E402
from ferlens.core.detectors import LIVE_DETECTOR, PHOTO_DETECTOR, box_iou  # noqa: E402
from ferlens.core.drawing import draw_faces  # noqa: E402
from ferlens.core.recognition import EmotionRecognizer  # noqa: E402
from ferlens.core.tta import DEFAULT_TTA, PHOTO_TTA, TTA_MODES  # noqa: E402
from ferlens.core.video import LIVE_FULL_SCAN_EVERY, LiveProcessor  # noqa: E402
from ferlens.modelfolder.artifacts import MODEL_FILE, ModelArtifacts, list_model_dirs  # noqa: E402
from ferlens.modelfolder.loading import BACKEND_FILES, LIVE_BACKEND, available_backends, load_backend  # noqa: E402

FORMATS = ("keras", "tflite", "tflite-int8", "onnx")


def timed(fn, repeats: int, warmup: int = 5, *, with_mean: bool = False) -> tuple[float, ...]:
    """Median and p95 (and, if asked, mean) wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    stats = (float(np.median(times)), float(np.percentile(times, 95)))
    return (*stats, float(np.mean(times))) if with_mean else stats


def face_photo() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def make_frame(faces: int, photo: np.ndarray) -> np.ndarray:
    """A 640x480 BGR frame with `faces` copies of the astronaut's head on a plain background."""
    frame = np.full((480, 640, 3), 60, np.uint8)
    head = photo[30:230, 130:320]  # face with some hair and shoulders
    size = {1: 220, 3: 150, 10: 110}[faces]
    head = cv2.resize(head, (int(size * head.shape[1] / head.shape[0]), size))
    cols = {1: 1, 3: 3, 10: 5}[faces]
    for i in range(faces):
        r, c = divmod(i, cols)
        y = 10 + r * (size + 15) if faces > 1 else 130
        x = 10 + c * (head.shape[1] + 8) if faces > 1 else 220
        frame[y:y + head.shape[0], x:x + head.shape[1]] = head
    return frame


def classification_rows(model_dirs: dict[str, Path], repeats: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, 48, 48, 1)).astype(np.float32)
    batch = rng.integers(0, 256, (64, 48, 48, 1)).astype(np.float32)
    for label, folder in model_dirs.items():
        for fmt in [f for f in FORMATS if f in available_backends(folder)]:
            backend = load_backend(folder, fmt, threads=1)
            med, p95 = timed(lambda b=backend: b.predict(one), repeats)
            bmed, bp95 = timed(lambda b=backend: b.predict(batch), max(10, repeats // 10))
            rows.append({"model": label, "format": fmt, "ms_per_face_batch1": med, "p95_batch1": p95,
                         "ms_per_face_batch64": bmed / 64, "faces_per_s_batch64": 64000 / bmed})
    return rows


def tta_rows(model_dir: Path, backend: str, metrics: dict, repeats: int) -> list[dict]:
    """Cost of one face through `EmotionRecognizer.classify` per test-time augmentation mode,
    beside that mode's accuracy from metrics.json."""
    recognizer = EmotionRecognizer(model_dir, backend, threads=1)
    face = np.random.default_rng(0).integers(0, 256, (1, 48, 48)).astype(np.uint8)
    rows = []
    for mode in TTA_MODES:
        clone = recognizer.with_settings(tta=mode)
        med, p95 = timed(lambda r=clone: r.classify(face), repeats)
        scores = {"test_accuracy": metrics["test"]["accuracy"], "val_accuracy": metrics["val"]["accuracy"]} \
            if mode == "none" else metrics.get("tta", {}).get(mode, {})
        rows.append({"model": model_dir.name, "tta": mode, "ms_per_face": med, "p95": p95, **scores})
    return rows


def moving(frame: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` copies of `frame` whose content slides up to 40 px sideways and 15 px up/down."""
    return [
        cv2.warpAffine(frame, np.float32([[1, 0, 40 * np.sin(i / 6)], [0, 1, 15 * np.sin(i / 9)]]),
                       (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        for i in range(count)
    ]


def pipeline_rows(model_dir: Path, backend: str, repeats: int) -> list[dict]:
    """Frames per second of detect + crop + classify + draw, three ways.

    "full"/"half": a full Haar scan of every frame at that resolution (`recognizer.predict`).
    "followed": the live page's pipeline (`LiveProcessor`, smoothing off): a half-resolution
    full scan every `LIVE_FULL_SCAN_EVERY`th frame, re-detection near the known faces in between, on frames whose
    faces move; its boxes are compared with a full scan of the same frame (mean IoU).
    """
    cv2.setNumThreads(1)
    recognizer = EmotionRecognizer(model_dir, backend, threads=1, detector=LIVE_DETECTOR)
    photo = face_photo()
    rows = []
    for faces in (1, 3, 10):
        frame = make_frame(faces, photo)
        for label, downscale in (("full", 1.0), ("half", 0.5)):
            def scan(frame=frame, downscale=downscale):
                # The live page's detector (photos use another: see photo_rows).
                boxes = recognizer.detector.detect(recognizer.to_gray(frame), downscale)
                return recognizer.predict(frame, boxes=boxes) if boxes else []

            found = len(scan())

            def step(frame=frame, scan=scan):
                draw_faces(frame, scan(), color_order="bgr")

            med, p95, mean = timed(step, repeats, with_mean=True)
            rows.append({"faces": faces, "found": found, "detection": f"{label} resolution, every frame",
                         "ms_per_frame": med, "p95": p95, "fps": 1000 / mean})
        clip = moving(frame, 60)
        live = LiveProcessor(recognizer, smoothing=False, detect_downscale=0.5, full_scan_every=LIVE_FULL_SCAN_EVERY)
        med, p95, mean = timed(lambda live=live, frames=itertools.cycle(clip): live.process(next(frames)), repeats,
                               with_mean=True)
        overlaps, kept = [], []
        processor = LiveProcessor(recognizer, smoothing=False, detect_downscale=0.5, full_scan_every=LIVE_FULL_SCAN_EVERY)
        for f in clip:  # one pass again, now checking every frame's boxes against a full scan
            processor.process(f)
            truth = recognizer.detector.detect(recognizer.to_gray(f), 0.5)
            boxes = [face.box for face in processor.follower.faces]
            kept.append(len(boxes))
            overlaps += [max((box_iou(t.box, b) for b in boxes), default=0.0) for t in truth]
        rows.append({"faces": faces, "found": int(np.median(kept)),
                     "detection": (f"half resolution, full scan every {LIVE_FULL_SCAN_EVERY}th frame, "
                                   "re-detection near faces between"),
                     "ms_per_frame": med, "p95": p95, "fps": 1000 / mean, "box_iou": float(np.mean(overlaps))})
    return rows


def photo_rows(model_dir: Path, backend: str, repeats: int) -> list[dict]:
    """One photo through `EmotionRecognizer.predict` as the upload page and CLI run it (the photo
    detector, ten-crop), against the earlier Haar + HOG and the cascade alone, at the photo's size and at 1600 px."""
    photo = face_photo()
    rows = []
    for size in (photo.shape[1], 1600):
        image = photo if size == photo.shape[1] else cv2.resize(photo, (size, size), interpolation=cv2.INTER_CUBIC)
        for label in (PHOTO_DETECTOR, "haar+hog", "haar"):
            recognizer = EmotionRecognizer(model_dir, backend, threads=1, tta=PHOTO_TTA, detector=label)
            found = len(recognizer.predict(image))
            med, p95 = timed(lambda r=recognizer, i=image: r.predict(i), max(20, repeats // 10))
            rows.append({"model": model_dir.name, "size": f"{size}x{size}", "detection": label, "found": found,
                         "ms": med, "p95": p95})
    return rows


#: Run with `python -c` in a fresh process (its own peak memory), from the caller's directory so a relative
#: model path still resolves; a `-c` script is not part of the package, so it puts the repository on sys.path.
MEMORY_SCRIPT = """
import resource, sys, json
sys.path.insert(0, {root!r})
sys.argv = ["x"]
import numpy as np, cv2
from benchmarks.run import make_frame, face_photo
from ferlens.core.recognition import EmotionRecognizer
from ferlens.core.drawing import draw_faces
rec = EmotionRecognizer({model!r}, {backend!r}, threads=1)
frame = make_frame(3, face_photo())
rss = []
for i in range(1000):
    f = frame.copy(); f[0, i % 640] = i % 255
    draw_faces(f, rec.predict(f, detect_downscale=0.5), color_order="bgr")
    if (i + 1) % 100 == 0:
        with open("/proc/self/statm") as s:
            rss.append(int(s.read().split()[1]) * 4096 / 2**20)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"rss_mb": rss, "peak_mb": peak / 1024}}))
"""


def memory_row(model_dir: Path, backend: str) -> dict:
    code = MEMORY_SCRIPT.format(root=str(ROOT), model=str(model_dir), backend=backend)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    rss = data["rss_mb"]
    return {"backend": backend, "peak_rss_mb": data["peak_mb"], "rss_after_100": rss[0], "rss_after_1000": rss[-1],
            "growth_mb": rss[-1] - rss[0]}


def paper_model_dir(tmp: Path) -> Path:
    """The paper architecture with random weights, exported like the shipped model, for scale."""
    from ferlens.training.architectures import build_model
    from ferlens.training.export import export_onnx, export_tflite

    model = build_model("paper")
    model.save(tmp / MODEL_FILE)
    export_tflite(model, tmp / BACKEND_FILES["tflite"])
    export_onnx(model, tmp / BACKEND_FILES["onnx"])
    return tmp


def render(report: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {report['machine']}. Command: `python -m benchmarks.run`. All rows from one run; "
        "times are medians (p95 in brackets), inference on one thread.",
        "",
        "## Per-face classification",
        "",
        "| model | format | ms/face, batch 1 | ms/face in a batch of 64 | faces/s, batch 64 |",
        "|---|---|---|---|---|",
    ]
    for r in report["classification"]:
        lines.append(f"| {r['model']} | {r['format']} | {r['ms_per_face_batch1']:.3f} ({r['p95_batch1']:.3f}) | "
                     f"{r['ms_per_face_batch64']:.3f} | {r['faces_per_s_batch64']:.0f} |")
    lines += ["", f"## Test-time augmentation (one face through the recognizer, backend {report['backend']})", "",
              "| model | mode | ms/face | PrivateTest accuracy | PublicTest accuracy |", "|---|---|---|---|---|"]
    for r in report["tta"]:
        lines.append(f"| {r['model']} | {r['tta']} | {r['ms_per_face']:.3f} ({r['p95']:.3f}) | "
                     f"{_pct(r.get('test_accuracy'))} | {_pct(r.get('val_accuracy'))} |")
    lines += ["", f"## End-to-end frame pipeline (640x480; detect, crop, classify, draw; backend {report['live_backend']}, "
              f"test-time augmentation {DEFAULT_TTA}, as on the live page)", "",
              "| faces in frame | faces found | detection | ms/frame | FPS (frames / total time) "
              "| boxes vs a full scan (mean IoU) |",
              "|---|---|---|---|---|---|"]
    for r in report["pipeline"]:
        overlap = f"{r['box_iou']:.3f}" if "box_iou" in r else "(is the full scan)"
        lines.append(f"| {r['faces']} | {r['found']} | {r['detection']} | {r['ms_per_frame']:.2f} "
                     f"({r['p95']:.2f}) | {r['fps']:.0f} | {overlap} |")
    lines += ["", f"## Photos (the astronaut photo through the recognizer, test-time augmentation {PHOTO_TTA}, "
              f"backend {report['backend']})", "",
              "| model | photo | detection | faces found | ms/photo |", "|---|---|---|---|---|"]
    for r in report["photos"]:
        lines.append(f"| {r['model']} | {r['size']} | {r['detection']} | {r['found']} | {r['ms']:.1f} ({r['p95']:.1f}) |")
    m = report["memory"]
    lines += ["", f"## Memory (1,000 frames with 3 faces, half-resolution detection, backend {m['backend']})", "",
              f"Peak RSS {m['peak_rss_mb']:.0f} MB; RSS after 100 frames {m['rss_after_100']:.1f} MB, after 1,000 "
              f"{m['rss_after_1000']:.1f} MB (growth {m['growth_mb']:+.1f} MB).", "",
              "## Model size and accuracy per format (accuracy from metrics.json, written by `ferlens.training.evaluate`)", "",
              f"Parameters: {report['parameters']:,}", "",
              "| format | file | size (MB) | PrivateTest accuracy |", "|---|---|---|---|"]
    for name, f in report["formats"].items():
        lines.append(f"| {name} | {f['file']} | {f['size_bytes'] / 1e6:.2f} | {_pct(f.get('test_accuracy'))} |")
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return f"{100 * value:.2f} %" if value is not None else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="the real-time model")
    parser.add_argument("--photo-model", type=Path, default=PHOTO_MODEL_DIR, help="the model for still photos")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.md")
    args = parser.parse_args(argv)
    from ferlens.training.train import hardware_description  # imports TensorFlow: keep it out of the memory subprocess

    metrics = ModelArtifacts.load(args.model).metrics
    # The formats the pages would load: the same choice, manifest checks and fallbacks included.
    fastest = load_backend(args.model, "auto", threads=1).name
    live_backend = load_backend(args.model, LIVE_BACKEND, threads=1).name
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {f"{args.model.name} (shipped)": args.model}
        dirs.update({d.name: d for d in list_model_dirs() if d.resolve() != args.model.resolve()})
        dirs["paper (random weights)"] = paper_model_dir(Path(tmp))
        report = {
            "machine": f"{os.cpu_count()} cores, {hardware_description()}, Python {platform.python_version()}",
            "classification": classification_rows(dirs, args.repeats),
        }
    report["backend"] = fastest
    report["live_backend"] = live_backend
    models = [args.model] + ([args.photo_model] if args.photo_model.resolve() != args.model.resolve() else [])
    report["tta"] = [row for folder in models for row in tta_rows(
        folder, fastest, ModelArtifacts.load(folder).metrics, args.repeats)]
    report["pipeline"] = pipeline_rows(args.model, live_backend, max(50, args.repeats // 3))
    report["photos"] = [row for folder in models[::-1] for row in photo_rows(folder, fastest, args.repeats)]
    report["memory"] = memory_row(args.model, live_backend)
    report["parameters"] = metrics["model"]["parameters"]
    report["formats"] = metrics.get("formats", {})
    text = render(report)
    args.out.write_text(text)
    print(text)
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
