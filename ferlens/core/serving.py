"""Serving video analyses to many visitors from one small host without running out of memory.

Every running analysis needs its own working memory (decoder, encoder, frames: about 110-130 MB for
a 1080p video, benchmarks/video_load.md), so a burst of visitors could push a 1 GB host over its
limit and take every session down with it. Two things keep the server inside a budget:

- `AnalysisQueue`: a process-wide, first-come-first-served bound on the analyses running at once,
  sized from the host's memory (`video_analysis_limit`). A visitor who has to wait is told their
  place, and the analysis starts by itself when a slot frees.
- `ScratchFolder`: one visitor's files (the uploaded video, the annotated copy) on disk instead of
  in memory, removed when the visitor's session is dropped, or when the process exits.

Nothing here imports Streamlit: the app's pages use it, and it is tested with plain threads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: The server's memory budget in MB (the host's limit for the whole process) ...
SERVER_MEMORY_ENV = "FER_SERVER_MEMORY_MB"
#: ... or, overriding it, the number of video analyses that may run at once.
VIDEO_ANALYSES_ENV = "FER_VIDEO_ANALYSES"
#: Streamlit Community Cloud gives an app about 1 GB; the project's budget for the server (docs/deploy.md).
DEFAULT_SERVER_MEMORY_MB = 1024
#: Measured (benchmarks/video_load.md, benchmarks/app_load.md): the server with every page's model
#: loaded and a few sessions open ...
SERVER_BASE_MB = 350
#: ... room for uploads that Streamlit holds in memory until the video page moves them to disk
#: (two at once at the upload cap, `ferlens.config.VIDEO_MAX_UPLOAD_MB`) ...
UPLOADS_IN_FLIGHT_MB = 400
#: ... and one running analysis of a 1080p video with its annotated copy, rounded up.
VIDEO_ANALYSIS_MB = 150


def video_analysis_limit(env: Mapping[str, str] | None = None) -> int:
    """How many video analyses may run at once: `$FER_VIDEO_ANALYSES` if set, else as many as fit
    in `$FER_SERVER_MEMORY_MB` (default 1024) beside the server and the uploads arriving; at least 1."""
    env = os.environ if env is None else env
    explicit = _whole_number(env, VIDEO_ANALYSES_ENV)
    if explicit is not None:
        return explicit
    budget = _whole_number(env, SERVER_MEMORY_ENV) or DEFAULT_SERVER_MEMORY_MB
    return max(1, (budget - SERVER_BASE_MB - UPLOADS_IN_FLIGHT_MB) // VIDEO_ANALYSIS_MB)


def _whole_number(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class QueuePlace:
    """Where a waiting analysis stands: `ahead` others wait before it, `running` of `limit` slots are taken."""

    ahead: int
    running: int
    limit: int

    @property
    def place(self) -> int:
        """1 for the next analysis to start."""
        return self.ahead + 1


class AnalysisQueue:
    """At most `limit` analyses at once, the others waiting in the order they came. Thread-safe.

    Waiters poll (every `poll_s`) rather than only sleep, so that a caller can show its place and
    be interrupted: a Streamlit page's rerun or stop is raised from inside `on_wait`, and a waiter
    that leaves that way, or any other way, gives its place up.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._running = 0

    @property
    def running(self) -> int:
        with self._cond:
            return self._running

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _may_start(self, ticket: object) -> bool:
        return self._running < self.limit and self._waiting[0] is ticket

    @contextmanager
    def slot(self, on_wait: Callable[[QueuePlace], None] | None = None, poll_s: float = 0.5) -> Iterator[bool]:
        """Hold one slot for the with-block, waiting for it in turn; yields whether it had to wait.

        `on_wait(place)` is called before the first wait and then every `poll_s` seconds while
        waiting, outside the lock; whatever it raises leaves the queue."""
        ticket = object()
        waited = False
        with self._cond:
            self._waiting.append(ticket)
        try:
            while True:
                with self._cond:
                    if self._may_start(ticket):
                        self._waiting.popleft()
                        self._running += 1
                        self._cond.notify_all()  # the next in line may start too, if a slot is left
                        break
                    place = QueuePlace(self._waiting.index(ticket), self._running, self.limit)
                waited = True
                if on_wait is not None:
                    on_wait(place)
                with self._cond:
                    self._cond.wait_for(lambda: self._may_start(ticket), timeout=poll_s)
        except BaseException:
            with self._cond:
                self._waiting.remove(ticket)
                self._cond.notify_all()  # the one behind may now be first
            raise
        try:
            yield waited
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()


#: Every video analysis of every session goes through this one queue; its size is read from the
#: environment when the server starts (`video_analysis_limit`).
VIDEO_ANALYSES = AnalysisQueue(video_analysis_limit())


#: The name of `ScratchFolder.close_after`'s threads.
JANITOR_THREAD = "fer-scratch-janitor"


class ScratchFolder:
    """A temporary folder for one visitor's files. Removed by `close()`, by `close_after()` (the
    visitor left and did not come back), when the object is garbage collected, or at exit.
    Thread-safe: a web server schedules the removal from its own thread.

    `TMPDIR` says where: on a host whose /tmp is a RAM disk, point it at a real one."""

    def __init__(self, prefix: str = "fer-session-", root: str | os.PathLike | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None  # set to cancel a pending close_after

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def file(self, name: str) -> Path:
        """A path in the folder; the name must be a plain file name."""
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"not a plain file name: {name!r}")
        return self.path / name

    def remove(self, *names: str) -> None:
        """Delete these files if they are there (a new video replaces the previous one's files)."""
        for name in names:
            self.file(name).unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete every file in the folder, keeping the folder."""
        if not self.closed:
            for path in self.path.iterdir():
                path.unlink(missing_ok=True)

    def close_after(self, seconds: float, still_here: Callable[[], bool] | None = None) -> None:
        """Remove the folder once `seconds` have passed in which `still_here()` (asked four times as
        often) never said True, unless `keep()` comes first: a visitor whose browser went away gets
        as long as the web server keeps their session to come back, and one who is back keeps it."""
        with self._lock:
            self._cancel()
            if self.closed:
                return
            self._stop = threading.Event()
            threading.Thread(target=self._close_when_gone, args=(seconds, still_here, self._stop),
                             name=JANITOR_THREAD, daemon=True).start()

    def _close_when_gone(self, seconds: float, still_here: Callable[[], bool] | None, stop: threading.Event) -> None:
        gone_since = time.monotonic()
        while not stop.wait(seconds / 4 if still_here else seconds):
            if still_here is not None and still_here():
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since >= seconds * 0.999:
                with self._lock:
                    if not stop.is_set():
                        self.close()
                return

    def keep(self) -> None:
        """Cancel a pending `close_after`: the visitor is back."""
        with self._lock:
            self._cancel()

    def _cancel(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    def close(self) -> None:
        self._finalizer()


def save_stream(source: BinaryIO, path: Path, chunk_bytes: int = 1 << 20) -> int:
    """Copy a file object to `path` a chunk at a time (never a second copy of it in memory); its size."""
    source.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(source, out, chunk_bytes)
        return out.tell()
