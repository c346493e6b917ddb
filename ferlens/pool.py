"""A small pool that makes thread-unsafe native objects safe to share.

OpenCV's `CascadeClassifier`, dlib's HOG detector and a LiteRT `Interpreter` each keep scratch
state inside: two threads calling one instance at once get wrong boxes, a `cv2.error`, or a
crashed process. The app shares one recognizer between every visitor's thread, and library users
call it from thread pools, so such an object is never called directly: each call borrows an
instance of its own from an `InstancePool` and gives it back.

Why a pool rather than a lock or one instance per thread (measured in `benchmarks/concurrency.md`):
a lock lets one call run at a time, so callers queue for detection while a core idles; an instance
per thread grows with every thread a server ever starts (Streamlit starts one per script run). A
pool grows only to the number of calls that ran at once, and at most to `max_size`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

#: Default bound on instances per pool ($FER_POOL_SIZE overrides it): more calls at once than this
#: wait for a free instance. One per core: with eight callers on two cores, 2 instances gave the most
#: photos a second and 4 only more memory (benchmarks/concurrency.md).
DEFAULT_POOL_SIZE = int(os.environ.get("FER_POOL_SIZE") or max(2, os.cpu_count() or 1))


class InstancePool(Generic[T]):
    """Instances made by `factory` on demand, each lent to one caller at a time. Thread-safe.

    At most `max_size` instances exist; a caller that finds none free waits for one. A factory
    that raises passes its exception to the caller and leaves the pool as it was.
    """

    def __init__(self, factory: Callable[[], T], max_size: int = DEFAULT_POOL_SIZE):
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        self._factory = factory
        self.max_size = max_size
        self._idle: list[T] = []
        self._created = 0
        self._available = threading.Condition()

    @property
    def created(self) -> int:
        """How many instances exist (lent or idle)."""
        with self._available:
            return self._created

    @contextmanager
    def borrow(self) -> Iterator[T]:
        """An instance for this caller alone until the `with` block ends."""
        instance = self._take()
        try:
            yield instance
        finally:
            with self._available:
                self._idle.append(instance)
                self._available.notify()

    def _take(self) -> T:
        with self._available:
            while not self._idle and self._created >= self.max_size:
                self._available.wait()
            if self._idle:
                return self._idle.pop()
            self._created += 1  # reserve the place before building outside the lock
        try:
            return self._factory()
        except BaseException:
            with self._available:
                self._created -= 1
                self._available.notify()
            raise
