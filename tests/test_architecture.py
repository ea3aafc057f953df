"""The shape the code keeps: dependencies run one way (accounts ← mcpsettings ← governance ← config), no
function-level import without a comment saying why, and the size limits of modules and functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["accounts", "mcpsettings", "governance", "config"]  # each may import only those to its left
# Longer than 60 lines on purpose: none today (keep this list short and say why for each entry).
LONG_FUNCTIONS: dict[str, str] = {}


def modules(app: str):
    for path in sorted((ROOT / app).rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def imported_apps(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
    else:
        return []
    return [name.split(".")[0] for name in names if name.split(".")[0] in LAYERS]


@pytest.mark.parametrize("app", LAYERS)
def test_no_app_imports_an_app_above_it(app):
    allowed = set(LAYERS[: LAYERS.index(app) + 1])
    back_edges = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {target}"
        for path, tree in modules(app)
        for node in ast.walk(tree)
        for target in imported_apps(node)
        if target not in allowed
    ]
    assert back_edges == []


def test_the_check_sees_a_back_edge():
    tree = ast.parse("def f():\n    from governance import calls\n")
    assert [t for node in ast.walk(tree) for t in imported_apps(node)] == ["governance"]


@pytest.mark.parametrize("app", LAYERS)
def test_function_level_imports_say_why(app):
    silent = []
    for path, tree in modules(app):
        lines = path.read_text().splitlines()
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not _explained(lines, node.lineno):
                    silent.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert silent == []


def _explained(lines: list[str], lineno: int) -> bool:
    """A comment on the import's line, or on a line of the block of imports and comments just above it."""
    if "#" in lines[lineno - 1]:
        return True
    index = lineno - 2
    while index >= 0 and lines[index].strip().startswith(("#", "from ", "import ")):
        if lines[index].strip().startswith("#"):
            return True
        index -= 1
    return False


@pytest.mark.parametrize("app", LAYERS[:3])
def test_modules_and_functions_stay_small(app):
    too_big = []
    for path, tree in modules(app):
        if "migrations" in path.parts:
            continue
        if len(path.read_text().splitlines()) > 500:
            too_big.append(f"{path.relative_to(ROOT)} has more than 500 lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{path.relative_to(ROOT)}:{node.name}"
                if node.end_lineno - node.lineno + 1 > 60 and name not in LONG_FUNCTIONS:
                    too_big.append(f"{name} has {node.end_lineno - node.lineno + 1} lines")
    assert too_big == []


@pytest.mark.parametrize("app", LAYERS)
def test_private_helpers_stay_in_their_app(app):
    """`from other_app.module import _helper` couples apps through what was never meant to be shared."""
    borrowed = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}"
        for path, tree in modules(app)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.level == 0
        and node.module
        and node.module.split(".")[0] in LAYERS
        and node.module.split(".")[0] != app
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert borrowed == []
