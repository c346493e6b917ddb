"""Streamlit building blocks shared by the app's pages (cached model, charts, tables, ICE config).

Pages stay thin: they lay out widgets and call these; nothing here holds FER logic.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas  # noqa: F401  imported eagerly: plotly's lazy import of it raced between sessions' threads
import plotly.graph_objects as go
import streamlit as st

from fer.config import CLASS_NAMES, DEFAULT_MODEL_DIR, EMOTION_COLORS
from fer.recognition import EmotionRecognizer, Face
from fer.report import ModelArtifacts

DEFAULT_STUN = "stun:stun.l.google.com:19302"


@st.cache_resource(show_spinner="Loading the emotion model ...")
def get_recognizer(model_dir: str = str(DEFAULT_MODEL_DIR), backend: str = "auto", **settings) -> EmotionRecognizer:
    """One recognizer per (model, backend, settings) per process, never one per rerun."""
    return EmotionRecognizer(model_dir, backend, **settings)


@st.cache_data(show_spinner=False)
def load_artifacts(model_dir: str, _mtime: float = 0.0) -> ModelArtifacts:
    return ModelArtifacts.load(model_dir)


def artifacts_for(model_dir: Path | str) -> ModelArtifacts:
    """Cached artifacts, refreshed when metrics.json changes on disk."""
    metrics = Path(model_dir) / "metrics.json"
    return load_artifacts(str(model_dir), metrics.stat().st_mtime if metrics.exists() else 0.0)


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


def faces_records(faces: list[Face], image_name: str = "") -> list[dict]:
    """Flat rows (one per face) for tables and CSV/JSON downloads."""
    rows = []
    for i, face in enumerate(faces, 1):
        x, y, w, h = face.box
        row = {"image": image_name, "face": i, "label": face.label, "confidence": round(face.confidence, 4),
               "x": x, "y": y, "width": w, "height": h}
        row.update({name: round(face.probabilities[name], 4) for name in CLASS_NAMES})
        rows.append(row)
    return rows


def records_to_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def records_to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=1)


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def ice_servers() -> list[dict]:
    """STUN by default; TURN from st.secrets["turn"] or FER_TURN_URL/USERNAME/CREDENTIAL.

    FER_ICE_SERVERS=none configures no ICE server at all (local tests, where no STUN server is reachable).
    """
    if os.environ.get("FER_ICE_SERVERS", "").lower() == "none":
        return []
    servers: list[dict] = [{"urls": [DEFAULT_STUN]}]
    turn = {}
    try:
        turn = dict(st.secrets.get("turn", {}))
    except Exception:  # no secrets.toml at all
        turn = {}
    url = turn.get("url") or os.environ.get("FER_TURN_URL")
    if url:
        servers.append({
            "urls": [url],
            "username": turn.get("username") or os.environ.get("FER_TURN_USERNAME", ""),
            "credential": turn.get("credential") or os.environ.get("FER_TURN_CREDENTIAL", ""),
        })
    return servers


def show_headline(art: ModelArtifacts) -> None:
    """The model's headline figures as metric tiles."""
    figures = art.headline()
    cols = st.columns(len(figures))
    for col, (label, value) in zip(cols, figures.items()):
        if value is None:
            col.metric(label, "n/a")
        elif label.endswith("accuracy") or label == "macro-F1":
            col.metric(label, f"{100 * value:.1f} %")
        elif label == "parameters":
            col.metric(label, f"{value / 1e6:.2f} M")
        else:
            col.metric(label, f"{value:.1f}")


@st.cache_data(show_spinner=False)
def example_image() -> np.ndarray:
    """A real face photo that ships with scikit-image (public-domain NASA portrait), as RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())
