"""Packaging stays consistent: Streamlit Cloud's requirements.txt equals pyproject's dependencies."""

from __future__ import annotations

import tomllib

from fer.config import PROJECT_ROOT


def test_requirements_txt_matches_pyproject():
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.strip() for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert sorted(listed) == sorted(declared)


def test_opencv_is_pinned_below_5():
    """OpenCV 5 dropped the Haar cascades the detector needs."""
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "opencv-python-headless>=4.10,<5" in declared


def test_ci_runs_the_readme_test_command():
    readme = (PROJECT_ROOT / "README.md").read_text()
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    command = 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest'
    assert command in readme and command in ci
