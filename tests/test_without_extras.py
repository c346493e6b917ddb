"""The library/app line holds at run time: the app serves without TensorFlow (requirements.txt has none),
and the core classifies a photo from the command line without the app's or training's packages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from PIL import Image

from ferlens.config import PROJECT_ROOT

#: Importing any of these raises ImportError in the child process, as if it were not installed.
TRAINING_PACKAGES = ("tensorflow", "keras", "tf2onnx", "tensorboard")
APP_PACKAGES = ("streamlit", "streamlit_webrtc", "av", "plotly", "skimage", "pyarrow")


def _run_without(packages: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    blocker = f"import sys\nfor name in {packages!r}:\n    sys.modules[name] = None\n"
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600)


def test_every_page_serves_and_answers_an_upload_without_tensorflow():
    result = _run_without(TRAINING_PACKAGES, """
        import os
        import types

        import av
        import streamlit_webrtc
        from skimage import data
        from streamlit.testing.v1 import AppTest
        from app_pages.ui import PAGES

        # AppTest has no WebRTC runtime: a stand-in keeps the frame callback, which is then fed a frame.
        calls = []
        streamlit_webrtc.webrtc_streamer = lambda **kwargs: calls.append(kwargs) or types.SimpleNamespace(
            state=types.SimpleNamespace(playing=False, signalling=False))
        os.environ["FER_ICE_SERVERS"] = "none"
        app = AppTest.from_file("streamlit_app.py", default_timeout=300)
        for page in PAGES:
            app.switch_page(page.script).run()
            assert not app.exception, (page.script, [e.value for e in app.exception])
            assert not app.error, (page.script, [e.value for e in app.error])
            if page.url_path == "Upload":
                app.radio(key="source").set_value("Example photo").run()
                assert not app.exception and not app.error
                text = " ".join(m.value for m in app.markdown)
                assert "faces found: 1" in text, text
        frame = av.VideoFrame.from_ndarray(data.astronaut()[:, :, ::-1].copy(), format="bgr24")
        answered = calls[-1]["video_frame_callback"](frame)
        assert answered.to_ndarray().shape == (512, 512, 3)
        print("served", len(PAGES))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served 5" in result.stdout


def test_the_core_alone_classifies_a_photo_from_the_command_line(astronaut_rgb, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut_rgb).save(photo)
    result = _run_without(TRAINING_PACKAGES + APP_PACKAGES, f"""
        import sys
        from ferlens.core import predict
        sys.argv = ["ferlens.core.predict", {str(photo)!r}, "--json"]
        code = predict.main(sys.argv[1:])
        assert not any(name in sys.modules and sys.modules[name] is not None for name in {APP_PACKAGES!r})
        sys.exit(code)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    faces = json.loads(result.stdout)["results"][0]["faces"]
    assert len(faces) == 1 and faces[0]["label"] == "happy"
