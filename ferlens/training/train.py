"""Train a CNN on FER2013 and write its artifacts: `python -m ferlens.training.train --out models/NAME`.

Reads top to bottom: data, model, compile, fit, save, evaluate. Callbacks do the side jobs:
per-epoch backup for resuming, best-on-PublicTest checkpoint, early stopping, TensorBoard,
history. Re-running the same command after an interruption resumes from the last epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ferlens.config import DEFAULT_DATA_DIR, DEFAULT_FERPLUS_DIR, NUM_CLASSES, split_names  # noqa: E402
from ferlens.machine import BF16_CPU_FLAGS, has_any, machine_summary  # noqa: E402
from ferlens.modelfolder.artifacts import (  # noqa: E402
    ARCHITECTURE_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    TRAINING_FILE,
    uses_teacher,
    write_json,
)
from ferlens.modelfolder.loading import open_model_file  # noqa: E402
from ferlens.modelfolder.manifest import write_manifest  # noqa: E402
from ferlens.modelfolder.selftest import write_selftest  # noqa: E402
from ferlens.training.architectures import ARCHITECTURES, DEFAULT_ARCHITECTURE, build_model  # noqa: E402
from ferlens.training.augment import PHOTO_AUGMENT, AugmentConfig, augment_batch, cut_mix_batch, mix_batch  # noqa: E402
from ferlens.training.data import Dataset, class_weights, load_dataset  # noqa: E402
from ferlens.training.deepen import grow  # noqa: E402
from ferlens.training.ferplus import DEFAULT_FER2013_WEIGHT, TARGET_KINDS, attach_votes, majority_labels  # noqa: E402
from ferlens.training.ferplus import training_targets as label_set_targets  # noqa: E402
from ferlens.training.sam import DEFAULT_RHO, SharpnessAwareModel, sharpness_aware  # noqa: E402

BEST_CHECKPOINT = "checkpoints/best.keras"
BACKUP_DIR = "checkpoints/backup"
EPOCH_WEIGHTS = "checkpoints/epochs/epoch{epoch:03d}.weights.h5"


#: Fine-tuning defaults (`--init-from` without --epochs / --learning-rate): a tenth of the learning
#: rate and fewer epochs, so a small folder adjusts the model instead of overwriting what it learned.
FINE_TUNE_EPOCHS = 10
FINE_TUNE_LEARNING_RATE = 1e-4
#: Share of a distillation target taken from the teacher (Hinton et al. weight the soft term most).
DEFAULT_DISTILL_WEIGHT = 0.7


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; written next to the results so a run can be repeated."""

    architecture: str = DEFAULT_ARCHITECTURE
    epochs: int = 24
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    class_weight_power: float = 0.3
    early_stopping_patience: int = 10
    seed: int = 1
    #: XLA-compiled steps: measured 1.8x slower for these nets on the 2-core AVX-512 CPU, so off.
    jit_compile: bool = False
    #: bfloat16 compute with float32 weights ("mixed_bfloat16"): ~10 % more images/s on CPUs with
    #: AVX-512 BF16. The saved model is always rebuilt in float32 for inference and export.
    mixed_precision: bool = False
    max_train_images: int | None = None
    #: Start from these weights (a `.keras` model of the same architecture): a warm restart that
    #: continues an earlier run with a fresh schedule, instead of starting from random weights.
    init_from: str | None = None
    #: Also keep every epoch's weights (checkpoints/epochs/), for weight averaging after the run.
    save_epoch_weights: bool = False
    #: Knowledge distillation: a trained model (a `.keras` file, e.g. an ensemble) whose predicted
    #: probabilities on the training faces replace `distill_weight` of each one-hot target. The
    #: teacher's soft targets say which faces are ambiguous, which the hard labels cannot.
    teacher: str | None = None
    distill_weight: float = 0.0
    #: Online distillation: the teacher classifies each batch as the student sees it (augmented,
    #: mixed), instead of each face once un-augmented. Costs a teacher forward pass every step.
    online_teacher: bool = False
    #: Sharpness-aware minimisation: the radius of the weight neighbourhood each step climbs
    #: before taking its gradient (`ferlens/training/sam.py`); 0 is a plain step. Doubles a step's cost.
    sam_rho: float = 0.0
    #: What the targets are (ferlens.training.ferplus.TARGET_KINDS): FER2013's one-annotator label, the FER+ majority,
    #: the FER+ vote distribution, or a blend of FER2013's label (`fer2013_weight`) and that distribution.
    labels: str = "fer2013"
    fer2013_weight: float = DEFAULT_FER2013_WEIGHT
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        """The inverse of `to_dict` (as read back from train_config.json); unknown keys are ignored."""
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__ and k != "augment"}
        augment = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.get("augment", {}).items()}
        return cls(**known, augment=AugmentConfig(**augment))


# ---------------------------------------------------------------- data

def teacher_probabilities(teacher_file: Path, images: np.ndarray, cache: Path | None = None) -> np.ndarray:
    """The teacher's class probabilities for each training face (un-augmented), cached beside the run.

    Offline distillation: one teacher pass before training instead of one per step, so a
    three-member ensemble teacher costs minutes, not a doubling of every epoch.
    """
    if cache is not None:
        # Keyed by the teacher file's size and time, so a changed or different teacher is not served stale.
        stat, stem = teacher_file.stat(), cache.stem
        cache = cache.with_name(f"{stem}-{stat.st_size}-{stat.st_mtime_ns}{cache.suffix}")
        if cache.exists():
            cached = np.load(cache)
            if cached.shape == (len(images), NUM_CLASSES):
                return cached
    teacher = keras.saving.load_model(teacher_file, compile=False)
    probs = np.concatenate([
        np.asarray(teacher.predict(images[i:i + 2048, ..., None].astype(np.float32), batch_size=512, verbose=0))
        for i in range(0, len(images), 2048)
    ]).astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        for stale in cache.parent.glob(f"{stem}-*{cache.suffix}"):  # an earlier teacher's: never served again
            stale.unlink()
        np.save(cache, probs)
    return probs


def training_targets(labels: np.ndarray, teacher_probs: np.ndarray | None, distill_weight: float,
                     base: np.ndarray | None = None) -> np.ndarray:
    """One-hot labels (or the `base` targets of another label set, ferlens.training.ferplus), with `distill_weight`
    of each replaced by the teacher's probabilities."""
    onehot = keras.utils.to_categorical(labels, NUM_CLASSES).astype(np.float32) if base is None else base
    if teacher_probs is None or distill_weight <= 0.0:
        return onehot
    soft = teacher_probs / teacher_probs.sum(axis=1, keepdims=True)
    return ((1.0 - distill_weight) * onehot + distill_weight * soft).astype(np.float32)


def with_online_teacher(batches: tf.data.Dataset, teacher: keras.Model, distill_weight: float) -> tf.data.Dataset:
    """Batches whose targets take `distill_weight` from the teacher's view of the very images the
    student is shown (after augmentation and mixup), so the soft targets match what is learned from."""

    def relabel(x, y, w):
        soft = tf.cast(teacher(x, training=False), tf.float32)
        soft = soft / tf.reduce_sum(soft, axis=1, keepdims=True)
        return x, (1.0 - distill_weight) * y + distill_weight * soft, w

    return batches.map(relabel, num_parallel_calls=1)


def make_datasets(data: Dataset, config: TrainConfig, teacher_probs: np.ndarray | None = None,
                  teacher: keras.Model | None = None,
                  ) -> tuple[tf.data.Dataset, tf.data.Dataset, np.ndarray]:
    """Whole-set shuffled, augmented training batches with class weights; plain validation batches.

    `teacher_probs` (one row per training face) turns the targets into distillation targets;
    a `teacher` model does it online, on each augmented batch.
    """
    images, labels = data.train.images, data.train.labels
    base = label_set_targets(data.train, config.labels, config.fer2013_weight)
    if config.max_train_images:
        pick = np.random.default_rng(config.seed).permutation(len(labels))[: config.max_train_images]
        images, labels, base = images[pick], labels[pick], base[pick]
        teacher_probs = teacher_probs[pick] if teacher_probs is not None else None
    # Class weights follow the label set's own prior (its target mass per class): FER+ is 37 % neutral.
    weights = class_weights(labels, config.class_weight_power, targets=base)
    sample_weights = (base @ weights).astype(np.float32)
    onehot = training_targets(labels, teacher_probs, config.distill_weight, base)

    train = tf.data.Dataset.from_tensor_slices((images[..., None], onehot, sample_weights))
    # The loader returns images grouped by class, so shuffle across the whole set every epoch.
    train = train.shuffle(len(labels), seed=config.seed, reshuffle_each_iteration=True)
    train = train.batch(config.batch_size, drop_remainder=True)
    augment = config.augment
    train = train.map(
        lambda x, y, w: (augment_batch(tf.cast(x, tf.float32), augment), y, w),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augment.mixup_alpha > 0:
        train = train.map(lambda x, y, w: mix_batch(x, y, tf.cast(w, tf.float32), augment.mixup_alpha),
                          num_parallel_calls=tf.data.AUTOTUNE)
    if augment.cutmix_alpha > 0:
        train = train.map(lambda x, y, w: cut_mix_batch(x, y, tf.cast(w, tf.float32), augment.cutmix_alpha),
                          num_parallel_calls=tf.data.AUTOTUNE)
    if teacher is not None:
        train = with_online_teacher(train, teacher, config.distill_weight)
    train = train.prefetch(tf.data.AUTOTUNE)

    val_onehot = keras.utils.to_categorical(data.val.labels, NUM_CLASSES).astype(np.float32)
    val = tf.data.Dataset.from_tensor_slices((data.val.images[..., None].astype(np.float32), val_onehot))
    val = val.batch(512).prefetch(tf.data.AUTOTUNE)
    return train, val, weights


# ---------------------------------------------------------------- model

def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(total - 1, config.warmup_epochs * steps_per_epoch)
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, total - warmup,
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup,
        )
    elif config.schedule == "constant":
        lr = config.learning_rate
    else:
        raise ValueError(f"unknown schedule {config.schedule!r}; use cosine or constant")
    if config.optimizer == "adam":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use adam or sgd")


class InferenceAccuracyProbe(keras.callbacks.Callback):
    """Logs inference-mode accuracy on a fixed training subset every epoch.

    Guards against the BatchNorm trap seen with compiled steps: training accuracy rising
    while the same weights in inference mode stay near chance.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        super().__init__()
        self.images = images[..., None].astype(np.float32)
        self.labels = labels

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.images, batch_size=512, verbose=0)
        acc = float(np.mean(probs.argmax(1) == self.labels))
        if logs is not None:
            logs["train_subset_inference_accuracy"] = acc
        print(f"  epoch {epoch + 1}: inference-mode accuracy on 1000 training images {acc:.4f}", flush=True)


#: The PublicTest figure a run is selected (and early-stopped) on: FER2013 accuracy for a FER2013 run;
#: with FER+ targets, the mean of the accuracy on each label set, so neither is traded away unseen.
SELECTION_KEY = "val_selection"


def selection_metric(config: TrainConfig) -> str:
    return "val_accuracy" if config.labels == "fer2013" else SELECTION_KEY


class BothLabelSetsScores(keras.callbacks.Callback):
    """Adds PublicTest accuracy on FER2013's labels and on the FER+ majority (faces the majority protocol
    keeps) to each epoch's logs, and their mean as SELECTION_KEY; placed before the checkpoint and
    early-stopping callbacks, which read it."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, votes: np.ndarray):
        super().__init__()
        self.images = images[..., None].astype(np.float32)
        self.labels = labels
        self.majority = majority_labels(votes)

    def on_epoch_end(self, epoch, logs=None):
        predicted = self.model.predict(self.images, batch_size=512, verbose=0).argmax(1)
        fer2013 = float(np.mean(predicted == self.labels))
        kept = self.majority >= 0
        ferplus = float(np.mean(predicted[kept] == self.majority[kept]))
        if logs is not None:
            logs.update({"val_fer2013_accuracy": fer2013, "val_ferplus_accuracy": ferplus,
                         SELECTION_KEY: (fer2013 + ferplus) / 2})
        print(f"  epoch {epoch + 1}: PublicTest FER2013 {fer2013:.4f}, FER+ majority {ferplus:.4f}", flush=True)


class HistoryWriter(keras.callbacks.Callback):
    """Writes history.json after every epoch, so an interrupted run still has its curves."""

    def __init__(self, path: Path, started: float):
        super().__init__()
        self.path = path
        self.started = started
        self.history: dict[str, list] = json.loads(path.read_text())["epochs"] if path.exists() else {}
        self.epoch_start = time.time()
        # A run resumed on another machine or precision: each epoch says where and how it ran.
        # Both are fixed for this process (train() sets the policy before fit), so read them once.
        self.hardware = hardware_description()
        self.compute_dtype = keras.mixed_precision.global_policy().compute_dtype

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row: dict[str, float | str] = {k: float(v) for k, v in (logs or {}).items()}
        row["epoch"] = epoch + 1
        row["seconds"] = time.time() - self.epoch_start
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["hardware"] = self.hardware
        row["compute_dtype"] = self.compute_dtype
        append_history_row(self.history, row)
        write_json(self.path.parent, self.path.name, {"epochs": self.history})


def append_history_row(history: dict[str, list], row: dict) -> None:
    """Add one epoch's values in place, every column aligned by epoch.

    A column first seen mid-run (an older run resumed by newer code) is padded with None for the
    epochs before it, and a resumed run that repeats a backed-up epoch keeps that epoch's last row."""
    length = len(history.get("epoch", []))
    for key in set(history) | set(row):
        column = history.setdefault(key, [])
        column.extend([None] * (length - len(column)))
        column.append(row.get(key))
    epochs = history["epoch"]
    keep = [i for i, e in enumerate(epochs) if e not in epochs[i + 1:]]
    for key, column in history.items():
        history[key] = [column[i] for i in keep]


def run_segments(history: dict[str, list]) -> str:
    """Where and in what precision each stretch of epochs ran, e.g. "epochs 1-113: 2 x EPYC (AVX-512
    BF16), bfloat16; epochs 114-150: 2 x EPYC (AVX2), float32"; epochs from before this was recorded
    say "not recorded". One stretch is just its description."""
    epochs = history.get("epoch", [])
    hardware = history.get("hardware") or [None] * len(epochs)
    dtypes = history.get("compute_dtype") or [None] * len(epochs)
    labels = [f"{h}, {d}" if h and d else "not recorded" for h, d in zip(hardware, dtypes)]
    segments: list[list] = []
    for epoch, label in zip(epochs, labels):
        if segments and segments[-1][2] == label:
            segments[-1][1] = epoch
        else:
            segments.append([epoch, epoch, label])
    if len(segments) == 1:
        return segments[0][2]
    return "; ".join(f"epochs {a}-{b}: {label}" if a != b else f"epoch {a}: {label}" for a, b, label in segments)


def train(config: TrainConfig, data: Dataset, out_dir: Path, *, verbose: int | None = None,
          faces_cropped: bool = True) -> keras.Model:
    """Fit `config.architecture` on `data.train`, select on `data.val`, write model and history."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    teacher_probs, teacher = None, None
    if uses_teacher(config.to_dict()) and config.online_teacher:
        teacher = keras.saving.load_model(config.teacher, compile=False)
        print(f"teacher {config.teacher}, online: targets are {config.distill_weight:.0%} its probabilities "
              "on each augmented batch", flush=True)
    elif uses_teacher(config.to_dict()):
        teacher_probs = teacher_probabilities(Path(config.teacher), data.train.images,
                                              out_dir / "checkpoints" / "teacher_probs.npy")
        agree = float(np.mean(teacher_probs.argmax(1) == data.train.labels))
        print(f"teacher {config.teacher}: agrees with {agree:.1%} of the training labels; "
              f"targets are {config.distill_weight:.0%} its probabilities", flush=True)
    train_ds, val_ds, weights = make_datasets(data, config, teacher_probs, teacher)
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch < 1:
        raise ValueError(f"{len(data.train)} training images is less than one batch of {config.batch_size}")

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if config.mixed_precision else "float32")
    probe_idx = np.random.default_rng(0).permutation(len(data.train))[:1000]
    model = build_model(config.architecture)
    if config.init_from:
        # A resumed run's backup is restored after this, at the start of fit, so resuming still wins.
        if architecture_of(Path(config.init_from)) in (None, config.architecture):
            model.load_weights(config.init_from)
        else:
            shallower = keras.saving.load_model(config.init_from, compile=False)
            grown = grow(model, shallower, data.train.images[probe_idx[:512]])
            print(f"grown from {config.init_from}: new identity blocks {', '.join(grown)}", flush=True)
    if config.sam_rho > 0:
        model = sharpness_aware(model, config.sam_rho)
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )
    write_json(out_dir, CONFIG_FILE, config.to_dict())
    (out_dir / "checkpoints").mkdir(exist_ok=True)
    started = time.time()
    monitor = selection_metric(config)
    probe_targets = label_set_targets(data.train, config.labels, config.fer2013_weight)[probe_idx].argmax(1)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out_dir / BACKUP_DIR), save_freq="epoch", delete_checkpoint=False),
        InferenceAccuracyProbe(data.train.images[probe_idx], probe_targets),
    ]
    if monitor == SELECTION_KEY:
        callbacks.append(BothLabelSetsScores(data.val.images, data.val.labels, data.val.votes))
    callbacks += [
        keras.callbacks.ModelCheckpoint(
            str(out_dir / BEST_CHECKPOINT), monitor=monitor, mode="max", save_best_only=True,
            initial_value_threshold=best_so_far(out_dir, monitor),
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max", patience=config.early_stopping_patience,
        ),
        keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), write_graph=False, profile_batch=0),
        HistoryWriter(out_dir / HISTORY_FILE, started),
    ]
    if config.save_epoch_weights:
        (out_dir / EPOCH_WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(keras.callbacks.ModelCheckpoint(str(out_dir / EPOCH_WEIGHTS), save_weights_only=True))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    print(f"training {config.architecture}: {steps_per_epoch * config.batch_size} images, {steps_per_epoch} steps/epoch, "
          f"class weights {np.round(weights, 2).tolist()}", flush=True)
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, verbose=verbose)

    # Selection on PublicTest: keep the best epoch's weights, not the last.
    best = out_dir / BEST_CHECKPOINT
    if best.exists():
        model = keras.saving.load_model(best, compile=False)
    model = as_float32(model, config.architecture)
    model.save(out_dir / MODEL_FILE)
    # Only the new model.keras: exports left from an earlier run are then refused until re-exported.
    write_manifest(out_dir, [MODEL_FILE])
    write_selftest(out_dir, {"keras": open_model_file(out_dir / MODEL_FILE, "keras")})  # known answers, checked at load
    (out_dir / ARCHITECTURE_FILE).write_text(model.to_json(indent=1))
    write_training_summary(out_dir, config, time.time() - started, data, faces_cropped)
    return model


def best_so_far(out_dir: Path, monitor: str = "val_accuracy") -> float | None:
    """The PublicTest accuracy a resumed run's best checkpoint must beat: without it a resume would
    replace the best epoch's weights with the best epoch since the resume. None when starting fresh,
    or when the best weights are not on this machine (only the latest checkpoint travels in git);
    then selection covers the epochs from here on, and this says so."""
    history_path = out_dir / HISTORY_FILE
    if not history_path.exists():
        return None
    history = json.loads(history_path.read_text())["epochs"]
    scores = [(v, e) for v, e in zip(history.get(monitor, []), history.get("epoch", [])) if v is not None]
    if not scores:
        return None
    best, epoch = max(scores)
    if (out_dir / BEST_CHECKPOINT).exists():
        return best
    figure = "" if monitor == "val_accuracy" else f" {monitor}"
    print(f"warning: the best epoch so far ({epoch}, PublicTest{figure} {best:.2%}) has no weights on this machine; "
          "the model kept is the best epoch from here on", file=sys.stderr, flush=True)
    return None


def as_float32(model: keras.Model, architecture: str) -> keras.Model:
    """The same weights in a plain float32 model, so inference and every export run in full precision
    and loading the saved model needs no training-only class (`ferlens.training.sam`)."""
    keras.mixed_precision.set_global_policy("float32")
    plain = not isinstance(model, SharpnessAwareModel)
    if plain and all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    fresh = build_model(architecture)
    fresh.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    return fresh


def write_training_summary(
    out_dir: Path, config: TrainConfig, seconds: float, data: Dataset, faces_cropped: bool = True,
) -> None:
    """Hardware, wall time, throughput and the data trained on (so that re-evaluating a fine-tuned model
    uses its own folder); evaluation folds these into metrics.json and the card."""
    # A --max-train-images trial trains on its subsample only; count what was trained on.
    train_images = min(len(data.train), config.max_train_images or len(data.train))
    history = json.loads((out_dir / HISTORY_FILE).read_text())["epochs"]
    epoch_seconds = history.get("seconds", [])
    summary = {
        "epochs_run": len(history.get("epoch", [])),
        "total_epoch_seconds": float(sum(epoch_seconds)),
        "last_session_seconds": seconds,
        "train_images": train_images,
        "images_per_second": float(train_images * len(epoch_seconds) / max(sum(epoch_seconds), 1e-9)),
        # Every epoch's machine and precision when they were recorded; this machine otherwise.
        "hardware": run_segments(history) if "hardware" in history else hardware_description(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "data": {"source": data.source, "layout": data.layout, "faces_cropped": faces_cropped},
    }
    write_json(out_dir, TRAINING_FILE, summary)


def hardware_description() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return machine_summary() + (f", {len(gpus)} GPU" if gpus else ", CPU only")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ferlens.training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="FER2013 folder or fer2013.csv")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write (resumes if it has a backup)")
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default=None,
                        help=f"default: the --init-from model's, else {DEFAULT_ARCHITECTURE}")
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"default: {defaults.epochs}, or {FINE_TUNE_EPOCHS} when fine-tuning (--init-from)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default=defaults.optimizer)
    parser.add_argument("--learning-rate", type=float, default=None,
                        help=f"default: {defaults.learning_rate:g}, or {FINE_TUNE_LEARNING_RATE:g} when fine-tuning "
                        "(--init-from)")
    parser.add_argument("--schedule", choices=["cosine", "constant"], default=defaults.schedule)
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    parser.add_argument("--class-weight-power", type=float, default=defaults.class_weight_power)
    parser.add_argument("--patience", type=int, default=defaults.early_stopping_patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-train-images", type=int, default=None, help="subsample for quick trials")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from this .keras model's weights: fine-tuning, or a warm restart of a run; "
                        "a deeper --architecture (vgg-deep from vgg) grows from it (ferlens.training.deepen)")
    parser.add_argument("--whole-images", action="store_true",
                        help="class folders: train on each image whole instead of the face found in it")
    parser.add_argument("--save-epoch-weights", action="store_true",
                        help="keep every epoch's weights in checkpoints/epochs/ (for weight averaging)")
    parser.add_argument("--jit", action="store_true", help="XLA-compiled steps (slower on CPU for these nets)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="bfloat16 compute, float32 weights (faster on CPUs with AVX-512 BF16)")
    parser.add_argument("--photo-augment", action="store_true",
                        help="add web-photo augmentations (shear, gamma, small faces, JPEG; "
                             "ferlens.training.augment.PHOTO_AUGMENT)")
    parser.add_argument("--low-res-prob", type=float, default=None,
                        help="share of training faces shrunk to 16-32 px and scaled back (small faces in photos)")
    parser.add_argument("--erase-prob", type=float, default=None,
                        help="share of training faces with a random grey box blanked (occlusion; "
                        f"default {AugmentConfig.erase_prob:g})")
    parser.add_argument("--mixup", type=float, default=None, metavar="ALPHA",
                        help="mixup: blend faces and targets pairwise, weights ~ Beta(ALPHA, ALPHA) (e.g. 0.2)")
    parser.add_argument("--cutmix", type=float, default=None, metavar="ALPHA",
                        help="CutMix: paste a box of another face into each face, targets blended by area, "
                        "area ~ Beta(ALPHA, ALPHA) (e.g. 1.0)")
    parser.add_argument("--sam", type=float, default=None, metavar="RHO",
                        help=f"sharpness-aware minimisation with neighbourhood radius RHO (e.g. {DEFAULT_RHO:g}); "
                        "a step costs about twice as much")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="distil this trained .keras model (e.g. an ensemble's) into the new one")
    parser.add_argument("--distill-weight", type=float, default=None,
                        help="share of each target taken from the teacher's probabilities "
                        f"(default {DEFAULT_DISTILL_WEIGHT:g} with --teacher)")
    parser.add_argument("--online-teacher", action="store_true",
                        help="the teacher classifies every augmented batch as the student sees it (slower; "
                        "default: each training face once, un-augmented)")
    parser.add_argument("--labels", choices=TARGET_KINDS, default=defaults.labels,
                        help="what to learn from: FER2013's label (default), the FER+ majority, the FER+ vote "
                        "distribution, or a blend of FER2013's label and that distribution (--fer2013-weight)")
    parser.add_argument("--fer2013-weight", type=float, default=None,
                        help=f"with --labels blend: the share of each target that is FER2013's label "
                        f"(default {DEFAULT_FER2013_WEIGHT:g}); the rest is the FER+ vote distribution")
    parser.add_argument("--ferplus", type=Path, default=DEFAULT_FERPLUS_DIR,
                        help="the FER+ votes (a folder with labels.csv, or the file) for FER+ --labels")
    parser.add_argument("--no-evaluate", action="store_true", help="skip writing metrics.json at the end")
    args = parser.parse_args(argv)
    if args.teacher is not None and not args.teacher.is_file():
        parser.error(f"--teacher {args.teacher}: no such model file")
    if args.online_teacher and args.teacher is None:
        parser.error("--online-teacher needs --teacher")
    if args.distill_weight is not None and args.teacher is None:
        parser.error("--distill-weight needs --teacher")
    if args.teacher is not None and args.distill_weight is None:
        args.distill_weight = DEFAULT_DISTILL_WEIGHT
    if args.distill_weight is not None and not 0.0 < args.distill_weight <= 1.0:
        parser.error(f"--distill-weight must be above 0 and at most 1, got {args.distill_weight}")
    for flag, value in (("--low-res-prob", args.low_res_prob), ("--erase-prob", args.erase_prob)):
        if value is not None and not 0.0 <= value <= 1.0:
            parser.error(f"{flag} must be from 0 to 1, got {value:g}")
    for flag, value in (("--mixup", args.mixup), ("--cutmix", args.cutmix)):
        if value is not None and not 0.0 < value <= 10.0:
            parser.error(f"{flag} must be above 0 and at most 10, got {value:g}")
    if args.fer2013_weight is not None and args.labels != "blend":
        parser.error("--fer2013-weight needs --labels blend")
    if args.fer2013_weight is not None and not 0.0 <= args.fer2013_weight <= 1.0:
        parser.error(f"--fer2013-weight must be from 0 to 1, got {args.fer2013_weight:g}")
    if args.sam is not None and not 0.0 < args.sam <= 1.0:
        parser.error(f"--sam must be above 0 and at most 1, got {args.sam:g}")
    if args.init_from is not None and not args.init_from.is_file():
        parser.error(f"--init-from {args.init_from}: no such model file")
    fine_tuning = args.init_from is not None
    if args.epochs is None:
        args.epochs = FINE_TUNE_EPOCHS if fine_tuning else defaults.epochs
    if args.learning_rate is None:
        args.learning_rate = FINE_TUNE_LEARNING_RATE if fine_tuning else defaults.learning_rate
    if args.architecture is None:
        args.architecture = (architecture_of(args.init_from) if fine_tuning else None) or DEFAULT_ARCHITECTURE
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be positive")
    return args


def augment_config(args: argparse.Namespace) -> AugmentConfig:
    """The training augmentation the command line asks for: the defaults or PHOTO_AUGMENT, with
    `--low-res-prob` and `--erase-prob` overriding the shares of faces shrunk and scaled back or
    blanked in part, `--mixup` and `--cutmix` their alphas."""
    config = PHOTO_AUGMENT if args.photo_augment else AugmentConfig()
    if args.low_res_prob is not None:
        config = replace(config, low_res_prob=args.low_res_prob)
    if args.erase_prob is not None:
        config = replace(config, erase_prob=args.erase_prob)
    if args.cutmix is not None:
        config = replace(config, cutmix_alpha=args.cutmix)
    return config if args.mixup is None else replace(config, mixup_alpha=args.mixup)


def architecture_of(model_file: Path) -> str | None:
    """The architecture name of a trained model, from its folder's train_config.json or architecture.json."""
    folder = model_file.parent
    try:
        if (folder / CONFIG_FILE).is_file():
            name = json.loads((folder / CONFIG_FILE).read_text()).get("architecture")
        else:
            name = json.loads((folder / ARCHITECTURE_FILE).read_text())["config"]["name"].replace("_", "-")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if name in ARCHITECTURES else None


def fit_batch_size(requested: int, train_images: int) -> int:
    """A batch size that gives a small dataset (a user's own folder) at least 8 steps an epoch
    (never below 16 images); FER2013-sized data keeps the requested size."""
    return max(1, min(requested, train_images, max(16, train_images // 8)))


def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool | None:
    """Whether the CPU computes bfloat16 natively (None when /proc/cpuinfo cannot say, e.g. not Linux).

    Without it `--mixed-precision` is emulated and slow: on an AVX2-only AMD EPYC (Zen 3) `vgg` trained
    at 6 images/s in bfloat16 against 75 in float32 (it gains about 10 % where AVX-512 BF16 exists)."""
    return has_any(BF16_CPU_FLAGS, cpuinfo)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mixed_precision and cpu_has_bfloat16() is False and not tf.config.list_physical_devices("GPU"):
        print("warning: --mixed-precision on a CPU without bfloat16 instructions (no avx512_bf16 / amx_bf16): "
              "TensorFlow emulates it, about 12x slower than float32 on such CPUs; leave the flag out", file=sys.stderr)
    config = TrainConfig(
        architecture=args.architecture, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, learning_rate=args.learning_rate, schedule=args.schedule,
        label_smoothing=args.label_smoothing, class_weight_power=args.class_weight_power,
        early_stopping_patience=args.patience, seed=args.seed, jit_compile=args.jit, mixed_precision=args.mixed_precision,
        max_train_images=args.max_train_images,
        init_from=str(args.init_from) if args.init_from else None, save_epoch_weights=args.save_epoch_weights,
        teacher=str(args.teacher) if args.teacher else None, distill_weight=args.distill_weight or 0.0,
        online_teacher=args.online_teacher, sam_rho=args.sam or 0.0,
        labels=args.labels,
        fer2013_weight=DEFAULT_FER2013_WEIGHT if args.fer2013_weight is None else args.fer2013_weight,
        augment=augment_config(args),
    )
    try:
        data = load_dataset(args.data, crop_faces=not args.whole_images)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config.labels != "fer2013":
        try:
            joined = attach_votes(data, args.ferplus)
        except (OSError, ValueError) as exc:
            print(f"error: --labels {config.labels}: {exc}", file=sys.stderr)
            return 2
        print(f"FER+ votes joined to {joined} of {len(data.train) + len(data.val) + len(data.test)} faces", flush=True)
    print(data.describe(), flush=True)
    empty = [name for name, split in (("validation", data.val), ("test", data.test)) if len(split) == 0]
    if empty:  # selection and the reported figures would be meaningless (0 % of nothing)
        print(f"error: {args.data} gives no {' and no '.join(empty)} images; put at least 2 images in each class "
              "folder (a tenth of each class, at least one, is held out for each)", file=sys.stderr)
        return 2
    train_images = min(len(data.train), config.max_train_images or len(data.train))
    if fit_batch_size(config.batch_size, train_images) != config.batch_size:
        config.batch_size = fit_batch_size(config.batch_size, train_images)
        print(f"batch size {config.batch_size} for {train_images} training images", flush=True)
    train(config, data, args.out, faces_cropped=not args.whole_images)
    if not args.no_evaluate:
        from ferlens.training.evaluate import evaluate_model_dir, with_ferplus

        if data.layout == "fer2013-folders":
            with_ferplus(data, args.ferplus)  # FER+ figures beside FER2013's when the votes are there

        metrics = evaluate_model_dir(args.out, data, wild=False)  # ferlens.training.evaluate adds the in-the-wild section
        print(f"{split_names(data.layout)['test']}: accuracy {metrics['test']['accuracy']:.4f}, "
              f"macro-F1 over the 7 classes {metrics['test']['macro_f1']:.4f}", flush=True)
    shutil.rmtree(args.out / "checkpoints" / "tmp", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
