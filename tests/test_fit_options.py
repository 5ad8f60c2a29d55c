"""``fit``'s keyword options are typed: ``TrainOptions`` (config.py) names every training option of the
table with its field's type, the package's ``__init__`` shows ``cl.fit`` to the type checker, and mypy
rejects a misspelt option."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import get_type_hints

import pytest

import cnnlab
from cnnlab.config import TrainConfig, TrainOptions, options_in

ROOT = Path(__file__).resolve().parents[1]


def test_train_options_name_every_training_option_with_its_type():
    table = get_type_hints(TrainConfig)
    typed = get_type_hints(TrainOptions)
    fix = "config.py: TrainOptions lists every `training` option of TrainConfig, in order, with its type"
    assert list(typed) == options_in("training"), fix
    assert {name: typed[name] for name in typed} == {name: table[name] for name in typed}, fix
    assert TrainOptions.__required_keys__ == frozenset()  # every option may be left out


def test_the_type_checker_sees_every_public_name_where_it_lives():
    """``cnnlab.__init__`` resolves names lazily; its ``TYPE_CHECKING`` imports must name the same ones from
    the same modules, or ``cl.fit`` (and the rest) is ``Any`` to mypy and an IDE."""
    tree = ast.parse(Path(cnnlab.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            seen[alias.name] = node.module if node.module != "cnnlab" else f"cnnlab.{alias.name}"
    expected = {**cnnlab._EXPORTS, **{m: f"cnnlab.{m}" for m in cnnlab._SUBMODULES}}
    assert seen == expected


@pytest.mark.slow  # mypy follows cnnlab's imports: ~2 s with a warm cache, ~40 s cold
def test_mypy_rejects_a_misspelt_or_mistyped_option(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "import cnnlab as cl\n"
        "model = cl.create_model('cnn2')\n"
        "cl.fit(model, None, epochs=3, lr=0.1, clip_grad_norm=None, callbacks=[])\n"
        "cl.fit(model, None, epohcs=3)\n"
        "cl.fit(model, None, batch_size='32')\n"
        "cl.fit(model, None, cl.TrainConfig(), **cl.TrainConfig().fit_options())\n"
    )
    proc = subprocess.run(  # from the repository root: pyproject's [tool.mypy] and src/ on MYPYPATH
        [sys.executable, "-m", "mypy", "--no-error-summary", str(snippet)],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert [line.split(":")[1] for line in errors] == ["4", "5"], proc.stdout + proc.stderr
    assert 'Unexpected keyword argument "epohcs" for "fit"; did you mean "epochs"?' in errors[0]
    assert 'Argument "batch_size" to "fit" has incompatible type "str"; expected "int"' in errors[1]
