"""Every ```python block of README.md runs as written, on a small subset: the same calls with the same
arguments, except that datasets are capped (`limit`) and trainings take one epoch, and the image files
the block names are made in a scratch folder (issue #17: every API call in the README is exercised)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
LIMIT = 300  # images per split
IMAGE_FILE = re.compile(r"\.(png|jpe?g|gif|bmp|webp)$", re.I)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


class Smaller(ast.NodeTransformer):
    """Cap the work of the calls that load data or train, keep everything else as written."""

    CAPS = {
        "load_data": {"limit": LIMIT},
        "fit": {"epochs": 1},
        "TrainConfig": {"limit": LIMIT, "epochs": 1},
        "from_recipe": {"limit": LIMIT, "epochs": 1},
    }

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        for key, value in self.CAPS.get(name, {}).items():
            node.keywords = [k for k in node.keywords if k.arg != key]
            node.keywords.append(ast.keyword(arg=key, value=ast.Constant(value)))
        return node


def image_files(tree: ast.AST) -> set[str]:
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and IMAGE_FILE.search(n.value)
    }


def make_image(path: Path) -> None:
    """A real photo for a name that says cat, else a dark object on a light background (a shoe photo)."""
    import numpy as np
    from PIL import Image

    import cnnlab as cl

    if "cat" in path.name:
        pixels = (cl.filters.sample_image() * 255).astype(np.uint8)
    else:
        pixels = np.full((64, 64, 3), 235, dtype=np.uint8)
        pixels[30:48, 8:56] = 40  # a sole
        pixels[14:32, 34:54] = 60  # an ankle
    Image.fromarray(pixels).save(path)


def test_the_readme_has_a_python_api_block():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks and any("import cnnlab as cl" in b for b in blocks)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text(encoding="utf-8")))))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, fmnist_dir):
    source = python_blocks(README.read_text(encoding="utf-8"))[index]
    tree = ast.fix_missing_locations(Smaller().visit(ast.parse(source)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(fmnist_dir))
    for name in image_files(tree):
        make_image(tmp_path / name)
    namespace: dict = {"__name__": "readme"}
    exec(compile(tree, f"README.md python block {index + 1}", "exec"), namespace)  # noqa: S102
    # what the block promises in its comments, checked on what it made
    if "maps" in namespace and "run" in namespace:
        assert namespace["maps"]["conv1"].shape[0] > 0
    if "history" in namespace:
        assert len(namespace["history"]) == 1
