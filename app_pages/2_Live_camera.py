"""Live camera page: streamlit-webrtc sends browser frames to `fer.video.LiveProcessor` and back."""

from __future__ import annotations

import time

import av
import plotly.graph_objects as go
import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

from fer.config import CLASS_NAMES
from fer.ui import emotion_hex, get_recognizer, ice_servers, records_to_csv
from fer.video import LiveProcessor

MAX_ROWS = 20_000  # per-frame rows kept for the CSV (about 10 minutes at 30 FPS)

st.title("Live camera")
st.write(
    "Press **START** and allow the camera. Each frame goes through Haar face detection and the CNN "
    "on the server and comes back annotated. Every 5th frame is scanned whole; in between, each face "
    "is re-detected near where it was, which keeps the boxes on moving faces at a fraction of the cost. "
    "Each face is classified together with its mirror image (more accurate, by the figure on the home "
    "page, for well under a millisecond more). Frames are processed in memory and never stored."
)

c1, c2 = st.columns(2)
smoothing = c1.toggle("Smooth labels over time", value=True, help="Moving average per tracked face")
half_res = c2.toggle("Detect at half resolution", value=True, help="About 3x faster whole-frame scans")

try:
    recognizer = get_recognizer()
except Exception as exc:
    st.error(f"The model could not be loaded: {exc}")
    st.stop()

if "live_processor" not in st.session_state:
    st.session_state.live_processor = LiveProcessor(recognizer)
    st.session_state.live_rows = []
processor: LiveProcessor = st.session_state.live_processor
processor.smoothing = smoothing
processor.detect_downscale = 0.5 if half_res else 1.0


def video_frame_callback(frame: av.VideoFrame) -> av.VideoFrame:
    """Runs on the WebRTC worker thread: no st.* calls here, results leave through the processor's queue."""
    annotated = processor.process(frame.to_ndarray(format="bgr24"))
    return av.VideoFrame.from_ndarray(annotated, format="bgr24")


ctx = webrtc_streamer(
    key="fer-live",
    mode=WebRtcMode.SENDRECV,
    rtc_configuration={"iceServers": ice_servers()},
    media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
    video_frame_callback=video_frame_callback,
    async_processing=True,
)

status = st.empty()
timeline = st.empty()


def render(rows: list[dict]) -> None:
    stats = processor.stats()
    status.markdown(
        f'<div data-testid="live-status">frames processed: {stats["frames"]} · '
        f'frames with a face: {stats["frames_with_face"]} · {stats["fps"]:.1f} FPS · '
        f'{stats["latency_ms"]:.1f} ms per frame</div>',
        unsafe_allow_html=True,
    )
    recent = [r for r in rows[-300:] if "label" in r]
    if recent:
        fig = go.Figure()
        for name in CLASS_NAMES:
            fig.add_trace(go.Scatter(x=[r["time_s"] for r in recent], y=[r[name] for r in recent],
                                     name=name, mode="lines", line=dict(color=emotion_hex(name))))
        fig.update_layout(title="Main face, last 300 frames", yaxis=dict(range=[0, 1], tickformat=".0%"),
                          xaxis_title="seconds", height=300, margin=dict(l=10, r=10, t=40, b=10))
        timeline.plotly_chart(fig, width="stretch")


rows: list[dict] = st.session_state.live_rows
while ctx.state.playing:
    rows.extend(r.main_face_record() for r in processor.drain())
    del rows[:-MAX_ROWS]
    render(rows)
    time.sleep(0.5)

rows.extend(r.main_face_record() for r in processor.drain())
render(rows)
if rows:
    st.download_button("This session's per-frame results (CSV)", records_to_csv(rows), "live_session.csv", "text/csv")
    if st.button("Clear session results"):
        rows.clear()
        processor.smoother.reset()
        st.rerun()
st.caption(
    "Deploying on Streamlit Community Cloud: STUN works for most networks. Behind strict NATs add a TURN "
    "server in the app's secrets as `[turn]` with `url`, `username` and `credential` "
    "(or the environment variables FER_TURN_URL, FER_TURN_USERNAME, FER_TURN_CREDENTIAL)."
)
