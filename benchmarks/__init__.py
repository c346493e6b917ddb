"""Benchmark scripts: each prints its figures and keeps them in a Markdown file beside it."""

from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], out: Path) -> int:
    """Print a report and write it to `out` (the committed figures come only from here); exit code 0."""
    report = "\n".join(lines)
    print(report)
    out.write_text(report)
    return 0
