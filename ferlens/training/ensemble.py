"""Several trained models as one: `python -m ferlens.training.ensemble MODEL_DIR MODEL_DIR ... --out NEW_DIR`.

`--compare FILE.md` instead scores each given model alone and every combination of them on
PublicTest (the selection split; PrivateTest shown for the record), to choose the members.

Nets trained alike from different random starts make partly different mistakes, so the mean of
their probabilities is more accurate than any one of them. The members are wrapped into a single
Keras model (one input, the members side by side, their softmax outputs averaged), so the result
is a normal model folder: evaluated, exported to TFLite / ONNX and served like any other, at the
members' summed cost. Its `train_config.json` names the members and their configs, and its
`training.json` adds up their training time, so the ablation table and model card can show both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import keras
import numpy as np

from ferlens.config import DEFAULT_DATA_DIR, DEFAULT_FERPLUS_DIR, IMAGE_SIZE, split_names
from ferlens.modelfolder.artifacts import ARCHITECTURE_FILE, CONFIG_FILE, MODEL_FILE, TRAINING_FILE, write_json
from ferlens.modelfolder.loading import ModelLoadError, load_backend, open_model_file
from ferlens.modelfolder.manifest import ManifestError, verify_model_file, write_manifest
from ferlens.modelfolder.selftest import write_selftest
from ferlens.training.data import Dataset, load_dataset
from ferlens.training.ferplus import majority_labels

ENSEMBLE_ARCHITECTURE = "ensemble"


def build_ensemble(members: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose output is the mean of the members' probabilities (each renamed, so that
    two members of the same architecture keep apart in the saved file)."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two models, got {len(members)}")
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="pixels")
    outputs = [keras.Model(m.input, m.output, name=f"member{i}_{m.name}")(inputs) for i, m in enumerate(members, 1)]
    return keras.Model(inputs, keras.layers.Average(name="probabilities")(outputs), name=name)


def load_member(model_dir: Path) -> keras.Model:
    """A member's float32 Keras model, checked against its folder's manifest first."""
    import ferlens.training.architectures  # noqa: F401  (registers the custom layers the saved model uses)

    path = Path(model_dir) / MODEL_FILE
    verify_model_file(path)
    return keras.saving.load_model(path, compile=False)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def ensemble_dirs(member_dirs: list[Path], out_dir: Path) -> keras.Model:
    """Write the ensemble of `member_dirs` into the model folder `out_dir` (not yet evaluated)."""
    member_dirs = [Path(d) for d in member_dirs]
    if len({d.resolve() for d in member_dirs}) != len(member_dirs):
        raise ValueError("each member may be given only once")
    model = build_ensemble([load_member(d) for d in member_dirs], name=ENSEMBLE_ARCHITECTURE)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / MODEL_FILE)
    write_selftest(out_dir, {"keras": open_model_file(out_dir / MODEL_FILE, "keras")})
    write_manifest(out_dir, [MODEL_FILE])
    (out_dir / ARCHITECTURE_FILE).write_text(model.to_json(indent=1))
    configs = [_read_json(d / CONFIG_FILE) for d in member_dirs]
    trainings = [_read_json(d / TRAINING_FILE) for d in member_dirs]
    config = {
        "architecture": ENSEMBLE_ARCHITECTURE,
        "ensemble": {"members": [d.name for d in member_dirs],
                     "member_architectures": [c.get("architecture") for c in configs],
                     "member_seeds": [c.get("seed") for c in configs],
                     # What each member learned from (ferlens.training.ferplus.TARGET_KINDS), for the card and the report page.
                     "member_labels": [{"labels": c.get("labels", "fer2013"), "fer2013_weight": c.get("fer2013_weight")}
                                       for c in configs],
                     "combination": "mean of the members' probabilities"},
    }
    write_json(out_dir, CONFIG_FILE, config)
    seconds = sum(t.get("total_epoch_seconds") or 0.0 for t in trainings)
    training = {
        "epochs_run": sum(t.get("epochs_run") or 0 for t in trainings),
        "total_epoch_seconds": seconds,
        "members": {d.name: {key: t.get(key) for key in ("epochs_run", "total_epoch_seconds", "images_per_second")}
                    for d, t in zip(member_dirs, trainings)},
        **{key: trainings[0][key] for key in ("train_images", "tensorflow", "keras", "data") if key in trainings[0]},
        "hardware": members_hardware(member_dirs, trainings),
    }
    write_json(out_dir, TRAINING_FILE, training)
    return model


def members_hardware(member_dirs: list[Path], trainings: list[dict]) -> str:
    """What the members trained on: one description when they share it, else each member's own."""
    described = [t.get("hardware") or "not recorded" for t in trainings]
    if len(set(described)) == 1:
        return described[0]
    return "; ".join(f"{d.name}: {hardware}" for d, hardware in zip(member_dirs, described))


def compare_combinations(member_dirs: list[Path], data: Dataset) -> list[dict]:
    """Validation and test accuracy of each member alone and of the mean of every combination of members
    (single centre crop), best on validation first: each member predicts each split once. With FER+ votes
    joined to the data, also the FER+ majority accuracies, and "best" is the mean of the two label sets'
    validation accuracies (what `ferlens.training.train` selects FER+ runs on)."""
    member_dirs = [Path(d) for d in member_dirs]
    if len(member_dirs) < 2:
        raise ValueError(f"comparing ensembles needs at least two models, got {len(member_dirs)}")
    from ferlens.training.evaluate import predict_split

    probabilities = {}
    for d in member_dirs:
        backend = load_backend(d, "keras")
        probabilities[d] = {name: predict_split(backend, split) for name, split in (("val", data.val), ("test", data.test))}
    labels = {"val": data.val.labels, "test": data.test.labels}
    with_votes = data.val.votes is not None and data.test.votes is not None
    majority = {name: majority_labels(getattr(data, name).votes) for name in ("val", "test")} if with_votes else {}
    rows = []
    for size in range(1, len(member_dirs) + 1):
        for combo in itertools.combinations(member_dirs, size):
            predicted = {name: sum(probabilities[d][name] for d in combo).argmax(1) for name in ("val", "test")}
            row = {"members": [d.name for d in combo],
                   **{f"{name}_accuracy": float((predicted[name] == labels[name]).mean()) for name in ("val", "test")}}
            for name, truth in majority.items():
                kept = truth >= 0
                row[f"ferplus_{name}_accuracy"] = float((predicted[name][kept] == truth[kept]).mean())
            if with_votes:
                row["prior_shift"] = shifted_scores([probabilities[d] for d in combo], data)
            rows.append(row)
    return sorted(rows, key=lambda row: -selection_figure(row))


def selection_figure(row: dict) -> float:
    """What a combination is chosen by: PublicTest accuracy, or with FER+ figures the mean of both label sets'
    once its class prior is shifted as `ferlens.training.prior` would shift it (chosen on PublicTest)."""
    if "prior_shift" in row:
        return row["prior_shift"]["val"]["selection"]
    return (row["val_accuracy"] + row["ferplus_val_accuracy"]) / 2 if "ferplus_val_accuracy" in row else row["val_accuracy"]


def shifted_scores(member_probs: list[dict[str, np.ndarray]], data: Dataset) -> dict:
    """The prior shift `ferlens.training.prior` would choose for these members on PublicTest, and both splits' figures with it."""
    from ferlens.training.prior import choose_shift, prior_shift, selection_scores, shifted_probabilities

    taus, _ = choose_shift([p["val"] for p in member_probs], data)
    shift = prior_shift(data, *taus)
    return {"taus": taus, **{name: selection_scores(shifted_probabilities([p[name] for p in member_probs], shift),
                                                   getattr(data, name).labels, getattr(data, name).votes)
                             for name in ("val", "test")}}


def render_comparison(rows: list[dict], layout: str | None = None) -> str:
    names = split_names(layout)
    lines = [
        "# Ensemble members compared",
        "",
        "Written by `python -m ferlens.training.ensemble " + " ".join(max((r["members"] for r in rows), key=len))
        + " --compare FILE`: the mean of each combination's probabilities, single centre crop, "
        f"best on {names['val']} (the selection split) first; {names['test']} is for the record only.",
        "",
    ]
    if rows and "ferplus_val_accuracy" in rows[0]:
        lines[2] += (" With FER+ votes, combinations are ranked by the mean of the FER2013 and FER+ majority "
                     f"accuracies on {names['val']} once the class prior is shifted as "
                     "`python -m ferlens.training.prior` chooses "
                     f"it (on {names['val']}).")
        lines += [f"| members | {names['val']} FER2013 / FER+ | {names['test']} FER2013 / FER+ | prior shift (tau FER+, "
                  f"balance) | with it: {names['val']} FER2013 / FER+ / mean | with it: {names['test']} FER2013 / FER+ |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {' + '.join(r['members'])} | {100 * r['val_accuracy']:.2f} % / {100 * r['ferplus_val_accuracy']:.2f} % "
                  f"| {100 * r['test_accuracy']:.2f} % / {100 * r['ferplus_test_accuracy']:.2f} % "
                  f"| {r['prior_shift']['taus'][0]:+.3f}, {r['prior_shift']['taus'][1]:.3f} "
                  f"| {100 * r['prior_shift']['val']['fer2013']:.2f} % / {100 * r['prior_shift']['val']['ferplus']:.2f} % / "
                  f"{100 * selection_figure(r):.2f} % | {100 * r['prior_shift']['test']['fer2013']:.2f} % / "
                  f"{100 * r['prior_shift']['test']['ferplus']:.2f} % |" for r in rows]
        return "\n".join(lines) + "\n"
    lines += [f"| members | {names['val']} accuracy | {names['test']} accuracy |", "|---|---|---|"]
    lines += [f"| {' + '.join(r['members'])} | {100 * r['val_accuracy']:.2f} % | {100 * r['test_accuracy']:.2f} % |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlens.training.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("members", type=Path, nargs="+", help="trained model folders (at least two)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="model folder to write")
    target.add_argument("--compare", type=Path, metavar="FILE.md",
                        help="score every combination of the models on the selection split and write the table")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="FER2013 folder or fer2013.csv")
    parser.add_argument("--ferplus", type=Path, default=DEFAULT_FERPLUS_DIR,
                        help="FER+ votes: --compare then ranks by both label sets (skipped when absent)")
    parser.add_argument("--no-evaluate", action="store_true", help="skip writing metrics.json")
    args = parser.parse_args(argv)
    if args.out is not None and any(args.out.resolve() == member.resolve() for member in args.members):
        parser.error("--out must be a new folder, not one of the members")
    try:
        if args.compare is not None:
            data = load_dataset(args.data)
            if data.layout == "fer2013-folders":
                from ferlens.training.evaluate import with_ferplus

                with_ferplus(data, args.ferplus)  # FER2013 alone when the votes are absent or name other files
            text = render_comparison(compare_combinations(args.members, data), data.layout)
            args.compare.write_text(text)
            print(text, end="")
            return 0
        ensemble_dirs(args.members, args.out)
        if not args.no_evaluate:
            from ferlens.training.evaluate import evaluate_model_dir, with_ferplus

            data = load_dataset(args.data)
            if data.layout == "fer2013-folders":
                with_ferplus(data, args.ferplus)
            metrics = evaluate_model_dir(args.out, data, wild=False)  # ferlens.training.evaluate adds the in-the-wild section
            print(f"{args.out}: PrivateTest accuracy {metrics['test']['accuracy']:.4f}, "
                  f"PublicTest accuracy {metrics['val']['accuracy']:.4f}")
    except (OSError, ValueError, ManifestError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
