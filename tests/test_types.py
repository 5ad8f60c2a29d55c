"""The package type-checks: `mypy src/cnnlab` (configured in pyproject.toml's [tool.mypy]) finds no errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a cold mypy run over the package takes ~40 s on 2 cores (a warm cache: ~4 s)
def test_mypy_finds_no_errors_in_the_package():
    if importlib.util.find_spec("mypy") is None:
        why = "mypy is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why)  # CI installs the test extra: a missing mypy is a broken setup
        pytest.skip(why)
    # from the repository root, so mypy reads pyproject.toml's [tool.mypy]
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "src/cnnlab"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "Success: no issues found" in proc.stdout, report
