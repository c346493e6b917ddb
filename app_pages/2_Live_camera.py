"""Live camera page: streamlit-webrtc sends browser frames to `ferlens.core.video.LiveProcessor` and back.

The results are drawn by a fragment that reruns every second while the stream plays, so each
element is created once per run (no duplicate element IDs) and the switches stay usable.
"""

from __future__ import annotations

import time

import av
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from app_pages.live_relay import install_latest_frame_relay
from app_pages.ui import ice_servers, live_detector_label, recognizer_or_stop, timeline_chart
from ferlens.core.detectors import LIVE_DETECTORS
from ferlens.core.tracks import TIMELINE_WINDOW_S, LiveSession
from ferlens.core.video import LiveProcessor
from ferlens.modelfolder.loading import LIVE_BACKEND

REFRESH_S = 1.0  # how often the status line and the timelines are redrawn while streaming
CONNECT_TIMEOUT_S = 8.0  # after this long without a stream, point to the camera snapshot

st.title("Live camera")
st.write(
    "Press **START** and allow the camera: each face gets a numbered box with its emotion, and below the video "
    "a timeline per face shows how its emotions change. Frames are analysed on the server as they arrive and "
    "are never stored."
)

c1, c2, c3 = st.columns(3)
smoothing = c1.toggle("Smooth labels over time", value=True, help="Average each face's emotions over its last frames")
half_res = c2.toggle("Detect at half resolution", value=True, help="About 3x faster searches for new faces")
detector = c3.selectbox("Face detector", LIVE_DETECTORS, format_func=live_detector_label, key="live-detector",
                        help="The frames a second were measured at 640x480 with one face on this app's benchmark "
                        "machine (benchmarks/detectors.md); the Haar cascade is the paper's per-frame detector")

recognizer = recognizer_or_stop(backend=LIVE_BACKEND)  # the fastest format on this CPU: every frame counts

if "live_processor" not in st.session_state:
    st.session_state.live_processor = LiveProcessor(recognizer)
    st.session_state.live_session = LiveSession()
processor: LiveProcessor = st.session_state.live_processor
session: LiveSession = st.session_state.live_session
processor.smoothing = smoothing
processor.detect_downscale = 0.5 if half_res else 1.0
processor.use_detector(detector)


def video_frame_callback(frame: av.VideoFrame) -> av.VideoFrame:
    """Runs on the WebRTC worker thread: no st.* calls here, results leave through the processor's queue."""
    annotated = processor.process(frame.to_ndarray(format="bgr24"))
    return av.VideoFrame.from_ndarray(annotated, format="bgr24")


servers = ice_servers()
install_latest_frame_relay()  # before streamlit-webrtc makes its own, buffered one
ctx = webrtc_streamer(
    key="fer-live",
    mode=WebRtcMode.SENDRECV,
    rtc_configuration=None if servers is None else {"iceServers": servers},
    media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
    video_frame_callback=video_frame_callback,
    async_processing=True,
)
playing = ctx.state.playing
connecting = ctx.state.signalling and not playing
if connecting:
    st.session_state.setdefault("live_connect_started", time.monotonic())
else:
    st.session_state.pop("live_connect_started", None)


@st.fragment(run_every=REFRESH_S if (playing or connecting) else None)
def live_results() -> None:
    """Status line, hints and one timeline per face; reruns on its own while the stream is up."""
    session.add(processor.drain())
    stats = processor.stats()
    st.markdown(
        f'<div data-testid="live-status">frames processed: {stats["frames"]} · '
        f'frames with a face: {stats["frames_with_face"]} · {stats["fps"]:.1f} FPS · '
        f'{stats["latency_ms"]:.1f} ms per frame</div>',
        unsafe_allow_html=True,
    )
    started = st.session_state.get("live_connect_started")
    if connecting and started is not None and time.monotonic() - started > CONNECT_TIMEOUT_S:
        st.warning(f"The stream has not connected after {CONNECT_TIMEOUT_S:.0f} seconds. Some networks block live "
                   "video; a photo from your camera works everywhere:")
        st.page_link("app_pages/1_Upload.py", label="Take a photo on the Upload page", icon=":material/photo_camera:")
    if playing and session.no_face_in_view():
        st.info("No face in view. Face the camera with your whole face in the picture and light on it; faces "
                "turned far to the side are not found.")
    faces = session.recent_faces()
    if faces:
        st.caption(f"Each face's emotions over the last {TIMELINE_WINDOW_S:.0f} seconds; the number is the one "
                   "on its box.")
        cols = st.columns(2)
        for i, face_id in enumerate(faces):
            times, probabilities = session.timeline(face_id)
            cols[i % 2].plotly_chart(timeline_chart(times, probabilities, f"Face #{face_id}", "seconds since START"),
                                     width="stretch", key=f"timeline-{face_id}")


live_results()

if len(session) and not playing:
    st.download_button("This session's results, one row per face per frame (CSV)", session.csv(),
                       "live_session.csv", "text/csv", on_click="ignore")
    if st.button("Clear session results"):
        session.reset()
        processor.smoother.reset()
        st.rerun()
elif len(session):
    st.caption("Press STOP to download this session's results (CSV).")
