"""Many visitors analysing videos at once through the real app: `python -m benchmarks.video_load`.

Each scenario starts its own `streamlit run` on loopback and opens N sessions of the video page in
headless Chromium. A barrier releases every session's upload at the same moment, a second one every
click on "Analyse video"; the script samples the server's resident memory every 0.1 s, notes which
pages were told they were queued, and checks that each page finishes with the faces its file holds.
Then the sessions close, and the memory is read again once Streamlit's disconnected-session timeout
(`server.disconnectedSessionTTL`) has passed. The videos are generated: 1080p H.264 with two faces
(the astronaut photo shipped with scikit-image) over a grain that makes the encoder spend the bits a
camera would, at the bit rate that gives the asked size. Writes benchmarks/video_load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import publish
from benchmarks.app_load import MemorySampler, in_browser_sessions
from benchmarks.app_server import rss_mb, serve_app

ROOT = Path(__file__).resolve().parent.parent
#: Visitors x megabytes x seconds: the two scenarios of issue 44.
DEFAULT_SCENARIOS = ("3x150x60", "6x20x8")
#: Streamlit's default for `server.disconnectedSessionTTL`: a closed session's state is kept this long.
SESSION_TTL_S = 120
#: Records, in the page, every text the queue notice shows (a MutationObserver: nothing is missed between polls).
QUEUE_WATCHER = """
window.__ferQueue = [];
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-testid="video-queue"]')) {
    const text = el.innerText.trim();
    if (text && window.__ferQueue[window.__ferQueue.length - 1] !== text) window.__ferQueue.push(text);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@dataclass(frozen=True)
class Scenario:
    visitors: int
    megabytes: float
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """"3x150x60": 3 visitors, a 150 MB file each, 60 seconds long."""
        visitors, megabytes, seconds = text.lower().split("x")
        return cls(int(visitors), float(megabytes), float(seconds))


def write_face_video(path: Path, seconds: float, megabytes: float, size: tuple[int, int] = (1920, 1080),
                     fps: int = 30, seed: int = 0) -> Path:
    """An H.264 MP4 of `seconds` at `size` with two faces moving (as in `tests.media.two_faces_frames`),
    over a changing grain, encoded at the constant bit rate that makes it about `megabytes` large.

    Frames are made one at a time, so a minute of 1080p never sits in memory."""
    import av
    from skimage import data

    from tests.media import two_faces_frames

    cycle = two_faces_frames(data.astronaut(), 48, size)  # the faces' movement repeats every 48 frames
    rng = np.random.default_rng(seed)
    grains = [rng.integers(-10, 11, (size[1], size[0], 1), dtype=np.int16) for _ in range(7)]
    bit_rate = int(megabytes * 1e6 * 8 / seconds)
    frames = round(seconds * fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.bit_rate = bit_rate
        kbit = bit_rate // 1000
        stream.options = {"preset": "ultrafast", "x264-params": f"nal-hrd=cbr:vbv-maxrate={kbit}:vbv-bufsize={kbit}"}
        for i in range(frames):
            frame = np.clip(cycle[i % len(cycle)] + grains[i % len(grains)], 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@dataclass
class VideoSessionResult:
    """What one session's video page showed, and how long each step took."""

    done: str  # the line under the video: "N frames analysed in S s (...); faces tracked: F"
    queue: list[str] = field(default_factory=list)  # every text the queue notice showed, in order
    upload_s: float = 0.0  # from choosing the file to the page showing its size and length
    analysis_s: float = 0.0  # from the click on "Analyse video" to the results, queue included
    exceptions: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        match = re.search(r"([\d,]+) frames analysed", self.done)
        return int(match.group(1).replace(",", "")) if match else -1

    @property
    def faces(self) -> int:
        match = re.search(r"faces tracked: (\d+)", self.done)
        return int(match.group(1)) if match else -1


async def analyse_together(url: str, videos: list[Path], timeout_s: float = 1800, on_analysing=None,
                           on_finished=None) -> list[VideoSessionResult]:
    """One browser session per video on the video page: all upload together, then all press
    "Analyse video" together. Each session calls `on_analysing()` once every upload is in, just
    before its click, and `on_finished()` once every page shows its results, before any closes (to
    read the server's memory then)."""
    uploaded, clicked, finished = (asyncio.Barrier(len(videos)) for _ in range(3))

    async def visit(page, video: Path) -> VideoSessionResult:
        await page.goto(f"{url}/Video")
        await page.get_by_text("Choose a video above").wait_for(timeout=timeout_s * 1000)
        await uploaded.wait()
        start = time.perf_counter()
        await page.locator("input[type=file]").first.set_input_files(str(video), timeout=timeout_s * 1000)
        await page.get_by_test_id("video-info").wait_for(timeout=timeout_s * 1000)
        upload_s = time.perf_counter() - start
        await clicked.wait()
        if on_analysing is not None:
            on_analysing()
        start = time.perf_counter()
        await page.get_by_role("button", name="Analyse video").click()
        await page.get_by_test_id("video-done").wait_for(timeout=timeout_s * 1000)
        result = VideoSessionResult(
            " ".join((await page.get_by_test_id("video-done").inner_text()).split()),
            await page.evaluate("window.__ferQueue"), upload_s, time.perf_counter() - start,
            await page.locator("[data-testid='stException']").all_inner_texts(),
        )
        await finished.wait()
        if on_finished is not None:
            on_finished()
        return result

    return await in_browser_sessions(videos, visit, init_script=QUEUE_WATCHER)


def scratch_folders(tmp: Path) -> int:
    """Per-session folders the server left in its temporary directory."""
    return sum(1 for p in tmp.iterdir() if p.is_dir() and p.name.startswith("fer-"))


def run_scenario(scenario: Scenario, folder: Path, ttl_s: float, env: dict[str, str]) -> dict:
    """One scenario on a server of its own: memory before, peak, after the pages finished, after the
    sessions closed, and after the disconnected-session timeout."""
    video = folder / f"visitor_{scenario.megabytes:g}MB_{scenario.seconds:g}s.mp4"
    if not video.exists():
        started = time.perf_counter()
        write_face_video(video, scenario.seconds, scenario.megabytes)
        print(f"{video.name}: {video.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.0f} s", flush=True)
    warmup = folder / "warmup.mp4"
    if not warmup.exists():
        write_face_video(warmup, 1, 0.5, size=(640, 360))
    server_tmp = folder / f"server_tmp_{scenario.visitors}x{scenario.megabytes:g}"
    server_tmp.mkdir(exist_ok=True)
    env = {"TMPDIR": str(server_tmp), "STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL": str(int(ttl_s)), **env}
    with serve_app(folder / "streamlit.log", env=env) as (url, pid):
        asyncio.run(analyse_together(url, [warmup]))  # loads the model and every module the page uses
        time.sleep(ttl_s + 10)  # the warm-up session's own timeout
        before = rss_mb(pid)
        finished_rss: list[float] = []
        analysing = MemorySampler(pid)  # from the first click on: the analyses' share of the peak

        def start_analysing() -> None:
            if not analysing.running:
                analysing.__enter__()

        started = time.perf_counter()
        with MemorySampler(pid) as memory:
            results = asyncio.run(analyse_together(url, [video] * scenario.visitors, on_analysing=start_analysing,
                                                   on_finished=lambda: finished_rss.append(rss_mb(pid))))
        if analysing.running:
            analysing.__exit__()
        wall = time.perf_counter() - started
        time.sleep(5)
        closed = rss_mb(pid)
        time.sleep(ttl_s + 10)
        settled = rss_mb(pid)
        left = scratch_folders(server_tmp)
    row = {
        "scenario": scenario, "size_mb": video.stat().st_size / 1e6, "before": before, "peak": memory.peak,
        "peak_analysing": analysing.peak,
        "finished": max(finished_rss) if finished_rss else float("nan"), "closed": closed, "settled": settled,
        "frames": [r.frames for r in results], "faces": [r.faces for r in results],
        "queued": sum(bool(r.queue) for r in results), "exceptions": sum(len(r.exceptions) for r in results),
        "slowest_s": max(r.upload_s + r.analysis_s for r in results), "wall_s": wall, "scratch_left": left,
        "queue_texts": [r.queue for r in results],
    }
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=list(DEFAULT_SCENARIOS),
                        help="VISITORSxMBxSECONDS, e.g. 3x150x60 (default: %(default)s)")
    parser.add_argument("--ttl", type=float, default=SESSION_TTL_S,
                        help="server.disconnectedSessionTTL in seconds (default: Streamlit's %(default)s)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the server, e.g. FER_SERVER_MEMORY_MB=2048")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "video_load.md")
    args = parser.parse_args(argv)
    from ferlens.machine import machine_summary

    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_scenario(Scenario.parse(s), Path(tmp), args.ttl, env) for s in args.scenarios]
    settings = ", ".join(f"`{k}={v}`" for k, v in env.items()) or "the defaults"
    lines = [
        "# Many visitors analysing videos at once through the app",
        "",
        f"Machine: {machine_summary()}, {os.cpu_count()} cores. Written by `python -m benchmarks.video_load "
        f"{' '.join(args.scenarios)}` on {time.strftime('%Y-%m-%d')}, with {settings}. Each scenario runs on a "
        "server of its own; every session opens the video page in headless Chromium, a barrier releases all "
        "uploads at once and then all clicks on \"Analyse video\". The files are 1080p H.264, 30 frames a second, "
        "two faces. Chromium shares the cores with the server. \"Before\" is the server's resident memory "
        "once a short warm-up video has been analysed and its session has timed out; \"peak while analysing\" is "
        "from the first click on, when every upload is on the server; \"after the timeout\" is "
        f"{args.ttl:.0f} s (`server.disconnectedSessionTTL`) + 10 s after the sessions closed.",
        "",
        "| visitors at once | file each | RSS before (MB) | peak (MB) | peak while analysing | after the pages "
        "finished | after the sessions closed | after the timeout | frames, faces per page | pages told they were "
        "queued | exceptions | slowest page (s) | session folders left |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["scenario"]
        pages = sorted(set(zip(r["frames"], r["faces"])))
        lines.append(
            f"| {s.visitors} | {r['size_mb']:.0f} MB, {s.seconds:g} s | {r['before']:.0f} | **{r['peak']:.0f}** | "
            f"{r['peak_analysing']:.0f} | {r['finished']:.0f} | {r['closed']:.0f} | **{r['settled']:.0f}** | "
            f"{'; '.join(f'{f} frames, {n} faces' for f, n in pages)} ({s.visitors} pages) | {r['queued']} | "
            f"{r['exceptions']} | {r['slowest_s']:.0f} | {r['scratch_left']} |"
        )
    return publish(lines + [""], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
