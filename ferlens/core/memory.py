"""Give memory back after bursts of concurrent work, so a server's resting memory stays where it started.

Measured with rounds of eight photos uploaded at once (benchmarks/app_load.md): glibc raises its
mmap threshold each time a large block is freed, so the images and activations of later photos
come from the heaps of the threads that analysed them, and the freed pages stay there: the server
kept growing after the visitors had left, and `malloc_trim` gave back little (the figures are in
benchmarks/app_load.md). Fixing the threshold keeps every large block in its own mapping, returned when freed.
These are process-wide policies: the app's entry point turns them on, the library does not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: glibc's mallopt parameter numbers.
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up get a mapping of their own (glibc's starting value, kept from rising).
MMAP_THRESHOLD_BYTES = 128 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _libc()


def return_large_blocks(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Give every block of `threshold` bytes or more back to the system when it is freed (glibc's
    M_MMAP_THRESHOLD, which also stops it rising); False where libc is not glibc."""
    return bool(_LIBC and _LIBC.mallopt(_M_MMAP_THRESHOLD, threshold))


def release_free_memory() -> bool:
    """Return freed heap pages to the system (glibc `malloc_trim`); False where there is nothing to call."""
    return bool(_LIBC and _LIBC.malloc_trim(0))


class IdleTrimmer:
    """Counts the analyses running now; when the last one ends, trims the heap. Thread-safe."""

    def __init__(self) -> None:
        self._running = 0
        self._lock = threading.Lock()

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                idle = self._running == 0
            if idle:
                release_free_memory()


#: Every photo and video analysis of every session runs inside `ANALYSES.running()`: when the last
#: one ends, the heap is trimmed, so memory comes back after a burst of visitors.
ANALYSES = IdleTrimmer()
