"""Many visitors at once through the real app: `python -m benchmarks.app_load`.

Starts `streamlit run` on loopback and opens N sessions of the upload page in headless Chromium.
A barrier releases every session's upload at the same moment; the script samples the server's
resident memory every 0.1 s and times each page from the upload until it shows its face count.
Rounds of 1, 4 and 8 sessions give the photos a second through the app (Chromium runs on the same
two cores as the server), then the memory after every session has closed. Writes
benchmarks/app_load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks import publish
from benchmarks.app_server import CHROMIUM, CHROMIUM_ARGS, cpu_seconds, rss_mb, serve_app

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = (1, 4, 8)
#: What the upload page shows once its model has loaded and it waits for files.
UPLOAD_READY_TEXT = "up to 25 MB each"


@dataclass
class SessionResult:
    """What one session's page showed after its upload, and how long that took."""

    summary: str  # the line under the image: "faces found: N (#1 happy 90%; ...)"
    seconds: float
    exceptions: list[str]

    @property
    def face_count(self) -> int:
        match = re.search(r"faces found: (\d+)", self.summary)
        return int(match.group(1)) if match else -1


def visitor_photos(folder: Path, count: int) -> list[Path]:
    """`count` PNGs of the astronaut at different sizes, the k-th tiled k % 3 + 1 times (1-3 faces)."""
    from skimage import data

    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    paths = []
    for k in range(count):
        side = 300 + 40 * k
        photo = cv2.resize(bgr, (side, side))
        photo = np.hstack([photo if i % 2 == 0 else photo[:, ::-1] for i in range(k % 3 + 1)])
        paths.append(folder / f"visitor_{k + 1}.png")
        cv2.imwrite(str(paths[-1]), photo)
    return paths


async def in_browser_sessions(items: list, visit, init_script: str | None = None) -> list:
    """`await visit(page, item)` for every item at once, each in a browser session of its own (one
    headless Chromium); the results in the items' order. `init_script` runs in every page first."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

        async def session(item):
            context = await browser.new_context(viewport={"width": 1280, "height": 1600})
            if init_script:
                await context.add_init_script(init_script)
            try:
                return await visit(await context.new_page(), item)
            finally:
                await context.close()

        try:
            return await asyncio.gather(*(session(item) for item in items))
        finally:
            await browser.close()


async def upload_together(url: str, photos: list[Path], timeout_s: float = 300) -> list[SessionResult]:
    """One browser session per photo on the upload page; all uploads start together."""
    barrier = asyncio.Barrier(len(photos))

    async def visit(page, photo: Path) -> SessionResult:
        await page.goto(f"{url}/Upload")
        await page.get_by_text(UPLOAD_READY_TEXT).first.wait_for(timeout=timeout_s * 1000)
        await barrier.wait()
        start = time.perf_counter()
        await page.locator("input[type=file]").first.set_input_files(str(photo))
        count = page.get_by_test_id("face-count")
        await count.first.wait_for(timeout=timeout_s * 1000)
        seconds = time.perf_counter() - start
        summary = await count.first.locator("xpath=..").inner_text()
        exceptions = await page.locator("[data-testid='stException']").all_inner_texts()
        return SessionResult(" ".join(summary.split()), seconds, exceptions)

    return await in_browser_sessions(photos, visit)


class MemorySampler:
    """The peak of a process's resident memory, sampled every `every_s` seconds in a thread."""

    def __init__(self, pid: int, every_s: float = 0.1):
        self.pid, self.every_s, self.peak = pid, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop.wait(self.every_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def settled_rss(pid: int, seconds: float = 20) -> float:
    """The server's memory once closed sessions are cleaned up (Streamlit drops them after a while)."""
    time.sleep(seconds)
    return rss_mb(pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "app_load.md")
    args = parser.parse_args(argv)
    from ferlens.machine import machine_summary

    rows = []
    with tempfile.TemporaryDirectory() as tmp, serve_app(Path(tmp) / "streamlit.log") as (url, pid):
        photos = visitor_photos(Path(tmp), max(ROUNDS))
        asyncio.run(upload_together(url, photos[:1]))  # loads the model: the rounds measure serving only
        loaded = settled_rss(pid, 5)
        for sessions in ROUNDS:
            with MemorySampler(pid) as memory:
                start, cpu = time.perf_counter(), cpu_seconds(pid)
                results = asyncio.run(upload_together(url, photos[:sessions]))
                wall = time.perf_counter() - start
                server_cpu = cpu_seconds(pid) - cpu
            seconds = sorted(r.seconds for r in results)
            rows.append((sessions, sessions / seconds[-1], seconds[len(seconds) // 2], seconds[-1], memory.peak,
                         [r.face_count for r in results], sum(len(r.exceptions) for r in results),
                         server_cpu / sessions, wall))
            print(rows[-1], flush=True)
        gc.collect()
        after = settled_rss(pid)
    lines = [
        "# Many visitors at once through the app",
        "",
        f"Machine: {machine_summary()}. Written by `python -m benchmarks.app_load` on {time.strftime('%Y-%m-%d')}. "
        "Each session opens the upload page in headless Chromium; a barrier releases all uploads at once "
        "(one PNG of 1-3 faces each, 300-580 px high). Chromium shares the two cores with the server. "
        "Times run from the upload to the page showing its face count.",
        "",
        f"Server memory after the model loaded: **{loaded:.0f} MB**; 20 s after the last round's sessions "
        f"closed: **{after:.0f} MB**.",
        "",
        "\"Queue\" is what a first-come-first-served queue explains: the last of N sessions waits N times the "
        "time one session alone took. \"Server CPU\" is the CPU time the server process used in the round, "
        "per session (page load, upload, analysis, rendering): where it stays flat while the answers slow down "
        "more than the queue explains, the time went to Chromium's sessions on the same two cores.",
        "",
        "| sessions at once | photos/s | median s to answer | slowest s | queue: N x one alone (s) | "
        "server CPU s a session | server peak RSS (MB) | faces shown | exceptions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    alone = rows[0][3]
    for sessions, rate, median, slowest, peak, faces, exceptions, cpu, _wall in rows:
        lines.append(f"| {sessions} | {rate:.2f} | {median:.1f} | {slowest:.1f} | {sessions * alone:.1f} | {cpu:.2f} | "
                     f"{peak:.0f} | {faces} | {exceptions} |")
    return publish(lines + [""], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
