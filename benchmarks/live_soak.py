"""A long live session: `python -m benchmarks.live_soak --minutes 60 --streams 1`.

Headless Chromium streams a fake camera (two swaying faces) to the live page for N minutes, from
`--streams` browser sessions at once, while the server's resident memory is sampled every 30 s.
Writes benchmarks/live_soak-<streams>x<minutes>min.md with the samples and a plot (.png).

`--no-browser` runs the same per-frame work in this process instead (LiveProcessor, LiveSession,
the timelines the page draws every second) with tracemalloc, and lists the allocation sites that
grew: it tells our own growth apart from the WebRTC stack's and Streamlit's.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from benchmarks import publish
from benchmarks.app_server import CHROMIUM, CHROMIUM_ARGS, rss_mb, serve_app
from ferlens.machine import machine_summary

OUT_DIR = Path(__file__).resolve().parent
SAMPLE_S = 30.0
#: RSS growth allowed after the first minutes (the issue's bar), and when that stretch starts.
SETTLE_MIN, ALLOWED_GROWTH_MB = 5.0, 50.0


def fake_camera(folder: Path) -> Path:
    from skimage import data

    from tests.test_browser import write_fake_camera

    return write_fake_camera(folder / "two_faces.y4m", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))


def frames_done(page) -> int:
    text = page.get_by_test_id("live-status").first.inner_text(timeout=30_000)
    return int(re.search(r"frames processed: (\d+)", text).group(1))


def plot(samples: list[tuple[float, float]], path: Path, title: str) -> None:
    """RSS against minutes as a small PNG (OpenCV only: no plotting library needed)."""
    width, height, pad = 800, 400, 50
    minutes = np.array([s[0] for s in samples]) / 60
    rss = np.array([s[1] for s in samples])
    low, high = float(rss.min()) - 10, float(rss.max()) + 10
    image = np.full((height, width, 3), 255, np.uint8)
    cv2.rectangle(image, (pad, pad), (width - pad, height - pad), (0, 0, 0), 1)
    xs = pad + (minutes / max(minutes.max(), 1e-9)) * (width - 2 * pad)
    ys = height - pad - (rss - low) / (high - low) * (height - 2 * pad)
    cv2.polylines(image, [np.stack([xs, ys], 1).astype(np.int32)], False, (200, 60, 0), 2)
    for text, org in ((title, (pad, 30)), (f"{high:.0f} MB", (5, pad)), (f"{low:.0f} MB", (5, height - pad)),
                      (f"{minutes.max():.0f} min", (width - pad - 40, height - 15))):
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)


class Sample(NamedTuple):
    """One look at the server: seconds since the streams started, its RSS, frames processed per stream."""

    seconds: float
    rss_mb: float
    frames: tuple[int, ...]


def soak_browser(minutes: float, streams: int) -> tuple[list[Sample], int]:
    """Samples every 30 s, and the number of tracebacks in the server's log."""
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="fer-soak-"))
    samples: list[Sample] = []
    with serve_app(work / "server.log") as (url, pid), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={fake_camera(work)}"])
        pages = []
        for _ in range(streams):
            context = browser.new_context(viewport={"width": 1280, "height": 1400})
            context.grant_permissions(["camera"])
            page = context.new_page()
            page.goto(f"{url}/Live_camera")
            page.frame_locator("iframe[title*='webrtc']").first.get_by_role("button", name="START").click(timeout=90_000)
            pages.append(page)
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            samples.append(Sample(elapsed, rss_mb(pid), tuple(frames_done(page) for page in pages)))
            print(f"{elapsed / 60:5.1f} min  RSS {samples[-1].rss_mb:.0f} MB  frames {samples[-1].frames}", flush=True)
            if len(samples) > 1:
                for i, (before, now) in enumerate(zip(samples[-2].frames, samples[-1].frames)):
                    if before == now:  # a stalled stream: keep what its page shows, to tell why
                        shot = work / f"stalled-stream{i + 1}-{elapsed / 60:.1f}min.png"
                        pages[i].screenshot(path=str(shot), full_page=True)
                        print(f"  stream {i + 1} processed no frame in the last interval; its page: {shot}", flush=True)
            if elapsed >= minutes * 60:
                break
            time.sleep(min(SAMPLE_S, minutes * 60 - elapsed))
        browser.close()
        errors = (work / "server.log").read_text(errors="replace").count("Traceback")
    return samples, errors


def soak_in_process(minutes: float) -> list[str]:
    """The page's per-frame work without WebRTC or Streamlit, with tracemalloc: where does memory go?"""
    import tracemalloc

    from skimage import data

    from ferlens.config import DEFAULT_MODEL_DIR
    from ferlens.core.recognition import EmotionRecognizer
    from ferlens.core.tracks import LiveSession
    from ferlens.core.video import LiveProcessor

    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    frames = [cv2.resize(np.roll(bgr, 8 * i, axis=1), (640, 480)) for i in range(30)]
    processor = LiveProcessor(EmotionRecognizer(DEFAULT_MODEL_DIR, "realtime"))
    session = LiveSession()
    tracemalloc.start(10)
    first = None
    started = last_draw = time.monotonic()
    index = 0
    while time.monotonic() - started < minutes * 60:
        processor.process(frames[index % 30])
        index += 1
        session.add(processor.drain())
        if time.monotonic() - last_draw >= 1.0:  # what the page's fragment reads every second
            for face_id in session.recent_faces():
                session.timeline(face_id)
            last_draw = time.monotonic()
        if first is None and time.monotonic() - started >= 60:
            first = tracemalloc.take_snapshot()
    grown = tracemalloc.take_snapshot().compare_to(first, "traceback") if first else []
    lines = [f"{index} frames in {minutes:g} min; session rows {len(session)}",
             "", "| growth since minute 1 | allocations | where |", "|---|---|---|"]
    for stat in grown[:10]:
        frame = stat.traceback[-1]
        lines.append(f"| {stat.size_diff / 1024:+.0f} KiB | {stat.count_diff:+d} | {frame.filename}:{frame.lineno} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live_soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--no-browser", action="store_true", help="the per-frame work in-process, with tracemalloc")
    parser.add_argument("--note", default="", help="conditions to record (e.g. training running beside it)")
    args = parser.parse_args(argv)
    head = (f"`python -m benchmarks.live_soak --minutes {args.minutes:g} --streams {args.streams}"
            f"{' --no-browser' if args.no_browser else ''}` on {machine_summary()}"
            f"{'; ' + args.note if args.note else ''}.")
    if args.no_browser:
        return publish(["# Live session without the browser: where memory grows", "", head, "",
                        *soak_in_process(args.minutes)], OUT_DIR / "live_soak-in-process.md")
    samples, errors = soak_browser(args.minutes, args.streams)
    name = f"live_soak-{args.streams}x{args.minutes:g}min"
    plot([(s.seconds, s.rss_mb) for s in samples], OUT_DIR / f"{name}.png",
         f"server RSS, {args.streams} stream(s), {args.minutes:g} min")
    settled = [s.rss_mb for s in samples if s.seconds >= SETTLE_MIN * 60]
    growth = max(settled) - settled[0] if settled else float("nan")
    seconds = samples[-1].seconds or 1
    stalled = [i + 1 for i in range(args.streams)
               if any(b.frames[i] == a.frames[i] for a, b in zip(samples, samples[1:]))]
    lines = [f"# Live session: {args.streams} stream(s) for {args.minutes:g} minutes", "", head, "",
             f"Frames processed per stream: {', '.join(map(str, samples[-1].frames))} "
             f"({', '.join(f'{f / seconds:.1f}' for f in samples[-1].frames)} a second). "
             + (f"**Stream(s) {stalled} processed no frame for at least one 30 s interval.** " if stalled
                else "Every stream processed frames in every 30 s interval. ")
             + f"Tracebacks in the server log: {errors}.",
             f"Server RSS: {samples[0].rss_mb:.0f} MB at the start, {settled[0] if settled else float('nan'):.0f} MB "
             f"after {SETTLE_MIN:g} minutes, {samples[-1].rss_mb:.0f} MB at the end; growth after minute {SETTLE_MIN:g}: "
             f"**{growth:.0f} MB** (bar: {ALLOWED_GROWTH_MB:g} MB).", "",
             f"![RSS]({name}.png)", "", "| minute | RSS (MB) | frames processed per stream |", "|---|---|---|"]
    lines += [f"| {s.seconds / 60:.1f} | {s.rss_mb:.0f} | {', '.join(map(str, s.frames))} |" for s in samples]
    return publish(lines, OUT_DIR / f"{name}.md")


if __name__ == "__main__":
    raise SystemExit(main())
