"""Imports sit at module top; one inside a function says why under a ``# deferred:`` comment (torch,
matplotlib, scipy, an optional extra... see the README's "The shape of the code")."""

from __future__ import annotations

import ast
from pathlib import Path

import cnnlab

PACKAGE = Path(cnnlab.__file__).parent


def unexplained_imports(path: Path, root: Path = PACKAGE) -> list[str]:
    """``file:line`` of each import inside a function with no ``# deferred:`` comment above its block."""
    text = path.read_text()
    lines = text.split("\n")
    found = []
    for fn in ast.walk(ast.parse(text)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                k = node.lineno - 2  # up past the rest of the block, to the line above it
                while k >= 0 and (not lines[k].strip() or lines[k].strip().startswith(("import ", "from "))):
                    k -= 1
                if "# deferred:" not in lines[k] and "# deferred:" not in lines[node.lineno - 1]:
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_every_import_inside_a_function_says_why():
    checked = sorted(PACKAGE.rglob("*.py"))
    assert len(checked) > 50
    assert [hit for p in checked for hit in unexplained_imports(p)] == []


def test_the_check_finds_a_bare_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    import json\n\n    return json\n\n\ndef g():\n    # deferred: why\n    import os\n"
    )
    assert unexplained_imports(probe, tmp_path) == ["probe.py:2"]
