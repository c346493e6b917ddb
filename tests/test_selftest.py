"""Known answers (fer.selftest): a model file with flipped bytes is refused, or another format used with a
warning, even where no checksum can tell (the manifest removed, or written again over the damage); an
untouched copy loads silently; folders without a self-test still load as before."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile

import numpy as np
import pytest

import fer.backends
from fer import EmotionRecognizer, ModelLoadError
from fer.backends import BACKEND_FILES, ModelLoadWarning, load_backend, open_model_file
from fer.manifest import MANIFEST_FILENAME, check_folder, read_manifest, sha256_file, write_manifest
from fer.selftest import (
    REFERENCE_COUNT,
    SELFTEST_FILENAME,
    TOLERANCES,
    as_batch,
    main,
    read_selftest,
    reference_faces,
)

ONNX, TFLITE, INT8, KERAS = (BACKEND_FILES[name] for name in ("onnx", "tflite", "tflite-int8", "keras"))
#: Where 64 bytes are flipped, as a fraction of the file (of model.weights.h5 inside a .keras archive). Float
#: weights anywhere are ruined by it. In the INT8 file the middle holds the dense layer, where 64 flipped 8-bit
#: weights move no answer by more than the format's own rounding: 2 % in lies the convolutions' weights.
DAMAGE_AT = {"onnx": 0.5, "tflite": 0.5, "tflite-int8": 0.02, "keras": 0.5}


@pytest.fixture
def model_copy(tmp_path, shipped_model_dir):
    """The shipped model folder's model files, manifest and self-test, copied."""
    if not (shipped_model_dir / SELFTEST_FILENAME).exists():
        pytest.fail(f"the shipped model has no {SELFTEST_FILENAME}; record it with python -m fer.selftest")
    for name in (*BACKEND_FILES.values(), MANIFEST_FILENAME, SELFTEST_FILENAME):
        if not (shipped_model_dir / name).exists():
            pytest.skip(f"the shipped model has no {name}")
        shutil.copy(shipped_model_dir / name, tmp_path / name)
    return tmp_path


def _flip(data: bytes, fraction: float, count: int = 64) -> bytes:
    start = int(len(data) * fraction)
    flipped = bytearray(data)
    flipped[start:start + count] = bytes(255 - b for b in flipped[start:start + count])
    return bytes(flipped)


def _damage(path, fmt: str) -> None:
    """Flip 64 bytes of the model's weights. A .keras file is a zip archive whose checksums would refuse any
    flipped byte; the weights inside it are flipped and the archive written again, as damage before the
    archive was made would be."""
    if fmt != "keras":
        path.write_bytes(_flip(path.read_bytes(), DAMAGE_AT[fmt]))
        return
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, _flip(data, DAMAGE_AT[fmt]) if info.filename.endswith(".h5") else data)


def _load_silently(model_dir, backend: str, **kwargs):
    said = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelLoadWarning)
        loaded = load_backend(model_dir, backend, on_warning=said.append, **kwargs)
    assert said == [], said
    return loaded


def _answers_off_by(model_dir, fmt: str) -> float:
    """How far the folder's `fmt` file (loaded unchecked) is from the answers its self-test records."""
    recorded = read_selftest(model_dir).answers[fmt].probabilities
    return float(np.abs(open_model_file(model_dir / BACKEND_FILES[fmt], fmt).predict(as_batch(reference_faces()))
                        - recorded).max())


# ---------------------------------------------------------------- the shipped models

def test_the_shipped_models_record_answers_for_every_file_they_ship(shipped_model_dir, photo_model_dir):
    for folder in {shipped_model_dir, photo_model_dir}:
        selftest = read_selftest(folder)
        assert selftest is not None, f"{folder} has no {SELFTEST_FILENAME}"
        present = {fmt for fmt, name in BACKEND_FILES.items() if (folder / name).exists()}
        assert set(selftest.answers) == present
        for fmt, answers in selftest.answers.items():
            assert answers.file == BACKEND_FILES[fmt] and answers.sha256 == sha256_file(folder / answers.file)
            assert answers.probabilities.shape == (len(selftest.faces), 7)
            np.testing.assert_allclose(answers.probabilities.sum(axis=1), 1.0, atol=0.01)
        assert check_folder(folder) == []


def test_reference_faces_are_drawn_the_same_each_time():
    faces = reference_faces()
    assert faces.shape == (REFERENCE_COUNT, 48, 48) and faces.dtype == np.uint8
    np.testing.assert_array_equal(faces, reference_faces())
    assert len({face.tobytes() for face in faces}) == len(faces) and all(face.std() > 10 for face in faces)
    assert reference_faces(16)[:REFERENCE_COUNT].tobytes() == faces.tobytes()


# ---------------------------------------------------------------- damage

@pytest.mark.parametrize("fmt", ["onnx", "tflite", "tflite-int8", "keras"])
def test_a_damaged_file_fails_its_self_test_where_no_checksum_catches_it(model_copy, fmt):
    path = model_copy / BACKEND_FILES[fmt]
    _damage(path, fmt)
    # Unchecked, the damaged file loads and answers otherwise, well beyond the format's tolerance.
    assert _answers_off_by(model_copy, fmt) > 2 * TOLERANCES[fmt]
    write_manifest(model_copy)  # the checksums written again over the damage
    with pytest.raises(ModelLoadError, match=f"{path.name} fails its self-test.*damaged"):
        load_backend(model_copy, fmt)
    (model_copy / MANIFEST_FILENAME).unlink()  # or no checksums at all
    with pytest.raises(ModelLoadError, match=f"{path.name} fails its self-test.*damaged"):
        load_backend(model_copy, fmt)


def test_auto_uses_another_format_with_a_warning(model_copy, shipped_model_dir, monkeypatch):
    _damage(model_copy / ONNX, "onnx")
    (model_copy / MANIFEST_FILENAME).unlink()
    with pytest.warns(ModelLoadWarning, match=f"{ONNX} fails its self-test.*using {TFLITE} instead"):
        recognizer = EmotionRecognizer(model_copy)
    assert recognizer.backend_name == "tflite" and len(recognizer.load_warnings) == 1
    shutil.copy(shipped_model_dir / ONNX, model_copy / ONNX)
    monkeypatch.setattr(fer.backends, "_this_cpu_has_int8_dot", lambda: True)  # "realtime": INT8, then ONNX
    _damage(model_copy / INT8, "tflite-int8")
    with pytest.warns(ModelLoadWarning, match=f"{INT8} fails its self-test.*using {ONNX} instead"):
        assert load_backend(model_copy, "realtime").name == "onnx"


def test_every_damaged_float_file_that_loads_is_refused(model_copy):
    """64 bytes flipped at twelve places across each float file: every copy that still loads fails."""
    (model_copy / MANIFEST_FILENAME).unlink()  # only the self-test can tell
    for fmt in ("onnx", "tflite"):
        path = model_copy / BACKEND_FILES[fmt]
        original = path.read_bytes()
        for fraction in np.linspace(0.03, 0.97, 12):
            path.write_bytes(_flip(original, fraction))
            with pytest.raises(ModelLoadError):
                load_backend(model_copy, fmt)
        path.write_bytes(original)


# ---------------------------------------------------------------- what still loads

def test_an_untouched_copy_loads_silently_with_or_without_its_manifest(model_copy):
    for fmt in BACKEND_FILES:
        _load_silently(model_copy, fmt)
    (model_copy / MANIFEST_FILENAME).unlink()  # the known answers vouch for each file now
    for fmt in BACKEND_FILES:
        _load_silently(model_copy, fmt)
    assert _load_silently(model_copy, "auto").name == "onnx"


def test_a_folder_without_a_self_test_loads_as_before(model_copy):
    (model_copy / SELFTEST_FILENAME).unlink()
    _load_silently(model_copy, "onnx")  # the manifest vouches for it
    (model_copy / MANIFEST_FILENAME).unlink()
    with pytest.warns(ModelLoadWarning, match=f"{ONNX} cannot be checked for damage"):
        assert load_backend(model_copy, "onnx").name == "onnx"


def test_a_format_the_self_test_does_not_cover_loads_with_the_usual_warning(model_copy):
    document = json.loads((model_copy / SELFTEST_FILENAME).read_text())
    del document["formats"]["onnx"]
    (model_copy / SELFTEST_FILENAME).write_text(json.dumps(document))
    _load_silently(model_copy, "onnx")
    (model_copy / MANIFEST_FILENAME).unlink()
    with pytest.warns(ModelLoadWarning, match=f"{ONNX} cannot be checked for damage"):
        load_backend(model_copy, "onnx")
    _load_silently(model_copy, "tflite")


# ---------------------------------------------------------------- the self-test file itself

def test_a_damaged_self_test_is_refused_once_by_name(model_copy):
    (model_copy / SELFTEST_FILENAME).write_text('{"version": 1, "faces": ')
    with pytest.raises(ModelLoadError, match=f"{SELFTEST_FILENAME} is damaged") as caught:
        load_backend(model_copy)
    assert str(caught.value).count(SELFTEST_FILENAME) == 1  # the same reason for every format, said once


def test_other_answers_from_an_unchanged_file_blame_the_runtime(model_copy):
    document = json.loads((model_copy / SELFTEST_FILENAME).read_text())
    document["formats"]["onnx"]["probabilities"][0][0] += 0.1
    (model_copy / SELFTEST_FILENAME).write_text(json.dumps(document))
    with pytest.raises(ModelLoadError, match=f"{ONNX} is the file its self-test was recorded with, but gives other"):
        load_backend(model_copy, "onnx")


def test_a_new_version_recorded_by_its_writer_drops_the_old_answers(model_copy, photo_model_dir, shipped_model_dir):
    if photo_model_dir == shipped_model_dir:
        pytest.skip("needs a second shipped model")
    shutil.copy(photo_model_dir / ONNX, model_copy / ONNX)  # e.g. the folder retrained and exported again
    write_manifest(model_copy)  # recording the folder as it is keeps the answers: a replaced file is refused
    with pytest.raises(ModelLoadError, match=f"{ONNX} fails its self-test.*python -m fer.selftest"):
        load_backend(model_copy, "onnx")
    write_manifest(model_copy, [ONNX, TFLITE, INT8, KERAS])  # a writer naming the files it wrote: a new version
    assert set(read_selftest(model_copy).answers) == {"tflite", "tflite-int8", "keras"}
    _load_silently(model_copy, "onnx")
    assert main([str(model_copy)]) == 0  # its answers recorded again
    assert set(read_selftest(model_copy).answers) == set(BACKEND_FILES)
    for name in (TFLITE, INT8, KERAS):
        shutil.copy(photo_model_dir / name, model_copy / name)
    write_manifest(model_copy, list(BACKEND_FILES.values()))
    assert set(read_selftest(model_copy).answers) == {"onnx"}  # the one file whose answers were recorded
    shutil.copy(shipped_model_dir / ONNX, model_copy / ONNX)
    write_manifest(model_copy, [ONNX])
    assert not (model_copy / SELFTEST_FILENAME).exists()  # no answer left for any file


def test_the_command_line_records_and_checks(model_copy, capsys):
    (model_copy / SELFTEST_FILENAME).unlink()
    assert main([str(model_copy)]) == 0
    assert set(read_selftest(model_copy).answers) == set(BACKEND_FILES)
    assert set(read_manifest(model_copy)) == set(BACKEND_FILES.values())  # the manifest lists model files only
    assert main([str(model_copy), "--check"]) == 0
    _damage(model_copy / TFLITE, "tflite")
    capsys.readouterr()
    assert main([str(model_copy)]) == 2  # never records the answers of a file that fails its checksum
    assert "does not match its sha256" in capsys.readouterr().err
    (model_copy / MANIFEST_FILENAME).unlink()
    assert main([str(model_copy), "--check"]) == 1
    assert f"{TFLITE} fails its self-test" in capsys.readouterr().err
    assert main([str(model_copy / "missing")]) == 2


# ---------------------------------------------------------------- the writers

def test_the_ensemble_and_export_record_answers_and_training_drops_them(tmp_path):
    keras = pytest.importorskip("keras")
    from fer.ensemble import ensemble_dirs
    from fer.export import export_all
    from fer.models import build_model
    from tests.conftest import synthetic_face

    members = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        folder = tmp_path / f"member{seed}"
        folder.mkdir()
        build_model("vgg-fast").save(folder / KERAS)
        write_manifest(folder)
        members.append(folder)
    out = tmp_path / "ensemble"
    ensemble_dirs(members, out)
    assert set(read_selftest(out).answers) == {"keras"}
    _load_silently(out, "keras")
    export_all(out, np.stack([synthetic_face(i % 7, i) for i in range(32)]))
    assert set(read_selftest(out).answers) == set(BACKEND_FILES)
    (out / MANIFEST_FILENAME).unlink()
    for fmt in BACKEND_FILES:
        _load_silently(out, fmt)
    # Training writes a new model.keras and a manifest naming it alone: its old answers go, the others stay
    # (their files are refused as unlisted until exported again).
    keras.utils.set_random_seed(3)
    build_model("vgg-fast").save(out / KERAS)
    write_manifest(out, [KERAS])
    assert set(read_selftest(out).answers) == {"tflite", "tflite-int8", "onnx"}
    _load_silently(out, "keras")
