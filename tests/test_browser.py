"""End-to-end: `streamlit run` on localhost, driven by headless Chromium through Playwright.

Uploads a real face photo, streams a fake camera made from the same photo over WebRTC, and
saves a screenshot of every page (the folder is printed) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer.config import PROJECT_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT_DIR = Path(os.environ.get("FER_SCREENSHOT_DIR", PROJECT_ROOT / "screenshots"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]


def _need_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"Chromium not found at {CHROMIUM}; CI installs Debian's chromium package")
    pytest.skip("Debian's chromium package is not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    _need_chromium()
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {**os.environ, "FER_ICE_SERVERS": "none", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def face_files(tmp_path_factory, astronaut_rgb):
    """The astronaut photo as a PNG upload and as a 640x480 .y4m fake camera (I420 frames)."""
    folder = tmp_path_factory.mktemp("media")
    bgr = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR)
    png = folder / "astronaut_upload.png"
    cv2.imwrite(str(png), bgr)
    frame = np.full((480, 640, 3), 40, np.uint8)
    frame[:, 64:576] = cv2.resize(bgr, (512, 512))[16:496]
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes()
    y4m = folder / "astronaut.y4m"
    with open(y4m, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n")
        for _ in range(15):
            out.write(b"FRAME\n" + yuv)
    return png, y4m


@pytest.fixture(scope="module")
def browser(face_files):
    sync_api = pytest.importorskip("playwright.sync_api")
    _need_chromium()
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {SCREENSHOT_DIR}")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={face_files[1]}"],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 2200})
    context.grant_permissions(["camera"])
    page = context.new_page()
    yield page
    context.close()


def _settle(page) -> None:
    """Wait until Streamlit has finished running the script, so screenshots show the final page."""
    page.wait_for_timeout(500)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=90_000)
    page.wait_for_timeout(1500)  # plotly draws after the script ends
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


def test_home_page(page, app_url):
    page.goto(app_url)
    page.get_by_text("Facial expression recognition").first.wait_for(timeout=90_000)
    page.get_by_text("PrivateTest accuracy").first.wait_for(timeout=90_000)
    page.get_by_text("Upload photos").first.wait_for(timeout=90_000)
    _settle(page)
    page.screenshot(path=SCREENSHOT_DIR / "home.png", full_page=True)


def test_upload_page_shows_a_face_result(page, app_url, face_files):
    page.goto(f"{app_url}/Upload")
    page.locator("input[type=file]").first.set_input_files(str(face_files[0]))
    page.get_by_role("heading", name="astronaut_upload.png").wait_for(timeout=90_000)
    page.get_by_text("faces found: 1").first.wait_for(timeout=90_000)
    assert page.get_by_text(re.compile(r"face 1: (angry|disgust|fear|happy|neutral|sad|surprise) \d+%")).count() >= 1
    _settle(page)
    page.screenshot(path=SCREENSHOT_DIR / "upload.png", full_page=True)


def test_live_page_detects_the_face_in_the_fake_camera(page, app_url):
    page.goto(f"{app_url}/Live_camera")
    frame = page.frame_locator("iframe[title*='webrtc']").first
    frame.get_by_role("button", name="START").click(timeout=90_000)
    status = page.get_by_test_id("live-status")
    deadline = time.time() + 90
    seen = 0
    while time.time() < deadline:
        text = status.inner_text(timeout=90_000) if status.count() else ""
        match = re.search(r"frames with a face: (\d+)", text)
        seen = int(match.group(1)) if match else 0
        if seen >= 3:
            break
        time.sleep(1)
    page.screenshot(path=SCREENSHOT_DIR / "live.png", full_page=True)
    assert seen >= 3, f"no detected face reported by the live page: {text!r}"
    frame.get_by_role("button", name="STOP").click()


def test_report_page(page, app_url):
    page.goto(f"{app_url}/Model_report")
    page.get_by_role("heading", name="Confusion matrix (PrivateTest)").wait_for(timeout=90_000)
    page.get_by_role("heading", name="Model card", exact=True).wait_for(timeout=90_000)
    page.get_by_text("Disgust has only").first.wait_for(timeout=90_000)
    # The headline figures and the curves are drawn, not just their placeholders.
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=90_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=90_000)
    _settle(page)
    page.screenshot(path=SCREENSHOT_DIR / "report.png", full_page=True)
