"""Checks before a file is opened, shared by the image and video readers."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


class UnreadableInputError(ValueError):
    """An input that cannot be read as it is; the message says why in words a user can act on."""


def check_regular_file(path: str | os.PathLike, kind: str = "file",
                       error: type[Exception] = UnreadableInputError) -> None:
    """Only regular files are read: a FIFO would block forever and /dev/zero never ends.

    Raises `error` naming `kind` (e.g. "video") where a folder was given instead."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise error(f"{path}: no such file") from exc
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror})") from exc
    if stat.S_ISDIR(mode):
        raise error(f"{path}: is a folder, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if not stat.S_ISREG(mode):
        raise error(f"{path}: not a regular file (a pipe or a device?)")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: cannot be read (permission denied)")


def read_text_if_present(path: str | os.PathLike) -> str | None:
    """A UTF-8 text file's content, or None when there is no such file (an optional artifact).
    Raises OSError or UnicodeDecodeError when it exists but cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Input:
    """One thing to do: a path to analyse as an "image" or a "video", or one to report: "skip" (not
    taken; `reason` says why) or "error" (a folder that could not be listed)."""

    path: Path
    kind: str
    reason: str = ""


def walk_folder(folder: Path, classify: Callable[[Path], Input]) -> Iterator[Input]:
    """Every file under `folder` as `classify` takes it, recursively and in sorted order (links not
    followed), then each subfolder that could not be listed, as an "error" saying why.

    One walk for every front end; each decides which files it takes (`classify`)."""
    unlisted: list[OSError] = []
    for root, subfolders, files in os.walk(folder, onerror=unlisted.append):
        subfolders.sort()
        for name in sorted(files):
            yield classify(Path(root) / name)
    for error in unlisted:
        yield Input(Path(error.filename or folder), "error", f"cannot list this folder ({error.strerror})")
