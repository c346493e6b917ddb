"""`ferlens.core.batch`: an archive analysed locally or on Ray, exactly the same rows, resumable without duplicates."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from ferlens.config import DEFAULT_MODEL_DIR, PROJECT_ROOT
from ferlens.core.batch import JobSettings, ResultsDir, main, run_job
from ferlens.core.results import CSV_COLUMNS
from tests.media import two_faces_frames, write_video

#: The fast live model for images too, so that the tests stay quick.
SETTINGS = JobSettings(image_model=str(DEFAULT_MODEL_DIR), image_tta="none", unit_seconds=1.0)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, astronaut_rgb) -> Path:
    """A mixed folder: photos (one in a subfolder), a 2-second video, a corrupt file, a non-image."""
    root = tmp_path_factory.mktemp("archive")
    (root / "sub").mkdir()
    for i in range(6):
        crop = astronaut_rgb[: 320 + 20 * i, 60 + 10 * i:]
        Image.fromarray(crop).save(root / ("sub" if i == 5 else ".") / f"photo{i}.jpg")
    write_video(root / "clip.mp4", two_faces_frames(astronaut_rgb, 60))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.md").write_text("not an image")
    return root


def _rows(out: Path) -> list[tuple]:
    return sorted(tuple(row[c] for c in CSV_COLUMNS) for row in ResultsDir(out, SETTINGS).rows())


@pytest.fixture(scope="module")
def local_result(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "results"
    counts = run_job([archive], out, SETTINGS, quiet=True)
    return out, counts


def test_the_local_engine_accounts_for_every_input(archive, local_result):
    out, counts = local_result
    assert counts == {"done": 8, "failed": 1, "skipped": 1, "faces": counts["faces"]}  # 6 photos + 2 video parts
    rows = [dict(zip(CSV_COLUMNS, row)) for row in _rows(out)]
    photos = [r for r in rows if r["source"].endswith(".jpg")]
    assert sorted({Path(r["source"]).name for r in photos}) == [f"photo{i}.jpg" for i in range(6)]
    assert all(r["frame"] is None and r["label"] for r in photos)
    video = [r for r in rows if r["source"].endswith("clip.mp4")]
    assert {r["frame"] for r in video} == set(range(60))  # both parts, every frame, numbered as one pass
    assert len({r["face"] for r in video if r["frame"] < 30} & {r["face"] for r in video if r["frame"] >= 30}) == 0
    import pyarrow.parquet as pq

    failed = {Path(r["path"]).name: (r["status"], r["reason"]) for r in pq.read_table(out / "failed.parquet").to_pylist()}
    assert failed["broken.png"][0] == "failed" and "not a supported image" in failed["broken.png"][1]
    assert failed["notes.md"] == ("skipped", "not an image or a video")


def test_a_rerun_does_nothing_twice_and_other_settings_are_refused(archive, local_result):
    out, counts = local_result
    before = _rows(out)
    assert run_job([archive], out, SETTINGS, quiet=True) == counts
    assert _rows(out) == before
    with pytest.raises(ValueError, match="other settings"):
        run_job([archive], out, JobSettings(image_model=str(DEFAULT_MODEL_DIR), unit_seconds=1.0), quiet=True)


def test_a_list_file_and_the_csv_option(archive, tmp_path, capsys):
    listing = tmp_path / "inputs.txt"
    photo = archive / "photo0.jpg"
    listing.write_text(f"# two photos, one listed twice\n{photo}\n\n{archive / 'sub' / 'photo5.jpg'}\n{photo}\n")
    out, csv_file = tmp_path / "results", tmp_path / "faces.csv"
    code = main([str(listing), "--out", str(out), "--model", str(DEFAULT_MODEL_DIR), "--csv", str(csv_file)])
    assert code == 0
    lines = csv_file.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 3
    assert "2 inputs analysed" in capsys.readouterr().err


def test_its_lines_on_stderr_quote_a_name_with_a_newline(tmp_path, capsys):
    """Issue 41: the summary names the results directory; a newline in it must not split the line."""
    (tmp_path / "notes.md").write_text("not an image")
    out = tmp_path / "out\nput"
    assert main([str(tmp_path / "notes.md"), "--out", str(out), "--model", str(DEFAULT_MODEL_DIR)]) == 1  # named: a failure
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"0 inputs analysed, 0 faces; 1 failed, 0 skipped (see {str(out / 'failed.parquet')!r})", lines


def test_killing_the_driver_loses_only_the_units_in_flight(archive, local_result, tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, "-m", "ferlens.core.batch", str(archive), "--out", str(out), "--model", str(DEFAULT_MODEL_DIR),
               "--part-units", "1", "--unit-seconds", "1"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    job = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    database = out / "progress.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        if database.exists():
            with sqlite3.connect(database) as db:
                if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'units'").fetchone()[0] and \
                        db.execute("SELECT COUNT(*) FROM units").fetchone()[0] >= 3:
                    break
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    with sqlite3.connect(database) as db:
        done_before = db.execute("SELECT COUNT(*) FROM units").fetchone()[0]
    assert 3 <= done_before < 10
    assert subprocess.run(command, env=env, stderr=subprocess.DEVNULL).returncode == 1  # one input failed
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM units").fetchone()[0] == 10
    resumed = ResultsDir(out, JobSettings(unit_seconds=1.0, image_model=str(DEFAULT_MODEL_DIR),
                                          video_model=str(DEFAULT_MODEL_DIR)))
    keys = [(row["source"], row["frame"], row["face"]) for row in resumed.rows()]
    assert len(keys) == len(set(keys))  # no face written twice
    assert {Path(k[0]).name for k in keys} == {f"photo{i}.jpg" for i in range(6)} | {"clip.mp4"}


# ---------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[scale]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_the_ray_engine_gives_exactly_the_local_rows(ray_cluster, archive, local_result, tmp_path):
    local_out, local_counts = local_result
    counts = run_job([archive], tmp_path / "results", SETTINGS, engine="ray", quiet=True)
    assert counts == local_counts
    assert _rows(tmp_path / "results") == _rows(local_out)


def _worker_pids() -> list[int]:
    """Processes of Ray Data's actor pool (their title names the callable class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"RayUnitWorker" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, astronaut_rgb) -> Path:
    """12 seconds of two faces: 12 one-second units, slow enough (ten-crop) for a kill to land mid-job."""
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", two_faces_frames(astronaut_rgb, 360))


def test_a_killed_worker_is_replaced_and_every_input_is_accounted_for(ray_cluster, long_clip, tmp_path):
    settings = JobSettings(video_model=str(DEFAULT_MODEL_DIR), video_tta="ten-crop", unit_seconds=1.0)
    killed: list[int] = []

    def kill_one_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _worker_pids()
            if pids:
                time.sleep(1.0)  # mid-job: the pool is working
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    counts = run_job([long_clip], tmp_path / "results", settings, engine="ray", quiet=True)
    killer.join()
    assert killed, "no worker was found to kill"
    assert counts["done"] == 12 and set(counts) == {"done", "faces"}  # every stretch, none failed
    keys = [(row["frame"], row["face"]) for row in ResultsDir(tmp_path / "results", settings).rows()]
    assert len(keys) == len(set(keys)) == counts["faces"]  # no stretch written twice
    assert {frame for frame, _ in keys} == set(range(360))  # none lost
