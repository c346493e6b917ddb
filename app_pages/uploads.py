"""Uploads without copies: what Streamlit holds for an uploaded file, and how to give it back.

Streamlit keeps each upload's bytes in its file store for the whole session, and it never frees
them for a closed browser tab, even when the session expires. Besides, every run of a page hands
the page a deep copy of the uploader's value, and deep-copying an `UploadedFile` (a BytesIO)
copies its bytes: a 150 MB video cost 300 MB from its first run on (measured with tracemalloc;
`tests/test_uploads.py`). The fixes:

- `share_uploaded_bytes()`, called once by `streamlit_app.py`: the copy shares the immutable
  bytes instead (a BytesIO copies them itself, should anything ever write to it).
- `hand_back()`: once a page has the file elsewhere (the video page: on disk), remove it from
  Streamlit's store and close every object that still holds its bytes.
"""

from __future__ import annotations

import copy
import io

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx
from streamlit.runtime.uploaded_file_manager import UploadedFile


def _copy_sharing_bytes(self: UploadedFile, memo: dict) -> UploadedFile:
    """A deep copy of an upload whose buffer is the same bytes object until one of them is written to."""
    twin = io.BytesIO.__new__(type(self))
    io.BytesIO.__init__(twin, b"" if self.closed else self.getvalue())  # getvalue() returns the shared bytes
    twin.__dict__.update(copy.deepcopy(self.__dict__, memo))
    if self.closed:
        twin.close()
    else:
        twin.seek(self.tell())
    return twin


def share_uploaded_bytes() -> None:
    """Make Streamlit's per-run copies of uploaded files share their bytes (process-wide, idempotent)."""
    UploadedFile.__deepcopy__ = _copy_sharing_bytes


def hand_back(upload: UploadedFile, widget_key: str) -> None:
    """Drop an upload's bytes from the server's memory: Streamlit's file store, the page's value and
    the widget's value in the session state (two objects, kept until the session's next run ends,
    which for a queued analysis is long after). Both are emptied rather than closed, so that whatever
    still reads them gets no bytes instead of an error. The uploader then returns None for the file,
    though the browser still shows it; `st.session_state[widget_key].file_id` still names it."""
    ctx = get_script_run_ctx()
    if ctx is not None:
        ctx.uploaded_file_mgr.remove_file(ctx.session_id, upload.file_id)
    for value in (upload, st.session_state.get(widget_key)):
        if isinstance(value, UploadedFile) and value.file_id == upload.file_id and not value.closed:
            value.seek(0)
            value.truncate()
