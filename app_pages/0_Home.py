"""Home page of the FER web app: what it does, the shipped model's figures, links to the pages."""

from __future__ import annotations

import streamlit as st

from fer.config import CLASS_NAMES, DEFAULT_MODEL_DIR
from fer.tta import DEFAULT_TTA, PHOTO_TTA
from fer.ui import artifacts_for, get_recognizer, show_headline


st.title("Facial expression recognition")
st.write(
    "Find every face in a photo or a live camera stream and read its expression as one of seven "
    f"emotions: {', '.join(CLASS_NAMES)}. Faces are found with OpenCV's Haar cascade and classified "
    "by a compact CNN trained from scratch on FER2013. Everything runs on the server's CPU; "
    "no image is stored."
)

try:
    artifacts = artifacts_for(DEFAULT_MODEL_DIR)
    st.subheader(f"Shipped model: {artifacts.name}")
    show_headline(artifacts)
    st.caption(artifacts.metrics.get("protocol", ""))
    tta = artifacts.metrics.get("tta", {})
    if tta:
        st.caption(
            "With test-time augmentation: "
            + ", ".join(f"{mode} {100 * r['test_accuracy']:.1f} %" for mode, r in tta.items())
            + f" PrivateTest accuracy. The live page uses {DEFAULT_TTA}, the upload page {PHOTO_TTA}."
        )
    recognizer = get_recognizer()
    st.caption(f"Inference backend: {recognizer.backend_name}")
except (FileNotFoundError, ValueError, RuntimeError) as exc:
    st.error(f"The shipped model could not be loaded: {exc}")

st.subheader("Try it")
col1, col2, col3 = st.columns(3)
col1.page_link("app_pages/1_Upload.py", label="Upload photos", icon=":material/upload:")
col2.page_link("app_pages/2_Live_camera.py", label="Live camera", icon=":material/videocam:")
col3.page_link("app_pages/3_Model_report.py", label="Model report", icon=":material/monitoring:")
