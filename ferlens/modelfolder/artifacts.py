"""The contract between training and the app: the files of a model folder, read and written in one place.

Training, export and evaluation write these files; the app, the model card and the benchmarks only
read them. Readers validate what they read: a figure of the wrong type is dropped and named in
`ModelArtifacts.problems`, so a damaged file costs the figures it damaged, never a page.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ferlens.config import CLASS_NAMES, DEFAULT_MODEL_DIR, MODEL_FILENAME, MODELS_DIR, PROJECT_ROOT, split_names

# ---------------------------------------------------------------- the files of a model folder

MODEL_FILE = MODEL_FILENAME  # the trained Keras model; exports sit beside it (ferlens.modelfolder.loading.BACKEND_FILES)
ARCHITECTURE_FILE = "architecture.json"  # the Keras model's JSON config, to read without loading weights
HISTORY_FILE = "history.json"  # {"epochs": {metric: [one value per epoch]}}, written after every epoch
CONFIG_FILE = "train_config.json"  # every hyper-parameter of the run (ferlens.training.train.TrainConfig)
TRAINING_FILE = "training.json"  # hardware, wall time, throughput, the data trained on
METRICS_FILE = "metrics.json"  # every figure, written only by ferlens.training.evaluate
CARD_FILE = "MODEL_CARD.md"  # rendered from the files above by ferlens.modelfolder.report
SELFTEST_FILENAME = "selftest.json"  # known answers of the model files (ferlens.modelfolder.selftest)
ABLATION_FILE = "ablation.md"  # the ablation table (ferlens.training.ablation)


def write_json(folder: Path | str, name: str, data: dict) -> Path:
    """Write one artifact atomically (a temporary file renamed over the old one), so a full disk or a
    killed run leaves the previous file whole instead of a truncated one that no page can read."""
    path = Path(folder) / name
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(data, out, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------- what metrics.json may hold


def _is_fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_matrix(value) -> bool:
    n = len(CLASS_NAMES)
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(row, list) and len(row) == n and all(_is_count(v) for v in row) for row in value))


#: Sections of metrics.json that must be JSON objects.
METRICS_SECTIONS = ("model", "test", "val", "dataset", "formats", "tta", "in_the_wild", "config", "training", "ferplus")
#: Figures inside a section, and the test each value must pass; others in a section are kept as they are.
METRICS_FIELDS = {
    "test": {"accuracy": _is_fraction, "macro_f1": _is_fraction, "images": _is_count, "per_class": lambda v: isinstance(v, dict),
             "confusion_matrix": _is_matrix},
    "val": {"accuracy": _is_fraction, "macro_f1": _is_fraction, "images": _is_count},
    "model": {"parameters": _is_count, "size_bytes": _is_count},
    "in_the_wild": {"accuracy_all": _is_fraction, "found_rate": _is_fraction, "accuracy_found": _is_fraction,
                    "macro_f1": _is_fraction, "faces": _is_count},
}
#: Sections that map a name (a format, a TTA mode) to an object of figures.
FORMAT_FIELDS = {"test_accuracy": _is_fraction, "test_macro_f1": _is_fraction, "val_accuracy": _is_fraction,
                 "val_macro_f1": _is_fraction, "size_bytes": _is_count,
                 "ferplus_test_accuracy": _is_fraction, "ferplus_val_accuracy": _is_fraction}
#: metrics.json["ferplus"]: the FER+ figures of the test and the selection split (ferlens.training.evaluate).
FERPLUS_FIELDS = {"accuracy": _is_fraction, "balanced_accuracy": _is_fraction, "macro_f1": _is_fraction,
                  "images": _is_count, "cross_entropy": lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v >= 0,
                  "confusion_matrix": _is_matrix}


def _checked_fields(section: dict, tests: dict, where: str, problems: list[str]) -> dict:
    kept = {}
    for key, value in section.items():
        test = tests.get(key)
        if test is not None and not test(value):
            problems.append(f"{where}.{key} is not a valid value ({json.dumps(value)[:40]})")
            continue
        kept[key] = value
    return kept


def checked_metrics(raw: dict) -> tuple[dict, list[str]]:
    """metrics.json with every section and figure of the wrong type left out, and a line for each."""
    problems: list[str] = []
    metrics = {}
    for key, value in raw.items():
        if key in METRICS_SECTIONS and not isinstance(value, dict):
            problems.append(f"{key} is not an object")
            continue
        if key in METRICS_FIELDS:
            value = _checked_fields(value, METRICS_FIELDS[key], key, problems)
        elif key == "ferplus":
            value = {name: _checked_fields(part, FERPLUS_FIELDS, f"{key}.{name}", problems) if isinstance(part, dict) else part
                     for name, part in value.items() if name == "protocol" or isinstance(part, dict)}
        elif key in ("formats", "tta"):
            entries = {}
            for name, entry in value.items():
                if isinstance(entry, dict):
                    entries[name] = _checked_fields(entry, FORMAT_FIELDS, f"{key}.{name}", problems)
                else:
                    problems.append(f"{key}.{name} is not an object")
            value = entries
        metrics[key] = value
    return metrics, problems


# ---------------------------------------------------------------- reading a folder


def uses_teacher(config: dict) -> bool:
    """Whether a training config (`train_config.json`) distilled from a teacher: one test, so the
    trainer, the model card and the ablation table cannot disagree on which runs did."""
    return bool(config.get("teacher")) and float(config.get("distill_weight") or 0.0) > 0.0


@dataclass
class ModelArtifacts:
    """Everything a trained model folder says about itself.

    A missing or unreadable file gives an empty dict and a line in `problems`, so a page can
    still show the model and say which figures are missing instead of failing as a whole.
    """

    path: Path
    metrics: dict
    history: dict
    config: dict
    training: dict
    problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | str) -> ModelArtifacts:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"model folder not found: {path}")
        problems: list[str] = []

        def read(name: str, required: bool = False) -> dict:
            file = path / name
            if not file.exists():
                if required:
                    problems.append(f"{name} is missing")
                return {}
            try:
                data = json.loads(file.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                problems.append(f"{name} could not be read ({exc})")
                return {}
            if not isinstance(data, dict):
                problems.append(f"{name} does not hold a JSON object")
                return {}
            return data

        metrics, metric_problems = checked_metrics(read(METRICS_FILE, required=True))
        problems += [f"{METRICS_FILE}: {problem}" for problem in metric_problems]
        history = read(HISTORY_FILE).get("epochs", {})
        return cls(
            path=path,
            metrics=metrics,
            history=history if isinstance(history, dict) else {},
            config=read(CONFIG_FILE) or metrics.get("config", {}),
            training=read(TRAINING_FILE) or metrics.get("training", {}),
            problems=problems,
        )

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def splits(self) -> dict[str, str]:
        """What its "train" / "val" / "test" are called: FER2013's splits, or a user folder's parts."""
        dataset = self.metrics.get("dataset")
        return split_names(dataset.get("layout") if isinstance(dataset, dict) else None)

    def headline(self) -> dict:
        """The few numbers a visitor wants first (None where the artifacts do not have them)."""
        model = self.metrics.get("model", {})
        test = self.metrics.get("test", {})
        ferplus = self.metrics.get("ferplus", {}).get("test", {})
        return {
            f"{self.splits['test']} accuracy": test.get("accuracy"),
            "macro-F1": test.get("macro_f1"),
            # FER+ figures exist only for FER2013's own split; a user's folder has none to miss.
            **({f"FER+ {self.splits['test']} accuracy": ferplus.get("accuracy")} if self.splits["test"] == "PrivateTest" else {}),
            f"{self.splits['val']} accuracy": self.metrics.get("val", {}).get("accuracy"),
            "parameters": model.get("parameters"),
            "size (MB)": model.get("size_bytes", 0) / 1e6 if model.get("size_bytes") else None,
        }

    def missing_figures(self) -> list[str]:
        """Names of the headline figures the artifacts lack."""
        return [label for label, value in self.headline().items() if value is None]

    @property
    def in_the_wild(self) -> dict:
        """Figures on in-the-wild photos (ExpW), when the evaluation recorded them; else {}
        (`in_the_wild_skipped` then says why, if the evaluation left a reason)."""
        wild = self.metrics.get("in_the_wild")
        return wild if isinstance(wild, dict) and "skipped" not in wild else {}

    @property
    def in_the_wild_skipped(self) -> str | None:
        """Why the in-the-wild section was not computed (data absent, or not run by training), if it says."""
        wild = self.metrics.get("in_the_wild")
        return str(wild["skipped"]) if isinstance(wild, dict) and "skipped" in wild else None

    def lineage(self, max_runs: int = 20) -> tuple[list[ModelArtifacts], str | None]:
        """This run and the runs it warm-restarted from (`init_from`), oldest first, as far back as
        their folders exist; and the starting weights whose folder is gone (None if the chain is whole)."""
        runs: list[ModelArtifacts] = [self]
        while (start := runs[0].config.get("init_from")) and len(runs) < max_runs:
            folder = Path(start).parent if Path(start).suffix else Path(start)
            folder = folder if folder.is_absolute() else PROJECT_ROOT / folder
            if not (folder / HISTORY_FILE).exists() or folder.resolve() in {r.path.resolve() for r in runs}:
                return runs, start
            runs.insert(0, ModelArtifacts.load(folder))
        return runs, None

    def full_history(self) -> tuple[dict[str, list], list[tuple[int, str]]]:
        """Training curves across warm restarts: the runs' histories end to end, epochs renumbered
        from 1, and where each run starts (epoch, run name)."""
        runs, _ = self.lineage()
        merged: dict[str, list] = {}
        starts: list[tuple[int, str]] = []
        offset = 0
        for run in runs:
            epochs = run.history.get("epoch", [])
            if not epochs:
                continue
            starts.append((offset + 1, run.name))
            for key, values in run.history.items():
                merged.setdefault(key, [None] * offset)
                merged[key] += [offset + e for e in values] if key == "epoch" else list(values)
            offset += len(epochs)
            for values in merged.values():  # a metric one run lacks stays aligned
                values += [None] * (offset - len(values))
        return merged, starts

    def history_note(self) -> str:
        """Which runs the training curves cover, for a warm-restarted model."""
        runs, missing = self.lineage()
        if not self.config.get("init_from"):
            return ""
        shown = " then ".join(f"{run.name} ({len(run.history.get('epoch', []))} epochs)" for run in runs)
        if missing:
            return (f"These curves show only {shown}: it continued from the weights of {missing}, whose "
                    "training history is not available here.")
        return f"These curves show the whole training: {shown}, each run a warm restart of the one before."


def list_model_dirs(root: Path = MODELS_DIR, weights: bool = True) -> list[Path]:
    """Model folders under `root`, plus the default model wherever it lives.

    With `weights` (the default, for every caller that loads a model): only folders that hold a trained
    model. Without: also finished runs kept for their record alone (an evaluation, `metrics.json`, but
    no weights, as trial runs are shipped), for pages that only read artifacts and never load one.
    """
    def listed(folder: Path) -> bool:
        return (folder / MODEL_FILE).exists() or (not weights and (folder / METRICS_FILE).exists())

    found = sorted(p for p in root.iterdir() if p.is_dir() and listed(p)) if root.is_dir() else []
    if (DEFAULT_MODEL_DIR / MODEL_FILE).exists() and DEFAULT_MODEL_DIR.resolve() not in {p.resolve() for p in found}:
        found.insert(0, DEFAULT_MODEL_DIR)
    return found


#: Keys of metrics.json["in_the_wild"] (written by the in-the-wild evaluation) and how the card names them.
IN_THE_WILD_FIGURES: dict[str, str] = {
    "accuracy_all": "accuracy over all labelled faces (a face the detector missed counts as wrong)",
    "found_rate": "faces found by the detector",
    "accuracy_found": "accuracy on the faces found",
    "macro_f1": "macro-F1",
}
