"""How much the INT8 export's accuracy depends on its calibration sample:
`python -m benchmarks.int8_calibration [MODEL_DIR]` writes benchmarks/int8_calibration.md.

`ferlens.training.export` calibrates the INT8 TFLite model's activation ranges on a seeded sample of
`CALIBRATION_IMAGES` training faces. This converts the model again with other sample sizes and
seeds and scores each conversion on PublicTest (the selection split) and PrivateTest (for the record),
single centre crop. Nothing is written into the model folder.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks import publish
from ferlens.config import DEFAULT_DATA_DIR, DEFAULT_MODEL_DIR
from ferlens.machine import cpu_model_name, vector_extensions
from ferlens.modelfolder.loading import TFLiteBackend
from ferlens.training.data import load_dataset
from ferlens.training.evaluate import predict_split
from ferlens.training.export import CALIBRATION_IMAGES, calibration_sample, export_tflite, load_checked_model

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = ((CALIBRATION_IMAGES, 0), (CALIBRATION_IMAGES, 1), (2000, 0), (2000, 1), (5000, 0), (5000, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, nargs="?", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "int8_calibration.md")
    args = parser.parse_args(argv)
    data = load_dataset(args.data)
    model = load_checked_model(args.model_dir)
    rows = []
    for size, seed in SAMPLES:
        with tempfile.TemporaryDirectory() as tmp:
            calibration = calibration_sample(data.train.images, seed, size)
            backend = TFLiteBackend(export_tflite(model, Path(tmp) / "int8.tflite", calibration), "tflite-int8", None)
            val, test = (100 * float((predict_split(backend, split).argmax(1) == split.labels).mean())
                         for split in (data.val, data.test))
        shipped = " (as `ferlens.training.export`)" if (size, seed) == (CALIBRATION_IMAGES, 0) else ""
        rows.append(f"| {size}{shipped} | {seed} | {val:.2f} % | {test:.2f} % |")
        print(rows[-1], flush=True)
    return publish([
        "# INT8 calibration sample", "",
        f"Written by `python -m benchmarks.int8_calibration {args.model_dir}` on {cpu_model_name()} "
        f"({vector_extensions() or 'vector extensions unknown'}): the model converted to INT8 "
        "TFLite with each calibration sample (training faces, seeded), single centre crop.", "",
        "| calibration images | seed | PublicTest accuracy | PrivateTest accuracy |", "|---|---|---|---|", *rows, "",
    ], args.out)


if __name__ == "__main__":
    raise SystemExit(main())
