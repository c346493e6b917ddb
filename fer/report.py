"""Read a model folder's artifacts and render its model card.

The artifacts (history.json, metrics.json, train_config.json, training.json) are the
contract between training and the app: the report page and the card only read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fer.config import CLASS_NAMES, DEFAULT_MODEL_DIR, MODELS_DIR

CARD_FILE = "MODEL_CARD.md"


@dataclass
class ModelArtifacts:
    """Everything a trained model folder says about itself; missing files give empty dicts."""

    path: Path
    metrics: dict
    history: dict
    config: dict
    training: dict

    @classmethod
    def load(cls, path: Path | str) -> ModelArtifacts:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"model folder not found: {path}")

        def read(name: str) -> dict:
            file = path / name
            if not file.exists():
                return {}
            try:
                return json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{file} is not valid JSON: {exc}") from exc

        metrics = read("metrics.json")
        return cls(
            path=path,
            metrics=metrics,
            history=read("history.json").get("epochs", {}),
            config=read("train_config.json") or metrics.get("config", {}),
            training=read("training.json") or metrics.get("training", {}),
        )

    @property
    def name(self) -> str:
        return self.path.name

    def headline(self) -> dict:
        """The few numbers a visitor wants first."""
        model = self.metrics.get("model", {})
        test = self.metrics.get("test", {})
        return {
            "PrivateTest accuracy": test.get("accuracy"),
            "macro-F1": test.get("macro_f1"),
            "PublicTest accuracy": self.metrics.get("val", {}).get("accuracy"),
            "parameters": model.get("parameters"),
            "size (MB)": model.get("size_bytes", 0) / 1e6 if model.get("size_bytes") else None,
        }


def list_model_dirs(root: Path = MODELS_DIR) -> list[Path]:
    """Model folders under `root` that hold a trained model, plus the default model wherever it lives."""
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / "model.keras").exists()) if root.is_dir() else []
    if (DEFAULT_MODEL_DIR / "model.keras").exists() and DEFAULT_MODEL_DIR.resolve() not in {p.resolve() for p in found}:
        found.insert(0, DEFAULT_MODEL_DIR)
    return found


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def render_model_card(art: ModelArtifacts) -> str:
    """A short Markdown card generated from the artifacts, so it can never disagree with them."""
    m, cfg, tr = art.metrics, art.config, art.training
    model, test = m.get("model", {}), m.get("test", {})
    lines = [
        f"# Model card: {art.name}",
        "",
        "Facial-expression classifier for 48x48 grayscale faces, 7 classes: " + ", ".join(CLASS_NAMES) + ".",
        "",
        "## Figures (recomputed by `python -m fer.evaluate`)",
        "",
        f"- Protocol: {m.get('protocol', 'n/a')}",
        f"- PrivateTest accuracy: **{_pct(test.get('accuracy'))}** on {test.get('images', 'n/a')} images",
        f"- PrivateTest macro-F1: {_pct(test.get('macro_f1'))}",
        f"- PublicTest accuracy (selection set): {_pct(m.get('val', {}).get('accuracy'))}",
    ]
    for mode, result in m.get("tta", {}).items():
        lines.append(
            f"- With test-time augmentation `{mode}`: PrivateTest {_pct(result['test_accuracy'])}, macro-F1 "
            f"{_pct(result['test_macro_f1'])}, PublicTest {_pct(result['val_accuracy'])}"
        )
    lines += [
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, row in test.get("per_class", {}).items():
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
    lines += [
        "",
        "## Model",
        "",
        f"- Architecture: `{model.get('architecture', cfg.get('architecture', 'n/a'))}`, "
        f"{model.get('parameters', 'n/a'):,} parameters" if isinstance(model.get("parameters"), int)
        else f"- Architecture: `{cfg.get('architecture', 'n/a')}`",
        f"- Keras file: {model.get('size_bytes', 0) / 1e6:.2f} MB",
        f"- Input: {model.get('input_shape', 'n/a')} raw pixels 0..255 (scaling and centre crop are inside the model)",
    ]
    if model.get("inference_blur_sigma"):
        lines.append(
            f"- The FER2013 training images we have are Gaussian-blurred (sigma about {model['inference_blur_sigma']} px) "
            "while the test images and real photos are sharp; the model blurs its input by the same amount at "
            "inference so that it always sees what it was trained on."
        )
    formats = m.get("formats", {})
    if formats:
        lines += ["", "| format | file | size | PrivateTest accuracy |", "|---|---|---|---|"]
        for name, fmt in formats.items():
            if "error" in fmt:
                lines.append(f"| {name} | {fmt['file']} | - | error: {fmt['error']} |")
            else:
                lines.append(f"| {name} | {fmt['file']} | {fmt['size_bytes'] / 1e6:.2f} MB | {_pct(fmt['test_accuracy'])} |")
    lines += ["", "## Training", ""]
    if cfg:
        keys = ("epochs", "batch_size", "optimizer", "learning_rate", "schedule", "label_smoothing",
                "class_weight_power", "early_stopping_patience", "seed")
        lines.append("- Config: " + ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg))
        if "augment" in cfg:
            lines.append("- Augmentation: " + ", ".join(f"{k}={v}" for k, v in cfg["augment"].items()))
        if cfg.get("init_from"):
            lines.append(f"- Warm restart: started from the weights of `{cfg['init_from']}` (its own training "
                         "is not counted below)")
        if averaged := cfg.get("weight_averaging"):
            lines.append(f"- Weight averaging: mean of {averaged['from_run']}'s epochs {averaged['epochs'][0]}-"
                         f"{averaged['epochs'][-1]}, BatchNorm statistics recomputed on "
                         f"{averaged['batchnorm_batches']} training batches (`python -m fer.swa`)")
    if tr:
        lines += [
            f"- Hardware: {tr.get('hardware', 'n/a')}; TensorFlow {tr.get('tensorflow', '?')}, Keras {tr.get('keras', '?')}",
            f"- Epochs run: {tr.get('epochs_run', 'n/a')}; training time {tr.get('total_epoch_seconds', 0) / 60:.1f} min; "
            f"{tr.get('images_per_second', 0):.0f} training images/s",
        ]
    lines += [
        "",
        "## Limits",
        "",
        "- FER2013 is low-resolution, mostly frontal, and its labels are noisy (human accuracy is about 65 %).",
        "- Disgust has only 436 training images; expect its recall to be the weakest.",
        "- Expressions are posed or spontaneous web images; accuracy on other cameras, ages and lighting will differ.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir: Path) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(render_model_card(ModelArtifacts.load(model_dir)))
    return path
