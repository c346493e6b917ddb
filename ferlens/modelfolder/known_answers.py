"""Record or check a model folder's known answers (`selftest.json`, `ferlens.modelfolder.selftest`).

    python -m ferlens.modelfolder.known_answers MODEL_DIR            # record the answers of the model files now in the folder
    python -m ferlens.modelfolder.known_answers MODEL_DIR --check    # load each file as the app does (exit status 1 on a refusal)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ferlens.modelfolder.loading import BACKEND_FILES, ModelLoadError, load_backend, open_model_file
from ferlens.modelfolder.manifest import ManifestError, verify_model_file
from ferlens.modelfolder.selftest import SelfTestError, write_selftest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferlens.modelfolder.known_answers", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--check", action="store_true", help="compare the model files' answers instead of recording them")
    args = parser.parse_args(argv)
    model_dir = args.model_dir
    if not model_dir.is_dir():
        print(f"error: model folder not found: {model_dir}", file=sys.stderr)
        return 2
    present = {fmt: model_dir / name for fmt, name in BACKEND_FILES.items() if (model_dir / name).is_file()}
    if not present:
        print(f"error: no model files ({', '.join(BACKEND_FILES.values())}) in {model_dir}", file=sys.stderr)
        return 2
    if args.check:
        failed = 0
        for fmt in present:
            try:
                load_backend(model_dir, fmt, on_warning=lambda message: print(f"warning: {message}", file=sys.stderr))
            except ModelLoadError as exc:
                failed += 1
                print(f"error: {exc}", file=sys.stderr)
            else:
                print(f"{fmt}: ok")
        return 1 if failed else 0
    try:
        # The answers are recorded as the files give them now: each must first match the manifest, if any.
        for path in present.values():
            unchecked = verify_model_file(path)
            if unchecked:
                print(f"warning: {unchecked}", file=sys.stderr)
        path = write_selftest(model_dir, {fmt: open_model_file(file, fmt) for fmt, file in present.items()})
    except (OSError, ManifestError, SelfTestError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: answers of {', '.join(present)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
