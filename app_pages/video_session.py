"""What the video page keeps per visitor, and where: as little as possible in memory.

Streamlit holds an upload's bytes in memory for the whole session (`app_pages.uploads`). The page
therefore moves each new upload into the visitor's `ferlens.core.serving.ScratchFolder` at once and hands
the bytes back; the analysis reads the file from disk and writes the annotated copy beside it.
The session state holds paths and the analysis (faces and timelines, a few MB at most), never a
video's bytes. A new video, or new settings, replace the previous files; the folder goes when the
visitor's browser has been gone for as long as Streamlit keeps a closed session
(`server.disconnectedSessionTTL`), and at the latest with the session's state or the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFile

from app_pages.uploads import hand_back
from ferlens.core.serving import ScratchFolder, save_stream
from ferlens.core.video import InvalidVideoError, VideoAnalysis, VideoInfo, check_app_limits, probe_video

UPLOAD_KEY = "video_upload"
_SCRATCH, _VIDEO, _RESULTS = "video_scratch", "video_stored", "video_results"
UPLOAD_FILE, ANNOTATED_FILE = "upload", "annotated.mp4"

#: How formats are written in words where their upper-case suffix would read wrong.
_FORMAT_NAMES = {".webm": "WebM"}


def file_types_text(suffixes: Sequence[str]) -> str:
    """("mp4", ".webm", ".mkv") -> "MP4, WebM or MKV": a file picker's formats in words, from its list."""
    names = [_FORMAT_NAMES.get("." + s.lstrip(".").lower(), s.lstrip(".").upper()) for s in suffixes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass(frozen=True)
class StoredVideo:
    """The visitor's video, on disk: which upload it came from, and what its header says (or why it is refused)."""

    file_id: str
    name: str
    path: Path
    info: VideoInfo | None = None
    error: str | None = None

    def reason(self, exc: InvalidVideoError) -> str:
        """The error's message, naming the file as the visitor knows it rather than by its path here."""
        return str(exc).replace(str(self.path), self.name)


@dataclass
class VideoResults:
    """One finished analysis; `key` says which file and settings it is for. The annotated copy stays on disk."""

    key: tuple
    name: str
    analysis: VideoAnalysis
    annotated: Path | None
    queued_s: float = 0.0  # how long it waited for a free slot


def scratch() -> ScratchFolder:
    """This session's folder, made on first use and kept in the session's state."""
    folder = st.session_state.get(_SCRATCH)
    if folder is None or folder.closed:
        folder = st.session_state[_SCRATCH] = ScratchFolder(prefix="fer-video-")
    ctx = get_script_run_ctx()
    _while_connected(str(folder.path), folder, ctx.session_id if ctx else "")
    return folder


@dataclass(frozen=True)
class _Presence:
    folder: ScratchFolder
    session_id: str

    def connected(self) -> bool:
        return runtime.exists() and runtime.get_instance().is_active_session(self.session_id)


def _remove_once_gone(presence: _Presence) -> None:
    presence.folder.close_after(st.get_option("server.disconnectedSessionTTL"), still_here=presence.connected)


@st.cache_resource(scope="session", on_release=_remove_once_gone, show_spinner=False)
def _while_connected(path: str, _folder: ScratchFolder, _session_id: str) -> _Presence:
    """Streamlit drops a session's cache when its browser disconnects, calling `on_release`: the folder
    then goes once the session has been disconnected for as long as Streamlit keeps a closed session.
    A browser that reconnects is not rerun, so the session's connection is asked too; a run of the
    page caches the folder again, cancelling the removal. (Streamlit itself says nothing when a
    closed session expires, and keeps its state until another session disconnects.)"""
    _folder.keep()
    return _Presence(_folder, _session_id)


def current_video(upload: UploadedFile | None) -> StoredVideo | None:
    """The video the uploader holds now, on disk. A new upload is written to the session's folder
    and its bytes handed back to Streamlit (after which the uploader returns None, though it still
    shows the file); a removed one is forgotten with its files and results."""
    stored: StoredVideo | None = st.session_state.get(_VIDEO)
    if upload is not None and (stored is None or stored.file_id != upload.file_id):
        return _store(upload)
    if upload is not None:  # the same file's bytes again (a test harness re-sends them): not kept either
        hand_back(upload, UPLOAD_KEY)
    # The uploader's file, even once its bytes are gone: None only when the visitor removed it.
    file_id = getattr(st.session_state.get(UPLOAD_KEY), "file_id", None)
    if stored is not None and stored.file_id == file_id and stored.path.exists():
        return stored
    forget_video()
    return None


def _store(upload: UploadedFile) -> StoredVideo:
    forget_video()
    folder = scratch()
    path = folder.file(UPLOAD_FILE + Path(upload.name).suffix.lower())
    save_stream(upload, path)
    hand_back(upload, UPLOAD_KEY)
    stored = StoredVideo(upload.file_id, upload.name, path)
    try:
        info = probe_video(path)
        check_app_limits(info)
        stored = replace(stored, info=info)
    except InvalidVideoError as exc:
        stored = replace(stored, error=stored.reason(exc))
    st.session_state[_VIDEO] = stored
    return stored


def forget_video() -> None:
    """Remove the stored video and its results, files included."""
    st.session_state.pop(_VIDEO, None)
    forget_results()
    folder = st.session_state.get(_SCRATCH)
    if folder is not None:
        folder.clear()


def results_for(key: tuple) -> VideoResults | None:
    """The session's results if they are for this file and these settings; others are dropped."""
    results: VideoResults | None = st.session_state.get(_RESULTS)
    if results is not None and results.key != key:
        forget_results()
        results = None
    if results is not None and results.annotated is not None and not results.annotated.exists():
        results.annotated = None
    return results


def keep_results(results: VideoResults) -> None:
    st.session_state[_RESULTS] = results


def forget_results() -> None:
    """Drop the results and their annotated copy (before a new analysis, or when the video changes)."""
    st.session_state.pop(_RESULTS, None)
    folder = st.session_state.get(_SCRATCH)
    if folder is not None and not folder.closed:
        folder.remove(ANNOTATED_FILE)
