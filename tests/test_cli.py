"""`python -m fer.predict`: images, folders, videos and CSV; every failure reported on one line, never fatal."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from fer import predict
from fer.config import CLASS_NAMES, PROJECT_ROOT
from fer.results import CSV_COLUMNS
from tests.media import two_faces_frames, write_video


@pytest.fixture
def photo(astronaut_rgb, tmp_path):
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut_rgb).save(path)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory, astronaut_rgb):
    return write_video(tmp_path_factory.mktemp("cli") / "two_faces.mp4", two_faces_frames(astronaut_rgb, 30))


def _model(shipped_model_dir) -> list[str]:
    return ["--model", str(shipped_model_dir)]


def test_good_and_bad_files_each_get_their_result(shipped_model_dir, photo, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code = predict.main([str(bad), str(photo), "--json", *_model(shipped_model_dir)])
    assert code == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)["results"]
    assert results[0]["path"] == str(bad) and results[0]["error"].startswith(str(bad))
    faces = results[1]["faces"]
    assert results[1]["image"] == str(photo)
    assert len(faces) == 1 and faces[0]["label"] == "happy"
    assert set(faces[0]["box"]) == {"x", "y", "width", "height"}
    assert captured.err.count("error:") == 1


def test_text_output_and_exit_codes(shipped_model_dir, photo, tmp_path, capsys):
    assert predict.main([str(photo), *_model(shipped_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 face(s)" in out and "happy" in out
    assert predict.main([str(photo), "--model", str(tmp_path / "nope")]) == 2
    assert "model folder not found" in capsys.readouterr().err


def test_images_get_the_photo_model_and_videos_the_real_time_one(photo, video, tmp_path, capsys):
    from fer.backends import LIVE_BACKEND, PHOTO_BACKEND, expected_format, realtime_order
    from fer.config import DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR

    assert predict.main([str(photo), str(video), "--fps", "10", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert models["image"]["model"] == str(PHOTO_MODEL_DIR) and models["video"]["model"] == str(DEFAULT_MODEL_DIR)
    # each in the format its page serves: the fastest float one for photos; for video INT8 where this
    # CPU has 8-bit dot products, else float TFLite (the shipped model has every format)
    assert models["image"]["backend"] == expected_format(PHOTO_MODEL_DIR, PHOTO_BACKEND)
    assert models["video"]["backend"] == expected_format(DEFAULT_MODEL_DIR, LIVE_BACKEND) == realtime_order()[0]
    assert predict.main([str(video), "--fps", "10", "--json", "--backend", "onnx"]) == 0
    assert json.loads(capsys.readouterr().out)["models"]["video"]["backend"] == "onnx"
    assert predict.main([str(photo), "--json"]) == 0  # only what the inputs need is loaded
    assert set(json.loads(capsys.readouterr().out)["models"]) == {"image"}
    assert predict.main([str(photo), str(video), "--json", "--model", str(DEFAULT_MODEL_DIR)]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert models["image"]["model"] == models["video"]["model"] == str(DEFAULT_MODEL_DIR)


def test_test_time_augmentation_choice(shipped_model_dir, photo, capsys):
    probabilities = {}
    for mode in ("none", "ten-crop"):
        assert predict.main([str(photo), "--json", "--tta", mode, *_model(shipped_model_dir)]) == 0
        face = json.loads(capsys.readouterr().out)["results"][0]["faces"][0]
        assert face["label"] == "happy"
        probabilities[mode] = face["probabilities"]
    assert probabilities["none"] != probabilities["ten-crop"]


def test_folders_are_searched_recursively_for_images_only(shipped_model_dir, photo, video, tmp_path, capsys):
    root = tmp_path / "album"
    (root / "2024" / "summer").mkdir(parents=True)
    (root / "2024" / "summer" / "beach.jpg").write_bytes(photo.read_bytes())
    (root / "top.png").write_bytes(photo.read_bytes())
    (root / "notes.txt").write_text("not a photo")
    (root / "2024" / "clip.mp4").write_bytes(video.read_bytes())
    out_csv = tmp_path / "faces.csv"
    assert predict.main([str(root), "--csv", str(out_csv), *_model(shipped_model_dir)]) == 0  # skipping is no failure
    captured = capsys.readouterr()
    assert f"skipped: {root / 'notes.txt'}: not an image" in captured.err
    assert f"skipped: {root / '2024' / 'clip.mp4'}: not an image" in captured.err
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["source"] for r in rows] == [str(root / "top.png"), str(root / "2024" / "summer" / "beach.jpg")]
    assert all(r["label"] == "happy" and r["face"] == "1" and r["frame"] == "" for r in rows)
    (root / "2024" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert predict.main([str(root), *_model(shipped_model_dir)]) == 1
    assert f"error: {root / '2024' / 'broken.jpg'}" in capsys.readouterr().err


def test_video_rows_per_face_per_sampled_frame(shipped_model_dir, video, tmp_path, capsys):
    out_csv = tmp_path / "video.csv"
    assert predict.main([str(video), "--every", "5", "--csv", str(out_csv), *_model(shipped_model_dir)]) == 0
    text = capsys.readouterr().out
    assert "6 frames analysed" in text and "2 face(s) tracked" in text
    with out_csv.open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert {int(r["frame"]) for r in rows} == {0, 5, 10, 15, 20, 25}
    assert {r["face"] for r in rows} == {"1", "2"} and len(rows) == 12
    for row in rows:
        assert float(row["time_s"]) == pytest.approx(int(row["frame"]) / 30, abs=1e-3)
        assert sum(float(row[name]) for name in CLASS_NAMES) == pytest.approx(1, abs=1e-3)
        assert row["label"] == max(CLASS_NAMES, key=lambda name: float(row[name]))


def test_video_json_and_csv_on_stdout(shipped_model_dir, video, capsys):
    assert predict.main([str(video), "--fps", "10", "--json", *_model(shipped_model_dir)]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["video"] == str(video) and result["frames_analysed"] == 10
    assert [face["face"] for face in result["faces"]] == [1, 2]
    assert len(result["rows"]) == 20 and set(result["rows"][0]) == set(CSV_COLUMNS) - {"source"}
    assert predict.main([str(video), "--fps", "10", "--csv", "-", *_model(shipped_model_dir)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 20  # nothing but the CSV on stdout


def test_bad_arguments_are_refused(shipped_model_dir, video, capsys):
    for args in (["--every", "2", "--fps", "3"], ["--every", "0"], ["--fps", "nan"], ["--csv", "-", "--json"]):
        with pytest.raises(SystemExit) as exc:
            predict.main([str(video), *args, *_model(shipped_model_dir)])
        assert exc.value.code == 2
    assert predict.main([str(video), "--csv", "/nonexistent/dir/out.csv", *_model(shipped_model_dir)]) == 2
    assert "cannot write /nonexistent/dir/out.csv" in capsys.readouterr().err


def test_recognizer_warnings_go_to_stderr(shipped_model_dir, photo, monkeypatch, capsys):
    class WarnedRecognizer(predict.EmotionRecognizer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.load_warnings = ["model.onnx failed its checksum; using model_float32.tflite"]

    monkeypatch.setattr(predict, "EmotionRecognizer", WarnedRecognizer)
    assert predict.main([str(photo), *_model(shipped_model_dir)]) == 0
    assert "warning: model.onnx failed its checksum; using model_float32.tflite" in capsys.readouterr().err


def test_pipes_devices_and_odd_names_fail_alone_in_one_line(shipped_model_dir, photo, video, tmp_path):
    """In a subprocess (a FIFO would block a reader forever): every bad input is one stderr line,
    the good ones still get results, no traceback, no progress bar when stderr is not a terminal."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    long_name = tmp_path / ("x" * 300 + ".jpg")
    not_video = tmp_path / "fake.mp4"
    not_video.write_text("plain text")
    bad_inputs = [fifo, "/dev/zero", long_name, tmp_path / "missing.png", not_video, tmp_path / "fifo-dir" / "none.webm"]
    command = [sys.executable, "-m", "fer.predict", str(photo), *map(str, bad_inputs), str(video), "--every", "10",
               *_model(shipped_model_dir)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]  # e.g. model checks
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == len(lines) == len(bad_inputs), lines
    assert "Traceback" not in done.stderr and "\r" not in done.stderr
    assert "not a regular file" in errors[0] and "not a regular file" in errors[1]
    assert f"{photo}: 1 face(s)" in done.stdout and f"{video}: 640x480 video" in done.stdout
