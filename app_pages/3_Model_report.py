"""Model report page: training curves, confusion matrix, per-class scores and the model card.

Everything shown is read from the artifacts that `ferlens.training.train` and `ferlens.training.evaluate` wrote.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app_pages.ui import (
    artifacts_for,
    colour_legend,
    escape_markdown,
    member_dirs,
    report_choices,
    shipped_formats,
    show_headline,
    show_in_the_wild,
    show_missing_figures,
    training_curves,
)
from ferlens.config import CLASS_NAMES, DEFAULT_MODEL_DIR, PHOTO_MODEL_DIR
from ferlens.modelfolder.artifacts import CARD_FILE, list_model_dirs
from ferlens.modelfolder.report import render_model_card

st.title("Model report")

# This page only reads artifacts, so it can list trial runs kept without their weights too (behind the
# switch under the picker); no page that loads a model is offered them (list_model_dirs' default).
choices = report_choices(list_model_dirs(weights=False), PHOTO_MODEL_DIR, DEFAULT_MODEL_DIR)
if not choices:
    st.error("No trained model folder found under models/.")
    st.stop()
records = [c for c in choices if c.role == "record"]
listed = [c for c in choices if c.role != "record" or st.session_state.get("report-records")]
chosen = st.selectbox("Model", listed, format_func=lambda c: c.label, key="report-model") if len(listed) > 1 \
    else listed[0]
if records:
    st.toggle(f"Also list the {len(records)} trial runs kept for their record only (figures and curves, no "
              "weights)", key="report-records")
art = artifacts_for(chosen.path)
if chosen.role == "record":
    st.info(escape_markdown(f"{art.name} is a trial run kept for its record: its training curves, figures and model "
                            "card are here, its weights are not shipped, so no page can load it."))
split = art.splits  # FER2013's split names, or a fine-tuned model's own folder parts
val_label = "validation" if split["val"] == "validation" else f"validation ({split['val']})"
show_headline(art)
show_missing_figures(art)

st.header("Training curves")
history, run_starts = art.full_history()
members = member_dirs(art)
if history.get("epoch"):
    runs, notes = {art.name: (history, run_starts)}, [art.history_note()]
elif members:
    member_arts = [artifacts_for(folder) for folder in members]
    runs = {m.name: m.full_history() for m in member_arts}
    notes = [f"An ensemble is not trained itself: it averages the probabilities of its {len(members)} nets, each "
             f"trained on its own. Their curves, one colour each: {val_label} solid, training (augmented) dotted.",
             *(m.history_note() for m in member_arts)]
else:
    runs, notes = {}, []
    st.info("This model folder has no training history (history.json)"
            + (f", nor are its ensemble members' folders here ({escape_markdown(', '.join(m))})."
               if (m := art.config.get("ensemble", {}).get("members")) else "."))
if runs:
    accuracy, loss = training_curves(runs, val_label)
    cols = st.columns(2)
    cols[0].plotly_chart(accuracy, width="stretch")
    cols[1].plotly_chart(loss, width="stretch")
    if note := "\n\n".join(n for n in notes if n):
        st.caption(escape_markdown(note))

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
    st.markdown("Colours of the app's boxes and charts: " + colour_legend(), unsafe_allow_html=True)  # full strength

formats = shipped_formats(art)
if formats:
    st.header("Exported formats")
    st.dataframe(
        [{"format": name, "file": f["file"], "size (MB)": round(f.get("size_bytes", 0) / 1e6, 2),
          f"{split['test']} accuracy": 100 * f["test_accuracy"] if "test_accuracy" in f else None,
          "note": f.get("error", "")}
         for name, f in formats.items()],
        width="stretch", hide_index=True, column_config={f"{split['test']} accuracy": percent},
    )

st.header("Model card")
st.caption(f"Also in the model folder as {CARD_FILE}, with the tables above.")
st.markdown(render_model_card(art, standalone=False))
