"""The live page's relay: a consumer slower than the camera skips to the newest frame instead of queueing."""

from __future__ import annotations

import asyncio
import threading
import types

import pytest

pytest.importorskip("streamlit_webrtc")
from aiortc import MediaStreamTrack  # noqa: E402
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from app_pages import live_relay  # noqa: E402

FRAMES = 60


class FastCamera(MediaStreamTrack):
    """A source that produces numbered frames every millisecond, then ends."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    async def recv(self) -> int:
        if self.sent == FRAMES:
            raise MediaStreamError
        await asyncio.sleep(0.001)
        self.sent += 1
        return self.sent


async def slow_consumer(relay: MediaRelay) -> tuple[list[int], list[int], int]:
    """What a consumer taking 20 ms a frame receives, how many frames older than the newest each was,
    and the most frames ever waiting for it."""
    camera = FastCamera()
    proxy = relay.subscribe(camera)
    received, behind, most_waiting = [], [], 0
    while True:
        try:
            received.append(await proxy.recv())
        except MediaStreamError:
            return received, behind, most_waiting
        behind.append(camera.sent - received[-1])
        queue = getattr(proxy, "_queue", None)
        most_waiting = max(most_waiting, queue.qsize() if queue is not None else 0)
        await asyncio.sleep(0.02)


def test_buffered_relay_queues_every_frame_a_slow_consumer_is_late_for():
    """The behaviour being fixed, so that the next test cannot pass for the wrong reason."""
    received, behind, most_waiting = asyncio.run(slow_consumer(MediaRelay()))
    assert received == list(range(1, FRAMES + 1))
    assert most_waiting >= FRAMES // 2 and max(behind) >= FRAMES // 2


def test_latest_frame_relay_gives_a_slow_consumer_the_newest_frame_and_queues_nothing():
    received, behind, most_waiting = asyncio.run(slow_consumer(live_relay.LatestFrameRelay()))
    assert most_waiting == 0
    assert len(received) < FRAMES // 3, "a consumer 20x slower than the source got nearly every frame"
    assert received == sorted(set(received)), "frames arrived out of order or twice"
    assert max(behind) <= 1, f"the consumer was handed frames up to {max(behind)} behind the newest"


def test_the_installed_relay_is_the_one_streamlit_webrtc_uses(monkeypatch):
    from streamlit.runtime.runtime import Runtime
    from streamlit_webrtc.relay import get_global_relay

    runtime = types.SimpleNamespace()
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: runtime))
    installed = []
    threads = [threading.Thread(target=lambda: installed.append(live_relay.install_latest_frame_relay()))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert isinstance(installed[0], live_relay.LatestFrameRelay)
    assert all(relay is installed[0] for relay in installed), "sessions installed different relays"
    assert get_global_relay() is installed[0]
