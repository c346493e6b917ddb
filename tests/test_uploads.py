"""app_pages.uploads: Streamlit's per-run deep copy of an uploaded file shares its bytes instead of
copying them, and still behaves as a copy (nothing written to one shows in the other)."""

from __future__ import annotations

import copy
import tracemalloc

import pytest
from streamlit.proto.Common_pb2 import FileURLs
from streamlit.runtime.uploaded_file_manager import UploadedFile, UploadedFileRec

from app_pages.uploads import share_uploaded_bytes

SIZE = 20 << 20


@pytest.fixture
def upload() -> UploadedFile:
    data = bytes(range(256)) * (SIZE // 256)
    return UploadedFile(UploadedFileRec("file-1", "clip.mp4", "video/mp4", data), FileURLs(file_id="file-1"))


@pytest.fixture
def sharing(monkeypatch):
    """share_uploaded_bytes() for this test only (it is process-wide in the app)."""
    monkeypatch.setattr(UploadedFile, "__deepcopy__", None, raising=False)  # undone after the test
    monkeypatch.delattr(UploadedFile, "__deepcopy__")
    yield share_uploaded_bytes


def _allocated_by_deepcopy(value) -> int:
    tracemalloc.start()
    try:
        copy.deepcopy(value)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_copy_shares_the_bytes_instead_of_copying_them(upload, sharing):
    assert _allocated_by_deepcopy(upload) >= SIZE  # Streamlit's copy as it comes: the bytes again
    sharing()
    assert _allocated_by_deepcopy(upload) < SIZE // 100
    twin = copy.deepcopy(upload)
    assert twin.getvalue() is upload.getvalue()
    assert (type(twin), twin.file_id, twin.name, twin.type, twin.size) == (UploadedFile, "file-1", "clip.mp4",
                                                                          "video/mp4", SIZE)


def test_the_copy_still_behaves_as_a_copy(upload, sharing):
    sharing()
    upload.seek(100)
    twin = copy.deepcopy(upload)
    assert twin.tell() == 100 and twin.read(4) == upload.read(4)
    twin.seek(0)
    twin.write(b"XXXX")  # the twin takes a buffer of its own; the original is untouched
    assert twin.getvalue()[:4] == b"XXXX" and upload.getvalue()[:4] == bytes(range(4))
    upload.close()
    assert copy.deepcopy(upload).closed and not twin.closed
