"""Video page: a video file through the live page's engine (`fer.video.analyse_video`), frame by frame.

The analysis runs in the script with a progress bar; the Cancel button reruns the page, which
stops it (the temporary annotated copy is removed on the way out). Results are kept in the
session until another file or setting is chosen.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app_pages.ui import escape_markdown, recognizer_or_stop, timeline_chart
from fer.backends import LIVE_BACKEND
from fer.config import (
    CLASS_NAMES,
    VIDEO_FRAME_BUDGET,
    VIDEO_MAX_FPS,
    VIDEO_MAX_SECONDS,
    VIDEO_MAX_UPLOAD_MB,
    VIDEO_SUFFIXES,
)
from fer.memory import ANALYSES
from fer.results import to_csv
from fer.video import (
    BROWSER_PLAYABLE_ENCODERS,
    InvalidVideoError,
    VideoAnalysis,
    analyse_video,
    app_sampling,
    check_app_limits,
    probe_video,
)

VIDEO_TYPES = tuple(suffix.lstrip(".") for suffix in VIDEO_SUFFIXES)
MAX_TIMELINES = 8  # faces drawn as timelines; every face is in the table and the CSV

# The server's own cap applies to every upload; the page states whichever limit is lower.
limit_mb = min(VIDEO_MAX_UPLOAD_MB, int(st.get_option("server.maxUploadSize")))

st.title("Video file")
st.write(
    "Upload a video: every face in it gets a number that it keeps while it stays in view, a timeline of its "
    "emotions, and a summary of how long it showed each. You can download the results (CSV, one row per face "
    "per analysed frame) and a copy of the video with the boxes drawn in. Nothing is stored: the video is "
    "analysed in memory and forgotten when you leave."
)
st.caption(
    f"Limits: files up to {limit_mb} MB and {VIDEO_MAX_SECONDS // 60} minutes, at most 4K. Videos up to "
    f"{VIDEO_FRAME_BUDGET / VIDEO_MAX_FPS / 60:.0f} minutes are analysed frame by frame (up to {VIDEO_MAX_FPS:.0f} "
    f"frames a second); longer ones are sampled evenly, {VIDEO_FRAME_BUDGET:,} frames in all (a 20-minute video at "
    f"{VIDEO_FRAME_BUDGET / 1200:.0f} frames a second). For longer videos use the command line: "
    "`python -m fer.predict VIDEO --fps 2 --csv faces.csv`."
)

recognizer = recognizer_or_stop(backend=LIVE_BACKEND)  # the fastest format on this CPU: every frame counts

upload = st.file_uploader(f"Video: MP4, MOV, WebM or AVI, up to {limit_mb} MB", type=list(VIDEO_TYPES),
                          max_upload_size=limit_mb)
c1, c2 = st.columns(2)
smoothing = c1.toggle("Smooth labels over time", value=True,
                      help="Average each face's emotions over its last frames, as the live page does")
make_copy = c2.toggle("Make an annotated copy (MP4)", value=True, help="About a fifth more processing time")

if upload is None:
    st.info("Choose a video above. Phone videos (MP4 or MOV) work as they are, portrait or landscape.")
    st.stop()

try:
    info = probe_video(upload)
    check_app_limits(info)
except InvalidVideoError as exc:
    st.error(escape_markdown(f"This video cannot be analysed: {exc}"))
    st.stop()
sampling = app_sampling(info)
st.markdown(
    f'<span data-testid="video-info">{info.width}x{info.height}, {info.duration_s:.1f} s at {info.fps:.3g} frames a '
    f"second; analysed: {sampling.describe(info)}, about {sampling.expected_frames(info):,} frames</span>",
    unsafe_allow_html=True,
)


@dataclass
class VideoResults:
    """One finished analysis, kept in the session; `key` says which file and settings it is for."""

    key: tuple
    name: str
    analysis: VideoAnalysis
    annotated_mp4: bytes | None


key = (upload.file_id, smoothing, make_copy)
results: VideoResults | None = st.session_state.get("video_results")
if results is not None and results.key != key:
    results = None
if results is None:
    if st.session_state.pop("video_running", None) == key:
        st.warning("Analysis cancelled. Nothing was kept.")
    if not st.button("Analyse video", type="primary"):
        st.stop()
    st.session_state.pop("video_results", None)  # free the previous results before making new ones
    st.session_state.video_running = key
    progress = st.progress(0.0, text="Starting ...")
    cancel = st.empty()
    cancel.button("Cancel", help="Stops the analysis; nothing is kept")

    def show_progress(done: int, expected: int) -> None:
        progress.progress(min(1.0, done / expected), text=f"Analysed {done:,} of about {expected:,} frames")

    try:
        with ANALYSES.running(), tempfile.TemporaryDirectory(prefix="fer-video-") as folder:
            copy_path = Path(folder) / "annotated.mp4" if make_copy else None
            analysis = analyse_video(upload, recognizer, sampling=sampling, smoothing=smoothing,
                                     annotated_path=copy_path, on_progress=show_progress)
            annotated = copy_path.read_bytes() if copy_path is not None else None
    except InvalidVideoError as exc:
        st.session_state.pop("video_running", None)
        st.error(escape_markdown(f"This video cannot be analysed: {exc}"))
        st.stop()
    results = VideoResults(key, upload.name, analysis, annotated)
    st.session_state.video_results = results
    st.session_state.pop("video_running", None)
    progress.empty()
    cancel.empty()

analysis = results.analysis
summary = analysis.summary()
stem = results.name.rsplit(".", 1)[0]
st.markdown(
    f'<div data-testid="video-done">{analysis.frames_analysed:,} frames analysed in {analysis.seconds:.0f} s '
    f"({analysis.speed:.1f}x real time); faces tracked: {len(summary)}</div>",
    unsafe_allow_html=True,
)
if analysis.failed_frames:
    st.warning(f"{analysis.failed_frames} frame(s) could not be analysed and have no faces in the results.")
if not summary:
    st.warning("No face was found in this video. Faces need to be at least 40 pixels high, lit, and turned "
               "towards the camera.")
    st.stop()

st.subheader("Faces")
st.caption("Each face's number is the one on its box in the annotated copy. The emotion columns are the share "
           "of the face's time in which it was the model's top emotion.")
st.dataframe(
    [{"face": f"#{face['face']}", "seen (s)": f"{face['seconds_seen']:.1f}",
      "from-to (s)": f"{face['first_s']:.1f}-{face['until_s']:.1f}", "mostly": face["dominant"],
      **{name: f"{face[name]:.0%}" for name in CLASS_NAMES}} for face in summary],
    width="stretch", hide_index=True,
)

st.subheader("Timelines")
shown = summary[:MAX_TIMELINES]
if len(summary) > len(shown):
    st.caption(f"The {len(shown)} faces seen longest; the other {len(summary) - len(shown)} are in the table and the CSV.")
cols = st.columns(2)
for i, face in enumerate(shown):
    times, probabilities = analysis.tracks.timeline(face["face"])
    chart = timeline_chart(times, probabilities, f"Face #{face['face']}: mostly {face['dominant']}")
    chart.update_layout(xaxis_title="seconds into the video")
    cols[i % 2].plotly_chart(chart, width="stretch", key=f"video-timeline-{face['face']}")

st.subheader("Downloads")
d1, d2 = st.columns(2)
d1.download_button("Results, one row per face per frame (CSV)", to_csv(analysis.tracks.rows(results.name)),
                   f"{stem}_faces.csv", "text/csv", on_click="ignore", key="video-csv")
if results.annotated_mp4 is not None:
    d2.download_button("Annotated video (MP4)", results.annotated_mp4, f"{stem}_annotated.mp4", "video/mp4",
                       on_click="ignore", key="video-mp4")
    if analysis.encoder in BROWSER_PLAYABLE_ENCODERS:
        st.columns([2, 1])[0].video(results.annotated_mp4, format="video/mp4")
    else:
        st.caption("This server has no H.264 encoder, so the copy is MPEG-4 part 2: it plays in desktop players "
                   "such as VLC but not in a browser.")
