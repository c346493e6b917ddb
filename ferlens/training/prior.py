"""Set a trained model's class prior on purpose: `python -m ferlens.training.prior MODEL_DIR --out NEW_DIR`.

A classifier's argmax follows the class prior it learned. FER2013's labels and the FER+ majority
disagree largely by prior (FER+ is 37 % neutral and 2 % fear; FER2013 17 % and 14 %), so a model
trained on a blend of both can be moved along that axis after training, and towards balanced
classes, by adding one vector to the logits of its output layer (a post-hoc logit adjustment, Menon
et al., ICLR 2021). For an ensemble the same vector goes into every member's output layer.

The vector is `tau_ferplus * log(prior_ferplus / prior_fer2013) - tau_balance * log(prior_both)`,
the priors being the training split's class shares under each label set (`prior_both` their
mean). Both taus are chosen on PublicTest, never on PrivateTest or ExpW: the pair that maximises
the mean of the FER2013 and FER+ majority accuracies, the figure training selects on; with
`--min-fer2013 A`, only among the pairs that keep PublicTest FER2013 accuracy at A or above (a floor
under what the seed paper's label set reports).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from ferlens.config import DEFAULT_DATA_DIR, DEFAULT_FERPLUS_DIR, NUM_CLASSES
from ferlens.modelfolder.artifacts import ARCHITECTURE_FILE, CONFIG_FILE, HISTORY_FILE, MODEL_FILE, TRAINING_FILE, write_json
from ferlens.training.data import Dataset, load_dataset
from ferlens.training.ferplus import attach_votes, majority_labels

#: The name of every architecture's output layer (ferlens.training.architectures): a softmax Dense whose bias is shifted.
OUTPUT_LAYER = "probabilities"
TAU_FERPLUS_GRID = tuple(np.round(np.arange(-0.5, 1.01, 0.125), 3))
TAU_BALANCE_GRID = tuple(np.round(np.arange(0.0, 0.76, 0.125), 3))


def class_priors(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Training-split class shares under FER2013's labels and under the FER+ majority (faces it keeps)."""
    fer2013 = np.bincount(data.train.labels, minlength=NUM_CLASSES).astype(np.float64)
    majority = majority_labels(data.train.votes)
    ferplus = np.bincount(majority[majority >= 0], minlength=NUM_CLASSES).astype(np.float64)
    return fer2013 / fer2013.sum(), ferplus / ferplus.sum()


def prior_shift(data: Dataset, tau_ferplus: float, tau_balance: float) -> np.ndarray:
    """The logit shift (7,) for a pair of taus (see the module docstring)."""
    fer2013, ferplus = class_priors(data)
    return (tau_ferplus * np.log(ferplus / fer2013) - tau_balance * np.log((fer2013 + ferplus) / 2)).astype(np.float32)


def output_layers(model) -> list:
    """Every softmax output layer of a model: its own, or each ensemble member's."""
    found = []
    for layer in model.layers:
        if layer.name == OUTPUT_LAYER and hasattr(layer, "bias"):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found += output_layers(layer)
    return found


def members_of(model) -> list:
    """The nets whose probabilities a model averages: an ensemble's members, else the model itself."""
    nested = [layer for layer in model.layers if hasattr(layer, "layers") and output_layers(layer)]
    return nested or [model]


def shifted_probabilities(member_probs: list[np.ndarray], shift: np.ndarray) -> np.ndarray:
    """What the model predicts once `shift` is added to every member's logits: softmax(z + shift) is
    p * exp(shift), renormalised, so the members' stored probabilities are enough."""
    out = np.zeros_like(member_probs[0], dtype=np.float64)
    for probs in member_probs:
        scaled = probs.astype(np.float64) * np.exp(shift.astype(np.float64))
        out += scaled / scaled.sum(axis=1, keepdims=True)
    return (out / len(member_probs)).astype(np.float32)


def apply_shift(model, shift: np.ndarray) -> int:
    """Add `shift` to the bias of every output layer, in place; returns how many layers changed."""
    layers = output_layers(model)
    if not layers:
        raise ValueError(f"the model has no output layer named {OUTPUT_LAYER!r} to shift")
    for layer in layers:
        layer.bias.assign(np.asarray(layer.bias.numpy(), np.float32) + shift.astype(np.float32))
    return len(layers)


def selection_scores(probs: np.ndarray, labels: np.ndarray, votes: np.ndarray) -> dict[str, float]:
    """PublicTest figures of one choice: FER2013 accuracy, FER+ majority accuracy, their mean."""
    predicted = probs.argmax(1)
    majority = majority_labels(votes)
    kept = majority >= 0
    fer2013 = float(np.mean(predicted == labels))
    ferplus = float(np.mean(predicted[kept] == majority[kept]))
    return {"fer2013": fer2013, "ferplus": ferplus, "selection": (fer2013 + ferplus) / 2}


def choose_shift(member_probs: list[np.ndarray], data: Dataset,
                 min_fer2013: float = 0.0) -> tuple[tuple[float, float], list[dict]]:
    """Every (tau_ferplus, tau_balance) of the grid scored on PublicTest, best first (those below the
    `min_fer2013` floor last); and the best pair (ties go to the smaller shift). No shift at all is in
    the grid, so a floor the model meets unshifted always leaves a choice."""
    rows = []
    for tau_ferplus, tau_balance in itertools.product(TAU_FERPLUS_GRID, TAU_BALANCE_GRID):
        probs = shifted_probabilities(member_probs, prior_shift(data, tau_ferplus, tau_balance))
        scores = selection_scores(probs, data.val.labels, data.val.votes)
        rows.append({"tau_ferplus": float(tau_ferplus), "tau_balance": float(tau_balance), **scores})
    rows.sort(key=lambda r: (r["fer2013"] < min_fer2013, -r["selection"], abs(r["tau_ferplus"]) + abs(r["tau_balance"])))
    return (rows[0]["tau_ferplus"], rows[0]["tau_balance"]), rows


def write_shifted(model_dir: Path, out_dir: Path, data: Dataset, taus: tuple[float, float] | None = None,
                  min_fer2013: float = 0.0) -> dict:
    """Write `model_dir`'s model with its prior shifted into the model folder `out_dir` (not yet evaluated
    or exported); the taus are chosen on PublicTest unless given. Returns what was chosen and why."""
    import keras

    import ferlens.training.architectures  # noqa: F401  (registers the custom layers)
    from ferlens.modelfolder.loading import open_model_file
    from ferlens.modelfolder.manifest import verify_model_file, write_manifest
    from ferlens.modelfolder.selftest import write_selftest

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out_dir.resolve():
        raise ValueError("write the shifted model into a new folder (--out), not over its source")
    verify_model_file(model_dir / MODEL_FILE)
    model = keras.saving.load_model(model_dir / MODEL_FILE, compile=False)
    images = data.val.images[..., None].astype(np.float32)
    member_probs = [np.asarray(member.predict(images, batch_size=512, verbose=0)) for member in members_of(model)]
    rows: list[dict] = []
    if taus is None:
        taus, rows = choose_shift(member_probs, data, min_fer2013)
    shift = prior_shift(data, *taus)
    before = selection_scores(shifted_probabilities(member_probs, np.zeros(NUM_CLASSES, np.float32)),
                              data.val.labels, data.val.votes)
    after = selection_scores(shifted_probabilities(member_probs, shift), data.val.labels, data.val.votes)
    apply_shift(model, shift)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / MODEL_FILE)
    write_manifest(out_dir, [MODEL_FILE])
    write_selftest(out_dir, {"keras": open_model_file(out_dir / MODEL_FILE, "keras")})
    (out_dir / ARCHITECTURE_FILE).write_text(model.to_json(indent=1))
    for name in (TRAINING_FILE, HISTORY_FILE):
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, out_dir / name)
    config = json.loads((model_dir / CONFIG_FILE).read_text()) if (model_dir / CONFIG_FILE).exists() else {}
    chosen = {"source": model_dir.name, "tau_ferplus": taus[0], "tau_balance": taus[1],
              "logit_shift": [round(float(v), 4) for v in shift],
              "chosen_on": "PublicTest: mean of FER2013 and FER+ majority accuracy"
              + (f", FER2013 accuracy at least {min_fer2013:.1%}" if min_fer2013 > 0 else ""),
              "publictest_before": before, "publictest_after": after}
    write_json(out_dir, CONFIG_FILE, {**config, "prior_shift": chosen})
    return {**chosen, "grid": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlens.training.prior", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="a trained model folder (a single net or an ensemble)")
    parser.add_argument("--out", type=Path, required=True, help="the new model folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="the FER2013 folder")
    parser.add_argument("--ferplus", type=Path, default=DEFAULT_FERPLUS_DIR, help="the FER+ votes")
    parser.add_argument("--tau-ferplus", type=float, default=None, help="use this tau instead of choosing on PublicTest")
    parser.add_argument("--tau-balance", type=float, default=None, help="use this tau instead of choosing on PublicTest")
    parser.add_argument("--min-fer2013", type=float, default=0.0, metavar="A",
                        help="choose only among shifts that keep PublicTest FER2013 accuracy at A (0..1) or above")
    parser.add_argument("--no-evaluate", action="store_true", help="skip writing metrics.json")
    args = parser.parse_args(argv)
    if (args.tau_ferplus is None) != (args.tau_balance is None):
        parser.error("give both --tau-ferplus and --tau-balance, or neither (both are then chosen on PublicTest)")
    if not 0.0 <= args.min_fer2013 < 1.0:
        parser.error(f"--min-fer2013 must be from 0 to below 1, got {args.min_fer2013:g}")
    if not (args.model_dir / MODEL_FILE).is_file():
        parser.error(f"{args.model_dir}: no {MODEL_FILE} in this folder")
    try:
        data = load_dataset(args.data)
        attach_votes(data, args.ferplus)
        taus = None if args.tau_ferplus is None else (args.tau_ferplus, args.tau_balance)
        chosen = write_shifted(args.model_dir, args.out, data, taus, args.min_fer2013)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in chosen["grid"][:10]:
        print(f"  tau_ferplus {row['tau_ferplus']:+.3f} tau_balance {row['tau_balance']:.3f}: PublicTest FER2013 "
              f"{row['fer2013']:.4f}, FER+ {row['ferplus']:.4f}, mean {row['selection']:.4f}")
    before, after = chosen["publictest_before"], chosen["publictest_after"]
    print(f"{args.out}: tau_ferplus {chosen['tau_ferplus']:+.3f}, tau_balance {chosen['tau_balance']:.3f}; PublicTest "
          f"FER2013 {before['fer2013']:.4f} -> {after['fer2013']:.4f}, FER+ {before['ferplus']:.4f} -> {after['ferplus']:.4f}")
    if not args.no_evaluate:
        from ferlens.training.evaluate import evaluate_model_dir

        metrics = evaluate_model_dir(args.out, data, wild=False)
        print(f"  PrivateTest FER2013 {metrics['test']['accuracy']:.4f}, FER+ {metrics['ferplus']['test']['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
