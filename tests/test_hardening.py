"""Hostile inputs (issue 12): each ends in a clean `InvalidImageError` or `ValueError`, or a result,
within bounded memory and time; file paths are read only if they are regular files of sane size.

Memory is measured in a subprocess (its peak resident memory, VmHWM, above the resting process,
which has the model loaded), under an address-space limit so that a regression fails instead of swapping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferlens.core.detectors import DetectorSettings
from ferlens.core.framing import bounded_crop, crop_face
from ferlens.core.images import MAX_FILE_BYTES, InvalidImageError, read_image
from ferlens.core.recognition import EmotionRecognizer
from ferlens.modelfolder.loading import ModelLoadError, ModelLoadWarning
from tests import craft

#: The issue's goal: any file up to 25 MB within 500 MB above the resting process.
MEMORY_BOUND_MB = 500
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def recognizer(shipped_model_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelLoadWarning)  # the shipped folder may have no manifest yet
        return EmotionRecognizer(shipped_model_dir, tta="none")


# ---------------------------------------------------------------- memory and time, in a subprocess

_CHILD = craft.CHILD_PRELUDE + textwrap.dedent("""
    setup, call = sys.argv[1], sys.argv[2]
    exec(setup)
    rest = status("VmRSS")
    reset_peak()  # so the peak is this call's alone
    limit = int((status("VmSize") + 2048) * 2**20)  # a regression fails fast instead of swapping
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    started = time.perf_counter()
    try:
        result = eval(call)
        outcome = f"result: {type(result).__name__} of {len(result)}"
    except InvalidImageError as exc:
        outcome = f"InvalidImageError: {exc}"
    except BaseException as exc:
        outcome = f"UNCLEAN {type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    peak = status("VmHWM")
    print(json.dumps({"outcome": outcome, "peak_mb": peak - rest, "seconds": seconds}))
""")


def _measure(setup: str, call: str) -> dict:
    """Run `call` (with `recognizer`, `np` and whatever `setup` defines) in a fresh process."""
    if not Path("/proc/self/status").exists():
        pytest.skip("memory is measured through /proc (Linux)")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-c", _CHILD, setup, call], capture_output=True, text=True,
                          timeout=240, env=env, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _cases(tmp: Path) -> list[tuple[str, str, str, str]]:
    """(name, setup, call, expected outcome prefix) for the issue's inputs."""
    thin = _write(tmp / "thin.png", craft.png(100_000, 8))
    long = _write(tmp / "long.png", craft.png(20_000, 400))
    rgba = _write(tmp / "rgba.png", craft.png(10_950, 10_950, color_type=6, rows=16))
    webp = _write(tmp / "big.webp", craft.webp_claiming(16_383, 7_000))
    jpeg = _write(tmp / "claims.jpg", craft.jpeg_claiming(10_000, 11_000))
    gray = _write(tmp / "gray.png", craft.png(10_950, 10_950))
    photo = _write(tmp / "photo.jpg", craft.encode(Image.new("L", (8000, 6000), 90), "JPEG"))
    return [
        ("100000x8 PNG, whole-image mode", "", f"recognizer.predict({thin!r}, whole_image=True)", "InvalidImageError"),
        ("20000x400 PNG, whole-image mode", "", f"recognizer.predict({long!r}, whole_image=True)", "result"),
        ("10950x10950 RGBA PNG", "", f"recognizer.predict({rgba!r})", "InvalidImageError"),
        ("16383x7000 WebP", "", f"recognizer.predict({webp!r})", "InvalidImageError"),
        ("JPEG claiming 10000x11000", "", f"recognizer.predict({jpeg!r})", ""),
        ("120-megapixel gray PNG", "", f"recognizer.predict({gray!r})", "result"),
        ("48-megapixel JPEG", "", f"recognizer.predict({photo!r})", "result"),
        ("8000x8000x3 float64 array", "big = np.broadcast_to(np.random.default_rng(0).random((1, 8000, 3)), (8000, 8000, 3))",
         "recognizer.predict(big)", "result"),
        ("100000-pixel box", "frame = np.full((480, 640, 3), 120, np.uint8)",
         "recognizer.predict(frame, boxes=[(-50000, -50000, 100000, 100000)])", "result"),
    ]


def test_hostile_inputs_stay_within_memory_and_time(tmp_path):
    failures = []
    for name, setup, call, expected in _cases(tmp_path):
        measured = _measure(setup, call)
        if not measured["outcome"].startswith(expected) or "UNCLEAN" in measured["outcome"]:
            failures.append(f"{name}: {measured['outcome']}")
        if measured["peak_mb"] > MEMORY_BOUND_MB:
            failures.append(f"{name}: {measured['peak_mb']:.0f} MB above resting (bound {MEMORY_BOUND_MB})")
        if measured["seconds"] > 30:  # generous for a loaded CI machine; the benchmark is where speed is judged
            failures.append(f"{name}: {measured['seconds']:.0f} s")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- clean, one-line errors

@pytest.mark.parametrize("data, message", [
    (craft.png(5, 5), "too small"),
    (craft.png(100_000, 8), "too long and thin"),
    (craft.png(32_000, 10), "too long and thin"),
    (craft.png(10_950, 10_950, color_type=6, rows=4), "pixel limit"),
    (craft.webp_claiming(16_383, 7_000), "pixel limit"),
    (craft.jpeg_claiming(10_000, 11_000, progressive=True), "pixel limit"),
    (craft.png(20_000, 20_000, rows=1), "pixel limit"),
    (craft.DAMAGED_AVIF, "not a supported image"),
    (craft.EPS, "not a supported image"),
    (craft.encode(Image.new("RGB", (32, 32)), "GIF"), "not a supported image"),
    (craft.encode(Image.new("RGB", (32, 32)), "TIFF"), "not a supported image"),
    (craft.encode(Image.new("RGB", (32, 32)), "ICO"), "not a supported image"),
    (craft.png(64, 64)[:60], "corrupt or truncated"),
])
def test_bad_files_give_one_line_messages_that_say_what_to_do(tmp_path, data, message):
    path = tmp_path / "upload.png"  # the name never decides the format
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(InvalidImageError, match=message) as caught:
            read_image(source)
        text = str(caught.value)
        assert "\n" not in text and "Error" not in text and "(Unidentified" not in text
        assert any(advice in text for advice in ("save", "convert", "crop", "use", "choose")), text


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            read_image(fifo)
        except InvalidImageError as exc:
            outcome.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert outcome and "not a regular file" in outcome[0]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_device_is_refused_unread():
    with pytest.raises(InvalidImageError, match="not a regular file"):
        read_image("/dev/zero")


def test_long_names_large_and_unreadable_files_are_clean_errors(tmp_path, monkeypatch):
    with pytest.raises(InvalidImageError, match="too long|no such file|cannot read"):
        read_image(tmp_path / ("x" * 300 + ".png"))
    large = tmp_path / "large.png"
    with open(large, "wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk, and must not be read
    with pytest.raises(InvalidImageError, match="MB limit"):
        read_image(large)
    with pytest.raises(InvalidImageError, match="MB limit"):
        read_image(b"\x89PNG" + bytes(MAX_FILE_BYTES))
    locked = tmp_path / "locked.png"
    locked.write_bytes(craft.png(64, 64))
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything: make the open fail as it would for a user
        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(InvalidImageError, match="permission denied"):
        read_image(locked)


# ---------------------------------------------------------------- settings, boxes and crops

@pytest.mark.parametrize("settings", [
    {"scale_factor": float("inf")}, {"scale_factor": float("nan")}, {"scale_factor": 1.0001}, {"scale_factor": 3.0},
    {"min_size": float("nan")}, {"min_size": 4}, {"min_size": 10**9}, {"min_neighbors": -1}, {"min_neighbors": 2.5},
    {"max_side": 10**6}, {"max_side": True}, {"score_threshold": 1.5}, {"score_threshold": float("nan")},
])
def test_unusable_detector_settings_are_refused_with_their_range(settings):
    name = next(iter(settings))
    with pytest.raises(ValueError, match=f"{name} must be .* from"):
        DetectorSettings(**settings)


def test_unusable_recognizer_settings_are_refused(recognizer, shipped_model_dir):
    for margin in (float("nan"), float("inf"), -0.1, "wide"):
        with pytest.raises(ValueError, match="margin"):
            EmotionRecognizer(shipped_model_dir, margin=margin)
    with pytest.raises(ValueError, match="threads"):
        EmotionRecognizer(shipped_model_dir, threads=0)
    with pytest.raises(ValueError, match="scale_factor"):
        recognizer.with_settings(scale_factor=float("inf"))


def test_boxes_are_clipped_to_the_image_or_refused(recognizer):
    frame = np.full((120, 160, 3), 128, np.uint8)
    faces = recognizer.predict(frame, boxes=[(-40, -40, 100, 100), (150, 100, 500, 500), (0, 0, 10**6, 10**6)])
    assert [f.box for f in faces] == [(0, 0, 60, 60), (150, 100, 10, 20), (0, 0, 160, 120)]
    for bad in [(0, 0, 0, 0), (500, 500, 20, 20), (-30, 10, 20, 20), (0, 0, float("nan"), 5), (1, 2, 3)]:
        with pytest.raises(ValueError, match="box"):
            recognizer.predict(frame, boxes=[bad])


def test_bounded_crop_matches_crop_face_and_bounds_the_rest(astronaut_rgb, monkeypatch):
    gray = np.ascontiguousarray(astronaut_rgb[..., 1])
    boxes = [(200, 80, 90, 110), (0, 0, 60, 60), (470, 470, 42, 42), (-5, 300, 50, 40), (0, 0, 512, 512),
             (0, 100, 512, 300), (100, 0, 50, 512)]
    for box in boxes:
        for margin in (0.0, 0.2, 1.0):
            np.testing.assert_array_equal(bounded_crop(gray, box, 48, margin), crop_face(gray, box, 48, margin))
    # Forced onto the shrink-then-pad path, a crop of a smooth image lands on the same pixels (a
    # shift of even half an output pixel would be ~5 grey levels on this ramp).
    import ferlens.core.framing

    monkeypatch.setattr(ferlens.core.framing, "_MAX_PADDED_PIXELS", 0)
    rows, columns = np.mgrid[0:512, 0:512]
    ramp = (columns * 0.3 + rows * 0.15).astype(np.uint8)
    for box in boxes:
        for margin in (0.0, 0.2, 1.0):
            difference = np.abs(bounded_crop(ramp, box, 48, margin).astype(int) - crop_face(ramp, box, 48, margin))
            assert difference.max() <= 3, (box, margin)
    thin = np.tile(np.arange(8000, dtype=np.uint16)[None, :] // 32, (160, 1)).astype(np.uint8)
    crop = bounded_crop(thin, (0, -3920, 8000, 8000), 48, 0.0)  # whole-image square of a 50:1 image
    assert crop.shape == (48, 48) and crop[24, 0] < crop[24, 47]


# ---------------------------------------------------------------- privacy

def test_onnx_runtime_writes_no_telemetry(tmp_path, shipped_model_dir):
    if not (shipped_model_dir / "model.onnx").exists():
        pytest.skip("the shipped model has no ONNX export")
    pytest.importorskip("onnxruntime")
    env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / ".cache"), PYTHONPATH=str(PROJECT_ROOT))
    script = ("import warnings; warnings.simplefilter('ignore'); import numpy as np; "
              "from ferlens.modelfolder.loading import load_backend; "
              f"load_backend({str(shipped_model_dir)!r}, 'onnx').predict(np.zeros((2, 48, 48, 1), np.float32))")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    written = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")]
    assert written == [], f"ONNX Runtime wrote {written}"


# ---------------------------------------------------------------- model files

def test_a_damaged_onnx_file_prints_nothing_on_stdout(shipped_model_dir, monkeypatch, capfd):
    """ONNX Runtime reports a session it cannot create on stdout ("EP Error ... Falling back ... retrying"),
    where the CLI writes its CSV or JSON; the load error says it instead."""
    ort = pytest.importorskip("onnxruntime")
    from ferlens.modelfolder.loading import OnnxBackend

    def fail(session, *args, **kwargs):  # what 64 flipped bytes in a name gave
        session._fallback_providers = ["CPUExecutionProvider"]
        raise ValueError("'utf-8' codec can't decode byte 0x90 in position 92: invalid start byte")

    monkeypatch.setattr(ort.InferenceSession, "_create_inference_session", fail)
    with pytest.raises(ModelLoadError, match="cannot load ONNX model .*utf-8"):
        OnnxBackend(shipped_model_dir / "model.onnx")
    assert capfd.readouterr().out == ""
