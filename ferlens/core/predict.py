"""Command line: `python -m ferlens.core.predict PATH... [--csv OUT] [--json]` for images, folders and videos.

Each PATH is an image, a folder (searched recursively; images only, anything else is reported
and skipped) or a video file (one row per face per analysed frame: `--every N` or `--fps F`).
A failure on one input never stops the others: it is reported on one stderr line. The exit
status is 0 when every input went well, 1 when some failed (a folder without images counts) or the
results could not be written (a full disk, a closed pipe), 2 for unusable arguments or when the
model cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from ferlens.config import DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR, VIDEO_SUFFIXES
from ferlens.core.detectors import PHOTO_DETECTOR, VIDEO_DETECTOR, DetectorSettings, detector_names
from ferlens.core.drawing import reading_order
from ferlens.core.images import IMAGE_SUFFIXES
from ferlens.core.recognition import EmotionRecognizer, Face
from ferlens.core.results import CsvWriter, photo_rows, to_records
from ferlens.core.tta import DEFAULT_TTA, PHOTO_TTA, TTA_MODES
from ferlens.files import Input, check_regular_file, display_name, one_line, walk_folder
from ferlens.modelfolder.loading import AUTO_ORDERS, BACKEND_FILES, LIVE_BACKEND, PHOTO_BACKEND, ModelLoadError


def expand_inputs(paths: list[Path]) -> Iterator[Input]:
    """Command-line paths as inputs: folders are walked recursively (sorted, links not followed)
    and give their images; a named file is a video by its extension, else an image. A folder
    without a single image is an error of its own."""
    for path in paths:
        try:
            is_folder = path.is_dir()
        except OSError:  # e.g. a name too long: reported when the file is read
            is_folder = False
        if is_folder:
            yield from _folder_inputs(path)
        elif str(path) == "-":
            yield Input(path, "error", "reading from standard input is not supported; save the image to a file")
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            yield Input(path, "video")
        else:
            yield Input(path, "image")


def _folder_inputs(path: Path) -> Iterator[Input]:
    """A folder's images; its other files are reported as skipped (videos are analysed only when named)."""
    images = videos = unlisted = 0
    for found in walk_folder(path, _folder_file):
        images += found.kind == "image"
        videos += found.kind == "skip" and found.path.suffix.lower() in VIDEO_SUFFIXES
        unlisted += found.kind == "error"
        yield found
    if not images and not unlisted:
        hint = (" (it is a folder, not a video)" if path.suffix.lower() in VIDEO_SUFFIXES else
                "; name its videos on the command line to analyse them" if videos else "")
        yield Input(path, "error", f"no images found in {display_name(path)}{hint}")


def _folder_file(found: Path) -> Input:
    suffix = found.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Input(found, "image")
    if suffix in VIDEO_SUFFIXES:
        return Input(found, "skip", "not an image (videos in folders are not analysed: name the video itself)")
    return Input(found, "skip", "not an image")


class _ArgumentParser(argparse.ArgumentParser):
    """Usage errors on one line (the full usage is many lines long; --help shows it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def non_empty_path(text: str) -> Path:
    """A path argument; an empty one (an unset shell variable) would become "." and walk the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?)")
    return Path(text)


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty file name (an unset shell variable?)")
    return text


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
    parser = _ArgumentParser(prog="python -m ferlens.core.predict", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=non_empty_path, metavar="PATH",
                        help="images (jpg, png, webp, bmp, ...), folders of images, videos (" +
                        ", ".join(s.lstrip(".") for s in VIDEO_SUFFIXES) + ")")
    parser.add_argument("--csv", metavar="OUT", type=non_empty, help="also write one row per face to this CSV file ('-': stdout)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--every", type=positive_int, metavar="N", help="videos: analyse every N-th frame")
    sampling.add_argument("--fps", type=positive_float, metavar="F", help="videos: analyse F frames per second")
    parser.add_argument("--smooth", action="store_true",
                        help="videos: average each face's probabilities over time, as the live page does")
    parser.add_argument("--model", type=non_empty_path, default=None,
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
    parser.add_argument("--min-neighbors", type=int, default=None,
                        help=f"Haar cascade: higher finds fewer false faces (default: {DEFAULTS.min_neighbors})")
    parser.add_argument("--scale-factor", type=float, default=None,
                        help=f"Haar cascade: smaller finds more faces, slower (default: {DEFAULTS.scale_factor})")
    parser.add_argument("--tta", choices=TTA_MODES, default=None,
                        help=f"test-time augmentation (default: {PHOTO_TTA} for images, {DEFAULT_TTA} for videos)")
    args = parser.parse_args(argv)
    if args.csv == "-" and args.json:
        parser.error("--csv - and --json would both write to stdout; give --csv a file name")
    try:  # the detectors' own ranges, checked before any model loads, under the options' names
        detector_settings(args)
    except ValueError as exc:
        name, _, rest = str(exc).partition(" ")
        parser.error(f"argument --{name.replace('_', '-')}: {rest}")
    return args


#: The detection settings the options leave at their defaults.
DEFAULTS = DetectorSettings()


def detector_settings(args: argparse.Namespace) -> DetectorSettings:
    """The options' detection settings; ValueError naming the setting when one is out of its range."""
    return DetectorSettings(
        scale_factor=DEFAULTS.scale_factor if args.scale_factor is None else args.scale_factor,
        min_neighbors=DEFAULTS.min_neighbors if args.min_neighbors is None else args.min_neighbors,
        min_size=args.min_size, score_threshold=args.score_threshold)


def ignored_options(args: argparse.Namespace, inputs: list[Input]) -> list[str]:
    """One warning per option given that does nothing for these inputs (or for one kind of them)."""
    kinds = {item.kind for item in inputs}
    warnings_ = []
    video_only = [f"--{name}" for name in ("every", "fps", "smooth") if getattr(args, name) not in (None, False)]
    if video_only and "video" not in kinds:
        warnings_.append(f"{', '.join(video_only)} {'applies' if len(video_only) == 1 else 'apply'} only to videos "
                         "and there is none among the inputs: ignored")
    if args.whole_image and "image" not in kinds:
        warnings_.append("--whole-image applies only to images and there is none among the inputs: ignored")
    # Which detector finds the faces of each kind of input (none for images read whole).
    detectors = {}
    if "image" in kinds and not args.whole_image:
        detectors["images"] = args.detector or PHOTO_DETECTOR
    if "video" in kinds:
        detectors["videos"] = args.detector or VIDEO_DETECTOR
    uses = {"--scale-factor": ("the Haar cascade", lambda name: "haar" in name.split("+")),
            "--min-neighbors": ("the Haar cascade", lambda name: "haar" in name.split("+")),
            "--score-threshold": ("detectors that score faces (blazeface)", lambda name: name.startswith("blazeface")),
            "--min-size": ("face detection", lambda name: True), "--detector": ("face detection", lambda name: True)}
    for option, (what, used_by) in uses.items():
        if getattr(args, option[2:].replace("-", "_")) is None:
            continue
        unused = [kind for kind, name in detectors.items() if not used_by(name)]
        used = [kind for kind in detectors if kind not in unused]
        why = "; ".join(f"the {kind} are found with {detectors[kind]}" for kind in unused)
        if not detectors and "image" in kinds:
            warnings_.append(f"{option} is for {what}, and --whole-image reads each image as one face: ignored")
        elif detectors and not used:
            warnings_.append(f"{option} is for {what}, and {why}: ignored")
        elif unused:
            warnings_.append(f"{option} is for {what}: it applies to the {used[0]} only ({why})")
    return warnings_


STDOUT_NAME = "standard output"


class OutputError(Exception):
    """Results could not be written (a full disk, a closed pipe): no later input could be written either."""

    def __init__(self, target: str, error: OSError):
        super().__init__(f"cannot write results to {target}: {error.strerror or error}")
        self.target = target


class Run:
    """One invocation: the inputs' results, failures and CSV rows, and where they are written."""

    def __init__(self, args: argparse.Namespace, recognizers: dict[str, EmotionRecognizer], csv_out: TextIO | None):
        self.args = args
        if "image" in recognizers:
            self.photo_recognizer = recognizers["image"].with_settings(tta=args.tta or PHOTO_TTA)
        if "video" in recognizers:
            self.video_recognizer = recognizers["video"].with_settings(tta=args.tta or DEFAULT_TTA)
        self.csv_name = STDOUT_NAME if args.csv in ("-", None) else display_name(args.csv)
        try:
            self.csv = CsvWriter(csv_out) if csv_out else None  # writes the header
        except OSError as exc:
            raise OutputError(self.csv_name, exc) from exc
        self.results: list[dict] = []
        self.failed = self.skipped = 0
        self.quiet = not sys.stderr.isatty()

    def report(self, line: str) -> None:
        """One line on stderr, printed above any progress bar (whatever a message quotes: `one_line`)."""
        tqdm.write(one_line(line), file=sys.stderr)

    def image(self, path: Path) -> None:
        check_regular_file(path, "image")
        # Numbered as the upload page numbers them (reading order), so the two give the same rows.
        faces = reading_order(self.photo_recognizer.predict(path, whole_image=self.args.whole_image))
        self._write_rows(photo_rows(faces, str(path)))
        self.results.append({"image": str(path), "faces": [f.to_dict() for f in faces]})
        if self._text_output:
            self.print(_image_text(path, faces))

    def video(self, path: Path) -> None:
        from ferlens.core.video import Sampling, analyse_video  # PyAV comes with the app's extras, not the core

        sampling = Sampling(every=self.args.every, fps=self.args.fps)
        with tqdm(desc=display_name(path.name), unit="frame", leave=False, disable=self.quiet, file=sys.stderr) as bar:
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
            self.print(_video_text(path, result))

    @property
    def _text_output(self) -> bool:
        return not self.args.json and self.args.csv != "-"

    def _write_rows(self, rows) -> None:
        if self.csv:
            try:
                self.csv.write(rows)
            except OSError as exc:
                raise OutputError(self.csv_name, exc) from exc

    def print(self, text: str) -> None:
        """Results as text on stdout; OutputError when they cannot be written."""
        write_stdout(text + "\n")

    def fail(self, path: Path, exc: Exception) -> None:
        self.failed += 1
        name, text = display_name(path), str(exc)
        message = text if text.startswith(name) or text.startswith("no images found in ") else f"{name}: {text}"
        self.results.append({"path": str(path), "error": message})
        self.report(f"error: {message}")

    def skip(self, item: Input) -> None:
        self.skipped += 1
        self.results.append({"path": str(item.path), "skipped": item.reason})
        self.report(f"skipped: {display_name(item.path)}: {item.reason}")


def write_stdout(text: str, *, flush: bool = False) -> None:
    """Write results to stdout; OutputError (naming stdout) when they cannot be written."""
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        raise OutputError(STDOUT_NAME, OSError(9, "it is closed"))
    try:
        sys.stdout.write(text)
        if flush:
            sys.stdout.flush()
    except OSError as exc:
        raise OutputError(STDOUT_NAME, exc) from exc


def _image_text(path: Path, faces: list[Face]) -> str:
    lines = [f"{display_name(path)}: {len(faces)} face(s)" + ("" if faces else " - try --whole-image for a cropped face")]
    for i, face in enumerate(faces, 1):
        x, y, w, h = face.box
        top3 = sorted(face.probabilities.items(), key=lambda kv: -kv[1])[:3]
        lines.append(f"  #{i} at x={x} y={y} {w}x{h}: {face.label} {face.confidence:.0%}  ("
                     + ", ".join(f"{k} {v:.0%}" for k, v in top3) + ")")
    return "\n".join(lines)


def _video_text(path: Path, result: dict) -> str:
    lines = [f"{display_name(path)}: {result['width']}x{result['height']} video, {result['duration_s']:.1f} s; "
             f"{result['frames_analysed']} frames analysed ({result['sampling']}); {len(result['faces'])} face(s) tracked"]
    for face in result["faces"]:
        lines.append(f"  face {face['face']}: seen {face['seconds_seen']:.1f} s ({face['first_s']:.1f}-"
                     f"{face['until_s']:.1f} s), mostly {face['dominant']} ({face[face['dominant']]:.0%} of its time)")
    return "\n".join(lines)


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
    # Videos name their own detector to the analysis; a recognizer for videos alone starts with it too, so
    # that a missing photo detector is not reported for a run that has no photo.
    detector = args.detector or (PHOTO_DETECTOR if "image" in folders else VIDEO_DETECTOR)
    settings = detector_settings(args)
    loaded: dict[tuple[Path, str], EmotionRecognizer] = {}
    for folder, backend in wanted.values():
        if (folder, backend) in loaded:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the recognizer's load warnings are printed below, one line each
            recognizer = loaded[folder, backend] = EmotionRecognizer(
                folder, backend, detector=detector, scale_factor=settings.scale_factor,
                min_neighbors=settings.min_neighbors, min_size=settings.min_size,
                score_threshold=settings.score_threshold,
            )
        for message in getattr(recognizer, "load_warnings", ()):  # e.g. another model format used instead
            print(one_line(f"warning: {message}"), file=sys.stderr)
    return {kind: loaded[key] for kind, key in wanted.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = list(expand_inputs(args.paths))
    if args.csv and args.csv != "-" and any(_same_file(args.csv, path) for path in args.paths):
        print(f"error: --csv {display_name(args.csv)} is one of the inputs, which writing the CSV would overwrite; "
              "give another file name", file=sys.stderr)
        return 2
    if sys.stdout is None:  # started with stdout closed (`>&-`): every result would be lost
        print(f"error: cannot write results to {STDOUT_NAME}: it is closed", file=sys.stderr)
        return 1
    for message in ignored_options(args, inputs):
        print(one_line(f"warning: {message}"), file=sys.stderr)
    folders = model_dirs(args, inputs)
    try:
        recognizers = load_recognizers(args, folders)
    except (ModelLoadError, ValueError) as exc:
        print(one_line(f"error: {exc}"), file=sys.stderr)
        return 2

    csv_file = None
    if args.csv and args.csv != "-":
        try:
            csv_file = open(args.csv, "w", newline="", encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write results to {display_name(args.csv)}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    try:
        run = Run(args, recognizers, sys.stdout if args.csv == "-" else csv_file)
        code = _run(run, inputs)
        if code is None:
            if args.json:
                models = {kind: {"model": str(folders[kind]), "backend": recognizer.backend_name}
                          for kind, recognizer in recognizers.items()}
                write_stdout(json.dumps({"models": models, "results": run.results}, indent=1) + "\n")
            if csv_file is not None:
                try:
                    csv_file.close()  # its last rows are written now
                except OSError as exc:
                    raise OutputError(args.csv, exc) from exc
            write_stdout("", flush=True)
    except OutputError as exc:
        print(one_line(f"error: {exc}"), file=sys.stderr)
        if exc.target == STDOUT_NAME:
            _discard_stdout()
        return 1
    finally:
        if csv_file is not None and not csv_file.closed:
            try:
                csv_file.close()
            except OSError:  # reported above: the rows that failed were the error
                pass
    if code is not None:
        return code
    if run.skipped:
        print(f"skipped {run.skipped} file(s) that are not images", file=sys.stderr)
    return 1 if run.failed else 0


def _run(run: Run, inputs: list[Input]) -> int | None:
    """Each input in turn; OutputError stops them all (nothing more could be written). The exit status
    when interrupted, else None."""
    for item in tqdm(inputs, desc="inputs", unit="file", disable=run.quiet or len(inputs) < 2, file=sys.stderr):
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
        except OutputError:
            raise
        except Exception as exc:  # one input must never abort the batch: say why, go on
            run.fail(item.path, exc)
    return None


def _same_file(a: str | Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (or cannot be looked at): not the same file
        return False


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that what is still buffered for it cannot fail again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):  # no file descriptor (e.g. captured by a test)
        pass


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # a closed pipe outside the results' writes (e.g. stderr): nothing more to say
        _discard_stdout()
        raise SystemExit(1) from None
