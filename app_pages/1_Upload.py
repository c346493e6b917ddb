"""Upload page: annotate every face in one or several photos, with charts, a table and downloads."""

from __future__ import annotations

import streamlit as st

from fer.drawing import draw_faces, fit_for_display
from fer.images import InvalidImageError, read_image
from fer.tta import PHOTO_TTA, TTA_MODES
from fer.ui import (
    example_image,
    faces_records,
    get_recognizer,
    png_bytes,
    probability_chart,
    records_to_csv,
    records_to_json,
)

st.title("Upload photos")
st.write("Every face found gets a box, its emotion and the model's confidence. Nothing is stored.")

uploads = st.file_uploader(
    "Images (jpg, png, webp, bmp)", type=["jpg", "jpeg", "png", "webp", "bmp"], accept_multiple_files=True
)
use_example = st.checkbox("Use the example photo (astronaut Eileen Collins, from scikit-image)", value=not uploads)

with st.expander("Detection settings"):
    c1, c2, c3 = st.columns(3)
    scale_factor = c1.slider("Scale factor", 1.02, 1.5, 1.1, 0.01, help="Smaller finds more faces, slower")
    min_neighbors = c2.slider("Min neighbours", 1, 12, 5, help="Higher gives fewer false faces")
    min_size = c3.slider("Min face size (px)", 16, 200, 40)
    tta = st.radio(
        "Test-time augmentation", TTA_MODES, index=TTA_MODES.index(PHOTO_TTA), horizontal=True,
        help="Average the model over mirrored (flip) or mirrored and shifted (ten-crop) copies of each face: "
        "more accurate, a few milliseconds per face. The model card lists the measured gain.",
    )

try:
    recognizer = get_recognizer().with_settings(
        tta=tta, scale_factor=scale_factor, min_neighbors=min_neighbors, min_size=min_size, max_side=1280
    )
except Exception as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()

images: list[tuple[str, object]] = [(f.name, f) for f in uploads or []]
if use_example:
    images.insert(0, ("astronaut.png", None))
if not images:
    st.info("Upload a photo, or tick the example photo above.")

all_rows: list[dict] = []
for index, (name, upload) in enumerate(images):
    st.divider()
    st.subheader(name)
    try:
        rgb = example_image() if upload is None else read_image(upload.getvalue())
    except InvalidImageError as exc:
        st.error(f"Could not read {name}: {exc}")
        continue
    whole = False
    faces = recognizer.predict(rgb, color_order="rgb")
    if not faces:
        st.warning(f"No face found in {name}. If it is a close-up of one face, classify the whole image.")
        whole = st.checkbox("Classify the whole image as one face", key=f"whole-{index}-{name}")
        if whole:
            faces = recognizer.predict(rgb, color_order="rgb", whole_image=True)
    display, shown_faces = fit_for_display(rgb, faces)
    annotated = draw_faces(display, shown_faces, color_order="rgb")
    st.image(annotated, caption=f"{name}: {len(faces)} face(s)", width="stretch")
    summary = "; ".join(f"face {i + 1}: {f.label} {f.confidence:.0%}" for i, f in enumerate(faces))
    st.markdown(f'<span data-testid="face-count">faces found: {len(faces)}</span>' + (f" ({summary})" if summary else ""),
                unsafe_allow_html=True)
    if not faces:
        continue
    rows = faces_records(faces, name)
    all_rows.extend(rows)
    cols = st.columns(min(3, len(faces)))
    for i, face in enumerate(faces):
        cols[i % len(cols)].plotly_chart(
            probability_chart(face, f"Face {i + 1}: {face.label} {face.confidence:.0%}"),
            width="stretch", key=f"chart-{index}-{i}",
        )
    st.dataframe(rows, width="stretch", hide_index=True)
    d1, d2, d3 = st.columns(3)
    stem = name.rsplit(".", 1)[0]
    d1.download_button("Annotated image (PNG)", png_bytes(annotated), f"{stem}_annotated.png", "image/png",
                       key=f"png-{index}")
    d2.download_button("Results (CSV)", records_to_csv(rows), f"{stem}_faces.csv", "text/csv", key=f"csv-{index}")
    d3.download_button("Results (JSON)", records_to_json(rows), f"{stem}_faces.json", "application/json",
                       key=f"json-{index}")

if len(images) > 1 and all_rows:
    st.divider()
    st.download_button("All results (CSV)", records_to_csv(all_rows), "faces.csv", "text/csv", key="csv-all")
