"""The video page headlessly (AppTest): what a session keeps, and where. An upload is moved to the
session's folder on disk and its bytes handed back to Streamlit; the annotated copy is written
beside it, never held in the session state; a new video replaces both; a removed one takes them along.
The queue under several visitors at once is in tests/test_browser_video_queue.py."""

from __future__ import annotations

import tempfile

import pytest
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.testing.v1 import AppTest

from app_pages.video_session import ANNOTATED_FILE, UPLOAD_KEY, VideoResults, file_types_text
from ferlens.config import PROJECT_ROOT, VIDEO_SUFFIXES
from ferlens.core.serving import VIDEO_ANALYSES
from tests.media import two_faces_frames, write_video

VIDEO_PAGE = str(PROJECT_ROOT / "app_pages" / "4_Video.py")


@pytest.fixture
def clips(tmp_path, astronaut_rgb):
    frames = two_faces_frames(astronaut_rgb, 30)
    first = write_video(tmp_path / "first.mp4", frames).read_bytes()
    second = write_video(tmp_path / "second.mp4", frames[:20]).read_bytes()
    return first, second


@pytest.fixture
def server_tmp(tmp_path, monkeypatch):
    """The folder where the page's session folders go (the server's TMPDIR)."""
    folder = tmp_path / "server_tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def handed_back(monkeypatch):
    """The file ids the page removed from Streamlit's upload store."""
    removed: list[str] = []
    original = MemoryUploadedFileManager.remove_file

    def remove_file(self, session_id: str, file_id: str) -> None:
        removed.append(file_id)
        original(self, session_id, file_id)

    monkeypatch.setattr(MemoryUploadedFileManager, "remove_file", remove_file)
    return removed


def _files(server_tmp) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in server_tmp.glob("fer-video-*/*")}


def _text(app: AppTest) -> str:
    return " ".join(m.value for m in [*app.markdown, *app.caption, *app.info, *app.warning, *app.error])


def _button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def test_file_types_are_named_from_the_suffix_list():
    assert file_types_text((".mp4", ".webm", "mkv")) == "MP4, WebM or MKV"
    assert file_types_text((".avi",)) == "AVI"
    named = file_types_text(VIDEO_SUFFIXES)
    assert all(s.lstrip(".").lower() in named.lower() for s in VIDEO_SUFFIXES)


def test_the_page_states_its_formats_and_the_servers_bound(server_tmp):
    app = AppTest.from_file(VIDEO_PAGE, default_timeout=120).run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.file_uploader[0].label.startswith(f"Video: {file_types_text(VIDEO_SUFFIXES)}, up to ")
    assert f"at most {VIDEO_ANALYSES.limit} video" in _text(app)


def test_a_session_keeps_its_videos_on_disk_and_replaces_them(server_tmp, handed_back, clips):
    first, second = clips
    app = AppTest.from_file(VIDEO_PAGE, default_timeout=180).run()
    assert "Choose a video above" in _text(app)

    app.file_uploader[0].set_value(("first.mp4", first, "video/mp4")).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "640x480, 1.0 s at 30 frames a second" in _text(app)
    assert _files(server_tmp) == {"upload.mp4": first}
    assert handed_back == [app.session_state[UPLOAD_KEY].file_id]  # out of Streamlit's memory at once

    _button(app, "Analyse video").click().run()
    assert not app.exception, [e.value for e in app.exception]
    assert "30 frames analysed" in _text(app) and "faces tracked: 2" in _text(app)
    files = _files(server_tmp)
    assert set(files) == {"upload.mp4", ANNOTATED_FILE} and files[ANNOTATED_FILE][4:8] == b"ftyp"
    results = app.session_state["video_results"]
    assert isinstance(results, VideoResults) and results.annotated.read_bytes() == files[ANNOTATED_FILE]
    assert not any(isinstance(v, bytes | bytearray) for v in vars(results).values())

    app.file_uploader[0].set_value(("second.mp4", second, "video/mp4")).run()  # replaces the first, copy and all
    assert not app.exception, [e.value for e in app.exception]
    assert _files(server_tmp) == {"upload.mp4": second}
    assert "frames analysed" not in _text(app) and "0.7 s at 30 frames a second" in _text(app)

    app.file_uploader[0].set_value(None).run()  # the visitor removes the file
    assert "Choose a video above" in _text(app)
    assert _files(server_tmp) == {}


def test_a_file_that_is_not_a_video_is_refused_by_its_own_name(server_tmp, handed_back):
    app = AppTest.from_file(VIDEO_PAGE, default_timeout=120).run()
    app.file_uploader[0].set_value(("holiday.mp4", b"not a video\n" * 50, "video/mp4")).run()
    assert not app.exception, [e.value for e in app.exception]
    message = " ".join(e.value for e in app.error).replace("\\", "")  # as shown, without Markdown escapes
    assert "This video cannot be analysed: holiday.mp4" in message and str(server_tmp) not in message
    assert len(handed_back) == 1 and not [b for b in app.button if b.label == "Analyse video"]
