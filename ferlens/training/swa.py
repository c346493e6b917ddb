"""Weight averaging over a run's last epochs: `python -m ferlens.training.swa RUN_DIR --last K --out NEW_DIR`.

Stochastic weight averaging (Izmailov et al., 2018): the mean of the weights a run passed
through near its end usually sits in a flatter, better-generalising spot than any single
epoch. The run must have been trained with `--save-epoch-weights`. BatchNorm statistics of
averaged weights are not the average of the epochs' statistics, so they are recomputed on the
run's own (augmented) training batches. The result is a normal model folder, evaluated like
any other, whose `train_config.json` records the averaging so the ablation table shows it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np

from ferlens.config import DEFAULT_DATA_DIR
from ferlens.modelfolder.artifacts import ARCHITECTURE_FILE, CONFIG_FILE, HISTORY_FILE, MODEL_FILE, TRAINING_FILE
from ferlens.modelfolder.loading import open_model_file
from ferlens.modelfolder.manifest import write_manifest
from ferlens.modelfolder.selftest import write_selftest
from ferlens.training.architectures import build_model
from ferlens.training.data import Dataset, load_dataset
from ferlens.training.train import EPOCH_WEIGHTS, TrainConfig, make_datasets


def epoch_weight_files(run_dir: Path, last: int) -> dict[int, Path]:
    """The weight files of the run's last `last` epochs by epoch number, oldest first; a clear error if missing."""
    epochs = json.loads((run_dir / HISTORY_FILE).read_text())["epochs"]["epoch"]
    if last < 1 or last > len(epochs):
        raise ValueError(f"--last must be between 1 and the {len(epochs)} epochs the run recorded, not {last}")
    files = {int(e): run_dir / EPOCH_WEIGHTS.format(epoch=int(e)) for e in epochs[-last:]}
    missing = [str(f) for f in files.values() if not f.exists()]
    if missing:
        raise FileNotFoundError(f"no per-epoch weights {missing[0]} (train with --save-epoch-weights)")
    return files


def average_weights(model: keras.Model, files: list[Path]) -> None:
    """Set `model`'s weights to the element-wise mean of the given weight files."""
    total = None
    for path in files:
        model.load_weights(path)
        weights = [np.asarray(w, np.float64) for w in model.get_weights()]
        total = weights if total is None else [t + w for t, w in zip(total, weights)]
    model.set_weights([(t / len(files)).astype(np.float32) for t in total])


def recompute_batchnorm(model: keras.Model, batches) -> int:
    """Replace every BatchNorm layer's moving statistics with their mean over `batches`.

    Each layer's momentum is set to (n-1)/n at batch n, which turns its moving average into a
    plain cumulative mean; the original momenta are restored afterwards. Returns the batch count.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    count = 0
    try:
        for count, (images, *_) in enumerate(batches, start=1):
            for layer in norms:
                layer.momentum = (count - 1) / count
            model(images, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return count


def average_run(run_dir: Path, last: int, out_dir: Path, data: Dataset) -> keras.Model:
    """Average `run_dir`'s last `last` epochs into a new model folder `out_dir` (not yet evaluated)."""
    config = TrainConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))
    files = epoch_weight_files(run_dir, last)
    model = build_model(config.architecture)
    average_weights(model, list(files.values()))
    train_batches, _, _ = make_datasets(data, config)
    batches = recompute_batchnorm(model, train_batches)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / MODEL_FILE)
    write_manifest(out_dir, [MODEL_FILE])
    write_selftest(out_dir, {"keras": open_model_file(out_dir / MODEL_FILE, "keras")})  # known answers, checked at load
    (out_dir / ARCHITECTURE_FILE).write_text(model.to_json(indent=1))
    for name in (HISTORY_FILE, TRAINING_FILE):
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, out_dir / name)
    averaged = {
        "from_run": run_dir.name,
        "last_epochs": last,
        "epochs": list(files),
        "batchnorm_batches": batches,
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps({**config.to_dict(), "weight_averaging": averaged}, indent=1))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlens.training.swa", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a model folder trained with --save-epoch-weights")
    parser.add_argument("--last", type=int, default=10, help="how many final epochs to average")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="FER2013 folder or fer2013.csv")
    parser.add_argument("--no-evaluate", action="store_true", help="skip writing metrics.json")
    args = parser.parse_args(argv)
    if args.out.resolve() == args.run_dir.resolve():
        parser.error("--out must be a new folder, not the run itself")
    try:
        data = load_dataset(args.data)
        average_run(args.run_dir, args.last, args.out, data)
        if not args.no_evaluate:
            from ferlens.training.evaluate import evaluate_model_dir

            metrics = evaluate_model_dir(args.out, data, wild=False)  # ferlens.training.evaluate adds the in-the-wild section
            print(f"{args.out}: PrivateTest accuracy {metrics['test']['accuracy']:.4f}, "
                  f"PublicTest accuracy {metrics['val']['accuracy']:.4f}")
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
