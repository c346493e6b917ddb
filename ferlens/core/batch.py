"""Analyse an archive: `python -m ferlens.core.batch INPUT... --out RESULTS_DIR [--engine local|ray]`.

INPUTs are images, folders (searched recursively), videos, or text files that list such paths, one
per line. Results go to Parquet files under RESULTS_DIR, one row per face (per analysed frame for
videos) with the columns of every results file (`ferlens.core.results.CSV_COLUMNS`), and `failed.parquet`
lists the inputs that could not be analysed, with the reason.

How it stays exact, bounded and resumable:
- The inputs are planned once into work units (an image, a video, or a stretch of a long video),
  streamed to `plan.jsonl` without holding the list in memory.
- `--engine local` analyses the units in this process; `--engine ray` on Ray Data, one model load
  per worker of an actor pool. Both run the same `UnitAnalyser`, so they give the same rows.
- Results are written in parts: a part's Parquet file is renamed into place, then its units are
  recorded as done in `progress.sqlite`, in that order. A rerun with the same RESULTS_DIR deletes
  any part not recorded (the job was killed in between) and skips the units that are, so a killed
  job loses only the units in flight and never writes a face twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from ferlens import files
from ferlens.config import DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR, VIDEO_SUFFIXES
from ferlens.core.detectors import PHOTO_DETECTOR, VIDEO_DETECTOR
from ferlens.core.images import IMAGE_SUFFIXES
from ferlens.core.results import CsvWriter, FaceRow, photo_rows
from ferlens.core.tta import DEFAULT_TTA, PHOTO_TTA, TTA_MODES
from ferlens.files import Input
from ferlens.modelfolder.loading import LIVE_BACKEND, PHOTO_BACKEND, ModelLoadError

#: A video longer than this is analysed in parts of this length, so that each fits a worker and a
#: killed job loses at most one part of it. Face IDs restart in each part, offset by PART_ID_STRIDE.
DEFAULT_UNIT_SECONDS = 600.0
PART_ID_STRIDE = 100_000
#: A part file is written every this many units or seconds, whichever comes first.
PART_UNITS, PART_SECONDS = 500, 60.0
#: Ray engine: units in a block of the plan (a dead worker's block is retried whole).
UNITS_PER_BLOCK = 10
#: Suffixes of text files that list inputs, one path per line.
LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst", ".list")


# ---------------------------------------------------------------- the job and its units


@dataclass(frozen=True)
class JobSettings:
    """Everything a row depends on. Stored in RESULTS_DIR/job.json: a rerun with other settings is
    refused, so the results of one directory never mix two models or samplings."""

    image_model: str = str(PHOTO_MODEL_DIR)
    image_backend: str = PHOTO_BACKEND
    image_tta: str = PHOTO_TTA
    image_detector: str = PHOTO_DETECTOR
    video_model: str = str(DEFAULT_MODEL_DIR)
    video_backend: str = LIVE_BACKEND
    video_tta: str = DEFAULT_TTA
    video_detector: str = VIDEO_DETECTOR
    every: int | None = None
    fps: float | None = None
    unit_seconds: float = DEFAULT_UNIT_SECONDS


@dataclass(frozen=True)
class WorkUnit:
    """One thing a worker does: an image, a video or a stretch of one; or an input to report only."""

    key: str  # unique within a job: the path, with "#part" for a video's stretch
    path: str
    kind: str  # "image", "video", or "skip" / "error" (reported, not analysed)
    start_s: float = 0.0
    end_s: float | None = None
    part: int = 0
    reason: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> WorkUnit:
        return cls(**json.loads(line))


@dataclass
class UnitResult:
    """What became of a unit: its rows, or why it failed ("done", "failed" or "skipped")."""

    key: str
    path: str
    status: str
    reason: str = ""
    rows: list[FaceRow] = field(default_factory=list)

    def to_columns(self) -> dict:
        """A flat record for Ray Data (rows as JSON text: exact, since every value is rounded already)."""
        return {"key": self.key, "path": self.path, "status": self.status, "reason": self.reason,
                "rows": json.dumps([[getattr(r, name) for name in FACE_ROW_FIELDS] for r in self.rows])}

    @classmethod
    def from_columns(cls, record: dict) -> UnitResult:
        rows = []
        for values in json.loads(record["rows"]):
            row = dict(zip(FACE_ROW_FIELDS, values))
            rows.append(FaceRow(**{**row, "probabilities": tuple(row["probabilities"])}))  # JSON has no tuples
        return cls(str(record["key"]), str(record["path"]), str(record["status"]), str(record["reason"]), rows)


FACE_ROW_FIELDS = tuple(FaceRow.__dataclass_fields__)


def read_list_file(path: Path) -> Iterator[Path]:
    """Paths listed in a text file, one per line (blank lines and lines starting with # ignored),
    relative ones taken from the list's own folder. Read lazily: a list may hold millions."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            entry = line.strip()
            if entry and not entry.startswith("#"):
                found = Path(entry)
                yield found if found.is_absolute() else path.parent / found


def walk_folder(folder: Path) -> Iterator[Input]:
    """A folder's images and videos, recursively, in sorted order (links not followed)."""
    return files.walk_folder(folder, _walked_file)


def _walked_file(found: Path) -> Input:
    kind = kind_of(found)
    return Input(found, kind or "skip", "" if kind else "not an image or a video")


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def expand(paths: Iterable[Path]) -> Iterator[Input]:
    """Inputs: list files are read (lazily), folders walked, a named file taken as a video by its
    extension and as an image otherwise (the decoder then says if it is not one)."""
    for path in paths:
        if path.is_dir():
            yield from walk_folder(path)
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            yield from expand(read_list_file(path))
        else:
            yield Input(path, kind_of(path) or "image")


def plan_units(paths: Iterable[Path], unit_seconds: float) -> Iterator[WorkUnit]:
    """Work units for the inputs, lazily; a video longer than `unit_seconds` becomes several."""
    for item in expand(paths):
        path = str(item.path)
        if item.kind != "video":
            yield WorkUnit(path, path, item.kind, reason=item.reason)
            continue
        try:
            from ferlens.core.video import probe_video

            duration = probe_video(path).duration_s
        except Exception:  # the worker will say why it cannot be read
            duration = 0.0
        if duration <= unit_seconds:
            yield WorkUnit(path, path, "video")
            continue
        parts = int(-(-duration // unit_seconds))
        for part in range(parts):
            end = None if part == parts - 1 else (part + 1) * unit_seconds
            yield WorkUnit(f"{path}#{part}", path, "video", part * unit_seconds, end, part)


# ---------------------------------------------------------------- analysing a unit (in a worker)


class UnitAnalyser:
    """Turns work units into results. Loads each model once, when first needed; one per worker.

    Whatever an input raises is its own failure, recorded with the reason and never retried: only
    a worker that dies (a killed process, a lost node) has its units retried, by Ray."""

    def __init__(self, settings: JobSettings, threads: int | None = None):
        self.settings = settings
        self.threads = threads
        self._recognizers: dict[str, object] = {}

    def recognizer(self, kind: str):
        """The recognizer for "image" or "video" units, loaded on first use with that kind's settings."""
        if kind not in self._recognizers:
            from ferlens.core.recognition import EmotionRecognizer

            s, prefix = asdict(self.settings), "image" if kind == "image" else "video"
            self._recognizers[kind] = EmotionRecognizer(
                s[f"{prefix}_model"], s[f"{prefix}_backend"], detector=s[f"{prefix}_detector"],
                threads=self.threads, tta=s[f"{prefix}_tta"])
        return self._recognizers[kind]

    def __call__(self, unit: WorkUnit) -> UnitResult:
        if unit.kind == "skip":
            return UnitResult(unit.key, unit.path, "skipped", unit.reason)
        if unit.kind == "error":
            return UnitResult(unit.key, unit.path, "failed", unit.reason)
        try:
            rows = self._image(unit) if unit.kind == "image" else self._video_rows(unit)
        except ModelLoadError:
            raise  # not this input's fault: the job stops and says so
        except Exception as exc:  # one input never stops the job
            message = " ".join(str(exc).split()) or type(exc).__name__
            return UnitResult(unit.key, unit.path, "failed", message)
        return UnitResult(unit.key, unit.path, "done", rows=rows)

    def _image(self, unit: WorkUnit) -> list[FaceRow]:
        from ferlens.core.drawing import reading_order
        from ferlens.files import check_regular_file

        check_regular_file(unit.path, "image")
        return photo_rows(reading_order(self.recognizer("image").predict(unit.path)), unit.path)

    def _video_rows(self, unit: WorkUnit) -> list[FaceRow]:
        from ferlens.core.video import Sampling, analyse_video

        s = self.settings
        analysis = analyse_video(unit.path, self.recognizer("video"), sampling=Sampling(every=s.every, fps=s.fps),
                                 detector=s.video_detector, span=(unit.start_s, unit.end_s))
        offset = unit.part * PART_ID_STRIDE
        return [FaceRow(**{**asdict(row), "face": row.face + offset, "probabilities": row.probabilities})
                for row in analysis.tracks.rows(unit.path)]


class RayUnitWorker:
    """Ray Data's callable class: one `UnitAnalyser` (one model load) per actor, one thread each."""

    def __init__(self, settings: dict):
        self.analyser = UnitAnalyser(JobSettings(**settings), threads=1)

    def __call__(self, batch: dict) -> dict:
        results = [self.analyser(WorkUnit.from_json(line)).to_columns() for line in batch["text"]]
        return {name: [r[name] for r in results] for name in ("key", "path", "status", "reason", "rows")}


# ---------------------------------------------------------------- the results directory


class ResultsDir:
    """RESULTS_DIR: the job's settings, its plan, the parts written and the units done."""

    def __init__(self, root: Path, settings: JobSettings):
        self.root = Path(root)
        self.parts = self.root / "parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        job = self.root / "job.json"
        wanted = asdict(settings)
        if job.exists():
            recorded = json.loads(job.read_text())
            if recorded != wanted:
                changed = sorted(k for k in wanted if recorded.get(k) != wanted[k])
                raise ValueError(f"{self.root} holds results made with other settings ({', '.join(changed)}); "
                                 "use another --out, or the same settings to resume")
        else:
            job.write_text(json.dumps(wanted, indent=1))
        self.db = sqlite3.connect(self.root / "progress.sqlite")
        self.db.execute("CREATE TABLE IF NOT EXISTS units (key TEXT PRIMARY KEY, path TEXT, status TEXT, "
                        "reason TEXT, faces INTEGER, part TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS parts (name TEXT PRIMARY KEY)")
        self.db.commit()
        self._drop_unrecorded_parts()

    def _drop_unrecorded_parts(self) -> None:
        """Parts written by a job killed before it recorded them: their units are redone, so they go."""
        recorded = {name for (name,) in self.db.execute("SELECT name FROM parts")}
        for path in self.parts.iterdir():
            if path.name not in recorded:
                path.unlink()

    def is_done(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM units WHERE key = ?", (key,)).fetchone() is not None

    def next_part_name(self) -> str:
        count = self.db.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
        return f"part-{count:06d}-{os.getpid()}-{time.time_ns() % 10**9:09d}.parquet"

    def write_part(self, results: list[UnitResult]) -> None:
        """The part's rows renamed into place, then its units recorded as done, in one transaction."""
        from ferlens.core.results import write_parquet

        name = self.next_part_name()
        temporary = self.parts / f".{name}.tmp"
        write_parquet([row for result in results for row in result.rows], temporary)
        os.replace(temporary, self.parts / name)
        with self.db:
            self.db.execute("INSERT INTO parts VALUES (?)", (name,))
            self.db.executemany("INSERT OR REPLACE INTO units VALUES (?, ?, ?, ?, ?, ?)",
                                [(r.key, r.path, r.status, r.reason, len(r.rows), name) for r in results])

    def write_failures(self) -> Path:
        """failed.parquet: every input that was not analysed, with the reason."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self.db.execute("SELECT path, key, status, reason FROM units WHERE status != 'done' ORDER BY key")
        table = pa.Table.from_pylist([dict(zip(("path", "unit", "status", "reason"), r)) for r in rows],
                                     schema=pa.schema([(n, pa.string()) for n in ("path", "unit", "status", "reason")]))
        pq.write_table(table, self.root / "failed.parquet")
        return self.root / "failed.parquet"

    def counts(self) -> dict[str, int]:
        """Units by status ("done", "failed", "skipped") and the faces found."""
        return _counts(self.db)

    @staticmethod
    def counts_of(root: Path) -> dict[str, int]:
        """`counts` of a results directory, whatever settings made it (for reports)."""
        with sqlite3.connect(Path(root) / "progress.sqlite") as db:
            return _counts(db)

    def rows(self) -> Iterator[dict]:
        """Every result row, part by part (for --csv and checks)."""
        import pyarrow.parquet as pq

        for (name,) in self.db.execute("SELECT name FROM parts ORDER BY name").fetchall():
            yield from pq.read_table(self.parts / name).to_pylist()


def _counts(db: sqlite3.Connection) -> dict[str, int]:
    found = dict(db.execute("SELECT status, COUNT(*) FROM units GROUP BY status").fetchall())
    found["faces"] = db.execute("SELECT COALESCE(SUM(faces), 0) FROM units").fetchone()[0]
    return found


def write_plan(results: ResultsDir, paths: list[Path], unit_seconds: float) -> tuple[Path, int]:
    """The units not done yet, one JSON line each, streamed to RESULTS_DIR/plan.jsonl."""
    plan = results.root / "plan.jsonl"
    count = 0
    # An input listed twice is planned once; the keys seen live in SQLite, not in memory.
    results.db.execute("CREATE TEMP TABLE IF NOT EXISTS planned (key TEXT PRIMARY KEY)")
    results.db.execute("DELETE FROM planned")
    with plan.open("w", encoding="utf-8") as out:
        for unit in plan_units(paths, unit_seconds):
            if results.is_done(unit.key):
                continue
            if results.db.execute("INSERT OR IGNORE INTO planned VALUES (?)", (unit.key,)).rowcount:
                out.write(unit.to_json() + "\n")
                count += 1
    return plan, count


def read_plan(plan: Path) -> Iterator[WorkUnit]:
    with plan.open(encoding="utf-8") as lines:
        for line in lines:
            yield WorkUnit.from_json(line)


# ---------------------------------------------------------------- engines


def run_local(plan: Path, settings: JobSettings, threads: int | None = None) -> Iterator[UnitResult]:
    analyser = UnitAnalyser(settings, threads)
    for unit in read_plan(plan):
        yield analyser(unit)


def run_ray(plan: Path, pending: int, settings: JobSettings, address: str | None, workers: int | None,
            max_retries: int = 3) -> Iterator[UnitResult]:
    """The units on Ray Data: streaming, an actor pool of one-thread workers, dead workers retried."""
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts inputs and faces
    context.print_on_execution_start = False
    cpus = int(ray.cluster_resources().get("CPU", 1))
    size = max(1, min(workers or cpus, cpus))
    # Reading the plan takes no CPU of its own, or it would wait behind the workers holding them all;
    # about ten units a block keeps work spread over the workers and a retried block small.
    blocks = max(size, -(-pending // UNITS_PER_BLOCK))
    dataset = ray.data.read_text(str(plan.resolve()), ray_remote_args={"num_cpus": 0},
                                 override_num_blocks=blocks).map_batches(
        RayUnitWorker, fn_constructor_kwargs={"settings": asdict(settings)}, batch_size=1, num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=size), max_restarts=-1, max_task_retries=max_retries,
    )
    for batch in dataset.iter_batches(batch_size=1, batch_format="default", prefetch_batches=0):
        for i in range(len(batch["key"])):
            yield UnitResult.from_columns({name: batch[name][i] for name in batch})


def run_job(paths: list[Path], out: Path, settings: JobSettings, *, engine: str = "local",
            address: str | None = None, workers: int | None = None, quiet: bool | None = None,
            part_units: int = PART_UNITS, threads: int | None = None) -> dict[str, int]:
    """Plan, analyse and record every input not done yet; returns the directory's counts."""
    results = ResultsDir(out, settings)
    plan, pending = write_plan(results, paths, settings.unit_seconds)
    stream = run_local(plan, settings, threads) if engine == "local" else run_ray(plan, pending, settings, address, workers)
    quiet = not sys.stderr.isatty() if quiet is None else quiet
    buffer: list[UnitResult] = []
    last_write = time.monotonic()
    faces = 0
    with tqdm(total=pending, unit="input", disable=quiet, file=sys.stderr, smoothing=0.1) as bar:
        for result in stream:
            buffer.append(result)
            faces += len(result.rows)
            bar.update(1)
            bar.set_postfix(faces=faces, refresh=False)
            if len(buffer) >= part_units or time.monotonic() - last_write >= PART_SECONDS:
                results.write_part(buffer)
                buffer, last_write = [], time.monotonic()
        if buffer:
            results.write_part(buffer)
    results.write_failures()
    return results.counts()


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ferlens.core.batch", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="images, folders, videos (" + ", ".join(s.lstrip(".") for s in VIDEO_SUFFIXES)
                        + "), or text files listing them (" + ", ".join(LIST_SUFFIXES) + ")")
    parser.add_argument("--out", type=Path, required=True, help="results directory (a rerun resumes it)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--address", default=None,
                        help="ray: the cluster to join ('auto', or ray://HOST:10001); default: a local cluster")
    parser.add_argument("--workers", type=int, default=None, help="ray: at most this many workers (default: one per CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="local: threads for the model (default: ONNX Runtime's and LiteRT's own choice)")
    parser.add_argument("--csv", type=Path, default=None, help="also write every row to this one CSV file at the end")
    parser.add_argument("--model", type=Path, default=None,
                        help=f"model folder for images and videos (default: {PHOTO_MODEL_DIR.name} for images, "
                        f"{DEFAULT_MODEL_DIR.name} for videos, as the app uses them)")
    parser.add_argument("--tta", choices=TTA_MODES, default=None,
                        help=f"test-time augmentation (default: {PHOTO_TTA} for images, {DEFAULT_TTA} for videos)")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--every", type=int, default=None, metavar="N", help="videos: analyse every N-th frame")
    sampling.add_argument("--fps", type=float, default=None, metavar="F", help="videos: analyse F frames per second")
    parser.add_argument("--part-units", type=int, default=PART_UNITS,
                        help="write results every this many inputs (or every minute): what a killed job can lose")
    parser.add_argument("--unit-seconds", type=float, default=DEFAULT_UNIT_SECONDS,
                        help="videos longer than this are analysed in parts of this length")
    args = parser.parse_args(argv)
    if any(str(p) == "" for p in args.inputs):
        parser.error("an INPUT is empty (an unset shell variable?)")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.every is not None and args.every < 1:
        parser.error("--every must be at least 1")
    if args.fps is not None and not args.fps > 0:
        parser.error("--fps must be positive")
    if args.part_units < 1:
        parser.error("--part-units must be at least 1")
    if not args.unit_seconds > 0:
        parser.error("--unit-seconds must be positive")
    if args.threads is not None and (args.threads < 1 or args.engine != "local"):
        parser.error("--threads is for --engine local, at least 1 (Ray workers use one thread each)")
    if args.address and args.engine != "ray":
        parser.error("--address needs --engine ray")
    return args


def settings_from(args: argparse.Namespace) -> JobSettings:
    base = JobSettings()
    model = str(args.model) if args.model else None
    return JobSettings(image_model=model or base.image_model, video_model=model or base.video_model,
                       image_tta=args.tta or base.image_tta, video_tta=args.tta or base.video_tta,
                       every=args.every, fps=args.fps, unit_seconds=args.unit_seconds)


def write_csv(results_dir: Path, settings: JobSettings, target: Path) -> int:
    results = ResultsDir(results_dir, settings)
    count = 0
    with target.open("w", newline="", encoding="utf-8") as out:
        writer = CsvWriter(out)
        for record in results.rows():
            writer.write_records([record])
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    try:
        counts = run_job(args.inputs, args.out, settings, engine=args.engine, address=args.address,
                         workers=args.workers, part_units=args.part_units, threads=args.threads)
        if args.csv:
            write_csv(args.out, settings, args.csv)
    except (ValueError, ModelLoadError, OSError) as exc:
        print(files.one_line(f"error: {exc}"), file=sys.stderr)
        return 2
    print(f"{counts.get('done', 0)} inputs analysed, {counts['faces']} faces; {counts.get('failed', 0)} failed, "
          f"{counts.get('skipped', 0)} skipped (see {files.display_name(args.out / 'failed.parquet')})", file=sys.stderr)
    return 1 if counts.get("failed") else 0


if __name__ == "__main__":
    raise SystemExit(main())

