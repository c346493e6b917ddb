"""Ablation table from recorded runs: `python -m ferlens.training.ablation RUN_DIR [RUN_DIR ...] --out FILE`.

Each run is a trained model folder (its train_config.json, training.json and metrics.json,
all written by training and evaluation). Runs are listed in the order given; each row's
"change" is computed from the difference between its training config (and architecture) and
the previous row's, so the table cannot claim a change that was not made. Selection figures
are PublicTest's; PrivateTest is shown for the record, never used to choose. The last run's
test-time augmented figures (from its metrics.json) close the table, each against its single crop.
A run of the seed paper's own CNN (`--architecture paper`) also gets its per-epoch validation
accuracy set beside the curve the paper reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ferlens.modelfolder.artifacts import ModelArtifacts, uses_teacher

#: The seed paper's reported validation accuracy by epoch, and the test accuracy it claims.
PAPER_REPORTED_CURVE = {5: 0.486, 10: 0.551, 25: 0.603}
PAPER_CLAIMED_TEST_ACCURACY = 0.75


def paper_curve(runs: list[ModelArtifacts]) -> list[dict]:
    """Per-epoch PublicTest accuracy of each paper-architecture run at the paper's epochs (and at
    its last epoch), beside the paper's figure; None where either did not reach that epoch."""
    rows = []
    for run in runs:
        if run.config.get("architecture") != "paper":
            continue
        accuracy = dict(zip(run.history.get("epoch", []), run.history.get("val_accuracy", [])))
        last = max(accuracy, default=None)
        for epoch in sorted(set(PAPER_REPORTED_CURVE) | ({last} if last else set())):
            rows.append({"run": run.name, "epoch": epoch, "paper": PAPER_REPORTED_CURVE.get(epoch),
                         "run_accuracy": accuracy.get(epoch)})
    return rows


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(previous: dict, current: dict) -> list[str]:
    """`key: old -> new` for every training setting that differs between two runs.

    A setting that a run's config predates counts as its default (new settings are added switched
    off), so an older run is not said to differ in options it never had."""
    from ferlens.training.train import TrainConfig  # imports TensorFlow: only when a table is made

    defaults = _flatten(json.loads(json.dumps(TrainConfig().to_dict())))  # as train_config.json has them (lists)
    before, after = {**defaults, **_flatten(previous)}, {**defaults, **_flatten(current)}
    return [
        f"{key}: {before.get(key)} -> {after.get(key)}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def ablation_rows(runs: list[ModelArtifacts]) -> list[dict]:
    rows = []
    for i, run in enumerate(runs):
        metrics, training = run.metrics, run.training
        if "val" not in metrics:
            raise ValueError(f"{run.path} has no evaluated metrics.json; run `python -m ferlens.training.evaluate {run.path}`")
        shift = run.config.get("prior_shift")
        members = run.config.get("ensemble", {}).get("members")
        if isinstance(shift, dict) or members:
            changes = [f"ensemble: mean of the probabilities of {' + '.join(members)} (time: the members' own runs added up)"
                       ] if members else []
            if isinstance(shift, dict):  # another run's weights with the class prior moved: one change, not a restart
                changes.append(f"class prior shifted (`ferlens.training.prior`): tau FER+ {shift.get('tau_ferplus')}, "
                               "tau balance "
                               f"{shift.get('tau_balance')}, chosen on {shift.get('chosen_on', 'PublicTest')}")
                if not members and (i == 0 or runs[i - 1].name != shift.get("source")):
                    changes.append(f"from {shift.get('source')}")
        else:
            changes = ["baseline"] if i == 0 else config_changes(runs[i - 1].config, run.config)
            # The time column is this run's own; say so where it builds on another run's training.
            if run.config.get("init_from"):
                changes.append("time: this restart only, not the run it starts from")
            if uses_teacher(run.config):
                changes.append("time: this run only, not its teacher's")
        params = metrics.get("model", {}).get("parameters")
        rows.append({
            "run": run.name,
            "change": "; ".join(changes) or "none (repeat)",
            "parameters": params,
            "val_accuracy": metrics["val"]["accuracy"],
            "val_macro_f1": metrics["val"].get("macro_f1"),
            "test_accuracy": metrics.get("test", {}).get("accuracy"),
            "ferplus_val_accuracy": metrics.get("ferplus", {}).get("val", {}).get("accuracy"),
            "ferplus_test_accuracy": metrics.get("ferplus", {}).get("test", {}).get("accuracy"),
            "epochs": training.get("epochs_run"),
            "hours": (training.get("total_epoch_seconds") or 0) / 3600,
            "images_per_second": training.get("images_per_second"),
            "hardware": training.get("hardware", "unknown"),
        })
    if runs:
        last = rows[-1]
        for mode, result in runs[-1].metrics.get("tta", {}).items():
            rows.append({**last, "run": f"{last['run']} + TTA", "change": f"test-time augmentation: none -> {mode}",
                         "val_accuracy": result["val_accuracy"], "val_macro_f1": result.get("val_macro_f1"),
                         "test_accuracy": result["test_accuracy"],
                         "ferplus_val_accuracy": result.get("ferplus_val_accuracy"),
                         "ferplus_test_accuracy": result.get("ferplus_test_accuracy")})
    return rows


def render(rows: list[dict], curve_rows: list[dict] | None = None) -> str:
    def pct(value) -> str:
        return f"{100 * value:.2f} %" if value is not None else "n/a"

    lines = [
        "# Ablation",
        "",
        "Written by `python -m ferlens.training.ablation` from the runs' own artifacts. Each row changes the listed "
        "training settings against the row above. Selection is on PublicTest; PrivateTest is shown for the "
        "record only. FER+: the majority of ten votes a face on the same images (n/a: a run evaluated before "
        "the votes were there).",
        "",
        "| run | change against the row above | parameters | PublicTest accuracy | PublicTest macro-F1 "
        "| PrivateTest accuracy | FER+ PublicTest / PrivateTest | epochs | training time (h) | training images/s | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        params = f"{r['parameters']:,}" if r["parameters"] else "n/a"
        speed = f"{r['images_per_second']:.0f}" if r.get("images_per_second") else "n/a"
        lines.append(
            f"| {r['run']} | {r['change']} | {params} | {pct(r['val_accuracy'])} | {pct(r['val_macro_f1'])} "
            f"| {pct(r['test_accuracy'])} | {pct(r.get('ferplus_val_accuracy'))} / {pct(r.get('ferplus_test_accuracy'))} "
            f"| {r['epochs']} | {r['hours']:.2f} | {speed} | {r['hardware']} |"
        )
    if curve := curve_rows or []:
        lines += [
            "",
            "## The seed paper's CNN against its reported curve",
            "",
            "Validation accuracy by epoch: the paper's own figures (it claims "
            f"{100 * PAPER_CLAIMED_TEST_ACCURACY:.0f} % on test), and the run's PublicTest accuracy from its "
            "history.json, trained with this project's data pipeline and recipe.",
            "",
            "| run | epoch | paper (reported) | this run, PublicTest |",
            "|---|---|---|---|",
        ]
        for r in curve:
            reached = pct(r["run_accuracy"]) if r["run_accuracy"] is not None else "not run"
            lines.append(f"| {r['run']} | {r['epoch']} | {pct(r['paper'])} | {reached} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlens.training.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="model folders, baseline first")
    parser.add_argument("--out", type=Path, help="Markdown file to write (default: print only)")
    args = parser.parse_args(argv)
    try:
        runs = [ModelArtifacts.load(path) for path in args.runs]
        text = render(ablation_rows(runs), paper_curve(runs))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
