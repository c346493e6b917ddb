"""Streamlit pages rendered headlessly with AppTest: no exceptions, and the figures come from the artifacts."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from fer.config import PROJECT_ROOT

TIMEOUT = 120


def _run(path: str) -> AppTest:
    app = AppTest.from_file(str(PROJECT_ROOT / path), default_timeout=TIMEOUT)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.fixture(scope="module")
def shipped_metrics(shipped_model_dir) -> dict:
    return json.loads((shipped_model_dir / "metrics.json").read_text())


def test_home_shows_the_shipped_models_figures(shipped_metrics):
    app = _run("streamlit_app.py")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["PrivateTest accuracy"] == f"{100 * shipped_metrics['test']['accuracy']:.1f} %"
    assert metrics["macro-F1"] == f"{100 * shipped_metrics['test']['macro_f1']:.1f} %"
    assert metrics["parameters"] == f"{shipped_metrics['model']['parameters'] / 1e6:.2f} M"
    captions = " ".join(c.value for c in app.caption)
    assert f"ten-crop {100 * shipped_metrics['tta']['ten-crop']['test_accuracy']:.1f} %" in captions
    assert not app.error


def test_upload_page_annotates_the_example_photo():
    app = _run("app_pages/1_Upload.py")
    html = " ".join(m.value for m in app.markdown)
    assert "faces found: 1" in html
    assert len(app.dataframe) == 1
    row = app.dataframe[0].value
    assert list(row["label"])[0] in {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    assert not app.error


def test_upload_page_test_time_augmentation_setting():
    app = _run("app_pages/1_Upload.py")
    assert app.radio[0].value == "ten-crop"
    ten_crop = app.dataframe[0].value
    app.radio[0].set_value("none").run()
    single = app.dataframe[0].value
    assert list(single["x"]) == list(ten_crop["x"])  # same face ...
    assert list(single["happy"]) != list(ten_crop["happy"])  # ... other probabilities
    assert not app.exception


def test_upload_page_offers_whole_image_mode_when_no_face(monkeypatch):
    import numpy as np

    import fer.ui

    monkeypatch.setattr(fer.ui, "example_image", lambda: np.full((300, 300, 3), 180, np.uint8))
    app = _run("app_pages/1_Upload.py")
    assert any("No face found" in w.value for w in app.warning)
    app.checkbox(key="whole-0-astronaut.png").check().run()
    html = " ".join(m.value for m in app.markdown)
    assert "faces found: 1" in html


def test_live_page_renders_idle(monkeypatch):
    """AppTest has no WebRTC runtime, so the component is replaced by an idle stand-in that records
    its arguments; the real component is exercised by the browser test."""
    import types

    import streamlit_webrtc

    calls = []

    def fake_streamer(**kwargs):
        calls.append(kwargs)
        return types.SimpleNamespace(state=types.SimpleNamespace(playing=False))

    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", fake_streamer)
    monkeypatch.setenv("FER_ICE_SERVERS", "none")
    app = _run("app_pages/2_Live_camera.py")
    assert calls and callable(calls[0]["video_frame_callback"])
    assert calls[0]["rtc_configuration"] == {"iceServers": []}
    assert "frames processed: 0" in " ".join(m.value for m in app.markdown)
    assert [t.label for t in app.toggle] == ["Smooth labels over time", "Detect at half resolution"]
    assert not app.error


def test_report_page_shows_the_artifacts(shipped_metrics):
    app = _run("app_pages/3_Model_report.py")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["PublicTest accuracy"] == f"{100 * shipped_metrics['val']['accuracy']:.1f} %"
    per_class = app.dataframe[0].value
    assert list(per_class["class"]) == list(shipped_metrics["test"]["per_class"])
    assert list(per_class["support"]) == [r["support"] for r in shipped_metrics["test"]["per_class"].values()]
    headers = [h.value for h in app.header]
    assert {"Training curves", "Confusion matrix (PrivateTest)", "Model card"} <= set(headers)
    app.radio[0].set_value("row-normalised").run()
    assert not app.exception


def test_navigation_lists_every_page_script_once():
    """The entry point names each script in app_pages/ once, and no pages/ folder exists: Streamlit
    would list that folder too on a session's first run (the sidebar would say "streamlit app")."""
    import re

    assert not (PROJECT_ROOT / "pages").exists(), "page scripts go in app_pages/, with one st.Page line in streamlit_app.py"
    listed = re.findall(r'^\s*st\.Page\("(app_pages/[^"]+)"', (PROJECT_ROOT / "streamlit_app.py").read_text(), re.M)
    assert sorted(listed) == sorted(f"app_pages/{p.name}" for p in (PROJECT_ROOT / "app_pages").glob("*.py"))


def test_shipped_config_hides_tracebacks_toolbar_and_file_watcher():
    import tomllib

    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"  # a deployed app shows no stack trace
    assert config["client"]["toolbarMode"] == "minimal"  # no "Deploy" button
    assert config["server"]["fileWatcherType"] == "none"  # no inotify scan of the .venv inside the project
