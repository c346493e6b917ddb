"""Command line: `python -m fer.predict PATH... [--csv OUT] [--json]` for images, folders and videos.

Each PATH is an image, a folder (searched recursively; images only, anything else is reported
and skipped) or a video file (one row per face per analysed frame: `--every N` or `--fps F`).
A failure on one input never stops the others: it is reported on one stderr line. The exit
status is 0 when every input went well, 1 when some failed, 2 when the model cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from fer.backends import AUTO_ORDERS, BACKEND_FILES, LIVE_BACKEND, PHOTO_BACKEND, ModelLoadError
from fer.config import DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR, VIDEO_SUFFIXES
from fer.detectors import PHOTO_DETECTOR, VIDEO_DETECTOR, detector_names
from fer.drawing import reading_order
from fer.files import check_regular_file
from fer.images import IMAGE_SUFFIXES
from fer.recognition import EmotionRecognizer, Face
from fer.results import CsvWriter, photo_rows, to_records
from fer.tta import DEFAULT_TTA, PHOTO_TTA, TTA_MODES


@dataclass(frozen=True)
class Input:
    """One thing to do: an image, a video, a file found in a folder that is not an image (skip), or
    a folder that could not be listed (error)."""

    path: Path
    kind: str  # "image", "video", "skip" or "error"
    reason: str = ""


def expand_inputs(paths: list[Path]) -> Iterator[Input]:
    """Command-line paths as inputs: folders are walked recursively (sorted, links not followed)
    and give their images; a named file is a video by its extension, else an image."""
    for path in paths:
        try:
            is_folder = path.is_dir()
        except OSError:  # e.g. a name too long: reported when the file is read
            is_folder = False
        if is_folder:
            unlisted: list[OSError] = []
            for folder, subfolders, files in os.walk(path, onerror=unlisted.append):
                subfolders.sort()
                for name in sorted(files):
                    found = Path(folder) / name
                    if found.suffix.lower() in IMAGE_SUFFIXES:
                        yield Input(found, "image")
                    else:
                        yield Input(found, "skip", "not an image")
            for error in unlisted:
                yield Input(Path(error.filename or path), "error", f"cannot list this folder ({error.strerror})")
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            yield Input(path, "video")
        else:
            yield Input(path, "image")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fer.predict", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help="images (jpg, png, webp, bmp, ...), folders of images, videos (" +
                        ", ".join(s.lstrip(".") for s in VIDEO_SUFFIXES) + ")")
    parser.add_argument("--csv", metavar="OUT", help="also write one row per face to this CSV file ('-': stdout)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--every", type=positive_int, metavar="N", help="videos: analyse every N-th frame")
    sampling.add_argument("--fps", type=positive_float, metavar="F", help="videos: analyse F frames per second")
    parser.add_argument("--smooth", action="store_true",
                        help="videos: average each face's probabilities over time, as the live page does")
    parser.add_argument("--model", type=Path, default=None,
                        help=f"model folder for images and videos (default: {PHOTO_MODEL_DIR.name} for images, "
                        f"{DEFAULT_MODEL_DIR.name} for videos)")
    parser.add_argument("--backend", default=None, choices=[*AUTO_ORDERS, *BACKEND_FILES],
                        help=f"model format (default: {PHOTO_BACKEND} for images, {LIVE_BACKEND} for videos, "
                        "as the app serves them)")
    parser.add_argument("--whole-image", action="store_true", help="treat each image as one pre-cropped face")
    parser.add_argument("--detector", choices=detector_names(), default=None,
                        help=f"face detector (default: {PHOTO_DETECTOR} for images, {VIDEO_DETECTOR} for videos, as "
                        "the app uses them)")
    parser.add_argument("--min-size", type=int, default=None, help="smallest face in pixels (default: the detector's)")
    parser.add_argument("--score-threshold", type=float, default=None,
                        help="lowest detection score kept, 0-1, for detectors that score faces (default: the detector's)")
    parser.add_argument("--min-neighbors", type=int, default=5, help="Haar cascade: higher finds fewer false faces")
    parser.add_argument("--scale-factor", type=float, default=1.1, help="Haar cascade: smaller finds more faces, slower")
    parser.add_argument("--tta", choices=TTA_MODES, default=None,
                        help=f"test-time augmentation (default: {PHOTO_TTA} for images, {DEFAULT_TTA} for videos)")
    args = parser.parse_args(argv)
    if args.csv == "-" and args.json:
        parser.error("--csv - and --json would both write to stdout; give --csv a file name")
    return args


class Run:
    """One invocation: the inputs' results, failures and CSV rows, and where they are written."""

    def __init__(self, args: argparse.Namespace, recognizers: dict[str, EmotionRecognizer], csv_out: TextIO | None):
        self.args = args
        if "image" in recognizers:
            self.photo_recognizer = recognizers["image"].with_settings(tta=args.tta or PHOTO_TTA)
        if "video" in recognizers:
            self.video_recognizer = recognizers["video"].with_settings(tta=args.tta or DEFAULT_TTA)
        self.csv = CsvWriter(csv_out) if csv_out else None
        self.results: list[dict] = []
        self.failed = self.skipped = 0
        self.quiet = not sys.stderr.isatty()

    def report(self, line: str) -> None:
        """One line on stderr, printed above any progress bar."""
        tqdm.write(line, file=sys.stderr)

    def image(self, path: Path) -> None:
        check_regular_file(path, "image")
        # Numbered as the upload page numbers them (reading order), so the two give the same rows.
        faces = reading_order(self.photo_recognizer.predict(path, whole_image=self.args.whole_image))
        self._write_rows(photo_rows(faces, str(path)))
        self.results.append({"image": str(path), "faces": [f.to_dict() for f in faces]})
        if self._text_output:
            _print_image(path, faces)

    def video(self, path: Path) -> None:
        from fer.video import Sampling, analyse_video  # PyAV comes with the app's extras, not the core

        sampling = Sampling(every=self.args.every, fps=self.args.fps)
        with tqdm(desc=path.name, unit="frame", leave=False, disable=self.quiet, file=sys.stderr) as bar:
            def progress(done: int, expected: int) -> None:
                bar.total = expected
                bar.update(done - bar.n)

            analysis = analyse_video(path, self.video_recognizer, sampling=sampling, smoothing=self.args.smooth,
                                     on_progress=progress, detector=self.args.detector or VIDEO_DETECTOR)
        self._write_rows(analysis.tracks.rows(str(path)))
        info = analysis.info
        result = {
            "video": str(path),
            "width": info.width, "height": info.height, "fps": round(info.fps, 3),
            "duration_s": round(info.duration_s, 3),
            "sampling": sampling.describe(info), "frames_analysed": analysis.frames_analysed,
            "faces": analysis.summary(),
        }
        if self.args.json:
            result["rows"] = to_records(analysis.tracks.rows(), without=("source",))
        self.results.append(result)
        if self._text_output:
            _print_video(path, result)

    @property
    def _text_output(self) -> bool:
        return not self.args.json and self.args.csv != "-"

    def _write_rows(self, rows) -> None:
        if self.csv:
            self.csv.write(rows)

    def fail(self, path: Path, exc: Exception) -> None:
        self.failed += 1
        message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
        self.results.append({"path": str(path), "error": message})
        self.report(f"error: {message}")

    def skip(self, item: Input) -> None:
        self.skipped += 1
        self.results.append({"path": str(item.path), "skipped": item.reason})
        self.report(f"skipped: {item.path}: {item.reason}")


def _print_image(path: Path, faces: list[Face]) -> None:
    print(f"{path}: {len(faces)} face(s)" + ("" if faces else " - try --whole-image for a cropped face"))
    for i, face in enumerate(faces, 1):
        x, y, w, h = face.box
        top3 = sorted(face.probabilities.items(), key=lambda kv: -kv[1])[:3]
        print(f"  #{i} at x={x} y={y} {w}x{h}: {face.label} {face.confidence:.0%}  ("
              + ", ".join(f"{k} {v:.0%}" for k, v in top3) + ")")


def _print_video(path: Path, result: dict) -> None:
    print(f"{path}: {result['width']}x{result['height']} video, {result['duration_s']:.1f} s; "
          f"{result['frames_analysed']} frames analysed ({result['sampling']}); {len(result['faces'])} face(s) tracked")
    for face in result["faces"]:
        print(f"  face {face['face']}: seen {face['seconds_seen']:.1f} s ({face['first_s']:.1f}-{face['last_s']:.1f} s), "
              f"mostly {face['dominant']} ({face[face['dominant']]:.0%} of its time)")


def model_dirs(args: argparse.Namespace, inputs: list[Input]) -> dict[str, Path]:
    """The model folder for each kind of input present: `--model` for all, else the accurate photo
    model for images and the real-time model for videos."""
    kinds = {item.kind for item in inputs if item.kind in ("image", "video")}
    chosen = {"image": args.model or PHOTO_MODEL_DIR, "video": args.model or DEFAULT_MODEL_DIR}
    return {kind: chosen[kind] for kind in sorted(kinds)}


def load_recognizers(args: argparse.Namespace, folders: dict[str, Path]) -> dict[str, EmotionRecognizer]:
    """One recognizer per model folder and format (shared when images and videos use the same ones);
    its load warnings are printed once, one stderr line each. Raises ModelLoadError / ValueError."""
    default_backends = {"image": PHOTO_BACKEND, "video": LIVE_BACKEND}  # the upload page's and the video page's
    wanted = {kind: (folder, args.backend or default_backends[kind]) for kind, folder in folders.items()}
    loaded: dict[tuple[Path, str], EmotionRecognizer] = {}
    for folder, backend in wanted.values():
        if (folder, backend) in loaded:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the recognizer's load warnings are printed below, one line each
            recognizer = loaded[folder, backend] = EmotionRecognizer(
                folder, backend, detector=args.detector or PHOTO_DETECTOR, scale_factor=args.scale_factor,
                min_neighbors=args.min_neighbors, min_size=args.min_size, score_threshold=args.score_threshold,
            )
        for message in getattr(recognizer, "load_warnings", ()):  # e.g. another model format used instead
            print(f"warning: {message}", file=sys.stderr)
    return {kind: loaded[key] for kind, key in wanted.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = list(expand_inputs(args.paths))
    folders = model_dirs(args, inputs)
    try:
        recognizers = load_recognizers(args, folders)
    except (ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        csv_target = (nullcontext(sys.stdout) if args.csv == "-" else open(args.csv, "w", newline="", encoding="utf-8")) \
            if args.csv else nullcontext(None)
    except OSError as exc:
        print(f"error: cannot write {args.csv}: {exc.strerror}", file=sys.stderr)
        return 2

    with csv_target as csv_out:
        run = Run(args, recognizers, csv_out)
        for item in tqdm(inputs, desc="inputs", unit="file", disable=run.quiet or len(inputs) < 2,
                         file=sys.stderr):
            try:
                if item.kind == "skip":
                    run.skip(item)
                elif item.kind == "error":
                    run.fail(item.path, OSError(item.reason))
                elif item.kind == "video":
                    run.video(item.path)
                else:
                    run.image(item.path)
            except KeyboardInterrupt:
                run.report("interrupted")
                return 130
            except Exception as exc:  # one input must never abort the batch: say why, go on
                run.fail(item.path, exc)

    if args.json:
        models = {kind: {"model": str(folders[kind]), "backend": recognizer.backend_name}
                  for kind, recognizer in recognizers.items()}
        print(json.dumps({"models": models, "results": run.results}, indent=1))
    if run.skipped:
        print(f"skipped {run.skipped} file(s) that are not images", file=sys.stderr)
    return 1 if run.failed else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # `... | head` closed stdout: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
