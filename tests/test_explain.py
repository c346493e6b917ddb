"""Occlusion explanations: the map finds what a model uses, explains the shown prediction, and needs no TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ferlens.config import CLASS_NAMES, PROJECT_ROOT
from ferlens.core.explain import Explanation, Occlusion, explain_face, explain_faces, occlusion_importance
from ferlens.core.recognition import EmotionRecognizer


def test_the_map_points_at_the_region_a_model_reads():
    """A stand-in model whose 'happy' probability depends only on a bright 10x10 patch at (30, 12)."""

    def classify(batch: np.ndarray) -> np.ndarray:
        happy = batch[:, 30:40, 12:22].mean(axis=(1, 2)) / 255.0
        out = np.full((len(batch), 7), (1 - happy)[:, None] / 6)
        out[:, CLASS_NAMES.index("happy")] = happy
        return out

    crop = np.full((48, 48), 60, np.uint8)
    crop[30:40, 12:22] = 250
    importance, probability = occlusion_importance(classify, crop, CLASS_NAMES.index("happy"))
    assert probability == pytest.approx(250 / 255)
    y, x = np.unravel_index(importance.argmax(), importance.shape)
    assert 30 <= y < 40 and 12 <= x < 22
    assert importance[:20].max() == pytest.approx(0) and importance[:, 30:].max() == pytest.approx(0)
    explanation = Explanation("happy", probability, crop, importance, crop)
    # Hiding the patch's middle 8x8 takes out 64 of its 100 bright pixels: up to 64 % of (250 - mean) / 255.
    assert 0.2 < explanation.largest_drop <= 0.64 * (250 - crop.mean()) / 255 + 1e-6
    with pytest.raises(ValueError, match="48"):
        occlusion_importance(classify, np.zeros((40, 40), np.uint8), 0)


@pytest.fixture(scope="module")
def recognizer(shipped_model_dir):
    return EmotionRecognizer(shipped_model_dir)


def test_explains_the_prediction_that_was_shown(recognizer, astronaut_rgb):
    for tta in ("none", "flip"):
        tuned = recognizer.with_settings(tta=tta)
        face = tuned.predict(astronaut_rgb, color_order="rgb")[0]
        explanation = explain_face(tuned, astronaut_rgb, face)
        assert explanation.label == face.label == "happy"
        assert explanation.probability == pytest.approx(face.confidence, abs=1e-5)  # same crop, model and views
        assert explanation.importance.shape == (48, 48) and explanation.crop.shape == (48, 48)
    # Faithful to the model: hiding the patch the map ranks first costs more than hiding the one it ranks last.
    label = CLASS_NAMES.index(explanation.label)

    def hidden(y: int, x: int) -> float:
        crop = explanation.crop.copy()
        crop[max(0, y - 4):y + 4, max(0, x - 4):x + 4] = int(crop.mean())
        return float(tuned.classify(crop[None])[0, label])

    first = np.unravel_index(explanation.importance.argmax(), explanation.importance.shape)
    last = np.unravel_index(explanation.importance.argmin(), explanation.importance.shape)
    assert hidden(*first) < hidden(*last)
    evidence = np.clip(explanation.importance, 0, None)
    picture = explanation.overlay()
    assert picture.shape == (192, 192, 3) and picture.dtype == np.uint8
    grey = np.repeat(explanation.picture[..., None], 3, axis=2).astype(int)
    tinted = np.abs(picture.astype(int) - grey).sum(axis=2) > 30
    scaled = np.kron(evidence, np.ones((4, 4)))
    assert tinted.any() and scaled[tinted].mean() > scaled[~tinted].mean()  # the colour is where the evidence is


def test_faces_explained_together_match_one_at_a_time_and_report_progress(recognizer, astronaut_rgb):
    """All faces' occluded copies share the model calls (issue 42 §3); each map is the one it would be alone,
    and each face's progress rises to 1."""
    photo = np.hstack([astronaut_rgb, astronaut_rgb[:, ::-1]])
    faces = recognizer.predict(photo, color_order="rgb")
    assert len(faces) == 2
    seen: dict[int, list[float]] = {}
    together = explain_faces(recognizer, photo, faces, progress=lambda i, done: seen.setdefault(i, []).append(done))
    for face, explanation in zip(faces, together):
        alone = explain_face(recognizer, photo, face)
        assert explanation.label == face.label
        assert np.allclose(explanation.importance, alone.importance, atol=1e-4)
    assert sorted(seen) == [0, 1]
    for steps in seen.values():
        assert steps == sorted(steps) and steps[-1] == 1.0 and len(steps) >= 2  # a 122-copy face spans chunks
    assert explain_faces(recognizer, photo, []) == []


def test_coarser_occlusions_hide_fewer_larger_squares_reaching_every_edge():
    for patch, stride in ((8, 4), (12, 6), (16, 8), (8, 8)):
        occlusion = Occlusion(patch, stride)
        starts = sorted({y for y, _ in occlusion.positions()})
        assert starts[0] == 0 and starts[-1] + patch == 48 and all(b - a <= stride for a, b in zip(starts, starts[1:]))
        crop = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
        copies = occlusion.copies(crop)
        assert len(copies) == len(starts) ** 2 + 1 and np.array_equal(copies[0], crop)  # the intact crop first
        assert all((copy != crop).sum() > 0 for copy in copies[1:])
    assert Occlusion(8, 4).inferences("ten-crop") == 122 * 10 and Occlusion(16, 8, "flip").inferences("ten-crop") == 26 * 2


def test_whole_image_faces_are_explained_too(recognizer, astronaut_rgb):
    crop = astronaut_rgb[40:220, 150:310]
    face = recognizer.predict(crop, color_order="rgb", whole_image=True)[0]
    explanation = explain_face(recognizer, crop, face)
    assert explanation.probability == pytest.approx(face.confidence, abs=1e-5)


def test_predicting_and_explaining_never_import_tensorflow(shipped_model_dir, tmp_path, astronaut_rgb):
    from PIL import Image

    photo = tmp_path / "face.png"
    Image.fromarray(astronaut_rgb).save(photo)
    script = (
        "import sys\n"
        "from ferlens.core import predict\n"
        f"assert predict.main([{str(photo)!r}, '--model', {str(shipped_model_dir)!r}]) == 0\n"
        "from ferlens.core.explain import explain_face\n"
        "from ferlens.core.recognition import EmotionRecognizer\n"
        "from ferlens.core.images import read_image\n"
        f"image = read_image({str(photo)!r})\n"
        f"recognizer = EmotionRecognizer({str(shipped_model_dir)!r})\n"
        "explain_face(recognizer, image, recognizer.predict(image, color_order='rgb')[0])\n"
        "print('tensorflow' in sys.modules, recognizer.backend_name)\n"
    )
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    imported, backend = done.stdout.split()[-2:]
    if backend == "keras":
        pytest.skip("this model folder has no exported format; the Keras backend needs TensorFlow by design")
    assert imported == "False"


def test_upload_page_why_view_is_opt_in():
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(PROJECT_ROOT / "app_pages" / "1_Upload.py"), default_timeout=300)
    app.session_state["source"] = "Example photo"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    images_before = len(app.get("image"))
    why = app.toggle(key="why-0")
    assert why.value is False  # nothing is computed until asked
    why.set_value(True).run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(app.get("image")) == images_before + 1  # one explanation for the example's one face


def test_the_upload_page_uses_the_occlusion_the_benchmark_chose():
    """benchmarks/explain_app.json records the occlusion its rule chose for ten-crop predictions; the page
    must use that one (and its help text quotes that run's cost only for the model file it measured)."""
    import json

    from ferlens.core.explain import APP_OCCLUSION, Occlusion
    from ferlens.core.tta import PHOTO_TTA

    measured = PROJECT_ROOT / "benchmarks" / "explain_app.json"
    if not measured.exists():
        pytest.skip("benchmarks/explain_app.json has not been generated (python -m benchmarks.explain --app)")
    record = json.loads(measured.read_text())
    chosen = record["occlusion"]
    in_use = APP_OCCLUSION.get(record["tta"], Occlusion())
    assert record["tta"] == PHOTO_TTA
    assert (in_use.patch, in_use.stride, in_use.views or record["tta"]) == (chosen["patch"], chosen["stride"],
                                                                           chosen["views"])
