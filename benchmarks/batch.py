"""Batch throughput, local against Ray: `python -m benchmarks.batch [--photos 2000] [--video-minutes 3]`.

The same inputs (ExpW photos, and a synthetic video of two moving faces) through `ferlens.core.batch` with the
local engine and with Ray Data on 1 and 2 workers, each run in a fresh results directory and a fresh
process (a local Ray cluster started by the job itself). Prints and writes benchmarks/batch.md with
inputs and faces a second, Ray's overhead against the local engine at the same number of cores,
and a capacity plan from the measured per-core rates.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import publish
from ferlens.config import DEFAULT_EXPW_DIR, DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR
from ferlens.machine import machine_summary

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).with_suffix(".md")

#: (name, extra ferlens.core.batch arguments, cores it may use)
RUNS = (
    ("local, 1 thread", ["--engine", "local"], 1),
    ("Ray, 1 worker", ["--engine", "ray", "--workers", "1"], 1),
    ("local, 2 threads", ["--engine", "local"], 2),
    ("Ray, 2 workers", ["--engine", "ray", "--workers", "2"], 2),
)


def make_inputs(folder: Path, photos: int, video_minutes: float) -> tuple[Path, Path]:
    """A list file of the first `photos` ExpW images, and a video of two faces moving for `video_minutes`."""
    from skimage import data

    from tests.media import two_faces_frames, write_video

    images = sorted((Path(DEFAULT_EXPW_DIR) / "images").glob("*.jpg"))[:photos]
    if len(images) < photos:
        raise SystemExit(f"need {photos} photos in {DEFAULT_EXPW_DIR}/images, found {len(images)}")
    listing = folder / "photos.txt"
    listing.write_text("\n".join(str(p) for p in images) + "\n")
    frames = two_faces_frames(data.astronaut(), 300)  # 10 s at 30 fps, looped: the decoder still decodes each
    loops = max(1, round(video_minutes * 60 / 10))
    video = write_video(folder / "talk.mp4", frames * loops)  # the same arrays, referenced again
    return listing, video


def run(inputs: list[Path], out: Path, extra: list[str], cores: int, common: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if "local" in extra:  # the local engine's one process: its ONNX Runtime / LiteRT threads
        env["OMP_NUM_THREADS"] = str(cores)
        extra = [*extra, "--threads", str(cores)]
    command = [sys.executable, "-m", "ferlens.core.batch", *map(str, inputs), "--out", str(out), *common, *extra]
    timings = []
    for _ in range(2):  # the second run finds every input done: what is left is the fixed cost (start, plan)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        timings.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):
            raise SystemExit(f"ferlens.core.batch failed: {done.stderr[-2000:]}")
    from ferlens.core.batch import ResultsDir

    return {"seconds": timings[0], "fixed": timings[1], **ResultsDir.counts_of(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--video-minutes", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=5.0, help="video frames analysed a second")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help="model for photos and video (default: the live model, without ten-crop)")
    parser.add_argument("--tta", default="none")
    parser.add_argument("--note", default="", help="a line on the conditions (e.g. training running beside it)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="fer-batch-bench-"))
    try:
        listing, video = make_inputs(work, args.photos, args.video_minutes)
        common = ["--model", args.model, "--tta", args.tta, "--fps", str(args.fps), "--unit-seconds", "30"]
        results = {}
        for kind, inputs in (("photos", [listing]), ("video", [video])):
            for name, extra, cores in RUNS:
                out = work / f"{kind}-{name.replace(' ', '').replace(',', '-')}"
                results[kind, name] = {**run(inputs, out, extra, cores, common), "cores": cores}
                shutil.rmtree(out, ignore_errors=True)
                r = results[kind, name]
                print(f"{kind:6s} {name:18s} {r['seconds']:7.1f} s  {r.get('done', 0)} inputs  {r['faces']} faces",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "# Batch jobs: the local engine against Ray Data",
        "",
        f"`python -m benchmarks.batch --photos {args.photos} --video-minutes {args.video_minutes:g}` on "
        f"{machine_summary()}. Model `{Path(args.model).name}`, TTA `{args.tta}`, videos at {args.fps:g} frames a second"
        f"{'; ' + args.note if args.note else ''}. Each run is a fresh `python -m ferlens.core.batch` process and results "
        "directory; a Ray run starts its own local cluster (about 10 s, included).",
        "",
        "The fixed cost is the same command rerun on its finished directory (process and cluster start, planning);",
        "the overhead compares the time beyond it with the local engine's on the same cores. Videos are cut into",
        "30-second units, so that two workers can share one video.",
        "",
        "| inputs | engine | cores | wall time | fixed cost | inputs/s | faces/s | overhead against local, same cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("photos", "video"):
        for name, _, cores in RUNS:
            r = results[kind, name]
            local = results[kind, f"local, {cores} thread{'s' if cores > 1 else ''}"]
            net, local_net = r["seconds"] - r["fixed"], local["seconds"] - local["fixed"]
            overhead = "" if name.startswith("local") else f"{100 * (net / local_net - 1):+.0f} %"
            lines.append(f"| {kind} | {name} | {cores} | {r['seconds']:.1f} s | {r['fixed']:.1f} s | "
                         f"{r.get('done', 0) / r['seconds']:.2f} | {r['faces'] / r['seconds']:.1f} | {overhead} |")
    photos, video = results["photos", "Ray, 2 workers"], results["video", "Ray, 2 workers"]
    photo_rate = args.photos / (photos["seconds"] - photos["fixed"]) / 2  # photos a second a core, once running
    video_rate = args.video_minutes * 60 / (video["seconds"] - video["fixed"]) / 2  # video seconds a second a core
    cores_photos = math.ceil(1e6 / (8 * 3600 * photo_rate))
    cores_video = math.ceil(1000 * 3600 / (8 * 3600 * video_rate))
    lines += [
        "",
        "## Capacity plan (on paper, from the Ray 2-worker rates above)",
        "",
        f"- One core analyses {photo_rate:.1f} photos a second and {video_rate:.1f} seconds of video a second "
        f"(at {args.fps:g} analysed frames a second).",
        f"- 1 million photos in 8 hours: {1e6 / 8 / 3600:.0f} photos a second, so {cores_photos} cores "
        f"({math.ceil(cores_photos / 16)} nodes of 16 cores).",
        f"- 1,000 hours of video in 8 hours: 125 video-hours an hour, so {cores_video} cores "
        f"({math.ceil(cores_video / 16)} nodes of 16 cores).",
        f"- The photo model (`{PHOTO_MODEL_DIR.name}`, ten-crop) costs several times the live model a face: rerun with "
        f"`--model {PHOTO_MODEL_DIR.relative_to(ROOT)} --tta ten-crop` for its rate before sizing a photo job on it.",
        "- On an existing cluster: `ray job submit --address http://HEAD:8265 --working-dir . -- python -m ferlens.core.batch "
        "LIST.txt --out s3-or-shared-path --engine ray --address auto` (Ray Jobs); on Kubernetes, the same entry point "
        "as a KubeRay `RayJob`. Inputs and RESULTS_DIR must be on storage every node reads (NFS, or a mounted bucket).",
    ]
    return publish(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
