"""The house shows its layers: imports only go down, modules and functions stay small, pages stay thin.

Layer order (ARCHITECTURE.md): base (config, errors, atomic, jsonable, query) -> privacy -> engine ->
attacks -> store -> jobs -> views -> entry (cli, __main__, the package's __init__, app.py, pages/).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dpcore"
LAYERS = ["base", "privacy", "engine", "attacks", "store", "jobs", "views", "entry"]
BASE_MODULES = {"config", "errors", "atomic", "jsonable", "query"}
ENTRY_MODULES = {"cli", "__main__"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_PAGE_LINES = 250
DEFERRED_MARK = "# deferred:"  # an import inside a function must say which heavy dependency it defers


def layer_of(module: str) -> int | None:
    """Index in LAYERS of a dotted dpcore module name (None for anything outside dpcore)."""
    parts = module.split(".")
    if parts[0] != "dpcore":
        return None
    if len(parts) == 1:
        return LAYERS.index("entry")
    head = parts[1]
    if head in BASE_MODULES:
        return LAYERS.index("base")
    if head in ENTRY_MODULES:
        return LAYERS.index("entry")
    return LAYERS.index(head) if head in LAYERS else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def dpcore_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported_modules(node: ast.AST, importer: str) -> list[str]:
    """dpcore modules an import statement reaches (``from dpcore import x`` reaches ``dpcore.x``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.level:
            return []
        if node.module == "dpcore":
            return [f"dpcore.{alias.name}" for alias in node.names]
        return [node.module]
    return []


@pytest.mark.parametrize("path", dpcore_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_down(path: Path):
    importer = module_name(path)
    own = layer_of(importer)
    assert own is not None, f"{importer} is in no layer; add its package to LAYERS"
    upward = []
    for node in ast.walk(ast.parse(path.read_text())):
        for target in imported_modules(node, importer):
            if target.split(".")[0] == "streamlit":
                upward.append(f"line {node.lineno}: streamlit (dpcore never imports Streamlit)")
            level = layer_of(target)
            if level is not None and level > own and not target.startswith(importer + "."):
                upward.append(f"line {node.lineno}: {target} ({LAYERS[level]}) from {LAYERS[own]}")
    assert not upward, f"{importer} imports upward:\n" + "\n".join(upward)


@pytest.mark.parametrize("path", dpcore_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_inside_functions_only_defer_heavy_dependencies(path: Path):
    lines = path.read_text().splitlines()
    offenders = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, (ast.Import, ast.ImportFrom)):
                line = lines[inner.lineno - 1]
                if DEFERRED_MARK not in line:
                    offenders.append(f"line {inner.lineno}: {line.strip()}")
    assert not offenders, (f"{path.name}: imports inside functions need a '{DEFERRED_MARK} <why>' comment "
                           "naming the heavy dependency they defer:\n" + "\n".join(offenders))


@pytest.mark.parametrize("path", dpcore_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path: Path):
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{path.name} has {source.count(chr(10))} lines"
    long_functions = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long_functions, f"{path.name}: " + ", ".join(long_functions)


@pytest.mark.parametrize("path", sorted((ROOT / "pages").glob("*.py")), ids=lambda p: p.name)
def test_pages_stay_thin(path: Path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_PAGE_LINES, f"pages/{path.name} has {lines} lines; move logic into dpcore/views"


def test_layer_checker_catches_an_upward_import():
    """The checker itself: an engine module importing the store is upward, the reverse is not."""
    assert layer_of("dpcore.store.runs") > layer_of("dpcore.engine.training")
    assert layer_of("dpcore.config") < layer_of("dpcore.privacy.accounting") < layer_of("dpcore.views.plots")
    assert layer_of("dpcore") == layer_of("dpcore.cli") == LAYERS.index("entry")
    assert layer_of("numpy") is None
