"""Video page: a video file through the live page's engine (`ferlens.core.video.analyse_video`), frame by frame.

A new upload is moved to the visitor's folder on disk at once (`app_pages.video_session`), so a
session holds paths and results, never a video's bytes. The analysis waits its turn in the
server's queue (`ferlens.core.serving.VIDEO_ANALYSES`: at most a few at once, for the host's memory) and
runs in the script with a progress bar; the Cancel button reruns the page, which stops it, queued
or running (the partial annotated copy is removed on the way out). Results are kept in the session
until another file or setting is chosen.
"""

from __future__ import annotations

import time

import streamlit as st

from app_pages.ui import escape_markdown, recognizer_or_stop, timeline_chart
from app_pages.video_session import (
    ANNOTATED_FILE,
    UPLOAD_KEY,
    VideoResults,
    current_video,
    file_types_text,
    forget_results,
    keep_results,
    results_for,
    scratch,
)
from ferlens.config import (
    CLASS_NAMES,
    VIDEO_FRAME_BUDGET,
    VIDEO_MAX_FPS,
    VIDEO_MAX_SECONDS,
    VIDEO_MAX_UPLOAD_MB,
    VIDEO_SUFFIXES,
)
from ferlens.core.memory import ANALYSES
from ferlens.core.results import to_csv
from ferlens.core.serving import VIDEO_ANALYSES, QueuePlace
from ferlens.core.video import BROWSER_PLAYABLE_ENCODERS, InvalidVideoError, analyse_video, app_sampling
from ferlens.modelfolder.loading import LIVE_BACKEND

VIDEO_TYPES = tuple(suffix.lstrip(".") for suffix in VIDEO_SUFFIXES)
MAX_TIMELINES = 8  # faces drawn as timelines; every face is in the table and the CSV

# The server's own cap applies to every upload; the page states whichever limit is lower.
limit_mb = min(VIDEO_MAX_UPLOAD_MB, int(st.get_option("server.maxUploadSize")))
slots = VIDEO_ANALYSES.limit

st.title("Video file")
st.write(
    "Upload a video: every face in it gets a number that it keeps while it stays in view, a timeline of its "
    "emotions, and a summary of how long it showed each. You can download the results (CSV, one row per face "
    "per analysed frame) and a copy of the video with the boxes drawn in. Nothing is kept: the video and its "
    "annotated copy sit in a temporary folder on the server while you use this page, and are deleted when you "
    "choose another video or your session ends."
)
st.caption(
    f"Limits: files up to {limit_mb} MB and {VIDEO_MAX_SECONDS // 60} minutes, at most 4K. Videos up to "
    f"{VIDEO_FRAME_BUDGET / VIDEO_MAX_FPS / 60:.0f} minutes are analysed frame by frame (up to {VIDEO_MAX_FPS:.0f} "
    f"frames a second); longer ones are sampled evenly, {VIDEO_FRAME_BUDGET:,} frames in all (a 20-minute video at "
    f"{VIDEO_FRAME_BUDGET / 1200:.0f} frames a second). For longer videos use the command line: "
    "`python -m ferlens.core.predict VIDEO --fps 2 --csv faces.csv`. "
    f"This server analyses at most {slots} video{'s' if slots > 1 else ''} at a time, for its memory: when more "
    "visitors start one, the others wait in a queue, in order, see their place in it, and start by themselves."
)

recognizer = recognizer_or_stop(backend=LIVE_BACKEND)  # the fastest format on this CPU: every frame counts

upload = st.file_uploader(f"Video: {file_types_text(VIDEO_SUFFIXES)}, up to {limit_mb} MB", type=list(VIDEO_TYPES),
                          max_upload_size=limit_mb, key=UPLOAD_KEY)
c1, c2 = st.columns(2)
smoothing = c1.toggle("Smooth labels over time", value=True,
                      help="Average each face's emotions over its last frames, as the live page does")
make_copy = c2.toggle("Make an annotated copy (MP4)", value=True, help="About a fifth more processing time")

video = current_video(upload)
if video is None:
    st.info("Choose a video above. Phone videos (MP4 or MOV) work as they are, portrait or landscape.")
    st.stop()
if video.info is None:
    st.error(escape_markdown(f"This video cannot be analysed: {video.error}"))
    st.stop()
info = video.info
sampling = app_sampling(info)
st.markdown(
    f'<span data-testid="video-info">{info.width}x{info.height}, {info.duration_s:.1f} s at {info.fps:.3g} frames a '
    f"second; analysed: {sampling.describe(info)}, about {sampling.expected_frames(info):,} frames</span>",
    unsafe_allow_html=True,
)

key = (video.file_id, smoothing, make_copy)
results = results_for(key)
if results is None:
    if st.session_state.pop("video_running", None) == key:
        st.warning("Analysis cancelled. Nothing was kept.")
    if not st.button("Analyse video", type="primary"):
        st.stop()
    forget_results()  # free the previous results and their copy before making new ones
    st.session_state.video_running = key
    status = st.empty()
    progress = st.progress(0.0, text="Starting ...")
    cancel = st.empty()
    cancel.button("Cancel", help="Stops the analysis, or leaves the queue; nothing is kept")

    def show_place(place: QueuePlace) -> None:
        """Called every half second while queued: it also lets a click on Cancel, or a closed tab, stop the wait."""
        ahead = "yours is next" if place.ahead == 0 else f"{place.ahead} ahead of yours"
        progress.progress(0.0, text="Waiting for a free slot ...")
        status.markdown(
            f'<div data-testid="video-queue">Queued: you are number {place.place} in the queue ({ahead}; '
            f"{place.running} of {place.limit} being analysed now). Your analysis starts by itself when a slot "
            "frees: keep this page open.</div>",
            unsafe_allow_html=True,
        )

    def show_progress(done: int, expected: int) -> None:
        progress.progress(min(1.0, done / expected), text=f"Analysed {done:,} of about {expected:,} frames")

    copy_path = scratch().file(ANNOTATED_FILE) if make_copy else None
    asked = time.perf_counter()
    try:
        with VIDEO_ANALYSES.slot(on_wait=show_place) as waited, ANALYSES.running():
            queued_s = time.perf_counter() - asked if waited else 0.0
            status.empty()
            analysis = analyse_video(video.path, recognizer, sampling=sampling, smoothing=smoothing,
                                     annotated_path=copy_path, on_progress=show_progress)
    except InvalidVideoError as exc:
        forget_results()
        st.session_state.pop("video_running", None)
        st.error(escape_markdown(f"This video cannot be analysed: {video.reason(exc)}"))
        st.stop()
    except BaseException:  # cancelled, or the session closed: no partial copy is left behind
        forget_results()
        raise
    results = VideoResults(key, video.name, analysis, copy_path, queued_s)
    keep_results(results)
    st.session_state.pop("video_running", None)
    progress.empty()
    cancel.empty()

analysis = results.analysis
summary = analysis.summary()
stem = results.name.rsplit(".", 1)[0]
st.markdown(
    f'<div data-testid="video-done">{analysis.frames_analysed:,} frames analysed in {analysis.seconds:.0f} s '
    f"({analysis.speed:.1f}x real time); faces tracked: {len(summary)}"
    + (f", after {results.queued_s:.0f} s in the queue" if results.queued_s else "") + "</div>",
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
if results.annotated is not None:
    # Read from disk only when asked for: the session never holds the copy's bytes.
    d2.download_button("Annotated video (MP4)", results.annotated.read_bytes, f"{stem}_annotated.mp4", "video/mp4",
                       on_click="ignore", key="video-mp4")
    if analysis.encoder in BROWSER_PLAYABLE_ENCODERS:
        st.columns([2, 1])[0].video(results.annotated, format="video/mp4")
    else:
        st.caption("This server has no H.264 encoder, so the copy is MPEG-4 part 2: it plays in desktop players "
                   "such as VLC but not in a browser.")
