"""Render a model folder's card (MODEL_CARD.md) from its artifacts (`ferlens.modelfolder.artifacts`)."""

from __future__ import annotations

from pathlib import Path

from ferlens.config import CLASS_NAMES
from ferlens.modelfolder.artifacts import CARD_FILE, IN_THE_WILD_FIGURES, ModelArtifacts, uses_teacher


def _pct(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f} %"


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


def ferplus_lines(ferplus: dict | None, names: dict[str, str]) -> list[str]:
    """The card's bullets on the FER+ labels (ten votes a face), when the evaluation measured them."""
    if not isinstance(ferplus, dict) or not isinstance(ferplus.get("test"), dict):
        return []
    test, val = ferplus["test"], ferplus.get("val", {})
    lines = [
        f"- FER+ labels (majority of ten votes, {test.get('images', 'n/a')} {names['test']} faces): accuracy "
        f"**{_pct(test.get('accuracy'))}**, balanced accuracy {_pct(test.get('balanced_accuracy'))}, macro-F1 "
        f"{_pct(test.get('macro_f1'))}; {names['val']} accuracy {_pct(val.get('accuracy'))}",
    ]
    if isinstance(test.get("cross_entropy"), (int, float)):
        lines.append(f"- Cross-entropy against the ten votes' distribution: {test['cross_entropy']:.3f} nats a face "
                     "(lower: the confidences match the crowd better)")
    clear = test.get("clear_expressions")
    if isinstance(clear, dict) and clear.get("accuracy") is not None:
        lines.append(f"- Clear expressions ({clear['faces']} faces where 8 of 10 voters named one emotion other than "
                     f"neutral): {_pct(clear['accuracy'])} right, {_pct(clear['called_neutral'])} called neutral")
    return lines


def render_model_card(art: ModelArtifacts, *, standalone: bool = True) -> str:
    """A short Markdown card generated from the artifacts, so it can never disagree with them.

    `standalone=False` is the report page's version: no title and none of the tables that the
    page already shows as interactive tables (per-class scores, exported formats, in-the-wild recall).
    """
    m, cfg, tr = art.metrics, art.config, art.training
    model, test, names = m.get("model", {}), m.get("test", {}), art.splits
    lines = [f"# Model card: {art.name}", ""] if standalone else []
    section = "##" if standalone else "####"  # on the page, below its own "Model card" header
    lines += ["Facial-expression classifier for 48x48 grayscale faces, 7 classes: " + ", ".join(CLASS_NAMES) + ".", ""]
    if m.get("labels"):
        lines += [f"Learned from: {m['labels']}.", ""]
    lines += [
        f"{section} Figures (recomputed by `python -m ferlens.training.evaluate`)",
        "",
        f"- Protocol: {m.get('protocol', 'n/a')}",
        f"- {names['test']} accuracy: **{_pct(test.get('accuracy'))}** on {test.get('images', 'n/a')} images",
        f"- {names['test']} macro-F1: {_pct(test.get('macro_f1'))}",
        f"- {names['val']} accuracy (selection set): {_pct(m.get('val', {}).get('accuracy'))}",
    ]
    lines += ferplus_lines(m.get("ferplus"), names)
    for mode, result in m.get("tta", {}).items():
        lines.append(
            f"- With test-time augmentation `{mode}`: {names['test']} {_pct(result['test_accuracy'])}, macro-F1 "
            f"{_pct(result['test_macro_f1'])}, {names['val']} {_pct(result['val_accuracy'])}"
            + (f"; FER+ {names['test']} {_pct(result['ferplus_test_accuracy'])}" if "ferplus_test_accuracy" in result else "")
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
                         f"{averaged['batchnorm_batches']} training batches (`python -m ferlens.training.swa`)")
        if ensemble := cfg.get("ensemble"):
            members = ", ".join(f"`{name}` (seed {seed})" for name, seed in
                                zip(ensemble["members"], ensemble.get("member_seeds") or [None] * len(ensemble["members"])))
            lines.append(f"- Ensemble: the mean of the probabilities of {members}, each trained on its own "
                         "(`python -m ferlens.training.ensemble`); their model cards give their recipes")
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
