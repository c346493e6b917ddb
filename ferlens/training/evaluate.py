"""Recompute a model folder's figures on FER2013: `python -m ferlens.training.evaluate MODEL_DIR --data PATH`.

Writes `metrics.json` (PrivateTest accuracy, macro-F1, per-class report, confusion matrix,
PublicTest accuracy, dataset counts, training config/time) and the model card. These files
are the only source of accuracy figures in the project; tests recompute them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

from ferlens.config import CLASS_NAMES, DEFAULT_DATA_DIR, DEFAULT_EXPW_DIR, DEFAULT_FERPLUS_DIR, DEFAULT_MODEL_DIR, split_names
from ferlens.core.tta import TTA_MODES, predict_with_tta
from ferlens.modelfolder.artifacts import CONFIG_FILE, METRICS_FILE, TRAINING_FILE, write_json
from ferlens.modelfolder.loading import BACKEND_FILES, ModelLoadError, available_backends, load_backend
from ferlens.training.data import Dataset, DatasetError, Split, load_dataset
from ferlens.training.ferplus import DEFAULT_FER2013_WEIGHT, attach_votes
from ferlens.training.ferplus import figures as ferplus_figures
from ferlens.training.metrics import classification_report
from ferlens.training.wild import evaluate_wild_section


def predict_split(backend, split: Split, batch_size: int = 256, tta: str = "none") -> np.ndarray:
    """Probabilities (N, 7) for every image of a split; by default the single centre crop, no TTA."""
    out = []
    for start in range(0, len(split), batch_size):
        out.append(predict_with_tta(backend.predict, split.images[start:start + batch_size], tta))
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)


#: Figures of the selection split kept in metrics.json (the whole report is kept for the test split only).
VAL_FIGURES = ("accuracy", "balanced_accuracy", "macro_f1", "images")


def evaluate_backend(backend, data: Dataset, tta: str = "none") -> dict:
    """PrivateTest report plus PublicTest figures for one runtime; with FER+ votes joined to the data
    (`with_ferplus`), the same two on the FER+ labels under "ferplus"."""
    test_probs, val_probs = predict_split(backend, data.test, tta=tta), predict_split(backend, data.val, tta=tta)
    test = classification_report(data.test.labels, test_probs.argmax(1))
    val = classification_report(data.val.labels, val_probs.argmax(1))
    result = {"test": test, "val": {key: val[key] for key in VAL_FIGURES}}
    if data.test.votes is not None and data.val.votes is not None:
        val_ferplus = ferplus_figures(data.val.votes, val_probs)
        result["ferplus"] = {
            "test": ferplus_figures(data.test.votes, test_probs),
            "val": {key: val_ferplus[key] for key in (*VAL_FIGURES, "cross_entropy")},
        }
    return result


#: How metrics.json["ferplus"] was measured (the FER+ paper's majority protocol).
FERPLUS_PROTOCOL = ("FER+ crowd labels (ten votes a face) for the same FER2013 images: accuracy, balanced accuracy and "
                    "macro-F1 of the majority vote, leaving out faces whose majority is contempt, unknown or not a face; "
                    "cross-entropy (nats) against the vote distribution over the seven classes, on every face with emotion "
                    "votes; single centre crop")


def with_ferplus(data: Dataset, ferplus_dir: Path | None = DEFAULT_FERPLUS_DIR) -> str | None:
    """Join the FER+ votes to FER2013 when both are there; returns why not otherwise (None when joined)."""
    if data.test.votes is not None:
        return None
    if ferplus_dir is None or not Path(ferplus_dir).exists():
        return f"the FER+ votes are not at {ferplus_dir}"
    try:
        attach_votes(data, ferplus_dir)
    except DatasetError as exc:
        return str(exc)
    return None


def learned_from(model_dir: Path) -> str:
    """Which labels a model learned from, in words, from its train_config.json (an ensemble: its members')."""
    try:
        config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return "not recorded"
    members = config.get("ensemble", {}).get("member_labels") if isinstance(config.get("ensemble"), dict) else None
    if isinstance(members, list) and members:
        kinds = sorted({_labels_in_words(m) for m in members if isinstance(m, dict)})
        return "; ".join(kinds)
    return _labels_in_words(config)


def _labels_in_words(config: dict) -> str:
    kind = config.get("labels", "fer2013")
    if kind == "fer2013":
        return "FER2013 labels (one annotator a face)"
    if kind == "ferplus-majority":
        return "FER+ majority labels (ten votes a face)"
    if kind == "ferplus-votes":
        return "FER+ vote distributions (ten votes a face)"
    weight = config.get("fer2013_weight")
    weight = DEFAULT_FER2013_WEIGHT if weight is None else float(weight)
    return f"a blend: {weight:.0%} FER2013 label, {1 - weight:.0%} FER+ vote distribution (ten votes a face)"


#: Why a training run's metrics.json has no in-the-wild figures: the whole pipeline on 5,705 photos
#: takes minutes, which fine-tuning runs and tests should not pay for.
WILD_NOT_RUN = "not run at the end of training; `python -m ferlens.training.evaluate MODEL_DIR` adds it"


def evaluate_model_dir(
    model_dir: Path, data: Dataset, formats: list[str] | None = None, wild_dir: Path | None = None, wild: bool = True,
) -> dict:
    """Evaluate the Keras model and every exported format present, and the whole pipeline on
    in-the-wild photos when they are available (and `wild`); write metrics.json and the card."""
    model_dir = Path(model_dir)
    keras_backend = load_backend(model_dir, "keras")
    main = evaluate_backend(keras_backend, data)
    metrics: dict = {
        "model": model_summary(model_dir, keras_backend.model),
        "protocol": "trained on {train}, selected on {val}, reported on {test}; ".format(**split_names(data.layout)) +
                    "single centre crop, no test-time augmentation",
        "test": main["test"],
        "val": main["val"],
        "labels": learned_from(model_dir),
        "dataset": data.summary(),
        "formats": {},
        "tta": {},
        "evaluated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if "ferplus" in main:
        metrics["ferplus"] = {"protocol": FERPLUS_PROTOCOL, **main["ferplus"]}
    for name in formats if formats is not None else available_backends(model_dir):
        path = model_dir / BACKEND_FILES[name]
        if name == "keras":
            result = main
        else:
            try:
                result = evaluate_backend(load_backend(model_dir, name), data)
            except ModelLoadError as exc:
                metrics["formats"][name] = {"file": path.name, "error": str(exc)}
                continue
        metrics["formats"][name] = {
            "file": path.name,
            "size_bytes": path.stat().st_size,
            "test_accuracy": result["test"]["accuracy"],
            "test_macro_f1": result["test"]["macro_f1"],
            "val_accuracy": result["val"]["accuracy"],
            **ferplus_accuracies(result),
        }
    for mode in TTA_MODES[1:]:
        result = evaluate_backend(keras_backend, data, tta=mode)
        metrics["tta"][mode] = {
            "test_accuracy": result["test"]["accuracy"],
            "test_macro_f1": result["test"]["macro_f1"],
            "val_accuracy": result["val"]["accuracy"],
            "val_macro_f1": result["val"]["macro_f1"],
            **ferplus_accuracies(result),
        }
    metrics["in_the_wild"] = wild_section(model_dir, wild_dir) if wild else {"skipped": WILD_NOT_RUN}
    for extra, key in ((CONFIG_FILE, "config"), (TRAINING_FILE, "training")):
        path = model_dir / extra
        if path.exists():
            metrics[key] = json.loads(path.read_text())
    write_json(model_dir, METRICS_FILE, metrics)
    from ferlens.modelfolder.report import write_model_card

    write_model_card(model_dir)
    return metrics


def ferplus_accuracies(result: dict) -> dict:
    """The FER+ majority accuracies of one evaluation, for the formats and TTA rows ({} without votes)."""
    if "ferplus" not in result:
        return {}
    return {"ferplus_test_accuracy": result["ferplus"]["test"]["accuracy"],
            "ferplus_val_accuracy": result["ferplus"]["val"]["accuracy"]}


def wild_section(model_dir: Path, wild_dir: Path | None = None) -> dict:
    """The whole pipeline on in-the-wild photos, as the upload page runs it (its detector, ten-crop)."""
    from ferlens.core.recognition import EmotionRecognizer
    from ferlens.core.tta import PHOTO_TTA

    return evaluate_wild_section(EmotionRecognizer(model_dir, tta=PHOTO_TTA), wild_dir)


def update_wild_section(model_dir: Path, wild_dir: Path | None = None) -> dict:
    """Recompute only metrics.json's in-the-wild section (after a change to detection or framing,
    which leaves the FER2013 figures as they are), and rewrite the card."""
    from ferlens.modelfolder.report import write_model_card

    path = Path(model_dir) / METRICS_FILE
    metrics = json.loads(path.read_text())
    if not isinstance(metrics, dict):
        raise ValueError(f"{path} does not hold a metrics object; run the whole evaluation")
    metrics["in_the_wild"] = wild_section(Path(model_dir), wild_dir)
    metrics["in_the_wild"]["evaluated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(path.parent, path.name, metrics)
    write_model_card(model_dir)
    return metrics


def model_summary(model_dir: Path, model) -> dict:
    path = model_dir / BACKEND_FILES["keras"]
    return {
        "name": model_dir.name,
        "architecture": model.name,
        "parameters": int(model.count_params()),
        "size_bytes": path.stat().st_size,
        "input_shape": list(model.input_shape[1:]),
        "classes": list(CLASS_NAMES),
    }


def default_data_for(model_dir: Path) -> Path:
    """What a model is evaluated (and, for INT8, calibrated) on by default: the user's own folder it was
    fine-tuned and tested on, as its training.json (or metrics.json) records it while that folder
    exists; else FER2013."""
    return _recorded_data(model_dir)[0]


def faces_cropped_for(model_dir: Path) -> bool:
    """Whether the model's own folder was read with faces cropped (False after `ferlens.training.train --whole-images`)."""
    return _recorded_data(model_dir)[1]


def _recorded_data(model_dir: Path) -> tuple[Path, bool]:
    for name, key in ((TRAINING_FILE, "data"), (METRICS_FILE, "dataset")):
        try:
            recorded = json.loads((Path(model_dir) / name).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(recorded, dict) and recorded.get("layout") == "class-folders":
            source = recorded.get("source")
            if isinstance(source, str) and Path(source).is_dir():
                return Path(source), recorded.get("faces_cropped", True) is not False
    return DEFAULT_DATA_DIR, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlens.training.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, nargs="?", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--data", type=Path, help="FER2013 folder or fer2013.csv (default: the folder a fine-tuned "
                        "model was trained on, as its metrics.json records it, else FER2013)")
    parser.add_argument("--expw", type=Path, default=DEFAULT_EXPW_DIR,
                        help="ExpW in-the-wild photos for the whole-pipeline section (skipped, and said so, when absent)")
    parser.add_argument("--ferplus", type=Path, default=DEFAULT_FERPLUS_DIR,
                        help="FER+ votes for the FER2013 images (figures on FER+ labels; skipped, and said so, when absent)")
    parser.add_argument("--skip-wild", action="store_true",
                        help="leave the in-the-wild section out (FER2013 and FER+ figures only; minutes faster)")
    parser.add_argument("--only-wild", action="store_true",
                        help="recompute only the in-the-wild section of metrics.json (after a detection change)")
    args = parser.parse_args(argv)
    if args.only_wild and args.skip_wild:
        parser.error("--only-wild and --skip-wild exclude each other")
    if args.only_wild:
        try:
            wild = update_wild_section(args.model_dir, args.expw)["in_the_wild"]
        except (OSError, ValueError, ModelLoadError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{args.model_dir}: in the wild: " + (f"skipped ({wild['skipped']})" if "skipped" in wild else
              f"all {wild['accuracy_all']:.4f}, found {wild['found_rate']:.4f}, on found {wild['accuracy_found']:.4f}"))
        return 0
    try:
        data = load_dataset(args.data or default_data_for(args.model_dir), crop_faces=faces_cropped_for(args.model_dir))
        if data.layout == "fer2013-folders" and (why := with_ferplus(data, args.ferplus)):
            print(f"FER+ figures skipped: {why}", file=sys.stderr)
        metrics = evaluate_model_dir(args.model_dir, data, wild_dir=args.expw, wild=not args.skip_wild)
    except (OSError, ValueError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = split_names(data.layout)
    test, validation = names["test"], names["val"]
    print(f"{args.model_dir}: {test} accuracy {metrics['test']['accuracy']:.4f}, "
          f"macro-F1 {metrics['test']['macro_f1']:.4f}, {validation} accuracy {metrics['val']['accuracy']:.4f}")
    if "ferplus" in metrics:
        ferplus = metrics["ferplus"]
        print(f"  FER+ majority: {test} accuracy {ferplus['test']['accuracy']:.4f}, balanced "
              f"{ferplus['test']['balanced_accuracy']:.4f}, macro-F1 {ferplus['test']['macro_f1']:.4f}, cross-entropy "
              f"{ferplus['test']['cross_entropy']:.4f}; {validation} accuracy {ferplus['val']['accuracy']:.4f}")
    for name, fmt in metrics["formats"].items():
        if "error" in fmt:
            print(f"  {name:<12} error: {fmt['error']}")
        else:
            print(f"  {name:<12} {fmt['size_bytes'] / 1e6:7.2f} MB  {test} {fmt['test_accuracy']:.4f}")
    for mode, result in metrics["tta"].items():
        print(f"  TTA {mode:<8} {test} {result['test_accuracy']:.4f}, {validation} {result['val_accuracy']:.4f}")
    wild = metrics.get("in_the_wild", {})
    if "skipped" in wild:
        print(f"  in the wild: skipped ({wild['skipped']})")
    elif wild:
        print(f"  in the wild ({wild['faces']} faces): all {wild['accuracy_all']:.4f}, found {wild['found_rate']:.4f}, "
              f"on found {wild['accuracy_found']:.4f}, macro-F1 {wild['macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
