"""One results schema (`ferlens.core.results`): the CSV a user gets does not depend on the front end they used."""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from ferlens.config import CLASS_NAMES
from ferlens.core import predict
from ferlens.core.photos import analyse_photo
from ferlens.core.recognition import EmotionRecognizer, Face
from ferlens.core.results import (
    CSV_COLUMNS,
    PHOTO_COLUMNS,
    VIDEO_ONLY_COLUMNS,
    FaceRow,
    photo_rows,
    table_records,
    to_csv,
    to_json,
    to_records,
    write_parquet,
)
from ferlens.core.tracks import FaceTracks, FrameResult
from ferlens.core.tta import PHOTO_TTA
from ferlens.modelfolder.loading import PHOTO_BACKEND


def _face(box=(10, 20, 30, 40), score: float | None = 0.91234) -> Face:
    probabilities = dict(zip(CLASS_NAMES, np.linspace(0.01, 0.5, len(CLASS_NAMES)) / 1.785))
    return Face(box=box, probabilities=probabilities, detection_score=score)


@pytest.fixture(scope="module")
def group_photo(astronaut_rgb, tmp_path_factory):
    """Three copies of the astronaut's face at different sizes and heights: three rows to number."""
    face = astronaut_rgb[20:230, 150:330]
    canvas = np.full((520, 900, 3), 235, np.uint8)
    for (x, y), side in zip([(40, 60), (330, 150), (620, 40)], (190, 230, 210)):
        canvas[y:y + side, x:x + side] = cv2.resize(face, (side, side))
    path = tmp_path_factory.mktemp("results") / "group.png"
    Image.fromarray(canvas).save(path)
    return path, canvas


def test_the_upload_page_and_the_cli_give_the_same_csv(group_photo, photo_model_dir, tmp_path):
    path, rgb = group_photo
    recognizer = EmotionRecognizer(photo_model_dir, PHOTO_BACKEND).with_settings(tta=PHOTO_TTA)
    page = analyse_photo(recognizer, path.name, path.read_bytes())  # what the upload page runs
    assert page.error is None and len(page.faces) >= 2
    out = tmp_path / "faces.csv"
    assert predict.main([str(path), "--csv", str(out), "--model", str(photo_model_dir)]) == 0
    from_cli = list(csv.DictReader(out.open()))
    from_page = list(csv.DictReader(io.StringIO(to_csv(photo_rows(page.faces, path.name)))))
    assert len(from_cli) == len(from_page) == len(page.faces)
    for cli_row, page_row in zip(from_cli, from_page):
        assert list(cli_row) == list(page_row) == list(CSV_COLUMNS)
        assert cli_row.pop("source") == str(path) and page_row.pop("source") == path.name
        assert cli_row == page_row
    assert [row["face"] for row in from_cli] == [str(n) for n in range(1, len(page.faces) + 1)]


def test_a_row_keeps_every_figure_and_says_what_does_not_apply():
    row = FaceRow.from_face(_face(), 3, source="a.jpg")
    as_csv = next(csv.DictReader(io.StringIO(to_csv([row]))))
    assert as_csv["frame"] == as_csv["time_s"] == "" and as_csv["detection_score"] == "0.9123"
    record = to_records([row])[0]
    assert record["frame"] is None and record["time_s"] is None and record["face"] == 3
    assert [record[name] for name in CLASS_NAMES] == list(row.probabilities)
    assert json.loads(to_json([row])) == [record]
    no_score = FaceRow.from_face(_face(score=None), 1, frame=7, time_s=0.23333, scale=2.0)
    assert no_score.as_dict(missing="")["detection_score"] == "" and no_score.time_s == 0.233
    assert (no_score.x, no_score.y, no_score.width, no_score.height) == (20, 40, 60, 80)
    assert to_csv([]).strip() == ",".join(CSV_COLUMNS)


def test_photo_downloads_leave_out_the_columns_only_videos_fill():
    rows = [FaceRow.from_face(_face(), 1, source="a.jpg"), FaceRow.from_face(_face(score=None), 2, source="a.jpg")]
    as_csv = list(csv.DictReader(io.StringIO(to_csv(rows, PHOTO_COLUMNS))))
    assert list(as_csv[0]) == list(PHOTO_COLUMNS) == [c for c in CSV_COLUMNS if c not in ("frame", "time_s")]
    assert as_csv[1]["detection_score"] == "" and as_csv[0]["face"] == "1"
    as_json = json.loads(to_json(rows, without=VIDEO_ONLY_COLUMNS))
    assert list(as_json[0]) == list(PHOTO_COLUMNS) and as_json[1]["detection_score"] is None
    assert [{k: r[k] for k in PHOTO_COLUMNS} for r in to_records(rows)] == as_json  # the same values, fewer keys


def test_the_pages_table_shows_percentages_and_boxes_inside_the_photo():
    """Issue 42 §4: a raw 0.6984 among percentages, and a box at y = -3 for a face cut by the top edge."""
    cut = FaceRow.from_face(_face(box=(-5, -3, 40, 50), score=0.6984), 1)
    past = FaceRow.from_face(_face(box=(90, 70, 40, 40), score=None), 2)
    records = table_records([cut, past], image_size=(100, 120))
    assert records[0]["detection score"] == 69.8 and records[1]["detection score"] is None
    assert records[0]["confidence"] == round(100 * cut.confidence, 1)
    assert [records[0][n] for n in CLASS_NAMES] == [round(100 * p, 1) for p in cut.probabilities]
    assert records[0]["box (x, y, w, h)"] == "0, 0, 35, 47" and records[1]["box (x, y, w, h)"] == "90, 70, 30, 30"
    assert not {"source", "frame", "time_s"} & set(records[0])
    assert (cut.x, cut.y) == (-5, -3)  # the downloads keep the box as the classifier framed it


def test_video_rows_and_parquet_hold_the_same_values(tmp_path):
    tracks = FaceTracks()
    for index in range(3):
        face = _face(box=(index, 2 * index, 30, 30), score=None if index == 1 else 0.5)
        face.extra["track_id"] = 4
        tracks.add(FrameResult(index, index / 10, 5.0, [face]))
    rows = list(tracks.rows("clip.mp4"))
    assert [r.frame for r in rows] == [0, 1, 2] and [r.face for r in rows] == [4, 4, 4]
    assert rows[1].detection_score is None and rows[2].detection_score == 0.5
    pq = pytest.importorskip("pyarrow.parquet")
    write_parquet(rows, tmp_path / "rows.parquet")
    table = pq.read_table(tmp_path / "rows.parquet")
    assert table.column_names == list(CSV_COLUMNS)
    assert table.to_pylist() == to_records(rows)
