"""A model folder that proves what it holds: `SHA256SUMS` lists each model file's sha256.

Training and export write it; every load checks the file against it, so a damaged or swapped
model file is refused by name instead of giving plausible wrong numbers. The format is the one
`sha256sum` writes, so `sha256sum -c SHA256SUMS` checks a folder too.

    python -m ferlens.modelfolder.manifest MODEL_DIR           # record the model files now in the folder
    python -m ferlens.modelfolder.manifest MODEL_DIR --check   # verify them (exit status 1 on a mismatch)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ferlens.files import read_text_if_present, write_compact_json
from ferlens.modelfolder.artifacts import SELFTEST_FILENAME

MANIFEST_FILENAME = "SHA256SUMS"
#: Files with these endings, at the top of a model folder, are model files and must be listed.
MODEL_SUFFIXES: tuple[str, ...] = (".keras", ".tflite", ".onnx")
_LINE = re.compile(r"^([0-9a-f]{64}) [ *]([^/\\]+)$")


class ManifestError(RuntimeError):
    """A model file does not match the folder's manifest, is not listed in it, or the manifest is unreadable."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_files(model_dir: Path) -> list[Path]:
    """The model files at the top of `model_dir` (checkpoints in sub-folders are not served)."""
    return sorted(p for p in Path(model_dir).iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)


def write_manifest(model_dir: Path, filenames: Iterable[str] | None = None) -> Path:
    """Record the sha256 of `filenames` (default: every model file in the folder) in `SHA256SUMS`.

    Files not named are left out on purpose: a file the manifest does not list is refused at load,
    so model files left over from an earlier run cannot pass for the new one.

    Naming the files (as training and export do, having just written them) declares them new versions:
    the known answers `selftest.json` holds for their previous versions are dropped (`ferlens.modelfolder.selftest`).
    Recording the folder as it is (no names: `python -m ferlens.modelfolder.manifest`) keeps them, so a damaged file
    recorded that way still fails its self-test.
    """
    model_dir = Path(model_dir)
    names = sorted(filenames) if filenames is not None else [p.name for p in model_files(model_dir)]
    sums = {name: sha256_file(model_dir / name) for name in names}
    path = model_dir / MANIFEST_FILENAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()), encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a manifest
    if filenames is not None:
        forget_other_versions(model_dir, sums)
    return path


def forget_other_versions(model_dir: Path, recorded: Mapping[str, str]) -> None:
    """Drop the answers of files that `recorded` (file name -> sha256, new versions a writer has just
    recorded in the manifest) lists with another sha256: they belong to the file's previous version.
    A self-test that cannot be read is left for the load to report."""
    path = Path(model_dir) / SELFTEST_FILENAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        formats = document["formats"]
        stale = [fmt for fmt, record in formats.items()
                 if record["file"] in recorded and record["sha256"] != recorded[record["file"]]]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        return
    if not stale:
        return
    for fmt in stale:
        del formats[fmt]
    if formats:
        write_compact_json(path, document)
    else:
        path.unlink()


def read_manifest(model_dir: Path) -> dict[str, str] | None:
    """File name -> sha256 from the folder's manifest; None when the folder has none."""
    path = Path(model_dir) / MANIFEST_FILENAME
    try:
        text = read_text_if_present(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}; write it again with "
                            f"python -m ferlens.modelfolder.manifest {model_dir}") from exc
    if text is None:
        return None
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise ManifestError(f"{path} is damaged (line {number}); write it again with "
                                f"python -m ferlens.modelfolder.manifest {model_dir}")
        entries[match.group(2)] = match.group(1)
    return entries


def verify_model_file(path: Path, digest: str | None = None) -> str | None:
    """Check one model file against its folder's manifest (`digest`: its sha256, if the caller has it).

    Raises `ManifestError` if the file is not listed or its sha256 differs. Returns a warning
    (the file is used, unchecked) when the folder has no manifest, else None.
    """
    path = Path(path)
    entries = read_manifest(path.parent)
    if entries is None:
        return (f"{path.parent} has no {MANIFEST_FILENAME}, so {path.name} cannot be checked for damage; "
                f"record it with python -m ferlens.modelfolder.manifest {path.parent}")
    expected = entries.get(path.name)
    if expected is None:
        raise ManifestError(f"{path.name} is not listed in {path.parent / MANIFEST_FILENAME}, so it may not belong to "
                            f"this model; re-export the model (python -m ferlens.training.export {path.parent}) "
                            "or record the file "
                            f"with python -m ferlens.modelfolder.manifest {path.parent}")
    if (digest or sha256_file(path)) != expected:
        raise ManifestError(f"{path} does not match its sha256 in {MANIFEST_FILENAME}: the file is damaged or was "
                            "replaced; restore it from the original model folder or re-export the model")
    return None


def check_folder(model_dir: Path) -> list[str]:
    """Every problem with the folder's model files, as messages (empty: all listed and intact)."""
    problems = []
    entries = read_manifest(model_dir)
    if entries is None:
        return [f"{model_dir} has no {MANIFEST_FILENAME}"]
    for name in entries:
        if not (Path(model_dir) / name).is_file():
            problems.append(f"{name} is listed in {MANIFEST_FILENAME} but missing")
    for path in model_files(model_dir):
        try:
            verify_model_file(path)
        except ManifestError as exc:
            problems.append(str(exc))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlens.modelfolder.manifest", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--check", action="store_true", help="verify the model files instead of recording them")
    args = parser.parse_args(argv)
    if not args.model_dir.is_dir():
        print(f"error: model folder not found: {args.model_dir}", file=sys.stderr)
        return 2
    try:
        if args.check:
            problems = check_folder(args.model_dir)
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            if not problems:
                print(f"{args.model_dir}: every model file matches {MANIFEST_FILENAME}")
            return 1 if problems else 0
        files = model_files(args.model_dir)
        if not files:
            print(f"error: no model files ({', '.join(MODEL_SUFFIXES)}) in {args.model_dir}", file=sys.stderr)
            return 2
        path = write_manifest(args.model_dir)
    except (OSError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path.read_text(encoding="utf-8"), end="")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
