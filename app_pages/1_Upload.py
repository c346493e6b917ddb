"""Upload page: every face in photos (uploaded, taken with the camera, or the example), numbered on the
image in reading order, with the same numbers in its charts, table and downloads."""

from __future__ import annotations

import streamlit as st

from app_pages.ui import (
    PHOTO_TYPES,
    PHOTO_TYPES_TEXT,
    RESULTS_TABLE_COLUMNS,
    escape_markdown,
    example_image,
    explain_help,
    probability_chart,
    recognizer_or_stop,
    show_explanations,
    upload_limit_mb,
)
from ferlens.config import PHOTO_MODEL_DIR
from ferlens.core.detectors import describe, detector_names
from ferlens.core.drawing import png_bytes
from ferlens.core.photos import analyse_photo
from ferlens.core.results import (
    PHOTO_COLUMNS,
    VIDEO_ONLY_COLUMNS,
    FaceRow,
    face_summary,
    photo_rows,
    table_records,
    to_csv,
    to_json,
)
from ferlens.core.tta import PHOTO_TTA, TTA_MODES

UPLOAD, CAMERA, EXAMPLE = "Upload photos", "Take a photo", "Example photo"

st.title("Upload photos")
st.write(
    "Every face found gets a numbered box with its emotion and the model's confidence; the charts, the table "
    "and the downloads below use the same numbers. The model reads faces only: whatever it is shown, it answers "
    "with one of seven emotions. Nothing is stored."
)

base_recognizer = recognizer_or_stop(PHOTO_MODEL_DIR)  # the accurate model: a photo is worth a few ms more

source = st.radio("Photos from", (UPLOAD, CAMERA, EXAMPLE), horizontal=True, key="source")
limit_mb = upload_limit_mb()
photos: list[tuple[str, object]] = []  # (name, encoded bytes or an RGB array)
if source == UPLOAD:
    uploads = st.file_uploader(f"Photos: {PHOTO_TYPES_TEXT}, up to {limit_mb} MB each", type=list(PHOTO_TYPES),
                               accept_multiple_files=True, max_upload_size=limit_mb)
    st.caption(f"A file over {limit_mb} MB is refused by your browser: it stays in the list above, marked in red, "
               "and is not analysed.")
    photos = [(f.name, f.getvalue()) for f in uploads or []]
    if not photos:
        st.info(f"Choose one or more photos above, or pick **{EXAMPLE}** to see what this page does.")
elif source == CAMERA:
    shot = st.camera_input("Take a photo with your device's camera",
                           help="A single photo, sent like an upload: it works on networks where the live camera cannot.")
    if shot is not None:
        photos = [("camera photo.jpg", shot.getvalue())]
else:
    st.caption("The example: astronaut Eileen Collins (NASA portrait, public domain, shipped with scikit-image).")
    photos = [("astronaut.png", example_image())]

with st.expander("Detection settings"):
    names = detector_names()
    detector_name = st.selectbox("Face detector", names, index=names.index(base_recognizer.detector.name),
                                 format_func=lambda name: f"{name}: {describe(name)}", key="detector")
    detector = base_recognizer.with_settings(detector=detector_name).detector
    defaults = detector.settings
    c1, c2, c3 = st.columns(3)
    settings = {"min_size": c1.slider("Min face size (px)", 8, 200, defaults.min_face(detector.default_min_size),
                                      help="Faces smaller than this (in the photo's pixels) are ignored",
                                      key=f"min-size-{detector_name}")}
    if detector.default_score_threshold is not None:
        settings["score_threshold"] = c2.slider(
            "Detection score threshold", 0.05, 0.99, detector.default_score_threshold, 0.01, key=f"score-{detector_name}",
            help="Lower finds more faces, including unsure ones (shown in each face's row); higher, fewer false faces")
    else:  # the Haar cascade's own knobs
        settings["scale_factor"] = c2.slider("Scale factor", 1.02, 1.5, defaults.scale_factor, 0.01,
                                             help="Smaller finds more faces, slower")
        settings["min_neighbors"] = c3.slider("Min neighbours", 1, 12, defaults.min_neighbors,
                                              help="Higher gives fewer false faces")
    tta = st.radio(
        "Test-time augmentation", TTA_MODES, index=TTA_MODES.index(PHOTO_TTA), horizontal=True,
        help="Average the model over mirrored (flip) or mirrored and shifted (ten-crop) copies of each face: "
        "more accurate, a few milliseconds per face. The model card lists the measured gain.",
    )
recognizer = base_recognizer.with_settings(tta=tta, detector=detector_name, **settings)

all_rows: list[FaceRow] = []
for index, (name, data) in enumerate(photos):
    st.divider()
    st.subheader(escape_markdown(name), anchor=False)
    whole_key = f"whole-{index}-{name}"
    whole = bool(st.session_state.get(whole_key))
    result = analyse_photo(recognizer, name, data, whole_image=whole)
    if result.error:
        st.error(escape_markdown(result.error))
        continue
    if whole:
        st.info("The whole image was classified as one face. The model assumes that it shows a face: it names an "
                "emotion for anything (a coffee cup too), so the answer means something only for a face.")
    elif not result.faces:
        st.warning("No face found. If the photo is a close-up of one face, classify the whole image. Otherwise try a "
                   "photo in which the faces are larger and turned to the camera, or lower the minimum face size "
                   "in the detection settings above.")
    if whole or not result.faces:
        st.checkbox("Classify the whole image as one face", key=whole_key)
    st.image(result.annotated, width="stretch")
    st.markdown(f'<span data-testid="face-count">faces found: {len(result.faces)}</span>'
                + (f" ({face_summary(result.faces)})" if result.faces else ""), unsafe_allow_html=True)
    if not result.faces:
        continue
    rows = photo_rows(result.faces, name)
    all_rows.extend(rows)
    cols = st.columns(min(3, len(result.faces)))
    for number, face in enumerate(result.faces, 1):
        cols[(number - 1) % len(cols)].plotly_chart(
            probability_chart(face, f"Face #{number}: {face.label} {face.confidence:.0%}"),
            width="stretch", key=f"chart-{index}-{number}",
        )
    if st.toggle("Why? Show which parts of each face the emotion was read from", key=f"why-{index}",
                 help=explain_help(recognizer)):
        from ferlens.core.images import read_image

        show_explanations(recognizer, data if not isinstance(data, bytes) else read_image(data), result.faces,
                          key=f"why-{index}-{name}")
    st.dataframe(table_records(rows, result.size), width="stretch", hide_index=True,
                 column_config=RESULTS_TABLE_COLUMNS)
    st.caption("Percentages, and each box clipped to the photo. The downloads hold the full rows: fractions, and "
               "the box as the model framed the face (it may cross the photo's edge).")
    d1, d2, d3 = st.columns(3)
    stem = name.rsplit(".", 1)[0]
    d1.download_button("Annotated image (PNG)", png_bytes(result.annotated), f"{stem}_annotated.png", "image/png",
                       key=f"png-{index}", on_click="ignore")
    d2.download_button("Results (CSV)", to_csv(rows, PHOTO_COLUMNS), f"{stem}_faces.csv", "text/csv",
                       key=f"csv-{index}", on_click="ignore")
    d3.download_button("Results (JSON)", to_json(rows, without=VIDEO_ONLY_COLUMNS), f"{stem}_faces.json",
                       "application/json", key=f"json-{index}", on_click="ignore")

if len(photos) > 1 and all_rows:
    st.divider()
    st.download_button("All results (CSV)", to_csv(all_rows, PHOTO_COLUMNS), "faces.csv", "text/csv", key="csv-all",
                       on_click="ignore")
