"""The deploy as Streamlit Community Cloud makes it: a fresh venv on Python 3.12 and on 3.13,
`pip install -r requirements.txt` alone (no `-e .`, PyPI only), `streamlit run streamlit_app.py` from the
repository root with that venv's Python; headless Chromium then opens every page and uploads a face.

Slow by nature: one install per interpreter (about a minute each on 2 cores), then the server. The install
goes over the network; a failed install fails the test (it is what the host would hit). Skipped only where
an interpreter or Chromium is absent. `python -m benchmarks.deploy` measures the same deploy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from benchmarks import app_server, deploy
from benchmarks.app_load import upload_together, visitor_photos
from ferlens.config import PROJECT_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or app_server.CHROMIUM


@pytest.fixture(scope="module", params=sorted(deploy.INTERPRETERS))
def deployed(request, tmp_path_factory):
    """The app served by a venv that holds requirements.txt and nothing else, for one interpreter."""
    version, python = request.param, deploy.INTERPRETERS[request.param]
    if not python.exists():
        pytest.skip(f"Python {version} is not installed at {python} (pyenv install {python.parent.parent.name})")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; CI installs Debian's chromium package")
        pytest.skip("Debian's chromium package is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.async_api")
    folder = tmp_path_factory.mktemp(f"deploy-{version}")
    venv = folder / "venv"
    try:
        deploy.install(python, venv, PROJECT_ROOT / "requirements.txt")
    except deploy.InstallFailed as exc:
        pytest.fail(str(exc))
    log = folder / "streamlit.log"
    try:
        with app_server.serve_app(log, env=deploy.server_env(venv), python=deploy.venv_python(venv),
                                  timeout_s=180) as (url, _pid):
            yield types.SimpleNamespace(version=version, venv=venv, url=url, log=log, folder=folder)
    except app_server.AppDidNotStart as exc:
        pytest.fail(str(exc))


def test_the_venv_is_the_requested_python_and_holds_no_tensorflow(deployed):
    code = ("import importlib.util, sys\n"
            "print('%d.%d' % sys.version_info[:2], *(importlib.util.find_spec(n) is not None "
            "for n in ('tensorflow', 'keras', 'streamlit', 'onnxruntime', 'fer')))")
    done = subprocess.run([str(deploy.venv_python(deployed.venv)), "-c", code], cwd=deployed.folder,
                          env=deploy.pip_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # fer comes from the checkout the server runs in, not from the venv: requirements.txt does not install it.
    assert done.stdout.split() == [deployed.version, "False", "False", "True", "True", "False"]


def test_every_page_renders_without_an_exception(deployed):
    shown = asyncio.run(deploy.open_every_page(deployed.url))
    from app_pages.ui import PAGES

    assert list(shown) == [page.title for page in PAGES]
    assert not any(shown.values()), {title: texts for title, texts in shown.items() if texts}


def test_an_uploaded_face_photo_answers_one_face(deployed, tmp_path):
    photo = visitor_photos(tmp_path, 1)[0]  # scikit-image's astronaut as a PNG: one face
    (result,) = asyncio.run(upload_together(deployed.url, [photo], timeout_s=180))
    assert result.face_count == 1, result.summary
    assert not result.exceptions


def test_the_server_log_has_no_traceback(deployed):
    """Runs after the pages and the upload of this interpreter's server."""
    log = deployed.log.read_text()
    assert "Traceback" not in log, log[-3000:]


# ---------------------------------------------------------------- what a deploy clones of models/


def _tracked_model_files() -> dict[str, set[str]]:
    """Model folder name -> the files git tracks at its top (what a clone of the repository holds)."""
    listed = subprocess.run(["git", "ls-files", "models"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    folders: dict[str, set[str]] = {}
    for line in listed.stdout.splitlines():
        parts = Path(line).parts
        if len(parts) == 3:
            folders.setdefault(parts[1], set()).add(parts[2])
    return folders


def test_a_deploy_carries_the_weights_it_serves_and_no_others():
    """The pages serve two folders in every format they may choose; an ensemble's members keep their
    model.keras (the ensemble is rebuilt from them); every other tracked folder keeps its record alone."""
    import json

    from ferlens.config import DEFAULT_MODEL_DIR, MODELS_DIR, PHOTO_MODEL_DIR
    from ferlens.modelfolder.artifacts import list_model_dirs
    from ferlens.modelfolder.loading import BACKEND_FILES
    from ferlens.modelfolder.manifest import MODEL_SUFFIXES, read_manifest

    tracked = _tracked_model_files()
    served = {DEFAULT_MODEL_DIR.name, PHOTO_MODEL_DIR.name}
    members = {member for name in served
               for member in json.loads((MODELS_DIR / name / "train_config.json").read_text()).get("ensemble", {}).get(
                   "members", [])}
    weights = {name: {f for f in files if Path(f).suffix in MODEL_SUFFIXES} for name, files in tracked.items()}
    for name in served:
        assert weights[name] == set(BACKEND_FILES.values()), name
    for name in members - served:
        assert weights[name] == {"model.keras"}, f"{name} is an ensemble member: it ships model.keras alone"
    unused = {name: files for name, files in weights.items() if files and name not in served | members}
    assert not unused, f"weights that no page serves and no ensemble is rebuilt from: {unused}"
    for name in tracked:
        manifest = read_manifest(MODELS_DIR / name)
        if manifest is not None:
            assert set(manifest) == weights[name], f"models/{name}/SHA256SUMS must list exactly its model files"
    record_only = {name for name, files in tracked.items() if "metrics.json" in files and not weights[name]}
    loadable = {p.name for p in list_model_dirs()}
    reported = {p.name for p in list_model_dirs(weights=False)}
    assert record_only and not record_only & loadable and record_only <= reported
