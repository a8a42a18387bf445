"""The package's shape: one import name, layers that import one way, no cycles, small modules."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

import coframe

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(coframe.__file__).resolve().parent
#: Package modules over this many lines are split by concern.
MAX_LINES = 600


def _package_files() -> list[Path]:
    graph = grimp.build_graph("coframe")
    files = []
    for name in sorted(graph.modules):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        files.append(Path(spec.origin))
    return files


def _packages() -> list[str]:
    graph = grimp.build_graph("coframe")
    return sorted(
        m for m in graph.modules if Path(importlib.util.find_spec(m).origin).name == "__init__.py"
    )


def test_layers_import_one_way() -> None:
    """The import-linter contracts of pyproject.toml hold (cli > commands > demo > ... > core)."""
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_layers_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The same check fails when a lower layer imports a higher one (core under cli reversed)."""
    config = tmp_path / "upside-down.ini"
    config.write_text(
        "[importlinter]\nroot_package = coframe\n\n"
        "[importlinter:contract:upside-down]\nname = upside down\ntype = layers\n"
        "layers =\n    coframe.core\n    coframe.cli\n",
        encoding="utf-8",
    )
    assert lint_imports(config_filename=str(config), no_cache=True) == 1


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_cycles_are_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules() -> None:
    """No module imports another that imports it back, directly or through others.

    Imports made only for annotations (under ``TYPE_CHECKING``) are left out.
    A package's ``__init__`` re-exporting its modules' names is not a cycle.
    """
    graph = grimp.build_graph("coframe", exclude_type_checking_imports=True)
    packages = set(_packages())
    edges = {
        m: {
            d
            for d in graph.find_modules_directly_imported_by(m)
            if d not in packages and m not in packages
        }
        for m in graph.modules
    }
    assert _cycles(edges) == []


def test_no_function_level_imports_of_coframe() -> None:
    """Every coframe import sits at module level, where the layers can see it."""
    found = []
    for path in _package_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for sub in ast.walk(node):
                names = []
                if isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
                    names = [sub.module]
                elif isinstance(sub, ast.Import):
                    names = [a.name for a in sub.names]
                if any(n == "coframe" or n.startswith("coframe.") for n in names):
                    found.append(f"{path.relative_to(PACKAGE)}:{sub.lineno}")
    assert found == []


def test_modules_stay_small() -> None:
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
        for p in _package_files()
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


@pytest.mark.parametrize("package", _packages())
def test_packages_say_what_they_hold(package: str) -> None:
    """Each package's ``__init__`` has a docstring and a public API (``__all__``) that resolves."""
    module = importlib.import_module(package)
    assert (module.__doc__ or "").strip(), f"{package} has no docstring"
    assert isinstance(getattr(module, "__all__", None), list), f"{package} has no __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_wheel_installs_one_import_name(tmp_path: Path) -> None:
    """The built wheel's only top-level import name is ``coframe``."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "coframe-demo", ".*cache"
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("coframe-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"coframe"}
    assert "coframe/__main__.py" in names and "coframe/configs/xray-to-fibsem.yaml" in names
    assert "coframe/app/napari.yaml" in names  # the napari reader's npe2 manifest
    assert "coframe/commands/registration.py" in names  # command groups the CLI adds
    assert not [n for n in names if n.startswith(("coframe/tests/", "coframe/benchmarks/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        text = z.read(entry_points).decode()
    assert "coframe = coframe.cli:app" in text
    assert "[napari.manifest]\ncoframe = coframe.app:napari.yaml" in text


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "coframe", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "register" in result.stdout and "resample" in result.stdout
