"""Keep the live page's memory bounded when the server falls behind a camera.

streamlit-webrtc passes every stream through one global aiortc `MediaRelay` and subscribes to it
*buffered*: each consumer gets an unbounded queue. The consumers are paced by the server's work
(decode, our callback, VP8 encode). When that work is slower than the camera (three streams on two
cores), every frame the server is too slow for waits in those queues, decoded at 640x480 (460 KB),
and the server's memory grows without end: 393 to 609 MB in 2.5 minutes with three streams here.
A live view only ever wants the newest frame, so the live page installs a relay whose subscribers
are unbuffered: a slow consumer skips to the newest frame instead of queueing the old ones.
"""

from __future__ import annotations

import threading

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from streamlit.runtime.runtime import Runtime
from streamlit_webrtc.relay import _SERVER_GLOBAL_RELAY_ATTR_NAME_ as GLOBAL_RELAY_ATTR

_install_lock = threading.Lock()


class LatestFrameRelay(MediaRelay):
    """A `MediaRelay` whose every subscriber gets the newest frame, never a backlog."""

    def subscribe(self, track: MediaStreamTrack, buffered: bool = True) -> MediaStreamTrack:
        return super().subscribe(track, buffered=False)


def install_latest_frame_relay() -> LatestFrameRelay:
    """Make streamlit-webrtc's global relay a `LatestFrameRelay` (once per server; safe from any session's thread).

    Call it before `webrtc_streamer`: streamlit-webrtc creates its own buffered relay on first use."""
    runtime = Runtime.instance()
    with _install_lock:
        relay = getattr(runtime, GLOBAL_RELAY_ATTR, None)
        if not isinstance(relay, LatestFrameRelay):
            relay = LatestFrameRelay()
            setattr(runtime, GLOBAL_RELAY_ATTR, relay)
    return relay
