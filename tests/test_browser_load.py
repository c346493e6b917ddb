"""Many visitors at once in headless Chromium (issue 33): the server shares one recognizer per model
between every session's thread.

- Eight sessions upload at the same moment (a barrier releases them): each page must show exactly
  the faces, labels and confidences that the library gives for its photo alone, and no exception.
  Before the detectors were made thread-safe, two of eight such pages said "faces found: 37" and 74.
- Two live-camera sessions stream a fake camera at once for a minute, with faces in every frame.
"""

from __future__ import annotations

import asyncio
import re
import time

import cv2
import pytest

from benchmarks.app_load import upload_together, visitor_photos
from ferlens.config import PHOTO_MODEL_DIR
from ferlens.core.drawing import reading_order
from ferlens.core.recognition import EmotionRecognizer
from ferlens.core.results import face_summary
from ferlens.core.tta import PHOTO_TTA
from ferlens.modelfolder.loading import PHOTO_BACKEND
from tests import test_browser as shared
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SERVER_LOGS, _need_chromium

pytestmark = pytest.mark.browser

SESSIONS = 8
LIVE_SECONDS = 60


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    yield from shared.serve(tmp_path_factory)  # a server of its own: no earlier session shares it


def test_eight_sessions_uploading_at_once_each_get_their_own_faces(app_url, tmp_path):
    photos = visitor_photos(tmp_path, SESSIONS)
    recognizer = EmotionRecognizer(PHOTO_MODEL_DIR, PHOTO_BACKEND, tta=PHOTO_TTA)  # as the upload page runs it
    expected = []
    for photo in photos:
        faces = reading_order(recognizer.predict(cv2.imread(str(photo))))
        assert faces, f"{photo.name}: the library finds no face, so the page's count would prove nothing"
        expected.append(f"faces found: {len(faces)} ({face_summary(faces)})")
    assert len({e.split(" (")[0] for e in expected}) > 1, "photos with different face counts"

    results = asyncio.run(upload_together(app_url, photos))

    for photo, want, got in zip(photos, expected, results):
        assert got.exceptions == [], f"{photo.name}: {got.exceptions}"
        assert got.summary == want, f"{photo.name}: the page shows {got.summary!r}, alone it gives {want!r}"
    log = SERVER_LOGS[app_url].read_text()
    assert "Traceback" not in log and "error" not in log.lower(), log[-3000:]


def _live_status(page) -> tuple[int, int]:
    text = page.get_by_test_id("live-status").first.inner_text(timeout=30_000)
    processed = int(re.search(r"frames processed: (\d+)", text).group(1))
    with_face = int(re.search(r"frames with a face: (\d+)", text).group(1))
    return processed, with_face


def test_two_live_camera_sessions_stream_at_once_for_a_minute(app_url, face_files_camera):
    sync_api = pytest.importorskip("playwright.sync_api")
    _need_chromium()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={face_files_camera}"])
        pages = []
        for _ in range(2):
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            context.grant_permissions(["camera"])
            pages.append(context.new_page())
        for page in pages:
            page.goto(f"{app_url}/Live_camera")
            page.frame_locator("iframe[title*='webrtc']").first.get_by_role("button", name="START").click(timeout=90_000)
        deadline = time.time() + 90
        while time.time() < deadline and min(_live_status(p)[1] for p in pages) < 5:
            time.sleep(1)
        start = [_live_status(p) for p in pages]
        time.sleep(LIVE_SECONDS)
        end = [_live_status(p) for p in pages]
        for (processed0, faces0), (processed1, faces1), page in zip(start, end, pages):
            assert faces0 >= 5, "the stream did not start"
            assert processed1 - processed0 >= 5 * LIVE_SECONDS, "fewer than 5 frames a second during the minute"
            assert faces1 - faces0 == processed1 - processed0, "a frame of the minute had no face found"
            assert page.locator("[data-testid='stException']").count() == 0
            page.get_by_text("Face #1").first.wait_for(timeout=30_000)
            page.get_by_text("Face #2").first.wait_for(timeout=30_000)
        browser.close()
    log = SERVER_LOGS[app_url].read_text()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def face_files_camera(tmp_path_factory, astronaut_rgb):
    """The fake camera of `tests/test_browser.py`: two swaying faces in every frame."""
    bgr = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    return shared.write_fake_camera(tmp_path_factory.mktemp("camera") / "two_faces.y4m", bgr)
