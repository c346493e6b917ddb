"""Checks before a file is opened, shared by the image and video readers."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


class UnreadableInputError(ValueError):
    """An input that cannot be read as it is; the message says why in words a user can act on."""


def display_name(path: str | os.PathLike) -> str:
    """A file name for a line of output: as it is when every character prints, else quoted with escapes
    (`'a\\nb.jpg'`), so a name holding a newline, a tab, a NUL or bytes that are not UTF-8 can neither split
    one result into two lines nor pass for another name."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return text if text.isprintable() else repr(text)


def one_line(text: str) -> str:
    """`text` with every character that does not print escaped (a newline as `\\n`): one line whatever a
    message quotes. Names in it should come through `display_name` first, which also quotes them."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


#: What a path holding a NUL byte gets: no file system takes one, so no such file can exist.
NUL_IN_NAME = "the file name holds a NUL byte (\\x00), which no file name can; check how the path was made"


def check_regular_file(path: str | os.PathLike, kind: str = "file",
                       error: type[Exception] = UnreadableInputError) -> None:
    """Only regular files are read: a FIFO would block forever and /dev/zero never ends.

    Raises `error` naming `kind` (e.g. "video") where a folder was given instead."""
    path = Path(path)
    name = display_name(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise error(f"{name}: no such file") from exc
    except OSError as exc:
        raise error(f"{name}: cannot be read ({exc.strerror})") from exc
    except ValueError as exc:  # os.stat: "embedded null byte"
        raise error(f"{name}: {NUL_IN_NAME}") from exc
    if stat.S_ISDIR(mode):
        raise error(f"{name}: is a folder, not {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if not stat.S_ISREG(mode):
        raise error(f"{name}: not a regular file (a pipe or a device?)")
    if not os.access(path, os.R_OK):
        raise error(f"{name}: cannot be read (permission denied)")


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


def write_compact_json(path: Path, document: dict) -> Path:
    """`document` as JSON in `path`, written atomically (a reader never sees half a file), one line per
    list of numbers (a face's probabilities, a shape) and otherwise one line per field."""
    text = re.sub(r"\[\s+([-0-9.e, \n]+?)\s+\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]",
                  json.dumps(document, indent=1))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path
