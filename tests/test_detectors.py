"""The face detector family (issue 28): one interface, BlazeFace's decoding against known boxes,
the photo default, scores, false faces on face-free pictures and group photos of real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import ferlens.config
import ferlens.core.detectors.blazeface as blazeface
from benchmarks.face_free import face_free_pictures, false_faces
from ferlens.config import DEFAULT_EXPW_DIR
from ferlens.core.detectors import (
    FALLBACK_PHOTO_DETECTOR,
    MERGE_IOU,
    PHOTO_DETECTOR,
    DetectorSettings,
    FaceFollower,
    HogFaceDetector,
    box_iou,
    detect_with_border,
    detector_names,
    make_detector,
)
from ferlens.core.detectors.border import EDGE_MIN_SCORE
from ferlens.core.drawing import reading_order
from ferlens.core.images import read_image
from ferlens.core.recognition import EmotionRecognizer
from ferlens.training.wild import load_labels, match_face

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def gray(astronaut_rgb):
    return cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)


def test_every_detector_finds_the_astronaut_in_about_the_same_place(astronaut_rgb, gray):
    reference = make_detector("haar").detect(gray)
    assert len(reference) == 1
    for name in detector_names():
        detector = make_detector(name)
        found = detector.detect(astronaut_rgb if detector.uses_color else gray)
        if name == "blazeface-short-range":  # made for webcams, not portraits: it adds a false face
            found = [max(found, key=lambda d: box_iou(d.box, reference[0].box))]
        assert len(found) == 1, name
        assert box_iou(found[0].box, reference[0].box) > 0.5, name
        assert found[0].score is None or 0.5 <= found[0].score <= 1.0, name


@pytest.mark.parametrize("model, anchors", [("back", 896), ("full-range", 2304), ("short-range", 896)])
def test_anchor_grids_match_the_models_outputs(model, anchors):
    spec = blazeface.MODELS[model]
    assert spec.anchors.shape == (anchors, 2)
    assert spec.anchors.min() > 0 and spec.anchors.max() < 1
    runner = blazeface._Runner(blazeface.model_folder() / spec.file)
    regressors, scores = runner(np.zeros((spec.input_size, spec.input_size, 3), np.float32))
    assert regressors.shape == (anchors, 16) and scores.shape == (anchors,)


@pytest.mark.parametrize("where", [(0, 0), (700, 60), (1500, 900), (40, 940)])
def test_boxes_and_landmarks_map_back_to_where_the_face_is(astronaut_rgb, where):
    """The same face pasted at known places on a large canvas (letterboxed, tiled): its box moves with it."""
    face = cv2.resize(astronaut_rgb[0:300, 100:360], (208, 240))
    canvas = np.full((1200, 1800, 3), 90, np.uint8)
    x, y = where
    canvas[y:y + 240, x:x + 208] = face
    found = make_detector("blazeface", DetectorSettings(max_side=1800)).detect(canvas)
    assert len(found) == 1
    alone = make_detector("blazeface").detect(face)[0]
    bx, by, bw, bh = found[0].box
    ax, ay, aw, ah = alone.box
    assert abs(bx - (ax + x)) <= 0.1 * aw and abs(by - (ay + y)) <= 0.1 * ah and abs(bw - aw) <= 0.15 * aw
    (rx, ry), (lx, ly) = found[0].eyes
    assert bx < rx < lx < bx + bw and by < ry < by + bh / 2 and by < ly < by + bh / 2  # eyes level, upper half


def test_weighted_nms_merges_one_face_and_keeps_two():
    box = np.array([10.0, 10, 60, 60])
    points = np.zeros((6, 2))
    merged = blazeface.weighted_nms([(box, 0.9, points), (box + 4, 0.6, points + 4), (box + 200, 0.8, points)], 0.3)
    assert len(merged) == 2
    expected = (0.9 * box + 0.6 * (box + 4)) / 1.5
    np.testing.assert_allclose(merged[0][0], expected)
    assert merged[0][1] == 0.9


def test_views_cover_a_large_image_edge_to_edge():
    views = blazeface.views((900, 1600))
    assert views[0] == (0, 0, 1600, 900)
    covered = np.zeros((900, 1600), bool)
    for x, y, w, h in views[1:]:
        assert w == h == blazeface.TILE_SIDE
        covered[y:y + h, x:x + w] = True
    assert covered.all()
    assert blazeface.views((300, 400)) == [(0, 0, 400, 300)]


def test_a_higher_score_threshold_keeps_fewer_faces_and_scores_reach_the_faces(astronaut_rgb):
    low = EmotionRecognizer(score_threshold=0.3).predict(astronaut_rgb, color_order="rgb")
    assert low and all(0.3 <= face.detection_score <= 1.0 for face in low)
    high = EmotionRecognizer(score_threshold=0.99).predict(astronaut_rgb, color_order="rgb")
    assert len(high) <= len(low)
    assert low[0].to_dict()["detection_score"] == round(low[0].detection_score, 4)


def test_the_photo_default_is_blazeface_and_falls_back_with_a_warning(monkeypatch, astronaut_rgb):
    assert EmotionRecognizer().detector.name == PHOTO_DETECTOR == "blazeface"

    monkeypatch.setattr(blazeface, "SHIPPED_MODELS", blazeface.SHIPPED_MODELS / "gone")
    monkeypatch.setattr(blazeface, "MODEL_PACKAGE", "no_such_package_here")
    with pytest.warns(UserWarning, match="BlazeFace models are missing"):
        recognizer = EmotionRecognizer()
    assert recognizer.detector.name == FALLBACK_PHOTO_DETECTOR
    assert any("instead" in warning for warning in recognizer.load_warnings)
    assert recognizer.predict(astronaut_rgb, color_order="rgb")
    with pytest.raises(blazeface.DetectorError):
        EmotionRecognizer(detector="blazeface-short-range")  # asked for by name: no silent swap
    with pytest.raises(ValueError, match="unknown face detector"):
        EmotionRecognizer(detector="mtcnn")


def test_a_damaged_model_file_is_refused_by_name(tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "blazeface"
    shutil.copytree(blazeface.SHIPPED_MODELS, folder)
    model = folder / blazeface.MODELS["back"].file
    data = bytearray(model.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    model.write_bytes(bytes(data))
    monkeypatch.setattr(blazeface, "SHIPPED_MODELS", folder)
    with pytest.raises(blazeface.DetectorError, match="does not match its sha256"):
        make_detector("blazeface")
    make_detector("blazeface-short-range")  # the intact files still load
    (folder / "SHA256SUMS").unlink()
    with pytest.raises(blazeface.DetectorError, match="cannot be checked"):
        make_detector("blazeface-short-range")  # shipped files are always checked


@pytest.mark.parametrize("name", ["haar", "blazeface", "hog"])
def test_a_downscale_that_leaves_no_room_for_a_face_is_refused(name, astronaut_rgb):
    """Issue 41: detect_downscale=1e-9 found no face, silently, where 0, 2 and NaN were refused. A downscale is
    refused when it shrinks the image's shorter side (512 px here) below the smallest face, 8 px."""
    detector = make_detector(name)
    for refused in (1e-9, 0.01, 7.9 / 512, 0.0, 2.0, float("nan")):
        with pytest.raises(ValueError, match="downscale"):
            detector.detect(astronaut_rgb, refused)
    with pytest.raises(ValueError, match=r"smaller than a face can be \(8 pixels\); use at least 0.016"):
        detector.detect(astronaut_rgb, 1e-9)
    detector.detect(astronaut_rgb, 8 / 512)  # the smallest downscale allowed runs
    recognizer = EmotionRecognizer(detector=name)
    with pytest.raises(ValueError, match="smaller than a face can be"):
        recognizer.predict(astronaut_rgb, color_order="rgb", detect_downscale=1e-9)
    assert recognizer.predict(astronaut_rgb, color_order="rgb", detect_downscale=0.5)  # the astronaut, still found


def test_hog_adds_a_face_the_cascade_misses_and_is_framed_like_it(gray):
    """A face turned 25 degrees in the image plane defeats the upright Haar cascade, not HOG."""
    height, width = gray.shape
    turned = cv2.warpAffine(gray, cv2.getRotationMatrix2D((width / 2, height / 2), 25, 1.0), (width, height),
                            borderMode=cv2.BORDER_REPLICATE)
    haar_only, both = make_detector("haar").detect(turned), make_detector("haar+hog").detect(turned)
    assert len(both) > len(haar_only)
    for i, a in enumerate(both):
        assert all(box_iou(a.box, b.box) < MERGE_IOU for b in both[i + 1:])
    assert make_detector("haar+hog").detect(gray) == make_detector("haar").detect(gray)  # found by both: once
    x, y, w, h = HogFaceDetector.to_haar_frame((100, 100, 100, 100))
    assert w == h == round(100 * HogFaceDetector.SIDE_RATIO) and y + h / 2 < 150


def test_video_follows_faces_with_the_haar_cascade_between_full_scans(gray):
    haar = make_detector("haar")
    follower = FaceFollower(haar, full_every=5)
    assert follower.full_every == 5 and hasattr(haar, "detect_near")
    assert len(follower.update(gray)) == 1
    anywhere = FaceFollower(make_detector("blazeface-short-range"), full_every=5)
    assert anywhere.full_every == 1  # no cheap re-detection: every frame is a full scan


def test_a_face_cut_by_the_pictures_edge_is_found_by_a_second_look_inside_a_border(astronaut_rgb):
    """Issue 42 §6: half faces at a photo's edge were missed. The astronaut cut through her face at x = 220:
    BlazeFace misses her in the picture as it is, finds her inside the border, and the box is where her face
    is in the cut picture (reaching past its edge, as her face does). Faces found the first time keep their box."""
    cut = np.ascontiguousarray(astronaut_rgb[:, 220:])
    detector = make_detector("blazeface")
    assert detector.detect(cut) == []
    found = detect_with_border(detector, cut)
    assert len(found) == 1 and found[0].score >= EDGE_MIN_SCORE
    x, y, w, h = detector.detect(astronaut_rgb)[0].box
    assert box_iou(found[0].box, (x - 220, y, w, h)) > 0.5 and found[0].box[0] < 0
    assert detect_with_border(detector, astronaut_rgb) == detector.detect(astronaut_rgb)  # nothing moved or added
    assert detect_with_border(detector, cut, pad=0.0) == []
    model = ferlens.config.DEFAULT_MODEL_DIR
    assert len(EmotionRecognizer(model).predict(cut, color_order="rgb")) == 1  # photos get the second look
    assert EmotionRecognizer(model, edge_pad=0.0).predict(cut, color_order="rgb") == []
    with pytest.raises(ValueError, match="filled"):
        detect_with_border(detector, cut, fill="mirror")


def test_blazeface_finds_no_more_false_faces_than_haar_and_hog():
    """Face-free pictures (scikit-image's and synthetic): the new photo default may not add false faces."""
    pictures = face_free_pictures()
    new, where, _ = false_faces(PHOTO_DETECTOR, pictures)
    old, _, _ = false_faces(FALLBACK_PHOTO_DETECTOR, pictures)
    assert old > 0, "the old pipeline's false faces are the bar; none would make the comparison empty"
    assert new <= old, where


@pytest.fixture(scope="module")
def expw_faces():
    try:
        return load_labels(DEFAULT_EXPW_DIR, 140)
    except FileNotFoundError as exc:
        pytest.skip(f"ExpW not found ({exc}); CI has it")


def test_blazeface_finds_the_labelled_faces_of_web_photos(expw_faces):
    detector = make_detector(PHOTO_DETECTOR)
    found = sum(match_face([d.box for d in detector.detect(read_image(face.path))], face.box) is not None
                for face in expw_faces)
    assert found / len(expw_faces) >= 0.9


def test_a_group_photo_of_real_faces_has_each_found_and_numbered(expw_faces):
    """Eight labelled ExpW faces of varied sizes pasted on one picture: each found, numbered in reading order."""
    rng = np.random.default_rng(3)
    canvas = np.full((900, 1600, 3), 200, np.uint8)
    placed = []
    picks = [face for face in expw_faces if min(face.box[2:]) >= 60][:8]
    for i, face in enumerate(picks):
        rgb = read_image(face.path)
        x, y, w, h = face.box
        pad = w // 3
        crop = rgb[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad]
        side = int(rng.integers(110, 200))
        crop = cv2.resize(crop, (side, round(side * crop.shape[0] / crop.shape[1])))
        cx, cy = 30 + 390 * (i % 4), 40 + 440 * (i // 4)
        canvas[cy:cy + crop.shape[0], cx:cx + crop.shape[1]] = crop[:900 - cy, :1600 - cx]
        scale = side / (min(x + w + pad, rgb.shape[1]) - max(0, x - pad))
        placed.append((round(cx + (x - max(0, x - pad)) * scale), round(cy + (y - max(0, y - pad)) * scale),
                       round(w * scale), round(h * scale)))
    faces = reading_order(EmotionRecognizer().predict(canvas, color_order="rgb"))
    matched = [match_face([f.box for f in faces], box) for box in placed]
    assert None not in matched, f"missed faces at {[b for b, m in zip(placed, matched) if m is None]}"
    assert sorted(matched) == list(range(len(placed)))  # each its own face
    assert matched == sorted(matched)  # reading order: the top row left to right, then the next


def test_the_border_in_use_is_the_one_the_benchmark_chose():
    """benchmarks/edge_faces.md marks the variant its rule chose; the photo pipeline must run that one."""
    import re

    from ferlens.core.detectors import border

    report = ferlens.config.PROJECT_ROOT / "benchmarks" / "edge_faces.md"
    if not report.exists():
        pytest.skip("benchmarks/edge_faces.md has not been generated (python -m benchmarks.edge_faces)")
    chosen = re.search(r"^\| (.*) \(\*\*chosen\*\*\) \|", report.read_text(), re.MULTILINE).group(1)
    if chosen == "no second look":
        assert border.EDGE_PAD == 0
        return
    pad, fill, score = re.fullmatch(r"(\d+)% border, (\w+), (?:added faces scored >= ([\d.]+)|at the detector's "
                                    r"own threshold)", chosen).groups()
    assert (border.EDGE_PAD, border.EDGE_FILL, border.EDGE_MIN_SCORE) == (int(pad) / 100, fill, float(score or 0))
