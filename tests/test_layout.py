"""The package layout holds: an import name of our own, three floors that import downwards only, no
import cycle (imports inside functions included), and every command the docs give exists."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ferlens.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "ferlens"
#: Which floor each subpackage is, lowest first: a module may import its own floor and those below.
FLOORS = {"foundation": 0, "modelfolder": 1, "core": 2, "training": 3}
#: The one import that goes upwards, on purpose: the Keras engine loads `.keras` files, whose custom
#: layers the architectures module registers (it needs TensorFlow, as the engine does).
UPWARD_ALLOWED = {("ferlens.modelfolder.engines.keras_engine", "ferlens.training.architectures")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every library module `path` imports anywhere in its text (top level, functions, TYPE_CHECKING)."""
    found = set()
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a module, or a name inside one
                name = name.rpartition(".")[0]
            if name and name != this:
                found.add(name)
    return found


def _floor(module: str) -> int:
    part = module.split(".")[1] if module.count(".") else ""
    return FLOORS.get(part, FLOORS["foundation"])


def test_the_import_name_is_our_own_and_no_package_named_fer_is_installed():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["ferlens*"]
    assert not (PROJECT_ROOT / "fer").exists()
    spec = importlib.util.find_spec("fer")
    assert spec is None or PROJECT_ROOT not in Path(spec.origin or "/").parents  # a peer's `fer` may be installed
    assert importlib.util.find_spec("ferlens").origin == str(PACKAGE / "__init__.py")


def test_no_import_cycle_among_the_librarys_modules():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert sum(map(len, graph.values())) > 100  # the walk sees the library's imports
    visiting, done, cycles = [], set(), []

    def visit(node: str) -> None:
        if node in visiting:
            cycles.append(visiting[visiting.index(node):] + [node])
            return
        if node in done:
            return
        visiting.append(node)
        for target in sorted(graph[node]):
            visit(target)
        visiting.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_floors_import_only_their_own_and_lower_floors():
    modules = _modules()
    assert {_floor(name) for name in modules} == set(FLOORS.values())
    upward = sorted((name, target) for name, path in modules.items() for target in _imports(path, modules)
                    if _floor(target) > _floor(name) and (name, target) not in UPWARD_ALLOWED)
    assert not upward, upward


def test_package_init_files_import_nothing_so_each_floor_loads_alone():
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent.name == "detectors":  # the detector family's registry: names its members (core only)
            assert all(_floor(target) <= FLOORS["core"] for target in _imports(init, _modules()))
            continue
        tree = ast.parse(init.read_text())
        assert not any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(tree)), init


def _documented_commands() -> set[str]:
    texts = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    return {m for path in texts for m in re.findall(r"python -m (ferlens[\w.]*)", path.read_text())}


def test_every_python_m_command_in_the_readme_and_docs_is_a_module_with_a_command_line():
    commands = _documented_commands()
    assert len(commands) >= 10
    for command in sorted(commands):
        path = PACKAGE.parent / (command.replace(".", "/") + ".py")
        assert path.is_file(), f"python -m {command}: no such module"
        source = path.read_text()
        assert "def main(" in source and 'if __name__ == "__main__":' in source, f"python -m {command} runs nothing"


@pytest.mark.parametrize("script", ["ferlens-predict", "ferlens-batch", "ferlens-train", "ferlens-evaluate",
                                    "ferlens-export"])
def test_console_scripts_are_declared_and_answer_help(script):
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    target = config["project"]["scripts"][script]
    module, function = target.split(":")
    done = subprocess.run([sys.executable, "-c", f"import sys; from {module} import {function}; "
                           f"sys.argv[0] = {script!r}; sys.exit({function}(['--help']))"],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:"), done.stdout[:300]
    same = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=300,
                          cwd=PROJECT_ROOT)
    assert same.returncode == 0 and same.stdout == done.stdout  # `python -m` keeps working, with the same options
