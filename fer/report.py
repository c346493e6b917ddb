"""Read a model folder's artifacts and render its model card.

The artifacts (history.json, metrics.json, train_config.json, training.json) are the
contract between training and the app: the report page and the card only read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fer.config import CLASS_NAMES, DEFAULT_MODEL_DIR, MODELS_DIR, PROJECT_ROOT, split_names

CARD_FILE = "MODEL_CARD.md"


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

        metrics = read("metrics.json", required=True)
        history = read("history.json").get("epochs", {})
        return cls(
            path=path,
            metrics=metrics,
            history=history if isinstance(history, dict) else {},
            config=read("train_config.json") or metrics.get("config", {}),
            training=read("training.json") or metrics.get("training", {}),
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
        return {
            f"{self.splits['test']} accuracy": test.get("accuracy"),
            "macro-F1": test.get("macro_f1"),
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
            if not (folder / "history.json").exists() or folder.resolve() in {r.path.resolve() for r in runs}:
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


def list_model_dirs(root: Path = MODELS_DIR) -> list[Path]:
    """Model folders under `root` that hold a trained model, plus the default model wherever it lives."""
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / "model.keras").exists()) if root.is_dir() else []
    if (DEFAULT_MODEL_DIR / "model.keras").exists() and DEFAULT_MODEL_DIR.resolve() not in {p.resolve() for p in found}:
        found.insert(0, DEFAULT_MODEL_DIR)
    return found


def _pct(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f} %"


#: Keys of metrics.json["in_the_wild"] (written by the in-the-wild evaluation) and how the card names them.
IN_THE_WILD_FIGURES: dict[str, str] = {
    "accuracy_all": "accuracy over all labelled faces (a face the detector missed counts as wrong)",
    "found_rate": "faces found by the detector",
    "accuracy_found": "accuracy on the faces found",
    "macro_f1": "macro-F1",
}


def limits_sentences(art: ModelArtifacts) -> list[str]:
    """The card's "Limits" bullets that depend on the model: computed from its metrics, never written by hand."""
    m, names = art.metrics, art.splits
    sentences = ["FER2013 is low-resolution, mostly frontal, and its labels are noisy (human accuracy is about 65 %)."]
    per_class = m.get("test", {}).get("per_class", {})
    recalls = {name: row["recall"] for name, row in per_class.items() if isinstance(row, dict) and "recall" in row}
    if recalls:
        weakest, strongest = min(recalls, key=recalls.get), max(recalls, key=recalls.get)
        sentences.append(f"{weakest.capitalize()} has the weakest {names['test']} recall ({_pct(recalls[weakest], 1)}), "
                         f"{strongest} the strongest ({_pct(recalls[strongest], 1)}).")
    train = m.get("dataset", {}).get("splits", {}).get("train", {})
    counts = train.get("per_class", {})
    if counts:
        fewest = min(counts, key=counts.get)
        total = train.get("total") or sum(counts.values())
        sentences.append(f"{fewest.capitalize()} has the fewest training images: {counts[fewest]:,} of {total:,} "
                         f"({_pct(counts[fewest] / total, 1)}).")
    wild = art.in_the_wild
    if wild.get("accuracy_found") is not None and m.get("test", {}).get("accuracy") is not None:
        sentences.append(f"On in-the-wild photos (ExpW) the accuracy on found faces is {_pct(wild['accuracy_found'], 1)}, "
                         f"against {_pct(m['test']['accuracy'], 1)} on "
                         + ("FER2013's PrivateTest." if names["test"] == "PrivateTest" else "its own held-out test images."))
    else:
        sentences.append("Accuracy on photos unlike FER2013's (other cameras, ages, lighting) has not been measured "
                         "for this model; expect it to differ.")
    return sentences


def render_model_card(art: ModelArtifacts, *, standalone: bool = True) -> str:
    """A short Markdown card generated from the artifacts, so it can never disagree with them.

    `standalone=False` is the report page's version: no title and none of the tables that the
    page already shows as interactive tables (per-class scores, exported formats, in-the-wild recall).
    """
    m, cfg, tr = art.metrics, art.config, art.training
    model, test, names = m.get("model", {}), m.get("test", {}), art.splits
    lines = [f"# Model card: {art.name}", ""] if standalone else []
    section = "##" if standalone else "####"  # on the page, below its own "Model card" header
    lines += [
        "Facial-expression classifier for 48x48 grayscale faces, 7 classes: " + ", ".join(CLASS_NAMES) + ".",
        "",
        f"{section} Figures (recomputed by `python -m fer.evaluate`)",
        "",
        f"- Protocol: {m.get('protocol', 'n/a')}",
        f"- {names['test']} accuracy: **{_pct(test.get('accuracy'))}** on {test.get('images', 'n/a')} images",
        f"- {names['test']} macro-F1: {_pct(test.get('macro_f1'))}",
        f"- {names['val']} accuracy (selection set): {_pct(m.get('val', {}).get('accuracy'))}",
    ]
    for mode, result in m.get("tta", {}).items():
        lines.append(
            f"- With test-time augmentation `{mode}`: {names['test']} {_pct(result['test_accuracy'])}, macro-F1 "
            f"{_pct(result['test_macro_f1'])}, {names['val']} {_pct(result['val_accuracy'])}"
        )
    if standalone and test.get("per_class"):
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for name, row in test["per_class"].items():
            lines.append(f"| {name} | {_pct(row['precision'], 1)} | {_pct(row['recall'], 1)} | {_pct(row['f1'], 1)} "
                         f"| {row['support']} |")
    wild = art.in_the_wild
    if wild:
        lines += ["", f"{section} In the wild (ExpW, {wild.get('faces', 'n/a')} labelled faces)", ""]
        lines += [f"- {_pct(wild[key], 1)} {text}" for key, text in IN_THE_WILD_FIGURES.items() if key in wild]
        recall = wild.get("per_class_recall", {})
        if standalone and recall:
            lines += ["", "| class | recall |", "|---|---|"] + [f"| {n} | {_pct(r, 1)} |" for n, r in recall.items()]
    lines += [
        "",
        f"{section} Model",
        "",
        f"- Architecture: `{model.get('architecture', cfg.get('architecture', 'n/a'))}`, "
        f"{model.get('parameters', 'n/a'):,} parameters" if isinstance(model.get("parameters"), int)
        else f"- Architecture: `{cfg.get('architecture', 'n/a')}`",
        f"- Keras file: {model.get('size_bytes', 0) / 1e6:.2f} MB",
        f"- Input: {model.get('input_shape', 'n/a')} raw pixels 0..255 (scaling and centre crop are inside the model)",
    ]
    formats = m.get("formats", {})
    if standalone and formats:
        lines += ["", f"| format | file | size | {names['test']} accuracy |", "|---|---|---|---|"]
        for name, fmt in formats.items():
            if "error" in fmt:
                lines.append(f"| {name} | {fmt['file']} | - | error: {fmt['error']} |")
            else:
                lines.append(f"| {name} | {fmt['file']} | {fmt['size_bytes'] / 1e6:.2f} MB | {_pct(fmt['test_accuracy'])} |")
    lines += ["", f"{section} Training", ""]
    if cfg:
        keys = ("epochs", "batch_size", "optimizer", "learning_rate", "schedule", "label_smoothing",
                "class_weight_power", "early_stopping_patience", "seed")
        if any(k in cfg for k in keys):
            lines.append("- Config: " + ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg))
        if "augment" in cfg:
            lines.append("- Augmentation: " + ", ".join(f"{k}={v}" for k, v in cfg["augment"].items()))
        if cfg.get("init_from"):
            lines.append(f"- Warm restart: started from the weights of `{cfg['init_from']}` (its own training "
                         "is not counted below)")
        if uses_teacher(cfg):
            lines.append(f"- Distillation: each target is {100 * cfg['distill_weight']:.0f} % the probabilities of "
                         f"`{cfg['teacher']}` on that training face, the rest the label (the teacher's own "
                         "training is not counted below)")
        if averaged := cfg.get("weight_averaging"):
            lines.append(f"- Weight averaging: mean of {averaged['from_run']}'s epochs {averaged['epochs'][0]}-"
                         f"{averaged['epochs'][-1]}, BatchNorm statistics recomputed on "
                         f"{averaged['batchnorm_batches']} training batches (`python -m fer.swa`)")
        if ensemble := cfg.get("ensemble"):
            members = ", ".join(f"`{name}` (seed {seed})" for name, seed in
                                zip(ensemble["members"], ensemble.get("member_seeds") or [None] * len(ensemble["members"])))
            lines.append(f"- Ensemble: the mean of the probabilities of {members}, each trained on its own "
                         "(`python -m fer.ensemble`); their model cards give their recipes")
    if tr and cfg.get("ensemble"):
        lines += [
            f"- Hardware: {tr.get('hardware', 'n/a')}; TensorFlow {tr.get('tensorflow', '?')}, Keras {tr.get('keras', '?')}",
            f"- Epochs run: {tr.get('epochs_run', 'n/a')} over all members; training time "
            f"{tr.get('total_epoch_seconds', 0) / 60:.1f} min over all members (each member's own run: a warm "
            "restart or a distilled net leaves out the run it builds on)",
        ]
    elif tr:
        lines += [
            f"- Hardware: {tr.get('hardware', 'n/a')}; TensorFlow {tr.get('tensorflow', '?')}, Keras {tr.get('keras', '?')}",
            f"- Epochs run: {tr.get('epochs_run', 'n/a')}; training time {tr.get('total_epoch_seconds', 0) / 60:.1f} min; "
            f"{tr.get('images_per_second', 0):.0f} training images/s",
        ]
    lines += ["", f"{section} Limits", ""] + [f"- {sentence}" for sentence in limits_sentences(art)] + [""]
    return "\n".join(lines)


def write_model_card(model_dir: Path) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(render_model_card(ModelArtifacts.load(model_dir)))
    return path
