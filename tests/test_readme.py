"""The README stays short and true: at most 180 lines, every relative link in it and in docs/ leads to a
file (and heading) that exists, its screenshot is there, and its models table quotes the figures the
code wrote (each model folder's metrics.json, and the benchmark files the table links to), so a figure
edited by hand fails here."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
SCREENSHOT = ROOT / "docs" / "upload.png"  # written by tests/test_browser.py
MAX_LINES = 180
SHIPPED = ("fer-vgg-ferplus", "fer-vgg-ferplus-photo")

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
#: A models-table row: | [`name`](card): what, N.NN M parameters | used by | FER+ private % | FER2013 private %
#: | all % / found % |
ROW = re.compile(
    r"^\| \[`(?P<model>[\w-]+)`\]\((?P<card>[^)]+)\):[^|]*?(?P<params>\d+\.\d\d) M parameters \|[^|]*"
    r"\| (?P<ferplus>\d+\.\d\d) % \| (?P<private>\d+\.\d\d) % \| (?P<all>\d+\.\d\d) % / (?P<found>\d+\.\d\d) % \|$",
    re.MULTILINE,
)


def _text_outside_code(path: Path) -> str:
    return FENCE.sub("", path.read_text())


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _text_outside_code(path).splitlines() if line.startswith("#")}


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def _table_rows() -> dict[str, re.Match]:
    return {match["model"]: match for match in ROW.finditer(README.read_text())}


def test_readme_fits_in_two_minutes():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; keep it to {MAX_LINES} and move the rest to docs/"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_existing_files_and_headings(doc):
    broken = []
    for target in LINK.findall(_text_outside_code(doc)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_doc_is_linked_from_the_readme():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in LINK.findall(README.read_text())}
    assert [d.name for d in DOCS if d.resolve() not in linked] == []


def test_the_screenshot_is_a_1280_px_png_the_readme_shows():
    assert "](docs/upload.png)" in README.read_text()
    data = SCREENSHOT.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "docs/upload.png is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height > 600, (width, height)


def test_models_table_quotes_metrics_json():
    rows = _table_rows()
    assert sorted(rows) == sorted(SHIPPED), f"the models table should have one row per shipped model, has {sorted(rows)}"
    for model, row in rows.items():
        metrics = json.loads((ROOT / "models" / model / "metrics.json").read_text())
        wild = metrics["in_the_wild"]
        assert row["card"] == f"models/{model}/MODEL_CARD.md"
        assert row["params"] == f"{metrics['model']['parameters'] / 1e6:.2f}", (model, "parameters")
        assert row["private"] == _percent(metrics["test"]["accuracy"]), (model, "PrivateTest accuracy")
        assert row["ferplus"] == _percent(metrics["ferplus"]["test"]["accuracy"]), (model, "FER+ PrivateTest accuracy")
        assert row["all"] == _percent(wild["accuracy_all"]), (model, "ExpW accuracy over all faces")
        assert row["found"] == _percent(wild["accuracy_found"]), (model, "ExpW accuracy on found faces")
        assert f"{wild['faces']:,} labelled faces" in " ".join(README.read_text().split()), (model, "ExpW face count")
