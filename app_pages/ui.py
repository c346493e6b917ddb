"""Streamlit building blocks shared by the app's pages (cached model, charts, tiles, ICE config).

Pages stay thin: they lay out widgets and call these and `ferlens`; the FER logic (the photo pipeline,
live sessions, result files) lives in the library, so the CLI and the tests run the same code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas  # noqa: F401  imported eagerly: plotly's lazy import of it raced between sessions' threads
import plotly.graph_objects as go
import streamlit as st

import ferlens.config
from ferlens.config import CLASS_NAMES, EMOTION_COLORS
from ferlens.core.drawing import contrast_ratio
from ferlens.core.images import IMAGE_SUFFIXES, MAX_FILE_BYTES
from ferlens.core.photos import analyse_photo
from ferlens.core.recognition import EmotionRecognizer, Face
from ferlens.core.tta import PHOTO_TTA
from ferlens.modelfolder.artifacts import IN_THE_WILD_FIGURES, METRICS_FILE, MODEL_FILE, ModelArtifacts
from ferlens.modelfolder.loading import FORMAT_NAMES, LIVE_BACKEND, PHOTO_BACKEND, expected_format
from ferlens.modelfolder.manifest import read_manifest


@dataclass(frozen=True)
class PageSpec:
    """One page of the app: its script, its name in the sidebar and on the home page, its URL."""

    script: str
    title: str
    icon: str
    url_path: str | None = None  # None: the default page, served at the root


#: The app's pages in the order a visitor meets them: the sidebar and the home page's links.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("app_pages/0_Home.py", "Home", ":material/home:"),
    PageSpec("app_pages/1_Upload.py", "Upload photos", ":material/upload:", "Upload"),
    PageSpec("app_pages/2_Live_camera.py", "Live camera", ":material/videocam:", "Live_camera"),
    PageSpec("app_pages/4_Video.py", "Video file", ":material/movie:", "Video"),
    PageSpec("app_pages/3_Model_report.py", "Model report", ":material/monitoring:", "Model_report"),
)

#: What the upload page's file picker and camera accept: what the decoder reads.
PHOTO_TYPES: tuple[str, ...] = tuple(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)
PHOTO_TYPES_TEXT = "JPG, PNG, WebP or BMP"


def get_recognizer(model_dir: Path | str | None = None, backend: str = PHOTO_BACKEND) -> EmotionRecognizer:
    """The recognizer for a model folder (default: `ferlens.config.DEFAULT_MODEL_DIR`), loaded once per process."""
    return _load_recognizer(str(model_dir or ferlens.config.DEFAULT_MODEL_DIR), backend)


@st.cache_resource(show_spinner="Loading the emotion model ...")
def _load_recognizer(model_dir: str, backend: str) -> EmotionRecognizer:
    return EmotionRecognizer(model_dir, backend)


def recognizer_or_stop(model_dir: Path | str | None = None, backend: str = PHOTO_BACKEND) -> EmotionRecognizer:
    """The recognizer for `model_dir` (default: the real-time model) with its load warnings shown; if it
    cannot load, one error line and the page stops (the home page says more)."""
    try:
        recognizer = get_recognizer(model_dir, backend)
    except Exception as exc:
        st.error(escape_markdown(f"The emotion model could not be loaded: {exc}") + " See the home page for details.")
        st.stop()
    show_model_warnings(recognizer)
    return recognizer


def show_model_warnings(recognizer: EmotionRecognizer) -> None:
    """What the library reported while loading the model (a file that failed its check and the format
    used instead, or a folder without checksums), as visible warnings."""
    for message in getattr(recognizer, "load_warnings", []):
        st.warning(escape_markdown(message))


@st.cache_data(show_spinner=False, max_entries=16)
def load_artifacts(model_dir: str, _mtime: float = 0.0) -> ModelArtifacts:
    return ModelArtifacts.load(model_dir)


def artifacts_for(model_dir: Path | str) -> ModelArtifacts:
    """Cached artifacts, refreshed when metrics.json changes on disk."""
    metrics = Path(model_dir) / METRICS_FILE
    return load_artifacts(str(model_dir), metrics.stat().st_mtime if metrics.exists() else 0.0)


def escape_markdown(text: str) -> str:
    """`text` shown literally where Streamlit renders Markdown (file names, messages): every Markdown,
    emoji-shortcode (`:smile:`), colour (`:red[...]`) and LaTeX (`$`) character is backslash-escaped."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&])", r"\\\1", text)


def emotion_hex(name: str) -> str:
    r, g, b = EMOTION_COLORS[name]
    return f"#{r:02x}{g:02x}{b:02x}"


def probability_chart(face: Face, title: str = "") -> go.Figure:
    """Horizontal bar chart of the 7 probabilities, in the emotions' colours."""
    names = list(CLASS_NAMES)
    fig = go.Figure(go.Bar(
        x=[face.probabilities[n] for n in names], y=names, orientation="h",
        marker_color=[emotion_hex(n) for n in names],
        text=[f"{face.probabilities[n]:.0%}" for n in names], textposition="auto",
    ))
    fig.update_layout(title=title or None, xaxis=dict(range=[0, 1], tickformat=".0%"),
                      yaxis=dict(autorange="reversed"), height=260, margin=dict(l=10, r=10, t=30 if title else 10, b=10))
    return fig


# ---------------------------------------------------------------- upload page


def upload_limit_mb() -> int:
    """The photo pages' per-file limit, to say it in words: what the decoder reads
    (`ferlens.core.images.MAX_FILE_BYTES`), within the server's cap for any upload (.streamlit/config.toml,
    raised for the video page)."""
    return min(int(st.get_option("server.maxUploadSize")), MAX_FILE_BYTES // 2**20)


@st.cache_data(show_spinner=False)
def example_image() -> np.ndarray:
    """A real face photo that ships with scikit-image (public-domain NASA portrait), as RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@st.cache_data(show_spinner=False, max_entries=1)
def annotated_example(model_dir: str) -> np.ndarray | None:
    """The example photo annotated by the model in `model_dir` (the home page's picture), with the upload
    page's default test-time augmentation, so that both pages give the example the same figures."""
    result = analyse_photo(get_recognizer(model_dir).with_settings(tta=PHOTO_TTA), "example", example_image())
    return result.annotated


#: The upload page's results table: percentages as a person reads them, narrow enough that every
#: emotion fits at 1400 px without scrolling sideways (`ferlens.core.results.table_records` makes the rows).
RESULTS_TABLE_COLUMNS = {
    "face": st.column_config.NumberColumn("#", width=40),
    "label": st.column_config.TextColumn("emotion", width=75),
    # One decimal: whole percents here would round 92.5 up where the tags and charts show 92 %.
    **{name: st.column_config.NumberColumn(name, format="%.1f%%", width=70) for name in ("confidence", *CLASS_NAMES)},
    "detection score": st.column_config.NumberColumn("detection", format="%.0f%%", width=70,
                                                     help="How sure the face detector is that this is a face"),
    "box (x, y, w, h)": st.column_config.TextColumn(width=120, help="In the photo's pixels, clipped to the photo"),
}

#: What `python -m benchmarks.explain --app` measured for the upload page's "Why?".
EXPLAIN_BENCHMARK = ferlens.config.PROJECT_ROOT / "benchmarks" / "explain_app.json"


def explain_help(recognizer: EmotionRecognizer) -> str:
    """The "Why?" switch's help: what it does, and what the benchmark measured for this model, if it was."""
    text = ("Hides each part of the face in turn and measures how much the emotion's probability drops "
            "(occlusion sensitivity).")
    try:
        measured = json.loads(EXPLAIN_BENCHMARK.read_text())
        served = recognizer.backend.path
        if (measured["sha256"] is None or measured["tta"] != recognizer.tta or measured["model_file"] != served.name
                or measured["sha256"] != (read_manifest(served.parent) or {}).get(served.name)):
            return text  # measured on another model, or on this one with another augmentation
        return text + (f" For this model, `benchmarks/explain.py` measured {measured['wall_s_per_face']:.1f} s a face "
                       f"({measured['cpu_s_per_face']:.1f} s of CPU) on a photo of {measured['faces']} faces, on a "
                       f"{measured['cores']}-core {escape_markdown(measured['cpu'])}{escape_markdown(measured['note'])}; "
                       "a busy server takes longer.")
    except (OSError, ValueError, KeyError, TypeError):
        return text


def show_explanations(recognizer: EmotionRecognizer, image: np.ndarray, faces: Sequence[Face], key: str,
                      per_row: int = 4) -> None:
    """An occlusion map per face, in a grid: a progress bar in each face's place while it is computed
    (all faces share the model calls), then the map. Kept in the session, so that a rerun of the page
    (another switch, another photo) does not compute them again."""
    from ferlens.core.explain import explain_faces

    kept = st.session_state.setdefault("explanations", {})
    identity = (key, str(recognizer.model_dir), recognizer.tta, tuple((f.box, f.label) for f in faces))
    columns = st.columns(per_row)
    slots = [columns[i % per_row].empty() for i in range(len(faces))]
    if kept.get(key, (None,))[0] != identity:
        bars = [slot.progress(0.0, text=f"#{n}: hiding each part in turn") for n, slot in enumerate(slots, 1)]
        explanations = explain_faces(recognizer, image, faces,
                                     progress=lambda i, done: bars[i].progress(done, text=f"#{i + 1}: {done:.0%}"))
        kept[key] = (identity, explanations)
    for number, (slot, face, explanation) in enumerate(zip(slots, faces, kept[key][1]), 1):
        drop = 100 * explanation.largest_drop
        slot.image(explanation.overlay(), width="stretch", caption=(
            f"#{number} {face.label}: hiding the hottest part lowers it by {drop:.1f} points"
            + (" (no single part decides it)" if drop < 5 else "")))


# ---------------------------------------------------------------- live page

def timeline_chart(times: np.ndarray, probabilities: np.ndarray, title: str, x_title: str = "seconds") -> go.Figure:
    """The 7 probabilities of one face over time, in the emotions' colours."""
    fig = go.Figure()
    for i, name in enumerate(CLASS_NAMES):
        fig.add_trace(go.Scatter(x=times.tolist(), y=probabilities[:, i].tolist(), name=name, mode="lines",
                                 line=dict(color=emotion_hex(name))))
    fig.update_layout(title=title, yaxis=dict(range=[0, 1], tickformat=".0%"), xaxis_title=x_title,
                      height=280, margin=dict(l=10, r=10, t=40, b=10), legend=dict(font=dict(size=10)))
    return fig



#: What `python -m benchmarks.detectors` measured, for the live page's detector choice.
DETECTOR_BENCHMARK = ferlens.config.PROJECT_ROOT / "benchmarks" / "detectors.json"


@st.cache_data(show_spinner=False, max_entries=1)
def measured_live_fps(_mtime: float = 0.0) -> dict[str, float]:
    """Live-pipeline frames a second per detector, as the benchmark measured them (empty when it has
    not been run, or its file is unreadable)."""
    try:
        measured = json.loads(DETECTOR_BENCHMARK.read_text())["speed"]["live_fps"]
        return {name: float(row["fps"]) for name, row in measured.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def live_detector_label(name: str) -> str:
    """A live detector's name with its measured frames a second, for the live page's choice."""
    fps = measured_live_fps(DETECTOR_BENCHMARK.stat().st_mtime if DETECTOR_BENCHMARK.exists() else 0.0).get(name)
    return f"{name} ({fps:.0f} FPS measured)" if fps else name


def ice_servers() -> list[dict] | None:
    """ICE servers for WebRTC; None lets streamlit-webrtc choose (see the README).

    - `[turn]` in st.secrets, or FER_TURN_URL / FER_TURN_USERNAME / FER_TURN_CREDENTIAL: Google's
      STUN server plus that TURN server.
    - Otherwise None: streamlit-webrtc then uses Cloudflare's or Twilio's TURN service when their
      credentials are in the environment (CLOUDFLARE_TURN_KEY_ID and CLOUDFLARE_TURN_KEY_API_TOKEN,
      or TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN), else Google's STUN server.
    - FER_ICE_SERVERS=none: no ICE server at all (local tests, where no STUN server is reachable).
    """
    if os.environ.get("FER_ICE_SERVERS", "").lower() == "none":
        return []
    try:
        turn = dict(st.secrets.get("turn", {}))
    except Exception:  # no secrets.toml at all
        turn = {}
    url = turn.get("url") or os.environ.get("FER_TURN_URL")
    if not url:
        return None
    return [
        {"urls": ["stun:stun.l.google.com:19302"]},
        {"urls": [url], "username": turn.get("username") or os.environ.get("FER_TURN_USERNAME", ""),
         "credential": turn.get("credential") or os.environ.get("FER_TURN_CREDENTIAL", "")},
    ]


# ---------------------------------------------------------------- home and report pages


@dataclass(frozen=True)
class ReportChoice:
    """A model folder in the report page's picker: where it is, and what it is to the app."""

    path: Path
    role: str  # "photos", "live", "both" (photos and live), "member", "other", "record"

    @property
    def label(self) -> str:
        name = self.path.name
        return {"photos": f"{name}: reads photos (upload page)", "live": f"{name}: live camera and video files",
                "both": f"{name}: the model of every page", "member": f"{name}: one of the photo model's nets",
                "record": f"{name} (record only)"}.get(self.role, name)


def report_choices(model_dirs: Sequence[Path], photo_dir: Path, live_dir: Path) -> list[ReportChoice]:
    """The report page's models in the order a visitor wants them: those the app serves (photos, then
    live, even from outside `models/`), the photo model's ensemble members, other folders with weights,
    then trials kept for their record only (no weights)."""
    members = set(ModelArtifacts.load(photo_dir).config.get("ensemble", {}).get("members", [])) \
        if photo_dir.is_dir() else set()

    def role(path: Path) -> str:
        if path.resolve() == photo_dir.resolve():
            return "both" if photo_dir.resolve() == live_dir.resolve() else "photos"
        if path.resolve() == live_dir.resolve():
            return "live"
        if not (path / MODEL_FILE).exists():
            return "record"
        return "member" if path.name in members else "other"

    order = ("both", "photos", "live", "member", "other", "record")
    known, served = {p.resolve() for p in model_dirs}, []
    for path in (photo_dir, live_dir):
        if path.is_dir() and path.resolve() not in known:
            known.add(path.resolve())
            served.append(path)
    choices = [ReportChoice(path, role(path)) for path in [*served, *model_dirs]]  # served: wherever they live
    return sorted(choices, key=lambda c: (order.index(c.role), c.path.name))


def member_dirs(art: ModelArtifacts) -> list[Path]:
    """The folders of an ensemble's members that are present beside it (empty for a single net)."""
    members = art.config.get("ensemble", {}).get("members", [])
    return [art.path.parent / name for name in members if (art.path.parent / name).is_dir()]


def training_curves(runs: dict[str, tuple[dict, list[tuple[int, str]]]], val_label: str) -> tuple[go.Figure, go.Figure]:
    """Accuracy and loss per epoch of one model, or of several overlaid (an ensemble's members, one colour
    each: validation solid, training dotted, one legend entry per member). `runs` maps a name to
    `ModelArtifacts.full_history()`."""
    figures = []
    alone = len(runs) == 1
    palette = member_colors()
    for metric, title in (("accuracy", "Accuracy"), ("loss", "Loss")):
        fig = go.Figure()
        last = 0
        for i, (name, (history, run_starts)) in enumerate(runs.items()):
            epochs = history.get("epoch", [])
            if not epochs:
                continue
            last = max(last, epochs[-1])
            if alone:
                fig.add_trace(go.Scatter(x=epochs, y=history.get(metric, []), name="train (augmented)",
                                         mode="lines+markers"))
                fig.add_trace(go.Scatter(x=epochs, y=history.get(f"val_{metric}", []), name=val_label,
                                         mode="lines+markers"))
                for epoch, run_name in run_starts[1:]:
                    fig.add_vline(x=epoch - 0.5, line_dash="dot", line_color="grey",
                                  annotation_text=f"warm restart: {run_name}", annotation_position="top left")
                continue
            color = palette[i % len(palette)]
            fig.add_trace(go.Scatter(x=epochs, y=history.get(metric, []), name=f"{name}: train", mode="lines",
                                     legendgroup=name, showlegend=False, line=dict(color=color, dash="dot")))
            fig.add_trace(go.Scatter(x=epochs, y=history.get(f"val_{metric}", []), name=f"{name}: {val_label}",
                                     mode="lines", legendgroup=name, line=dict(color=color)))
        # A fixed range: Plotly otherwise widens the axis to fit the restart labels' text.
        fig.update_layout(title=title, xaxis_title="epoch", height=350 if alone else 440,
                          margin=dict(l=10, r=10, t=40, b=10), xaxis=dict(range=[0, last + 1]),
                          yaxis=dict(tickformat=".0%") if metric == "accuracy" else {},
                          legend={} if alone else dict(orientation="h", yanchor="top", y=-0.22, font=dict(size=11)))
        figures.append(fig)
    return figures[0], figures[1]


def member_colors() -> list[str]:
    """Colours for lines that are not emotions (ensemble members): Plotly's colour-blind-safe set, less
    those with under 3:1 contrast on the white page."""
    import plotly.colors

    rgbs = [tuple(int(v) for v in c[4:-1].split(",")) for c in plotly.colors.qualitative.Safe]  # "rgb(r, g, b)"
    return [f"rgb{rgb}" for rgb in rgbs if contrast_ratio(rgb, (255, 255, 255)) >= 3]


def shipped_formats(art: ModelArtifacts) -> dict[str, dict]:
    """The exported formats of `metrics.json` whose file is in the folder (members and trials ship fewer)."""
    return {name: f for name, f in art.metrics.get("formats", {}).items()
            if isinstance(f, dict) and f.get("file") and (art.path / f["file"]).exists()}


def colour_legend() -> str:
    """The emotions' colours as HTML: a swatch in each colour, the name in the page's own text colour."""
    return " ".join(f'<span style="color:{emotion_hex(n)}">&#9632;</span>&nbsp;{n}' for n in CLASS_NAMES)


def _tiles(figures: Sequence[tuple[str, str]], per_row: int) -> None:
    """Metric tiles, at most `per_row` side by side so that values are never cut short."""
    for start in range(0, len(figures), per_row):
        cols = st.columns(per_row)
        for col, (label, value) in zip(cols, figures[start:start + per_row]):
            col.metric(label, value)


def show_headline(art: ModelArtifacts, only: Sequence[str] | None = None, per_row: int = 5) -> None:
    """The model's headline figures (`only` these, if given) as metric tiles; "n/a" where the artifacts lack one."""

    def shown(label: str, value) -> str:
        if value is None:
            return "n/a"
        if label.endswith("accuracy") or label == "macro-F1":
            return f"{100 * value:.1f} %"
        return f"{value / 1e6:.2f} M" if label == "parameters" else f"{value:.1f}"

    _tiles([(label, shown(label, value)) for label, value in art.headline().items() if only is None or label in only],
           per_row)


NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def model_in_words(art: ModelArtifacts) -> str:
    """What the photo model is, for a newcomer: no detector names or tile sizes, the figures from its artifacts."""
    members = art.config.get("ensemble", {}).get("members") or []
    nets = (f"{NUMBER_WORDS.get(len(members), len(members))} small neural networks, whose answers are averaged,"
            if members else "a small neural network")
    train = art.metrics.get("dataset")
    for key in ("splits", "train", "per_class"):  # a damaged file may hold anything at any level
        train = train.get(key) if isinstance(train, dict) else None
    count = sum(v for v in train.values() if isinstance(v, int)) if isinstance(train, dict) else 0
    photos = f"{count:,} labelled face photos" if count else "labelled face photos"
    tuned = art.splits["test"] != "PrivateTest"
    learned = art.metrics.get("labels")
    votes = isinstance(learned, str) and "FER+" in learned  # also taught by ten people's votes a face
    source = (f"FER2013's {photos} and then a folder of labelled photos." if tuned else
              f"{photos} (the FER2013 dataset): small, grey, mostly front-on faces"
              + (", each named by ten people's votes (FER+) as well as by FER2013's one annotator." if votes else "."))
    return f"A face detector finds each face; then {nets} name its expression. They learnt it from {source}"


def show_live_model(model_dir: Path | str) -> None:
    """One line on the real-time model that the live camera and video pages use, when photos use another."""
    try:
        live = artifacts_for(model_dir)
    except FileNotFoundError:
        st.caption(escape_markdown(f"The live camera and video pages' model folder {model_dir} does not exist."))
        return
    served = expected_format(live.path, LIVE_BACKEND)
    measured, test = live.metrics.get("formats", {}).get(served, {}), live.metrics.get("test", {})
    if "test_accuracy" in measured:  # the format those pages run (INT8 where it is faster), not the Keras original
        accuracy = (f"{100 * measured['test_accuracy']:.1f} % {live.splits['test']} accuracy in "
                    f"{FORMAT_NAMES.get(served, served)}, the form those pages run")
    elif "accuracy" in test:
        accuracy = f"{100 * test['accuracy']:.1f} % {live.splits['test']} accuracy"
    else:
        accuracy = "not evaluated"
    st.caption(escape_markdown(f"The live camera and video pages use {live.name} ({accuracy}), a single CNN fast "
                               "enough for every frame; photos get the more accurate model above."))


def show_missing_figures(art: ModelArtifacts) -> None:
    """Say which figures are missing and why, with the command that recomputes them."""
    missing = art.missing_figures()
    if not (art.problems or missing):
        return
    why = "; ".join(art.problems) or "metrics.json does not record them"
    what = ", ".join(missing) if missing else "none of the headline figures"
    st.warning(escape_markdown(f"Figures missing for {art.name}: {what} ({why}).")
               + f" Recompute them with `python -m ferlens.training.evaluate {escape_markdown(str(art.path))}`.")


def show_in_the_wild(art: ModelArtifacts, per_row: int = 4) -> None:
    """Accuracy on in-the-wild photos (ExpW) beside FER2013's, or a line saying it is not measured yet."""
    wild = art.in_the_wild
    if not wild:
        reason = art.in_the_wild_skipped or "`metrics.json` has no `in_the_wild` section"
        st.caption("In-the-wild figures (ExpW photos, found and classified end to end): not recorded for this "
                   f"model yet; {escape_markdown(reason)}.")
        return
    names = {"accuracy_all": "accuracy, all faces", "found_rate": "faces found", "accuracy_found": "accuracy, found faces",
             "macro_f1": "macro-F1, all faces"}
    _tiles([(names[key], f"{100 * wild[key]:.1f} %") for key in IN_THE_WILD_FIGURES
            if isinstance(wild.get(key), (int, float))], per_row)
    st.caption(f"On {wild.get('faces', 'n/a')} labelled faces of in-the-wild photos (ExpW): the photo goes through "
               "face detection and the model, as an upload does. \"Accuracy, all faces\" counts a face the "
               "detector missed as wrong.")
