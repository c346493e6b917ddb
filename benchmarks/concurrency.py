"""One shared recognizer under concurrent callers: `python -m benchmarks.concurrency`.

The photo pipeline as the upload page runs it (photo model, ten-crop, its detector) on one-face
photos of 640x480 to 1024x768, from 1, 4 and 8 threads at once, with the detectors' pools capped
at 1 instance (the same as one lock), 2, and the default. Each setting runs in a fresh process, so
its peak memory is its own. Writes benchmarks/concurrency.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import publish

ROOT = Path(__file__).resolve().parent.parent
CALLERS = (1, 4, 8)
#: Photos each caller analyses in one measurement.
PER_CALLER = 6

WORKER = r"""
import json, resource, statistics, sys, threading, time
import cv2, numpy as np
from skimage import data
from ferlens.config import PHOTO_MODEL_DIR
from ferlens.core.memory import return_large_blocks
from ferlens.core.recognition import EmotionRecognizer
from ferlens.core.tta import PHOTO_TTA

callers, per_caller = int(sys.argv[1]), int(sys.argv[2])
return_large_blocks()  # as the app does
recognizer = EmotionRecognizer(PHOTO_MODEL_DIR, tta=PHOTO_TTA)
bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
photos = [cv2.resize(bgr, size) for size in ((640, 480), (800, 600), (1024, 768))]
recognizer.predict(photos[0])  # warm-up: lazy loads, first-call allocations
barrier = threading.Barrier(callers)
latencies, faces = [], []

def work(i):
    barrier.wait()
    for k in range(per_caller):
        start = time.perf_counter()
        faces.append(len(recognizer.predict(photos[(i + k) % len(photos)])))
        latencies.append(time.perf_counter() - start)

threads = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
start = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
wall = time.perf_counter() - start
latencies.sort()
print(json.dumps({"photos_per_s": len(latencies) / wall, "median_ms": 1000 * statistics.median(latencies),
                  "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))], "faces": sorted(set(faces)),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(callers: int, pool_size: int | None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if pool_size is not None:
        env["FER_POOL_SIZE"] = str(pool_size)
    done = subprocess.run([sys.executable, "-c", WORKER, str(callers), str(PER_CALLER)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "concurrency.md")
    args = parser.parse_args(argv)
    from ferlens.core.detectors import PHOTO_DETECTOR
    from ferlens.machine import machine_summary
    from ferlens.pool import DEFAULT_POOL_SIZE

    lines = [
        "# One shared recognizer under concurrent callers",
        "",
        f"Machine: {machine_summary()}. Written by `python -m benchmarks.concurrency` on "
        f"{time.strftime('%Y-%m-%d')}. The photo pipeline as the upload page runs it (photo model, ten-crop, "
        f"detector {PHOTO_DETECTOR}, large blocks returned to the system as the app's "
        "entry point asks), one-face photos of "
        f"640x480 to 1024x768, {PER_CALLER} photos per caller, all callers "
        "released together. Every photo gave the same faces as one call at a time (`faces` column: the counts seen).",
        "",
        "| detector pool (instances at most) | callers at once | photos/s | median ms a photo | p95 ms | faces | "
        "peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for pool_size in sorted({1, DEFAULT_POOL_SIZE, 2 * DEFAULT_POOL_SIZE}):
        label = f"{pool_size}" + {1: " (one lock)", DEFAULT_POOL_SIZE: " (default)"}.get(pool_size, "")
        for callers in CALLERS:
            row = measure(callers, pool_size)
            lines.append(f"| {label} | {callers} | {row['photos_per_s']:.2f} | {row['median_ms']:.0f} | "
                         f"{row['p95_ms']:.0f} | {row['faces']} | {row['peak_rss_mb']:.0f} |")
            print(lines[-1], flush=True)
    return publish(lines + [""], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
