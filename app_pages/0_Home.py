"""Home page: what the app does, a picture of it at work, the model's figures, and the way to the pages."""

from __future__ import annotations

import streamlit as st

import ferlens.config
from app_pages.ui import (
    PAGES,
    annotated_example,
    artifacts_for,
    escape_markdown,
    get_recognizer,
    model_in_words,
    show_headline,
    show_in_the_wild,
    show_live_model,
    show_missing_figures,
    show_model_warnings,
)
from ferlens.config import CLASS_NAMES
from ferlens.core.detectors import LIVE_DETECTOR, PHOTO_DETECTOR
from ferlens.core.tta import DEFAULT_TTA, PHOTO_TTA

model_dir = ferlens.config.PHOTO_MODEL_DIR  # the model that reads photos: its figures lead
live_dir = ferlens.config.DEFAULT_MODEL_DIR  # the real-time one, for the live camera and videos

st.title("Facial expression recognition")
st.write(
    f"Find every face in a photo, a video file or a live camera stream and read its expression as one of seven "
    f"emotions: {', '.join(CLASS_NAMES)}. Everything runs on the server's CPU and nothing you send is kept."
)

for column, page in zip(st.columns(len(PAGES) - 1), PAGES[1:]):
    column.page_link(page.script, label=page.title, icon=page.icon)

try:
    recognizer = get_recognizer(model_dir)
except Exception as exc:  # the figures below still show; the pages that need the model say so too
    recognizer = None
    st.error(escape_markdown(f"The emotion model in {model_dir} could not be loaded: {exc}")
             + " Reinstall the app, or point `FER_MODEL_DIR` at a trained model folder.")
else:
    show_model_warnings(recognizer)

picture, figures = st.columns([2, 3], gap="large")
example = annotated_example(str(model_dir)) if recognizer is not None else None
if example is not None:
    picture.image(example, caption="The Upload page's example photo, as the model sees it.", width="stretch")

with figures:
    try:
        art = artifacts_for(model_dir)
    except FileNotFoundError:
        st.error(escape_markdown(f"The model folder {model_dir} does not exist."))
        st.stop()
    st.subheader(f"The model: {escape_markdown(art.name)}", anchor=False)
    st.write(model_in_words(art))
    st.caption("How the face detectors and the models were chosen, and everything else tried: `docs/models.md` "
               "in the project's source. Every figure of each model: the Model report page.")
    st.page_link(PAGES[-1].script, label=PAGES[-1].title, icon=PAGES[-1].icon)
    split = art.splits
    st.markdown("**On FER2013's test photos**" if split["test"] == "PrivateTest" else "**On its own held-out test photos**")
    # FER+ (ten votes a face) beside FER2013's one-annotator labels, for models evaluated on both.
    show_headline(art, only=(f"FER+ {split['test']} accuracy", f"{split['test']} accuracy", "macro-F1",
                             f"{split['val']} accuracy"), per_row=2)  # four across cut the FER+ label short
    show_missing_figures(art)
    if protocol := art.metrics.get("protocol"):
        st.caption(escape_markdown(protocol))
    if tta := art.metrics.get("tta", {}):
        st.caption(
            "With test-time augmentation: "
            + ", ".join(f"{mode} {100 * r['test_accuracy']:.1f} %" for mode, r in tta.items())
            + f" {split['test']} accuracy. The live page uses {DEFAULT_TTA}, the upload page {PHOTO_TTA}."
        )
    st.markdown("**On photos from the wild (ExpW)**")
    show_in_the_wild(art, per_row=2)
    if live_dir != model_dir:
        show_live_model(live_dir)
    size = art.headline()
    photo_detector = recognizer.detector.name if recognizer is not None else PHOTO_DETECTOR
    details = [f"{size['parameters'] / 1e6:.2f} M parameters" if size["parameters"] else "",
               f"{size['size (MB)']:.1f} MB" if size["size (MB)"] else "",
               f"inference backend: {recognizer.backend_name}" if recognizer is not None else "",
               f"face detectors: {photo_detector} for photos, {LIVE_DETECTOR} for the live camera and videos"]
    st.caption(" · ".join(d for d in details if d))
