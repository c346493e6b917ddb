"""ferlens.core.serving: the process-wide queue of video analyses under many threads, its size from the
memory budget, and the per-visitor scratch folder (removed on close, on a timer, and with its owner)."""

from __future__ import annotations

import gc
import io
import threading
import time

import pytest

from ferlens.core.serving import (
    DEFAULT_SERVER_MEMORY_MB,
    JANITOR_THREAD,
    SERVER_MEMORY_ENV,
    VIDEO_ANALYSES,
    VIDEO_ANALYSES_ENV,
    AnalysisQueue,
    QueuePlace,
    ScratchFolder,
    save_stream,
    video_analysis_limit,
)


def _wait_until(condition, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# ---------------------------------------------------------------- the bound's size


def test_the_limit_grows_with_the_memory_budget_and_is_at_least_one():
    default = video_analysis_limit({})
    assert default == video_analysis_limit({SERVER_MEMORY_ENV: str(DEFAULT_SERVER_MEMORY_MB)}) >= 1
    assert video_analysis_limit({SERVER_MEMORY_ENV: "4096"}) > video_analysis_limit({SERVER_MEMORY_ENV: "2048"}) > default
    assert video_analysis_limit({SERVER_MEMORY_ENV: "256"}) == 1  # below the server's own size: still one at a time


def test_an_explicit_count_overrides_the_budget():
    assert video_analysis_limit({VIDEO_ANALYSES_ENV: "5", SERVER_MEMORY_ENV: "512"}) == 5


@pytest.mark.parametrize("name", [SERVER_MEMORY_ENV, VIDEO_ANALYSES_ENV])
@pytest.mark.parametrize("value", ["0", "-2", "1.5", "lots"])
def test_a_setting_that_is_not_a_positive_whole_number_is_refused_by_name(name, value):
    with pytest.raises(ValueError, match=name):
        video_analysis_limit({name: value})


def test_the_process_wide_queue_is_sized_from_the_environment():
    assert VIDEO_ANALYSES.limit == video_analysis_limit()


# ---------------------------------------------------------------- the queue


def test_many_threads_never_run_more_than_the_limit_and_all_finish():
    queue = AnalysisQueue(2)
    lock = threading.Lock()
    running = peak = 0
    finished = []

    def analysis(k: int) -> None:
        nonlocal running, peak
        with queue.slot(poll_s=0.01):
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.02)
            with lock:
                running -= 1
        finished.append(k)

    threads = [threading.Thread(target=analysis, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2  # all twelve arrived together: the bound was reached, never passed
    assert sorted(finished) == list(range(12))
    assert queue.running == 0 and queue.waiting == 0


def test_waiters_start_in_the_order_they_came_and_are_told_their_place():
    queue = AnalysisQueue(1)
    release = threading.Event()
    started: list[int] = []
    places: dict[int, list[QueuePlace]] = {k: [] for k in range(1, 4)}

    def first() -> None:
        with queue.slot():
            started.append(0)
            release.wait()

    def waiter(k: int) -> None:
        with queue.slot(on_wait=places[k].append, poll_s=0.01) as waited:
            assert waited
            started.append(k)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    _wait_until(lambda: queue.running == 1)
    for k in range(1, 4):  # each joins the queue only once the one before is in it
        threads.append(threading.Thread(target=waiter, args=(k,)))
        threads[-1].start()
        _wait_until(lambda k=k: queue.waiting == k and places[k])
    assert [places[k][0] for k in range(1, 4)] == [QueuePlace(k - 1, 1, 1) for k in range(1, 4)]
    release.set()
    for t in threads:
        t.join()
    assert started == [0, 1, 2, 3]
    for k in range(1, 4):
        aheads = [p.ahead for p in places[k]]
        assert aheads == sorted(aheads, reverse=True), "a place in the queue only ever moves up"


def test_one_that_does_not_have_to_wait_is_never_told_it_is_queued():
    queue = AnalysisQueue(1)
    told = []
    with queue.slot(on_wait=told.append) as waited:
        assert not waited and queue.running == 1
    assert told == [] and queue.running == 0


def test_a_waiter_that_leaves_gives_up_its_place_and_the_next_one_moves_up():
    """A Streamlit page's Cancel, or a closed tab, raises from inside on_wait."""

    class Cancelled(BaseException):
        pass

    queue = AnalysisQueue(1)
    release, leave = threading.Event(), threading.Event()
    seen_by_third: list[QueuePlace] = []
    outcome = {}

    def holder() -> None:
        with queue.slot():
            release.wait()

    def leaver() -> None:
        def on_wait(place: QueuePlace) -> None:
            if leave.is_set():
                raise Cancelled

        try:
            with queue.slot(on_wait=on_wait, poll_s=0.01):
                outcome["leaver"] = "ran"
        except Cancelled:
            outcome["leaver"] = "left"

    def third() -> None:
        with queue.slot(on_wait=seen_by_third.append, poll_s=0.01):
            outcome["third"] = "ran"

    threads = [threading.Thread(target=f) for f in (holder, leaver, third)]
    threads[0].start()
    _wait_until(lambda: queue.running == 1)
    threads[1].start()
    _wait_until(lambda: queue.waiting == 1)
    threads[2].start()
    _wait_until(lambda: len(seen_by_third) > 0)
    assert seen_by_third[0].ahead == 1
    leave.set()
    threads[1].join(timeout=10)
    assert outcome["leaver"] == "left" and queue.waiting == 1
    _wait_until(lambda: seen_by_third[-1].ahead == 0)  # moved up
    release.set()
    for t in threads:
        t.join(timeout=10)
    assert outcome == {"leaver": "left", "third": "ran"} and queue.running == 0 and queue.waiting == 0


def test_an_analysis_that_fails_frees_its_slot():
    queue = AnalysisQueue(1)
    with pytest.raises(RuntimeError), queue.slot():
        raise RuntimeError("decoder crashed")
    with queue.slot() as waited:
        assert not waited


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        AnalysisQueue(0)


# ---------------------------------------------------------------- the scratch folder


def test_files_live_in_the_folder_and_go_with_it(tmp_path):
    folder = ScratchFolder(root=tmp_path)
    folder.file("upload.mp4").write_bytes(b"x")
    folder.file("annotated.mp4").write_bytes(b"y")
    folder.remove("annotated.mp4", "never_written.mp4")
    assert [p.name for p in folder.path.iterdir()] == ["upload.mp4"]
    folder.clear()
    assert folder.path.is_dir() and not any(folder.path.iterdir())
    folder.file("upload.mp4").write_bytes(b"x")
    folder.close()
    assert folder.closed and not folder.path.exists()
    folder.close()  # twice is fine


@pytest.mark.parametrize("name", ["../escape.mp4", "sub/file.mp4", "", ".."])
def test_only_plain_file_names_are_taken(tmp_path, name):
    with pytest.raises(ValueError):
        ScratchFolder(root=tmp_path).file(name)


def test_the_folder_is_removed_with_its_owner(tmp_path):
    """The app keeps it in a session's state: when Streamlit drops the session, the files go."""
    folder = ScratchFolder(root=tmp_path)
    path = folder.path
    folder.file("upload.mp4").write_bytes(b"x" * 1000)
    del folder
    gc.collect()
    assert not path.exists()


def test_close_after_removes_the_folder_unless_kept(tmp_path):
    kept, left = ScratchFolder(root=tmp_path), ScratchFolder(root=tmp_path)
    kept.close_after(0.2)
    left.close_after(0.2)
    kept.keep()  # the visitor came back
    _wait_until(lambda: left.closed, timeout_s=10)
    assert not left.path.exists()
    time.sleep(0.3)
    assert not kept.closed and kept.path.is_dir()


def test_a_visitor_who_is_back_keeps_the_folder_until_gone_for_the_whole_time(tmp_path):
    """Streamlit does not rerun a page whose browser reconnects, so the app asks whether the session is connected."""
    folder = ScratchFolder(root=tmp_path)
    here = threading.Event()
    here.set()
    folder.close_after(0.4, still_here=here.is_set)
    time.sleep(1.0)  # more than twice the time, but never gone
    assert not folder.closed
    here.clear()
    gone = time.monotonic()
    _wait_until(lambda: folder.closed)
    # Gone for the whole time since it was last seen, which was at most one check (a quarter) before `gone`.
    assert time.monotonic() - gone >= 0.4 * 3 / 4 and not folder.path.exists()


def test_close_after_and_keep_from_many_threads_at_once(tmp_path):
    """The web server schedules the removal from its event loop while the page's thread may keep it."""
    folder = ScratchFolder(root=tmp_path)
    barrier = threading.Barrier(8)

    def toggle(k: int) -> None:
        barrier.wait()
        for _ in range(200):
            folder.close_after(60) if k % 2 else folder.keep()

    threads = [threading.Thread(target=toggle, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    folder.keep()
    # Every wait was cancelled (a live one would wait its 60 s): none is left running, the folder stays.
    _wait_until(lambda: not any(t.name == JANITOR_THREAD for t in threading.enumerate()))
    assert not folder.closed
    folder.close_after(0.05)
    _wait_until(lambda: folder.closed)


def test_save_stream_copies_a_file_object_whole(tmp_path):
    data = bytes(range(256)) * 20_000  # 5 MB: several chunks
    source = io.BytesIO(data)
    source.read(100)  # wherever it was left, the whole file is copied
    assert save_stream(source, tmp_path / "copy.bin", chunk_bytes=1 << 16) == len(data)
    assert (tmp_path / "copy.bin").read_bytes() == data
