"""Packaging stays consistent: Streamlit Cloud's requirements.txt is pyproject's core plus the app's extras."""

from __future__ import annotations

import tomllib

from ferlens.config import PROJECT_ROOT


def _project() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]


def test_requirements_txt_is_the_core_and_the_app_extras():
    project = _project()
    declared = project["dependencies"] + project["optional-dependencies"]["app"]
    listed = [line.strip() for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert sorted(listed) == sorted(declared)
    assert not any(line.startswith(("tensorflow", "keras")) for line in listed)  # serving never imports them


def test_the_test_extra_installs_everything():
    extras = _project()["optional-dependencies"]
    assert "fer-app[app,train,scale]" in extras["test"] and set(extras) >= {"app", "train", "scale", "test"}


def test_opencv_is_pinned_below_5():
    """OpenCV 5 dropped the Haar cascades the detector needs."""
    declared = _project()["dependencies"]
    assert "opencv-python-headless>=4.10,<5" in declared


def test_ci_runs_the_readme_test_command():
    readme = (PROJECT_ROOT / "README.md").read_text()
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    command = 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest'
    assert command in readme and command in ci
