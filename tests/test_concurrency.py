"""Shared recognizers under concurrent calls (issue 33): the app shares one per model between every
visitor's thread, and library users call it from thread pools.

Each test runs the same work first one call at a time, then from at least eight threads released
together by a barrier, repeatedly, and asserts that every concurrent answer equals the sequential
one exactly. Before the detectors borrowed their native objects from a pool, eight threads on one
recognizer got 31-88 "faces" for a one-face photo, `cv2.error`s, and once a segmentation fault.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from ferlens.config import PHOTO_MODEL_DIR
from ferlens.core.recognition import EmotionRecognizer
from ferlens.core.video import LiveProcessor
from ferlens.pool import InstancePool

THREADS = 8
ROUNDS = 3


def run_together(work, count: int = THREADS) -> list:
    """`work(i)` for i in range(count), on `count` threads started together; their results in order.
    An exception in any thread fails the test with that exception."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.fixture(scope="module")
def photos(astronaut_rgb) -> list[np.ndarray]:
    """Eight BGR photos of different sizes and shapes, one face each, plus a group of four faces."""
    bgr = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    sizes = [(512, 512), (640, 480), (800, 600), (1024, 768), (400, 400), (720, 540), (480, 900)]
    face = cv2.resize(bgr[10:260, 120:330], (100, 120))
    group = np.hstack([face, face[:, ::-1], face, face[:, ::-1]])
    return [cv2.resize(bgr, size) for size in sizes] + [group]


def answers(faces) -> list[tuple]:
    """Everything a face carries, exactly: box and the seven probabilities."""
    return [(face.box, tuple(face.probabilities.values())) for face in faces]


@pytest.mark.parametrize("backend", ["auto", "realtime"])
def test_predict_from_eight_threads_equals_one_at_a_time(shipped_model_dir, photos, backend):
    recognizer = EmotionRecognizer(shipped_model_dir, backend, tta="flip")
    expected = [answers(recognizer.predict(photo)) for photo in photos]
    assert all(expected), "every photo must have a face, or the comparison proves nothing"
    assert len(expected[-1]) == 4

    def work(i: int) -> list:
        return [answers(recognizer.predict(photos[(i + k) % len(photos)])) for k in range(ROUNDS * len(photos))]

    for i, got in enumerate(run_together(work)):
        assert got == [expected[(i + k) % len(photos)] for k in range(ROUNDS * len(photos))]


def test_the_photo_pipeline_from_eight_threads_equals_one_at_a_time(photos):
    """The upload page's recognizer: the photo model, ten-crop, Haar + HOG, settings changed per session."""
    if not (PHOTO_MODEL_DIR / "model.onnx").exists():
        pytest.skip(f"the photo model's ONNX export is missing from {PHOTO_MODEL_DIR}")
    shared = EmotionRecognizer(PHOTO_MODEL_DIR, tta="ten-crop")
    settings = [shared.with_settings(min_neighbors=n) for n in (4, 5)]  # two visitors' slider positions
    chosen = photos[:4] + photos[-1:]
    expected = [[answers(r.predict(photo)) for photo in chosen] for r in settings]
    assert all(all(per_photo) for per_photo in expected)

    def work(i: int) -> list:
        return [answers(settings[i % 2].predict(photo)) for photo in chosen]

    for i, got in enumerate(run_together(work)):
        assert got == expected[i % 2]


@pytest.mark.parametrize("backend", ["onnx", "tflite", "tflite-int8"])
def test_predict_faces_from_eight_threads_equals_one_at_a_time(shipped_model_dir, backend):
    recognizer = EmotionRecognizer(shipped_model_dir, backend, tta="ten-crop")
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (n, 48 + 8 * n, 48 + 4 * n), np.uint8) for n in range(1, THREADS + 1)]
    expected = [answers(recognizer.predict_faces(list(batch))) for batch in batches]

    def work(i: int) -> list:
        return [answers(recognizer.predict_faces(list(batches[(i + k) % THREADS]))) for k in range(ROUNDS * 2)]

    for i, got in enumerate(run_together(work)):
        assert got == [expected[(i + k) % THREADS] for k in range(ROUNDS * 2)]


def _moving_frames(astronaut_rgb, count: int, phase: int) -> list[np.ndarray]:
    """640x480 BGR frames of the astronaut's head sliding, each thread's stream starting elsewhere."""
    head = cv2.resize(astronaut_rgb[30:230, 130:320, ::-1], (150, 158))
    frames = []
    for i in range(count):
        frame = np.full((480, 640, 3), 60, np.uint8)
        x = 100 + 8 * ((i + 5 * phase) % 40)
        frame[120:278, x:x + 150] = head
        frames.append(frame)
    return frames


def test_live_processors_sharing_one_recognizer_equal_one_at_a_time(shipped_model_dir, astronaut_rgb):
    """Each live session has its own processor (tracks, smoothing), all share the recognizer and its detector."""
    recognizer = EmotionRecognizer(shipped_model_dir, "realtime")
    streams = [_moving_frames(astronaut_rgb, 30, phase) for phase in range(THREADS)]

    def stream(i: int) -> list:
        processor = LiveProcessor(recognizer)
        out = []
        for frame in streams[i]:
            _, result = processor.analyse(frame, frame_index=len(out), timestamp=0.0)
            assert result.error is None, result.error
            out.append([(face.extra["track_id"], *answers([face])) for face in result.faces])
        return out

    expected = [stream(i) for i in range(THREADS)]
    assert all(all(frame for frame in frames) for frames in expected), "a face in every frame"
    assert run_together(stream) == expected


# ---------------------------------------------------------------- the pool itself


def test_pool_lends_each_instance_to_one_caller_at_a_time_and_stays_within_its_bound():
    made: list[dict] = []

    def factory() -> dict:
        made.append({"users": 0})
        return made[-1]

    pool = InstancePool(factory, max_size=3)
    overlaps: list[int] = []

    def work(_: int) -> None:
        for _ in range(20):
            with pool.borrow() as instance:
                instance["users"] += 1
                overlaps.append(instance["users"])
                time.sleep(0.001)
                instance["users"] -= 1

    run_together(work, 8)
    assert len(overlaps) == 160 and set(overlaps) == {1}
    assert 1 <= len(made) <= 3 and pool.created == len(made)


def test_pool_grows_only_to_the_calls_that_ran_at_once():
    pool = InstancePool(object, max_size=8)
    for _ in range(5):
        with pool.borrow():
            pass
    assert pool.created == 1
    with pool.borrow() as a, pool.borrow() as b:
        assert a is not b
    assert pool.created == 2


def test_a_failing_factory_leaves_the_pool_usable():
    calls = []

    def factory() -> object:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("model file vanished")
        return object()

    pool = InstancePool(factory, max_size=1)
    with pytest.raises(OSError, match="vanished"), pool.borrow():
        pass
    with pool.borrow() as instance:  # the failed build did not use up the only place
        assert instance is not None
    assert pool.created == 1
    with pytest.raises(ValueError, match="max_size"):
        InstancePool(object, max_size=0)
