"""A deploy as Streamlit Community Cloud makes it, measured: `python -m benchmarks.deploy`.

The host clones the repository, makes a fresh venv on Python 3.12 or 3.13, runs
`pip install -r requirements.txt` (no `-e .`) and `streamlit run streamlit_app.py` from the clone's root.
This script does the same on this machine for each interpreter: a cold install from PyPI alone (no
pip cache, none of this machine's local package mirrors), the venv's size, and the shared libraries its
compiled modules need from the system (what `packages.txt` would have to add). For comparison it installs
the requirements of before the library/app split (commit 3f0b83f, with TensorFlow) on one interpreter.
It serves the app from a `git clone --depth 1` of HEAD with that venv's Python and reads the server's
resident memory idle, after headless Chromium opened every page once, and while 8 sessions upload a
photo at once; and it measures what a deploy clones, shallow and full, at HEAD and before the model
folders lost the weights no page serves. Writes benchmarks/deploy.md and benchmarks/deploy.json.

tests/test_deploy.py checks the same deploy (every page renders, an upload finds its face) in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import publish
from benchmarks.app_server import CHROMIUM, CHROMIUM_ARGS, rss_mb, serve_app

ROOT = Path(__file__).resolve().parent.parent
#: The interpreters Community Cloud offers that this project supports, as pyenv installs them here.
INTERPRETERS: dict[str, Path] = {
    "3.12": Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python",
    "3.13": Path.home() / ".pyenv" / "versions" / "3.13.0" / "bin" / "python",
}
#: requirements.txt as it was before the library/app split: TensorFlow, Keras and TensorBoard included.
TENSORFLOW_REQUIREMENTS_COMMIT = "3f0b83f"
#: The last commit whose model folders still held every trial's weights and the ensemble members' exports.
BEFORE_PRUNE_COMMIT = "a73a365"
SESSIONS = 8
#: The server's memory must stay under this: the budget this project sets for a Community Cloud app.
MEMORY_LIMIT_MB = 1024
#: System libraries in every Debian image, Community Cloud's included: glibc's, the C++ runtime and zlib
#: (Debian's "required" packages, which Python itself needs). A wheel needing anything else needs packages.txt.
BASE_SYSTEM_LIBRARIES = (
    "libc.so.6", "libm.so.6", "libmvec.so.1", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libresolv.so.2", "libnsl.so.1", "libcrypt.so.1", "ld-linux-x86-64.so.2", "linux-vdso.so.1",
    "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1",
)


class InstallFailed(RuntimeError):
    """Making the venv or `pip install` failed; the message ends with pip's output."""


# ---------------------------------------------------------------- the venv a host makes


def pip_env() -> dict[str, str]:
    """The environment for pip as a host runs it: PyPI alone, none of this machine's pip configuration
    (local mirrors, find-links, constraints), nothing of this venv on the path."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PIP_") or key in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")}
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(key, None)
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def install(python: Path, venv: Path, requirements: Path, cold: bool = False) -> float:
    """A fresh venv at `venv` made by `python`, then `pip install -r requirements`; the seconds both took.
    `cold`: without pip's cache, so every wheel comes over the network as on a new host."""
    start = time.perf_counter()
    steps = [[str(python), "-m", "venv", str(venv)],
             [str(venv_python(venv)), "-m", "pip", "install", "-q", "-r", str(requirements),
              *(["--no-cache-dir"] if cold else [])]]
    for step in steps:
        done = subprocess.run(step, cwd=ROOT, env=pip_env(), capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise InstallFailed(f"{' '.join(step)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return time.perf_counter() - start


def _run(step: list[str]) -> None:
    done = subprocess.run(step, cwd=ROOT, env=pip_env(), capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise InstallFailed(f"{' '.join(step)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")


def measured_install(python: Path, venv: Path, requirements: Path, wheels: Path) -> dict:
    """`install(..., cold=True)` in two timed halves: `pip download` of every wheel (the network), then
    `pip install` from those files alone (unpacking and byte-compiling: the CPU). Also the CPU time pip
    used and the machine's load average meanwhile, as the wall times depend on both."""
    load = LoadSampler()
    with load:
        start, cpu = time.perf_counter(), _children_cpu_s()
        _run([str(python), "-m", "venv", str(venv)])
        pip = [str(venv_python(venv)), "-m", "pip"]
        venv_s = time.perf_counter() - start
        _run([*pip, "download", "-q", "--no-cache-dir", "-d", str(wheels), "-r", str(requirements)])
        download_s = time.perf_counter() - start - venv_s
        _run([*pip, "install", "-q", "--no-cache-dir", "--no-index", "--find-links", str(wheels), "-r", str(requirements)])
        total_s = time.perf_counter() - start
        cpu_s = _children_cpu_s() - cpu
    return {"venv_s": venv_s, "download_s": download_s, "download_mb": folder_mb(wheels),
            "wheels": len(list(wheels.iterdir())), "install_from_wheels_s": total_s - venv_s - download_s,
            "total_s": total_s, "cpu_s": cpu_s, "load_average": load.mean, "venv_mb": folder_mb(venv)}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class LoadSampler:
    """The machine's 1-minute load average, sampled every 5 s in a thread; `mean` once it has stopped."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(5)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return sum(self.samples) / max(len(self.samples), 1)


def server_env(venv: Path) -> dict[str, str]:
    """What `serve_app` adds for a server in `venv`: that venv first on PATH, no user site-packages."""
    return {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONNOUSERSITE": "1", "PYTHONPATH": ""}


def folder_mb(path: Path) -> float:
    """Bytes of the files under `path` (links not followed), in MB."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total / 1e6


def versions(venv: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The installed version of each distribution in `names` ("absent" where it is not installed)."""
    code = ("import importlib.metadata as m, json, sys\n"
            "def version(name):\n"
            "    try:\n        return m.version(name)\n"
            "    except m.PackageNotFoundError:\n        return 'absent'\n"
            "print(json.dumps({name: version(name) for name in sys.argv[1:]}))")
    done = subprocess.run([str(venv_python(venv)), "-c", code, *names], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def system_libraries(venv: Path) -> dict[str, list[str]]:
    """Shared libraries that the venv's compiled modules load from outside the venv (by name, with the
    packages that need each), and those that no one provides ("NAME (not found)", with the files needing them)."""
    needed: dict[str, set[str]] = {}
    site = next((venv / "lib").glob("python3*/site-packages"))
    for library in site.rglob("*.so*"):
        if not library.is_file():
            continue
        done = subprocess.run(["ldd", str(library)], capture_output=True, text=True)
        for line in done.stdout.splitlines():
            name, _, where = line.strip().partition(" => ")
            if "not found" in where:
                needed.setdefault(f"{name} (not found)", set()).add(str(library.relative_to(site)))
            elif where and not where.startswith(str(venv)):
                needed.setdefault(name, set()).add(library.relative_to(site).parts[0])
    return {name: sorted(users) for name, users in sorted(needed.items())}


# ---------------------------------------------------------------- the app in a browser


async def open_every_page(url: str, timeout_s: float = 180) -> dict[str, list[str]]:
    """Each page of `app_pages.ui.PAGES` opened in turn in one headless Chromium session, waited on until its
    script finished; the exception boxes and error alerts each page showed (by page title)."""
    from playwright.async_api import async_playwright

    from app_pages.ui import PAGES

    shown: dict[str, list[str]] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 1600})
            page = await context.new_page()
            for spec in PAGES:
                await page.goto(f"{url}/{spec.url_path or ''}")
                await page.locator("[data-testid='stMain'] h1").first.wait_for(timeout=timeout_s * 1000)
                await page.wait_for_timeout(500)
                await page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=timeout_s * 1000)
                await page.wait_for_timeout(1500)  # charts and images draw after the script ends
                problems = page.locator("[data-testid='stException'], [data-testid='stAlertContentError']")
                shown[spec.title] = await problems.all_inner_texts()
            await context.close()
        finally:
            await browser.close()
    return shown


# ---------------------------------------------------------------- what a deploy clones


def clone(rev: str, dest: Path, depth: int | None) -> None:
    """What `git clone [--depth N] file://ROOT` makes, of commit `rev` (any commit, not only a branch head)."""
    upload_pack = "git -c uploadpack.allowAnySHA1InWant=true upload-pack"
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    for step in (["git", "init", "-q", str(dest)],
                 ["git", "-C", str(dest), "fetch", "-q", "--no-tags", "--upload-pack", upload_pack,
                  *(["--depth", str(depth)] if depth else []), f"file://{ROOT}", sha],
                 ["git", "-C", str(dest), "checkout", "-q", "FETCH_HEAD"]):
        subprocess.run(step, check=True, capture_output=True)


def clone_sizes(rev: str, folder: Path) -> dict[str, float]:
    """Sizes in MB of a shallow and a full clone of `rev`: .git, checked-out files, both."""
    sizes = {}
    for kind, depth in (("shallow", 1), ("full", None)):
        dest = folder / f"{kind}-{rev}"
        clone(rev, dest, depth)
        git = folder_mb(dest / ".git")
        total = folder_mb(dest)
        sizes[kind] = {"git_mb": git, "files_mb": total - git, "total_mb": total,
                       "models_mb": folder_mb(dest / "models")}
        shutil.rmtree(dest)
    return sizes


# ---------------------------------------------------------------- the report


def cpu_line() -> str:
    from ferlens.machine import cpu_flags, cpu_model_name

    flags = cpu_flags() or frozenset()
    marks = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in ("avx512f", "avx2"))
    return f"{os.cpu_count()} cores, {cpu_model_name() or 'unknown CPU'} ({marks})"


def measure_server(python: Path, venv: Path, root: Path, folder: Path, photos: list[Path]) -> dict:
    """Memory of `streamlit run` in `root` with `venv`'s Python: idle, after every page, with SESSIONS uploads."""
    from benchmarks.app_load import MemorySampler, upload_together

    started = time.perf_counter()
    with serve_app(folder / f"streamlit-{python.name}.log", env=server_env(venv), python=venv_python(venv),
                   root=root, timeout_s=180) as (url, pid):
        start_s = time.perf_counter() - started
        time.sleep(5)
        idle = rss_mb(pid)
        shown = asyncio.run(open_every_page(url))
        time.sleep(3)
        pages = rss_mb(pid)
        with MemorySampler(pid) as memory:
            results = asyncio.run(upload_together(url, photos[:SESSIONS]))
        time.sleep(3)
        after = rss_mb(pid)
    log = (folder / f"streamlit-{python.name}.log").read_text()
    return {
        "start_s": start_s, "idle_mb": idle, "all_pages_mb": pages, "sessions": SESSIONS,
        "sessions_peak_mb": memory.peak, "after_sessions_mb": after,
        "page_problems": {title: texts for title, texts in shown.items() if texts},
        "faces_found": [r.face_count for r in results], "upload_exceptions": sum(len(r.exceptions) for r in results),
        "slowest_upload_s": max(r.seconds for r in results),
        "tracebacks_in_log": log.count("Traceback"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "deploy.md")
    parser.add_argument("--before", default=BEFORE_PRUNE_COMMIT, help="the commit to compare clone sizes with")
    parser.add_argument("--tensorflow-on", default="3.12", choices=sorted(INTERPRETERS),
                        help="the interpreter that installs the old, TensorFlow-carrying requirements")
    args = parser.parse_args(argv)
    from benchmarks.app_load import visitor_photos

    report: dict = {"cpu": cpu_line(), "date": time.strftime("%Y-%m-%d"),
                    "head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                           text=True).stdout.strip(),
                    "interpreters": {}}
    with tempfile.TemporaryDirectory(prefix="fer-deploy-") as tmp:
        tmp = Path(tmp)
        report["clones"] = {"head": clone_sizes("HEAD", tmp), "before": clone_sizes(args.before, tmp),
                            "before_commit": args.before}
        print(json.dumps(report["clones"], indent=1), flush=True)
        checkout = tmp / "checkout"
        clone("HEAD", checkout, depth=1)  # the server runs from exactly what a deploy clones
        photos = visitor_photos(tmp, SESSIONS)
        for version, python in INTERPRETERS.items():
            if not python.exists():
                report["interpreters"][version] = {"skipped": f"{python} not found"}
                continue
            venv = tmp / f"venv-{version}"
            entry = {**measured_install(python, venv, checkout / "requirements.txt", tmp / f"wheels-{version}"),
                     "python": subprocess.run([str(venv_python(venv)), "-V"], capture_output=True, text=True).stdout.strip(),
                     "versions": versions(venv, ("streamlit", "numpy", "onnxruntime", "ai-edge-litert", "opencv-python-headless",
                                                 "tensorflow-cpu")),
                     "system_libraries": system_libraries(venv)}
            print(version, json.dumps({k: v for k, v in entry.items() if k != "system_libraries"}), flush=True)
            entry["server"] = measure_server(python, venv, checkout, tmp, photos)
            print(version, json.dumps(entry["server"]), flush=True)
            report["interpreters"][version] = entry
            shutil.rmtree(venv)
            shutil.rmtree(tmp / f"wheels-{version}")
        old = tmp / "requirements-tensorflow.txt"
        old.write_text(subprocess.run(["git", "show", f"{TENSORFLOW_REQUIREMENTS_COMMIT}:requirements.txt"], cwd=ROOT,
                                      capture_output=True, text=True, check=True).stdout)
        venv = tmp / "venv-tensorflow"
        report["tensorflow"] = {**measured_install(INTERPRETERS[args.tensorflow_on], venv, old, tmp / "wheels-tensorflow"),
                                "interpreter": args.tensorflow_on, "commit": TENSORFLOW_REQUIREMENTS_COMMIT,
                                "versions": versions(venv, ("tensorflow-cpu", "keras", "streamlit"))}
        print(json.dumps(report["tensorflow"]), flush=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return publish(render(report), args.out)


def render(report: dict) -> list[str]:
    lines = [
        "# What a deploy installs, clones and holds in memory",
        "",
        f"Written by `python -m benchmarks.deploy` on {report['date']} at commit {report['head']}, on {report['cpu']}. "
        "A training run (`ferlens.training.train`) was using the same CPU throughout, and other engineers' tests and "
        "benchmarks at "
        "times: every time here is longer than on an idle machine (see the load column); the memory figures and sizes "
        "are not affected.",
        "",
        "As Streamlit Community Cloud deploys: a fresh venv of the given Python, `pip install -r requirements.txt` "
        "(cold: no pip cache, PyPI alone, none of this machine's package mirrors), then `streamlit run streamlit_app.py` "
        "in a `git clone --depth 1` of the commit. Sizes are the files' bytes.",
        "",
        "## Install",
        "",
        "The host's one `pip install -r` timed in two halves: `pip download` of every wheel from PyPI (the network), "
        "then `pip install` from those files alone (unpacking and byte-compiling: the CPU). \"pip CPU\" is the CPU "
        "time pip used in all; \"load\" the machine's mean 1-minute load average meanwhile (2 cores: above 2, the "
        "install waited for the CPU, so compare the CPU times and sizes more than the wall times).",
        "",
        "| requirements | Python | wheels (MB) | download (s) | install from wheels (s) | total (s) | pip CPU (s) | load | "
        "venv (MB) | versions |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def install_row(label: str, python: str, e: dict, versions: str) -> str:
        return (f"| {label} | {python} | {e['download_mb']:.0f} ({e['wheels']} files) | {e['download_s']:.0f} | "
                f"{e['install_from_wheels_s']:.0f} | {e['total_s']:.0f} | {e['cpu_s']:.0f} | {e['load_average']:.1f} | "
                f"{e['venv_mb']:.0f} | {versions} |")

    for version, entry in report["interpreters"].items():
        if "skipped" in entry:
            lines.append(f"| requirements.txt | {version} | skipped: {entry['skipped']} | | | | | | | |")
            continue
        v = entry["versions"]
        lines.append(install_row("requirements.txt", entry["python"], entry,
                                 f"streamlit {v['streamlit']}, onnxruntime {v['onnxruntime']}, no TensorFlow"))
    tf = report["tensorflow"]
    lines += [
        install_row(f"requirements.txt of {tf['commit']} (with TensorFlow)", f"Python {tf['interpreter']}", tf,
                    f"streamlit {tf['versions']['streamlit']}, tensorflow-cpu {tf['versions']['tensorflow-cpu']}, "
                    f"keras {tf['versions']['keras']}"),
        "",
        "## System libraries (packages.txt)",
        "",
        "Shared libraries that the venv's compiled modules load from the system rather than from their own wheels "
        "(`ldd` on every `.so` in site-packages). The base set is in every Debian image, Community Cloud's "
        f"included: {', '.join(BASE_SYSTEM_LIBRARIES)}. Anything else would need a `packages.txt`.",
        "",
    ]
    for version, entry in report["interpreters"].items():
        if "skipped" in entry:
            continue
        libraries = entry["system_libraries"]
        base = [name for name in libraries if name in BASE_SYSTEM_LIBRARIES]
        missing = [name for name in libraries if name.endswith("(not found)")]
        other = [name for name in libraries if name not in base and name not in missing]
        beyond = "; ".join(f"{name} (for {', '.join(libraries[name])})" for name in other)
        lines.append(f"- Python {version}: from the base set {', '.join(base) or 'none'}; beyond it: {beyond or '**none**'}.")
        if missing:
            files = sorted({file for name in missing for file in libraries[name]})
            lines.append(f"  Not found here either: {', '.join(n.removesuffix(' (not found)') for n in missing)}, "
                         f"needed only by {', '.join(f'`{f}`' for f in files)}: optional accelerator plugins that "
                         "the app never loads (it serves without them here).")
    lines += [
        "",
        "## The server's memory",
        "",
        f"Resident memory (RSS) of the `streamlit run` process alone (the browser's is not counted). Idle: 5 s after "
        f"its health check answered, before any visitor (the pages' scripts have not run and no model is loaded). "
        f"All pages: after one Chromium session opened every page of the sidebar in turn (the Home page, the photo "
        f"model for uploads, the real-time model for the live page and video, the report's charts). "
        f"{SESSIONS} sessions: the peak, sampled every 0.1 s, while {SESSIONS} sessions upload one photo each at the "
        f"same moment (1-3 faces, `benchmarks/app_load.py`'s photos). The limit to stay under is {MEMORY_LIMIT_MB} MB.",
        "",
        f"| Python | server start (s) | idle (MB) | all pages opened (MB) | {SESSIONS} sessions uploading, peak (MB) | "
        "3 s after (MB) | under 1 GB | faces shown | exceptions on pages / uploads / in the log |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for version, entry in report["interpreters"].items():
        if "skipped" in entry:
            continue
        s = entry["server"]
        ok = "yes" if max(s["idle_mb"], s["all_pages_mb"], s["sessions_peak_mb"]) < MEMORY_LIMIT_MB else "**no**"
        lines.append(f"| {version} | {s['start_s']:.1f} | {s['idle_mb']:.0f} | {s['all_pages_mb']:.0f} | "
                     f"{s['sessions_peak_mb']:.0f} | {s['after_sessions_mb']:.0f} | {ok} | {s['faces_found']} | "
                     f"{len(s['page_problems'])} / {s['upload_exceptions']} / {s['tracebacks_in_log']} |")
    clones = report["clones"]
    lines += [
        "",
        "## What a deploy clones",
        "",
        f"A clone of the repository at HEAD ({report['head']}) and at {clones['before_commit']}, the last commit whose "
        "model folders held every trial run's weights and the ensemble members' ONNX / TFLite exports. Shallow: "
        "`git clone --depth 1`; full: the whole history. Sizes in MB: the `.git` folder, the checked-out files "
        "(of which `models/`), both.",
        "",
        "| commit | clone | .git | files | of which models/ | total |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in ((clones["before_commit"], "before"), (f"HEAD ({report['head']})", "head")):
        for kind in ("shallow", "full"):
            c = clones[key][kind]
            lines.append(f"| {label} | {kind} | {c['git_mb']:.0f} | {c['files_mb']:.0f} | {c['models_mb']:.0f} | "
                         f"{c['total_mb']:.0f} |")
    lines += [
        "",
        "A full clone keeps every weight file ever committed in `.git`, so removing files from the tree shrinks "
        "only its checked-out part; a shallow clone carries only the commit's own files.",
        "",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
