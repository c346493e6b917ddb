"""Explanations compared: occlusion sensitivity (ferlens.core.explain) against Grad-CAM on the Keras model.

`python -m benchmarks.explain [--images 200]` writes benchmarks/explain.md with, for each method:
- cost per face (median of repeated calls; Grad-CAM's first call also pays for importing
  TensorFlow and loading the Keras model, which the app would pay on the first "Why?");
- faithfulness by the deletion test: hide the face's pixels most important first (5 % at a time,
  filled with the face's mean grey or with a blurred copy) and follow the probability of the
  predicted label; the lower the area under that curve, the better the map found what the model
  uses. A random order and a centred blob (no model at all) are the floors to beat.

`python -m benchmarks.explain --app [--images 100]` writes benchmarks/explain_app.md: the upload
page's "Why?" on the photo model (ten-crop predictions), the cost per face of cheaper occlusions
(fewer views, coarser squares) and their faithfulness by the same deletion test, always run on the
prediction the page shows (`ferlens.core.explain.APP_OCCLUSION` is chosen from it).

Runs on FER2013 PrivateTest faces (skips with a message when the data is absent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import publish  # noqa: E402
from ferlens.config import CLASS_NAMES, DEFAULT_DATA_DIR, DEFAULT_MODEL_DIR, IMAGE_SIZE, PHOTO_MODEL_DIR  # noqa: E402
from ferlens.core.explain import APP_OCCLUSION, PATCH, STRIDE, Occlusion, explain_faces, occlusion_importance  # noqa: E402
from ferlens.core.recognition import EmotionRecognizer, Face  # noqa: E402
from ferlens.core.tta import PHOTO_TTA  # noqa: E402
from ferlens.machine import cpu_model_name  # noqa: E402
from ferlens.modelfolder.artifacts import MODEL_FILE  # noqa: E402
from ferlens.modelfolder.manifest import read_manifest  # noqa: E402

STEPS = 20  # deletion in 5 % steps
#: The occlusions tried for the upload page, today's (the prediction's own ten views, 8 px every 4 px) first.
APP_CANDIDATES: tuple[Occlusion, ...] = (
    Occlusion(8, 4), Occlusion(8, 4, "flip"), Occlusion(8, 4, "none"), Occlusion(16, 8), Occlusion(12, 6, "flip"),
    Occlusion(16, 8, "flip"),
)
#: A cheaper occlusion qualifies when its mean deletion AUC is at most this much above the full map's
#: on both fills: a fifth of what separates occlusion from Grad-CAM in explain.md (0.055).
APP_TOLERANCE = 0.01
#: Faces in the photo whose explanation is timed (the issue's collage had six).
APP_PHOTO_FACES = 6


def load_keras_model(model_dir: Path):
    """The model folder's Keras model, for Grad-CAM."""
    import keras

    import ferlens.training.architectures  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(model_dir / MODEL_FILE, compile=False)


class GradCam:
    """Grad-CAM (Selvaraju et al. 2017) at the last convolution block, upsampled to the 48x48 input."""

    def __init__(self, model):
        import keras
        import tensorflow as tf

        last_conv = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][-1]
        # The activation after the block's BatchNorm and ReLU, when there is one.
        names = [layer.name for layer in model.layers]
        after = names[names.index(last_conv.name) + 1:]
        target = next((model.get_layer(n) for n in after if "relu" in n), last_conv)
        self.layer_name = target.name
        self._model = keras.Model(model.inputs, [target.output, model.outputs[0]])
        self._tf = tf

        @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32),
                                      tf.TensorSpec([None], tf.int32)])
        def cams(x, labels):
            with tf.GradientTape() as tape:
                features, probabilities = self._model(x, training=False)
                score = tf.gather(probabilities, labels, batch_dims=1)
            grads = tape.gradient(score, features)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))

        self._cams = cams

    def __call__(self, crops: np.ndarray, labels: np.ndarray) -> np.ndarray:
        cams = self._cams(crops[..., None].astype(np.float32), labels.astype(np.int32)).numpy()
        # The network sees the 40x40 centre crop; its map is placed back on the 48x48 input.
        crop = self._model.get_layer("center_crop").output.shape[1] if "center_crop" in \
            [layer.name for layer in self._model.layers] else IMAGE_SIZE
        offset = (IMAGE_SIZE - crop) // 2
        out = np.zeros((len(cams), IMAGE_SIZE, IMAGE_SIZE), np.float32)
        for i, cam in enumerate(cams):
            out[i, offset:offset + crop, offset:offset + crop] = cv2.resize(cam, (crop, crop), interpolation=cv2.INTER_LINEAR)
        return out


def deletion_auc(classify, crop: np.ndarray, label: int, importance: np.ndarray, fill: str, rng) -> float:
    """Mean probability of `label` while the most important pixels are hidden, 5 % more at each step."""
    order = np.argsort(-(importance.ravel() + 1e-9 * rng.random(importance.size)))  # random tie-break
    background = np.full_like(crop, round(float(crop.mean()))) if fill == "mean" else cv2.GaussianBlur(crop, (0, 0), 4)
    batch = np.repeat(crop[None], STEPS + 1, axis=0).reshape(STEPS + 1, -1)
    for step in range(1, STEPS + 1):
        hidden = order[: round(step / STEPS * crop.size)]
        batch[step, hidden] = background.ravel()[hidden]
    probabilities = classify(batch.reshape(-1, IMAGE_SIZE, IMAGE_SIZE))[:, label]
    return float(np.trapezoid(probabilities, dx=1 / STEPS))


def resident_mb() -> float:
    """This process's resident memory (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time (all threads) of `fn`, in ms."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def describe(occlusion: Occlusion) -> str:
    return f"{occlusion.patch} px every {occlusion.stride} px, {occlusion.views or PHOTO_TTA} views"


def photo_of(crops: np.ndarray) -> tuple[np.ndarray, list[Face]]:
    """The crops side by side as one RGB photo, each a face whose box is its tile (no detection)."""
    photo = np.repeat(np.hstack(list(crops))[..., None], 3, axis=2)
    faces = [Face(box=(i * IMAGE_SIZE, 0, IMAGE_SIZE, IMAGE_SIZE), probabilities={n: 1 / 7 for n in CLASS_NAMES})
             for i in range(len(crops))]
    return photo, faces


def app_report(args, crops: np.ndarray, load: float) -> tuple[list[str], dict]:
    """The upload page's explanation on the photo model: cost and faithfulness of each candidate, and
    the app's own cost per face (for the page's help text)."""
    recognizer = EmotionRecognizer(args.model, tta=PHOTO_TTA)
    served = recognizer.classify  # the prediction the page shows: ten-crop
    photo, faces = photo_of(crops[:APP_PHOTO_FACES])
    costs = {}
    for occlusion in APP_CANDIDATES:
        one = timed(lambda o=occlusion: explain_faces(recognizer, photo[:, :IMAGE_SIZE], faces[:1], occlusion=o), 3)
        six = timed(lambda o=occlusion: explain_faces(recognizer, photo, faces, occlusion=o), 3)
        costs[occlusion] = (one, tuple(v / len(faces) for v in six))
        print(describe(occlusion), costs[occlusion], flush=True)

    rng = np.random.default_rng(1)
    labels = served(crops).argmax(axis=1)
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    centre = np.exp(-((yy - 23.5) ** 2 + (xx - 23.5) ** 2) / (2 * 10.0 ** 2))
    aucs: dict[str, dict[str, list[float]]] = {}
    for i, crop in enumerate(crops):
        rankings = {describe(o): o.importance(recognizer.classify(o.copies(crop), o.views)[:, labels[i]])[0]
                    for o in APP_CANDIDATES}
        rankings |= {"centred blob (no model)": centre, "random order": rng.random((IMAGE_SIZE, IMAGE_SIZE))}
        for name, ranking in rankings.items():
            for fill in ("mean", "blur"):
                aucs.setdefault(name, {}).setdefault(fill, []).append(
                    deletion_auc(served, crop, labels[i], ranking, fill, rng))
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(crops)} faces", flush=True)

    full = aucs[describe(APP_CANDIDATES[0])]

    def versus_full(name: str, fill: str) -> str:
        diff = np.subtract(aucs[name][fill], full[fill])
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
        return f"{diff.mean():+.3f} ± {half:.3f}"

    def within(occlusion: Occlusion) -> bool:
        name = describe(occlusion)
        return all(np.mean(aucs[name][fill]) - np.mean(full[fill]) <= APP_TOLERANCE for fill in ("mean", "blur"))

    chosen = min((o for o in APP_CANDIDATES if within(o)), key=lambda o: o.inferences(PHOTO_TTA))
    in_use = APP_OCCLUSION.get(PHOTO_TTA, Occlusion())
    rows = []
    for occlusion in APP_CANDIDATES:
        name = describe(occlusion)
        (one_wall, _), (wall, cpu) = costs[occlusion]
        mark = " (**chosen**)" if occlusion == chosen else ""
        mark += " (the app today)" if occlusion == in_use and occlusion != chosen else ""
        rows.append(f"| {name}{mark} | {occlusion.inferences(PHOTO_TTA)} | "
                    f"{one_wall:.0f} | {wall:.0f} | {cpu:.0f} | {np.mean(aucs[name]['mean']):.3f} | "
                    f"{versus_full(name, 'mean')} | {np.mean(aucs[name]['blur']):.3f} | {versus_full(name, 'blur')} |")
    floors = [f"| {name} | | | | | {np.mean(aucs[name]['mean']):.3f} | | {np.mean(aucs[name]['blur']):.3f} | |"
              for name in ("centred blob (no model)", "random order")]
    served_file = recognizer.backend.path.name  # the help text shows these figures for this very file only
    summary = {
        "model": args.model.name, "model_file": served_file, "sha256": (read_manifest(args.model) or {}).get(served_file),
        "tta": PHOTO_TTA, "occlusion": asdict(chosen) | {"views": chosen.views or PHOTO_TTA}, "faces": APP_PHOTO_FACES,
        "wall_s_per_face": costs[chosen][1][0] / 1000, "cpu_s_per_face": costs[chosen][1][1] / 1000,
        "cores": os.cpu_count(), "cpu": cpu_name(), "note": args.note,
        "candidates": [asdict(o) | {"inferences": o.inferences(PHOTO_TTA), "wall_ms_one_face": costs[o][0][0],
                                    "wall_ms_a_face": costs[o][1][0], "cpu_ms_a_face": costs[o][1][1],
                                    "auc_mean": float(np.mean(aucs[describe(o)]["mean"])),
                                    "auc_blur": float(np.mean(aucs[describe(o)]["blur"]))} for o in APP_CANDIDATES],
    }
    return [
        "# Explanations on the upload page: the photo model",
        "",
        f"Model `{args.model.name}` with {PHOTO_TTA} test-time augmentation, as the upload page predicts; "
        f"{len(crops)} FER2013 PrivateTest faces; {cpu_name()}, {os.cpu_count()} cores, load average {load:.1f} "
        f"when the run started{args.note}. Generated by `python -m benchmarks.explain --app`.",
        "",
        "Each row is one way of making the map: the hidden square's side and step on the 48x48 face, and the "
        "views each occluded copy is classified with. Cost: `ferlens.core.explain.explain_faces` on one face, and on a "
        f"photo of {APP_PHOTO_FACES} faces (all faces' copies share the model calls), median of 3. Faithfulness: "
        "the deletion test of explain.md (lower is better), always on the prediction the page shows "
        f"({PHOTO_TTA}); the difference to the first row is per face, with a 95 % interval.",
        "",
        "| occlusion | model runs a face | wall ms, 1 face | wall ms a face, "
        f"{APP_PHOTO_FACES} faces | CPU ms a face, {APP_PHOTO_FACES} faces | AUC, mean fill | vs first | "
        "AUC, blur fill | vs first |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows, *floors,
        "",
        f"Chosen: the fewest model runs among the occlusions whose mean AUC is within {APP_TOLERANCE} of the first "
        "row's on both fills; the upload page uses it (`ferlens.core.explain.APP_OCCLUSION`, which a test holds to "
        "`explain_app.json`). Wall times depend on the machine's load; CPU times (all threads) much less.",
        "",
    ], summary


def cpu_name() -> str:
    """The CPU's model name, else the platform's word for it."""
    return cpu_model_name() or platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None,
                        help="PrivateTest faces in the deletion test (default 200; 80 with --app)")
    parser.add_argument("--app", action="store_true", help="the upload page's explanation on the photo model")
    parser.add_argument("--model", type=Path, default=None, help="default: the live model (--app: the photo model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--note", default="", help="added to the set-up line, e.g. ', a training run beside it'")
    args = parser.parse_args(argv)
    args.model = args.model or (PHOTO_MODEL_DIR if args.app else DEFAULT_MODEL_DIR)
    args.out = args.out or ROOT / "benchmarks" / ("explain_app.md" if args.app else "explain.md")
    if not (args.data / "test").is_dir():
        print(f"FER2013 not found at {args.data}; nothing measured", file=sys.stderr)
        return 1
    from ferlens.training.data import load_dataset

    load = os.getloadavg()[0]
    test = load_dataset(args.data).test
    rng = np.random.default_rng(0)
    pick = rng.choice(len(test), size=min(args.images or (80 if args.app else 200), len(test)), replace=False)
    crops = test.images[pick]
    if args.app:
        lines, summary = app_report(args, crops, load)
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")  # read by the upload page
        return publish(lines, args.out)

    recognizer = EmotionRecognizer(args.model)  # the fast backend ("auto"), as the app serves it
    rows, costs = {}, {}
    for tta in ("none", "flip", "ten-crop"):
        classify = recognizer.with_settings(tta=tta).classify
        costs[f"occlusion ({recognizer.backend_name}, {tta})"] = timed(
            lambda classify=classify: occlusion_importance(classify, crops[0], 3), 7)

    assert "tensorflow" not in sys.modules, "occlusion must not need TensorFlow"
    rss_before, started = resident_mb(), time.perf_counter()
    model = load_keras_model(args.model)
    grad_cam = GradCam(model)
    grad_cam(crops[:1], np.array([3]))
    first_call, tf_mb = time.perf_counter() - started, resident_mb() - rss_before
    costs[f"Grad-CAM (Keras, layer {grad_cam.layer_name})"] = timed(lambda: grad_cam(crops[:1], np.array([3])), 7)

    classify = recognizer.with_settings(tta="none").classify  # what is explained: the single-crop model
    labels = classify(crops).argmax(axis=1)
    cams = grad_cam(crops, labels)
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    centre = np.exp(-((yy - 23.5) ** 2 + (xx - 23.5) ** 2) / (2 * 10.0 ** 2))
    methods = {
        "occlusion": lambda i: occlusion_importance(classify, crops[i], labels[i])[0],
        "Grad-CAM": lambda i: cams[i],
        "centred blob (no model)": lambda i: centre,
        "random order": lambda i: rng.random((IMAGE_SIZE, IMAGE_SIZE)),
    }
    for name, explain in methods.items():
        rows[name] = {fill: float(np.mean([deletion_auc(classify, crops[i], labels[i], explain(i), fill, rng)
                                           for i in range(len(crops))])) for fill in ("mean", "blur")}

    lines = [
        "# Explanations: cost and faithfulness",
        "",
        f"Model `{args.model.name}`, {len(crops)} FER2013 PrivateTest faces, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} when the run started, run under `nice -n 19`. "
        "Generated by `python -m benchmarks.explain`.",
        "",
        "## Cost per face",
        "",
        "| method | wall ms per face (median) | CPU ms per face (median) |",
        "|---|---|---|",
        *[f"| {name} | {wall:.1f} | {cpu:.1f} |" for name, (wall, cpu) in costs.items()],
        "",
        f"Occlusion: a {PATCH} px square every {STRIDE} px, {((IMAGE_SIZE - PATCH) // STRIDE + 1) ** 2} occluded copies in "
        f"one batch. Grad-CAM's first explanation also imports TensorFlow and loads the Keras model: {first_call:.1f} s "
        f"here, and the process's resident memory grows by {tf_mb:.0f} MB. Wall times depend on the machine's "
        "load at the moment; CPU times (all threads) much less.",
        "",
        "## Faithfulness: deletion test (lower is better)",
        "",
        "Area under the predicted label's probability while the pixels the map ranks highest are hidden first, "
        "5 % of the face at a time, filled with the face's mean grey or with a blurred copy of the face.",
        "",
        "| ranking | AUC, mean fill | AUC, blur fill |",
        "|---|---|---|",
        *[f"| {name} | {r['mean']:.3f} | {r['blur']:.3f} |" for name, r in rows.items()],
        "",
    ]
    return publish(lines, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
