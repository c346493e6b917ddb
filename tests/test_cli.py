"""`python -m fer.predict`: per-file results, failures reported without stopping the others."""

from __future__ import annotations

import json

from PIL import Image

from fer import predict


def test_cli_reports_good_and_bad_files(shipped_model_dir, astronaut_rgb, tmp_path, capsys):
    good = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut_rgb).save(good)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code = predict.main([str(bad), str(good), "--json", "--model", str(shipped_model_dir), "--backend", "keras"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    by_image = {r["image"]: r for r in report["results"]}
    assert "corrupt or truncated image" in by_image[str(bad)]["error"]
    faces = by_image[str(good)]["faces"]
    assert len(faces) == 1 and faces[0]["label"] == "happy"
    assert set(faces[0]["box"]) == {"x", "y", "width", "height"}


def test_cli_text_output_and_exit_codes(shipped_model_dir, astronaut_rgb, tmp_path, capsys):
    good = tmp_path / "a.png"
    Image.fromarray(astronaut_rgb).save(good)
    assert predict.main([str(good), "--model", str(shipped_model_dir), "--backend", "keras"]) == 0
    out = capsys.readouterr().out
    assert "1 face(s)" in out and "happy" in out
    assert predict.main([str(good), "--model", str(tmp_path / "nope")]) == 2
    assert "model folder not found" in capsys.readouterr().err


def test_cli_test_time_augmentation_choice(shipped_model_dir, astronaut_rgb, tmp_path, capsys):
    good = tmp_path / "a.png"
    Image.fromarray(astronaut_rgb).save(good)
    probabilities = {}
    for mode in ("none", "ten-crop"):
        assert predict.main([str(good), "--json", "--tta", mode, "--model", str(shipped_model_dir)]) == 0
        face = json.loads(capsys.readouterr().out)["results"][0]["faces"][0]
        assert face["label"] == "happy"
        probabilities[mode] = face["probabilities"]
    assert probabilities["none"] != probabilities["ten-crop"]
