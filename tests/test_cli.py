"""`python -m ferlens.core.predict`: images, folders, videos and CSV; every failure reported on one line, never fatal."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from ferlens.config import CLASS_NAMES, PROJECT_ROOT
from ferlens.core import predict
from ferlens.core.results import CSV_COLUMNS
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
    from ferlens.config import DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR
    from ferlens.modelfolder.loading import LIVE_BACKEND, PHOTO_BACKEND, expected_format, realtime_order

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
    assert "cannot write results to /nonexistent/dir/out.csv: No such file or directory" in capsys.readouterr().err


def _one_usage_error(capsys, argv: list[str]) -> str:
    """The stderr of a command line refused as unusable: exit status 2 and a single line."""
    with pytest.raises(SystemExit) as exc:
        predict.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m ferlens.core.predict: error: "), err
    return err


def test_an_empty_path_is_refused_instead_of_walking_the_current_folder(photo, capsys):
    """`python -m ferlens.core.predict "$PHOTOS"` with the variable unset: "" would become "." and walk everything."""
    assert "argument PATH: an empty path" in _one_usage_error(capsys, [""])
    assert "argument PATH: an empty path" in _one_usage_error(capsys, [str(photo), " "])
    assert "argument --model: an empty path" in _one_usage_error(capsys, [str(photo), "--model", ""])
    assert "argument --csv: an empty file name" in _one_usage_error(capsys, [str(photo), "--csv", ""])


def test_detection_settings_out_of_range_are_refused_by_option_name(photo, capsys):
    """Before any model loads, named as the options are (not as the library's settings)."""
    for option, value, message in (("--min-size", "0", "from 8 to 10000 pixels, got 0"),
                                   ("--min-size", "-5", "from 8 to 10000 pixels, got -5"),
                                   ("--score-threshold", "2", "from 0.05 to 0.99, got 2.0"),
                                   ("--scale-factor", "1", "from 1.02 to 2.0, got 1.0"),
                                   ("--min-neighbors", "-1", "from 0 to 100, got -1")):
        err = _one_usage_error(capsys, [str(photo), option, value, "--model", "/nonexistent"])
        assert f"argument {option}: must be" in err and message in err


def test_a_folder_without_images_is_an_error_that_says_so(shipped_model_dir, video, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert predict.main([str(empty), *_model(shipped_model_dir)]) == 1
    assert capsys.readouterr().err == f"error: no images found in {empty}\n"
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("text")
    (notes / "clip.mp4").write_bytes(video.read_bytes())
    assert predict.main([str(notes), "--json", *_model(shipped_model_dir)]) == 1
    captured = capsys.readouterr()
    assert f"skipped: {notes / 'clip.mp4'}: not an image (videos in folders are not analysed" in captured.err
    assert (f"error: no images found in {notes}; name its videos on the command line to analyse them"
            in captured.err)
    assert json.loads(captured.out)["results"][-1] == {
        "path": str(notes), "error": f"no images found in {notes}; name its videos on the command line to analyse them"}
    named_like_a_video = tmp_path / "holiday.mp4"
    named_like_a_video.mkdir()
    assert predict.main([str(named_like_a_video), *_model(shipped_model_dir)]) == 1
    assert f"no images found in {named_like_a_video} (it is a folder, not a video)" in capsys.readouterr().err


def test_options_that_do_nothing_for_the_inputs_given_are_named(shipped_model_dir, photo, video, capsys):
    def warnings_for(*argv: str) -> list[str]:
        assert predict.main([*argv, *_model(shipped_model_dir)]) == 0
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]

    assert warnings_for(str(photo), "--every", "5", "--smooth") == [
        "warning: --every, --smooth apply only to videos and there is none among the inputs: ignored"]
    assert warnings_for(str(photo), "--fps", "2") == [
        "warning: --fps applies only to videos and there is none among the inputs: ignored"]
    assert warnings_for(str(video), "--every", "15", "--whole-image") == [
        "warning: --whole-image applies only to images and there is none among the inputs: ignored"]
    assert warnings_for(str(photo), "--detector", "haar", "--score-threshold", "0.5") == [
        "warning: --score-threshold is for detectors that score faces (blazeface), and the images are found with "
        "haar: ignored"]
    assert warnings_for(str(photo), "--whole-image", "--min-size", "30") == [
        "warning: --min-size is for face detection, and --whole-image reads each image as one face: ignored"]
    assert warnings_for(str(photo), str(video), "--every", "15", "--min-neighbors", "4") == [
        "warning: --min-neighbors is for the Haar cascade: it applies to the videos only (the images are found "
        "with blazeface)"]
    assert warnings_for(str(photo), "--min-size", "40", "--tta", "none") == []  # each applies: nothing to say


def test_odd_paths_get_a_message_about_what_they_are(shipped_model_dir, photo, tmp_path, capsys):
    assert predict.main(["-", *_model(shipped_model_dir)]) == 1
    assert "error: -: reading from standard input is not supported" in capsys.readouterr().err
    assert predict.main([str(photo), "--model", str(photo)]) == 2
    assert f"error: {photo} is a file, not a model folder" in capsys.readouterr().err
    assert predict.main([str(photo), "--model", str(tmp_path)]) == 2
    assert f"error: no usable model in {tmp_path}: it has no model file (looked for model.onnx" in capsys.readouterr().err
    before = photo.read_bytes()
    assert predict.main([str(photo), "--csv", str(photo), *_model(shipped_model_dir)]) == 2
    assert "is one of the inputs" in capsys.readouterr().err and photo.read_bytes() == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("where, args", [
    ("/dev/full", ["--csv", "/dev/full"]),
    ("standard output", ["--json"]),
    ("standard output", ["--csv", "-"]),
    ("standard output", []),
])
def test_a_full_disk_is_one_line_naming_the_output_not_the_image(shipped_model_dir, photo, where, args):
    """A full disk while writing results: exit status 1 and one line saying where, never a traceback or an
    error blamed on the image."""
    to_full = "--csv" not in args or "-" in args
    with open("/dev/full" if to_full else os.devnull, "w") as stdout:
        done = subprocess.run([sys.executable, "-m", "ferlens.core.predict", str(photo), str(photo), *args,
                               *_model(shipped_model_dir), "--backend", "onnx"],
                              cwd=PROJECT_ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]
    assert lines == [f"error: cannot write results to {where}: No space left on device"], done.stderr
    assert done.returncode == 1


def test_a_closed_pipe_is_one_line_and_stops_the_run(shipped_model_dir, photo):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `... | head -1` that has already quit
    try:
        done = subprocess.run([sys.executable, "-m", "ferlens.core.predict", str(photo), str(photo), "--csv", "-",
                               *_model(shipped_model_dir), "--backend", "onnx"],
                              cwd=PROJECT_ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]
    assert lines == ["error: cannot write results to standard output: Broken pipe"], done.stderr
    assert done.returncode == 1


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
    command = [sys.executable, "-m", "ferlens.core.predict", str(photo), *map(str, bad_inputs), str(video), "--every", "10",
               *_model(shipped_model_dir)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning: ")]  # e.g. model checks
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == len(lines) == len(bad_inputs), lines
    assert "Traceback" not in done.stderr and "\r" not in done.stderr
    assert "not a regular file" in errors[0] and "not a regular file" in errors[1]
    assert f"{photo}: 1 face(s)" in done.stdout and f"{video}: 640x480 video" in done.stdout


def test_names_with_a_newline_are_quoted_in_every_line(shipped_model_dir, photo, video, tmp_path, capsys):
    """Issue 41: a file name holding a newline was printed raw, so one result became two lines. Every
    line-oriented output quotes such a name (Python's escapes); the CSV quotes it as CSV does."""
    odd = tmp_path / "two\nlines.jpg"
    odd.write_bytes(photo.read_bytes())
    folder = tmp_path / "folder"
    folder.mkdir()
    notes = folder / "notes\n.txt"
    notes.write_text("not an image")
    (folder / "face.jpg").write_bytes(photo.read_bytes())
    odd_video = tmp_path / "clip\n.mp4"
    odd_video.write_bytes(video.read_bytes())
    inputs = [odd, tmp_path / "gone\nmissing.png", folder, odd_video]
    csv_file = tmp_path / "faces.csv"
    code = predict.main([*map(str, inputs), "--every", "10", "--csv", str(csv_file), *_model(shipped_model_dir)])
    assert code == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{str(odd)!r}: 1 face(s)"
    assert f"{str(odd_video)!r}: 640x480 video" in out
    assert all(line.startswith(("'", "  ", str(folder))) for line in out.splitlines()), out  # a result or its faces
    err_lines = err.splitlines()
    assert all(line.startswith(("error: ", "warning: ", "skipped")) for line in err_lines), err
    assert f"error: {str(inputs[1])!r}: no such file" in err_lines
    assert f"skipped: {str(notes)!r}: not an image" in err_lines
    with open(csv_file, newline="", encoding="utf-8") as file:
        assert {row["source"] for row in csv.DictReader(file)} == {str(odd), str(folder / "face.jpg"), str(odd_video)}

