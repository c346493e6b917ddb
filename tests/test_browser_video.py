"""The video page in headless Chromium: upload a generated clip, get faces, timelines, a CSV and a
playable annotated MP4; cancel a long analysis; a file that is not a video gets a clear message.

Reuses the server and browser set-up of `tests/test_browser.py`; screenshots go to the same folder.
"""

from __future__ import annotations

import csv
import io

import pytest

from app_pages.video_session import file_types_text
from ferlens.config import CLASS_NAMES, VIDEO_SUFFIXES
from ferlens.core.results import CSV_COLUMNS
from tests import test_browser as shared
from tests.media import two_faces_frames, write_video
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOT_DIR, _need_chromium, _settle

pytestmark = pytest.mark.browser

app_url = shared.app_url  # the same fixture: one `streamlit run` for this module


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut_rgb):
    """A 2-second clip with two faces, a 20-second one to cancel, and a text file named .mp4."""
    folder = tmp_path_factory.mktemp("video_uploads")
    frames = two_faces_frames(astronaut_rgb, 60)
    short = write_video(folder / "two_faces.mp4", frames)
    long = write_video(folder / "long_clip.mp4", frames * 10)
    fake = folder / "holiday.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    return short, long, fake


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    _need_chromium()
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 2200}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def _upload(page, app_url, path) -> None:
    page.goto(f"{app_url}/Video")
    page.locator("input[type=file]").first.set_input_files(str(path), timeout=90_000)


def test_video_page_analyses_an_uploaded_clip(page, app_url, clips):
    _upload(page, app_url, clips[0])
    # The formats and the limit in words, from the list the picker takes (MKV and M4V too).
    page.get_by_text(f"Video: {file_types_text(VIDEO_SUFFIXES)}, up to 200 MB").wait_for(timeout=90_000)
    assert "640x480, 2.0 s at 30 frames a second" in page.get_by_test_id("video-info").inner_text(timeout=90_000)
    page.get_by_role("button", name="Analyse video").click()
    done = page.get_by_test_id("video-done")
    done.wait_for(timeout=180_000)
    assert "60 frames analysed" in done.inner_text() and "faces tracked: 2" in done.inner_text()
    page.get_by_role("heading", name="Timelines").wait_for()
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=30_000)  # one timeline per face
    # The annotated copy plays in the browser (H.264): its metadata loads and gives the frame size.
    page.wait_for_function("() => { const v = document.querySelector('video'); return v && v.readyState >= 1; }",
                           timeout=30_000)
    assert page.evaluate("() => [document.querySelector('video').videoWidth, document.querySelector('video').videoHeight]") \
        == [640, 480]
    _settle(page)
    page.screenshot(path=SCREENSHOT_DIR / "video.png", full_page=True)

    with page.expect_download() as download:
        page.get_by_role("button", name="Results, one row per face per frame (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {r["face"] for r in rows} == {"1", "2"} and len({r["frame"] for r in rows}) >= 55
    assert all(r["source"] == "two_faces.mp4" and r["label"] in CLASS_NAMES for r in rows)
    with page.expect_download() as download:
        page.get_by_role("button", name="Annotated video (MP4)").click()
    assert download.value.path().read_bytes()[4:8] == b"ftyp"  # an MP4 file


def test_a_long_analysis_can_be_cancelled(page, app_url, clips):
    _upload(page, app_url, clips[1])
    page.get_by_test_id("video-info").wait_for(timeout=90_000)
    page.get_by_role("button", name="Analyse video").click()
    page.get_by_text("Analysed ").first.wait_for(timeout=60_000)  # the progress bar has started counting
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text("Analysis cancelled. Nothing was kept.").wait_for(timeout=60_000)
    assert page.get_by_test_id("video-done").count() == 0
    page.get_by_role("button", name="Analyse video").wait_for()  # ready to start again
    page.screenshot(path=SCREENSHOT_DIR / "video_cancelled.png", full_page=True)


def test_a_file_that_is_not_a_video_gets_a_clear_message(page, app_url, clips):
    _upload(page, app_url, clips[2])
    page.get_by_text("This video cannot be analysed").wait_for(timeout=90_000)
    assert "not a video file that can be read" in page.locator("[data-testid='stAlert']").last.inner_text()
    assert page.get_by_role("button", name="Analyse video").count() == 0
    _settle(page)
