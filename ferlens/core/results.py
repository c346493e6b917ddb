"""One schema for results: a row per face (per analysed frame for videos), whichever front end made it.

The upload page, the live and video pages, the CLI and batch jobs all write `FaceRow`s through the
writers here, so a user's CSV, JSON or Parquet file has the same columns wherever it came from.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ferlens.config import CLASS_NAMES
from ferlens.core.recognition import Face

#: The columns of every results file, in order. `frame` and `time_s` are empty for still images,
#: `detection_score` where the detector gives none (the Haar cascade, a whole image classified).
CSV_COLUMNS: tuple[str, ...] = ("source", "frame", "time_s", "face", "x", "y", "width", "height",
                                "detection_score", "label", "confidence", *CLASS_NAMES)
#: Columns that only a video's frames fill.
VIDEO_ONLY_COLUMNS: tuple[str, ...] = ("frame", "time_s")
#: The columns that mean something for a still photo: the upload page's downloads (the CLI and batch
#: jobs keep every column, as one of their files may mix photos and video frames).
PHOTO_COLUMNS: tuple[str, ...] = tuple(c for c in CSV_COLUMNS if c not in VIDEO_ONLY_COLUMNS)
#: Digits kept for probabilities, confidences and scores; times keep milliseconds.
DIGITS, TIME_DIGITS = 4, 3


@dataclass(frozen=True)
class FaceRow:
    """One face in one image or frame: where it is, what the detector and the model said."""

    source: str
    face: int  # numbered 1.. in reading order for photos; the track ID for videos
    x: int
    y: int
    width: int
    height: int
    label: str
    confidence: float
    probabilities: tuple[float, ...]  # in CLASS_NAMES order
    detection_score: float | None = None
    frame: int | None = None
    time_s: float | None = None

    @classmethod
    def from_face(cls, face: Face, face_id: int, *, source: str = "", frame: int | None = None,
                  time_s: float | None = None, scale: float = 1.0) -> FaceRow:
        """`scale` maps the box back to the source's pixels (video frames are analysed downscaled)."""
        x, y, w, h = (round(v * scale) for v in face.box)
        return cls(source=source, face=face_id, x=x, y=y, width=w, height=h, label=face.label,
                   confidence=round(face.confidence, DIGITS),
                   probabilities=tuple(round(face.probabilities[name], DIGITS) for name in CLASS_NAMES),
                   detection_score=None if face.detection_score is None else round(face.detection_score, DIGITS),
                   frame=frame, time_s=None if time_s is None else round(time_s, TIME_DIGITS))

    def as_dict(self, missing: object = None) -> dict:
        """The row under `CSV_COLUMNS`; `missing` stands where a value does not apply ("" in CSV files)."""
        row = {"source": self.source, "frame": missing if self.frame is None else self.frame,
               "time_s": missing if self.time_s is None else self.time_s, "face": self.face,
               "x": self.x, "y": self.y, "width": self.width, "height": self.height,
               "detection_score": missing if self.detection_score is None else self.detection_score,
               "label": self.label, "confidence": self.confidence}
        row.update(zip(CLASS_NAMES, self.probabilities))
        return row


def photo_rows(faces: Iterable[Face], source: str = "") -> list[FaceRow]:
    """A photo's faces as rows, numbered 1.. in the order given (the numbers drawn on the image)."""
    return [FaceRow.from_face(face, i, source=source) for i, face in enumerate(faces, 1)]


class CsvWriter:
    """Rows to an open text file as they come, the header first (so a long job's file grows as it runs);
    `columns` a subset of `CSV_COLUMNS` in its order (the photo downloads' `PHOTO_COLUMNS`)."""

    def __init__(self, file: TextIO, columns: Sequence[str] = CSV_COLUMNS):
        self._writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        self._writer.writeheader()

    def write(self, rows: Iterable[FaceRow]) -> None:
        self._writer.writerows(row.as_dict(missing="") for row in rows)

    def write_records(self, records: Iterable[dict]) -> None:
        """Rows already flattened under `CSV_COLUMNS` (as read back from Parquet), None written as ""."""
        self._writer.writerows({k: "" if record[k] is None else record[k] for k in CSV_COLUMNS} for record in records)


def to_csv(rows: Iterable[FaceRow], columns: Sequence[str] = CSV_COLUMNS) -> str:
    """The rows as CSV text with its header (a header alone when there are none)."""
    buffer = io.StringIO()
    CsvWriter(buffer, columns).write(rows)
    return buffer.getvalue()


def to_records(rows: Iterable[FaceRow], *, without: tuple[str, ...] = ()) -> list[dict]:
    """JSON-ready dicts (None where a value does not apply), leaving out the columns in `without`."""
    return [{k: v for k, v in row.as_dict().items() if k not in without} for row in rows]


def to_json(rows: Iterable[FaceRow], *, without: tuple[str, ...] = ()) -> str:
    return json.dumps(to_records(rows, without=without), indent=1)


def write_parquet(rows: Iterable[FaceRow], path: str | Path) -> None:
    """The rows as one Parquet file with typed columns (needs pyarrow, which the app's extras bring)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("writing Parquet needs pyarrow: pip install pyarrow") from exc
    pq.write_table(pa.Table.from_pylist(to_records(rows), schema=parquet_schema()), str(path))


def parquet_schema():
    """The Parquet types of `CSV_COLUMNS`: nullable frame, time and score; float probabilities."""
    import pyarrow as pa

    types = {"source": pa.string(), "frame": pa.int64(), "time_s": pa.float64(), "face": pa.int64(),
             "x": pa.int64(), "y": pa.int64(), "width": pa.int64(), "height": pa.int64(),
             "detection_score": pa.float64(), "label": pa.string(), "confidence": pa.float64()}
    return pa.schema([(name, types.get(name, pa.float64())) for name in CSV_COLUMNS])



def table_records(rows: Iterable[FaceRow], image_size: tuple[int, int]) -> list[dict]:
    """The rows as a person reads them on a page: scores and probabilities in percent (0-100), the box
    clipped to the picture of `image_size` (height, width), and no column that a photo leaves empty.
    The downloads keep the full rows: fractions, and the box as the classifier framed it (its square
    may cross the picture's edge)."""
    records = []
    for row in rows:
        x0, y0 = max(0, row.x), max(0, row.y)
        x1, y1 = min(image_size[1], row.x + row.width), min(image_size[0], row.y + row.height)
        record = {"face": row.face, "label": row.label, "confidence": round(100 * row.confidence, 1)}
        record.update((name, round(100 * p, 1)) for name, p in zip(CLASS_NAMES, row.probabilities))
        record["detection score"] = None if row.detection_score is None else round(100 * row.detection_score, 1)
        record["box (x, y, w, h)"] = f"{x0}, {y0}, {max(0, x1 - x0)}, {max(0, y1 - y0)}"
        records.append(record)
    return records


def face_summary(faces: Iterable[Face]) -> str:
    """One line for the faces of a photo, numbered as on the image: "#1 happy 90%; #2 sad 55%"."""
    return "; ".join(f"#{i} {face.label} {face.confidence:.0%}" for i, face in enumerate(faces, 1))
