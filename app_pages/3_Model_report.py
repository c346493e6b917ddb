"""Model report page: training curves, confusion matrix, per-class scores and the model card.

Everything shown is read from the artifacts that `fer.train` and `fer.evaluate` wrote.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app_pages.ui import artifacts_for, emotion_hex, escape_markdown, show_headline, show_in_the_wild, show_missing_figures
from fer.artifacts import CARD_FILE, MODEL_FILE, list_model_dirs
from fer.config import CLASS_NAMES, PHOTO_MODEL_DIR
from fer.report import render_model_card

st.title("Model report")

# This page only reads artifacts, so it lists trial runs kept without their weights too; no page that
# loads a model is offered them (list_model_dirs' default).
model_dirs = list_model_dirs(weights=False)
if not model_dirs:
    st.error("No trained model folder found under models/.")
    st.stop()
names = [p.name for p in model_dirs]
record_only = {p.name for p in model_dirs if not (p / MODEL_FILE).exists()}
default = names.index(PHOTO_MODEL_DIR.name) if PHOTO_MODEL_DIR.name in names else 0
chosen = (st.selectbox("Model", names, index=default, format_func=lambda n: f"{n} (record only)" if n in record_only else n)
          if len(names) > 1 else names[0])
art = artifacts_for(model_dirs[names.index(chosen)])
if chosen in record_only:
    st.info(escape_markdown(f"{chosen} is a trial run kept for its record: its training curves, figures and model "
                            "card are here, its weights are not shipped, so no page can load it."))
split = art.splits  # FER2013's split names, or a fine-tuned model's own folder parts
val_label = "validation" if split["val"] == "validation" else f"validation ({split['val']})"
show_headline(art)
show_missing_figures(art)

st.header("Training curves")
history, run_starts = art.full_history()
if history.get("epoch"):
    cols = st.columns(2)
    for col, metric, title in ((cols[0], "accuracy", "Accuracy"), (cols[1], "loss", "Loss")):
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=history["epoch"], y=history.get(metric, []), name="train (augmented)", mode="lines+markers"))
        fig.add_trace(go.Scatter(x=history["epoch"], y=history.get(f"val_{metric}", []), name=val_label,
                                 mode="lines+markers"))
        for epoch, run_name in run_starts[1:]:
            fig.add_vline(x=epoch - 0.5, line_dash="dot", line_color="grey", annotation_text=f"warm restart: {run_name}",
                          annotation_position="top left")
        # A fixed range: Plotly otherwise widens the axis to fit the restart labels' text.
        fig.update_layout(title=title, xaxis_title="epoch", height=350, margin=dict(l=10, r=10, t=40, b=10),
                          xaxis=dict(range=[0, history["epoch"][-1] + 1]),
                          yaxis=dict(tickformat=".0%") if metric == "accuracy" else {})
        col.plotly_chart(fig, width="stretch")
    if note := art.history_note():
        st.caption(escape_markdown(note))
elif members := art.config.get("ensemble", {}).get("members"):
    st.info(escape_markdown(f"An ensemble is not trained itself: it averages {', '.join(members)}. "
                            "Pick a member above to see its training curves."))
else:
    st.info("This model folder has no training history (history.json).")

percent = st.column_config.NumberColumn(format="%.1f %%")
test = art.metrics.get("test", {})
if test.get("confusion_matrix") and test.get("per_class"):
    st.header(f"Confusion matrix ({split['test']})")
    normalise = st.radio("Show", ["counts", "row-normalised"], horizontal=True) == "row-normalised"
    cm = np.array(test["confusion_matrix"], dtype=float)
    values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalise else cm
    text = [[f"{v:.0%}" if normalise else f"{int(v)}" for v in row] for row in values]
    fig = go.Figure(go.Heatmap(z=values, x=list(CLASS_NAMES), y=list(CLASS_NAMES), text=text,
                               texttemplate="%{text}", colorscale="Blues", showscale=False))
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis=dict(autorange="reversed"),
                      height=520, margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, width="stretch")

    st.header(f"Per-class scores ({split['test']})")
    st.dataframe(
        [{"class": name, "precision": 100 * row["precision"], "recall": 100 * row["recall"], "F1": 100 * row["f1"],
          "support": row["support"]} for name, row in test["per_class"].items()],
        width="stretch", hide_index=True, column_config={"precision": percent, "recall": percent, "F1": percent},
    )

st.header("In the wild (ExpW)")
show_in_the_wild(art)
if recall := art.in_the_wild.get("per_class_recall"):
    st.dataframe([{"class": name, "recall": 100 * value} for name, value in recall.items()],
                 width="stretch", hide_index=True, column_config={"recall": percent})

splits = art.metrics.get("dataset", {}).get("splits", {})
if splits:
    st.header("Dataset class distribution")
    fig = go.Figure()
    for split_name in ("train", "val", "test"):
        per_class = splits.get(split_name, {}).get("per_class", {})
        fig.add_trace(go.Bar(x=list(per_class), y=list(per_class.values()), name=split[split_name]))
    fig.update_layout(barmode="group", height=350, margin=dict(l=10, r=10, t=10, b=10))
    st.plotly_chart(fig, width="stretch")
    st.caption("Colours of the app's boxes: " + ", ".join(
        f'<span style="color:{emotion_hex(n)}">■ {n}</span>' for n in CLASS_NAMES), unsafe_allow_html=True)

formats = art.metrics.get("formats", {})
if formats:
    st.header("Exported formats")
    st.dataframe(
        [{"format": name, "file": f["file"], "size (MB)": round(f.get("size_bytes", 0) / 1e6, 2),
          f"{split['test']} accuracy": 100 * f["test_accuracy"] if "test_accuracy" in f else None,
          "note": f.get("error", "")}
         for name, f in formats.items()],
        width="stretch", hide_index=True, column_config={f"{split['test']} accuracy": percent},
    )
    if gone := sorted({f["file"] for f in formats.values() if f.get("file") and not (art.path / f["file"]).exists()}):
        st.caption(escape_markdown(f"Not shipped in this folder, as no page serves them: {', '.join(gone)}. Their "
                                   "figures were measured before they were left out."))

st.header("Model card")
st.caption(f"Also in the model folder as {CARD_FILE}, with the tables above.")
st.markdown(render_model_card(art, standalone=False))
