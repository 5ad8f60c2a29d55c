"""The tutorial notebooks (notebooks/<lang>/*.ipynb): stored without outputs, the same in every language,
and executed from a clean kernel on a data subset (CNNLAB_NOTEBOOK_QUICK=1) without an error, each in at
most three minutes under CI. Without the dataset, the loading cell prints the one line the CLI prints."""

from __future__ import annotations

import ast
import io
import os
import re
import time
import tokenize
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(ROOT.glob("*/*.ipynb"))
LANGUAGES = sorted({p.parent.name for p in NOTEBOOKS})
BUDGET_S = 180  # issue #17: each notebook executes in CI in at most 3 minutes on 2 cores
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TAG = re.compile(r"<[^>]+>")


def read(path: Path):
    return nbformat.read(path, as_version=4)


def test_there_are_notebooks_in_english_and_polish():
    assert {"en", "pl"} <= set(LANGUAGES)
    names = {lang: sorted(p.name for p in NOTEBOOKS if p.parent.name == lang) for lang in LANGUAGES}
    assert len({tuple(v) for v in names.values()}) == 1, names  # the same files in every language


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_are_stored_without_outputs(path):
    nb = read(path)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
        assert "execution" not in cell.metadata
    assert "widgets" not in nb.metadata


def headings(nb) -> list[tuple[int, str]]:
    """(level, section number) of every markdown heading: '## 4. Fashion-MNIST' -> (2, '4')."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                m = re.match(r"^(#{1,6})\s+(\d+(?:\.\d+)*)?", line)
                if m:
                    found.append((len(m.group(1)), m.group(2) or ""))
    return found


def code_shape(source: str) -> list[str]:
    """The tokens of a code cell without its comments, and with every string's text masked: the code a
    reader runs, whatever language its comments and printed words are in."""
    shape = []
    lines = [line for line in source.splitlines() if not line.lstrip().startswith("%")]  # magics
    for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
            continue
        if tok.type == tokenize.STRING or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            shape.append("<str>")
        else:
            shape.append(tok.string)
    return shape


@pytest.mark.parametrize("name", sorted({p.name for p in NOTEBOOKS}))
def test_every_language_has_the_same_sections_and_code(name):
    books = {lang: read(ROOT / lang / name) for lang in LANGUAGES}
    first, *others = LANGUAGES
    for lang in others:
        a, b = books[first], books[lang]
        assert [c.cell_type for c in a.cells] == [c.cell_type for c in b.cells], lang
        assert headings(a) == headings(b), lang
        for x, y in zip(a.cells, b.cells, strict=True):
            if x.cell_type == "code":
                assert code_shape(x.source) == code_shape(y.source), (lang, x.source[:80])
    assert len([h for h in headings(books[first]) if h[1]]) >= 10  # the numbered sections are there


# ---- execution ---------------------------------------------------------------------------------------


def execute(path: Path, cwd: Path, monkeypatch, data_dir) -> tuple[object, float, Exception | None]:
    """Run a notebook from a clean kernel in ``cwd`` (quick mode); returns (notebook, seconds, error)."""
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("CNNLAB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(data_dir))
    nb = read(path)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    start, error = time.perf_counter(), None
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        error = exc
    return nb, time.perf_counter() - start, error


def shown_text(output) -> str:
    """What a reader sees of an output, as plain text."""
    if output.output_type == "stream":
        return output.text
    data = output.get("data", {})
    if "text/html" in data:
        return TAG.sub("", data["text/html"])
    return ANSI.sub("", data.get("text/plain", ""))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_runs_from_a_clean_kernel(path, tmp_path, monkeypatch, fmnist_dir):
    nb, seconds, error = execute(path, tmp_path, monkeypatch, fmnist_dir)
    print(f"{path.parent.name}/{path.name}: {seconds:.1f} s")
    assert error is None, str(error)[-3000:]
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        assert seconds <= BUDGET_S, f"{path} took {seconds:.0f} s in quick mode (budget {BUDGET_S} s)"
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        for out in cell.outputs:
            assert out.output_type != "error"
            if out.output_type == "execute_result":  # a table or a picture, not a repr string
                data = out.data
                rich = "text/html" in data or any(k.startswith("image/") for k in data)
                plain = data.get("text/plain", "")
                assert rich or (len(plain) < 400 and not plain.startswith("<")), (
                    cell.source[:80],
                    plain[:200],
                )
    # live progress leaves text behind: no widget (an empty Output() once closed), no empty display
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        for out in cell.outputs:
            if out.output_type in ("display_data", "execute_result"):
                assert not any("widget" in k for k in out.data), (cell.source[:80], list(out.data))
                assert shown_text(out).strip() not in ("", "Output()"), (cell.source[:80], out.data)
    # training progress is readable: a few lines per fit, every epoch's line, no escape codes shown
    fits = [c for c in nb.cells if c.cell_type == "code" and "cl.fit(" in c.source]
    assert fits
    for cell in fits:
        assert len(cell.outputs) <= 2 + 2 + 3, [o.output_type for o in cell.outputs]  # 2 epochs in quick mode
        text = "".join(shown_text(o) for o in cell.outputs)
        assert "epoch 1/2" in text and "epoch 2/2" in text and "\x1b[" not in text
    assert (tmp_path / "runs" / "compare" / "results.md").is_file()
    # quick mode ends on a model that learned: the shapes model calls the new triangle a triangle
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "new_triangle.png" in last.source
    (result,) = [o for o in last.outputs if o.output_type == "execute_result"]
    probabilities = ast.literal_eval(result.data["text/plain"])
    assert max(probabilities, key=probabilities.get) == "triangle", probabilities
    assert probabilities["triangle"] >= 0.5, probabilities


@pytest.mark.slow
def test_without_the_dataset_the_notebook_says_how_to_provide_it(tmp_path, monkeypatch):
    path = ROOT / "en" / "cnnlab_tutorial.ipynb"
    empty = tmp_path / "no-data"
    empty.mkdir()
    nb, _, error = execute(path, tmp_path, monkeypatch, empty)
    assert error is not None
    (cell,) = [
        c for c in nb.cells if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)
    ]
    assert "cl.load_data(" in cell.source
    (err,) = [o for o in cell.outputs if o.output_type == "error"]
    (line,) = err.traceback  # one line, not a traceback through cnnlab's internals
    assert line.startswith("cnnlab: error: No fashion_mnist files in") and str(empty) in line
    assert "CNNLAB_DATA_DIR" in line and "fashion-mnist/" in line


# ---- what the notebooks show ---------------------------------------------------------------------------


def test_the_overview_names_the_classes_beside_the_softmax_column():
    import numpy as np

    import cnnlab as cl
    from cnnlab.data.mnist import DATASETS
    from cnnlab.explain.reprs import activations_html, overview

    classes = list(DATASETS["fashion_mnist"].classes)
    acts = cl.explain.activations(cl.create_model("cnn2", seed=0), np.zeros((28, 28)), classes=classes)
    fig = overview(acts)
    (ax,) = fig.axes
    height, width = ax.images[0].get_array().shape[:2]
    labels = [t for t in ax.texts if t.get_position()[0] > width]  # right of the last (softmax) column
    assert [t.get_text().rsplit(" ", 1)[0] for t in labels] == classes
    ys = [t.get_position()[1] for t in labels]
    assert ys == sorted(ys) and ys[0] > 0 and ys[-1] < height  # top to bottom, in the column's bands
    bold = [t.get_text() for t in labels if t.get_fontweight() == "bold"]
    assert bold == [labels[acts.prediction.index].get_text()]  # the prediction stands out
    assert "<img" in activations_html(acts)


def test_progress_line_ends_as_plain_text(monkeypatch):
    """In Jupyter, live progress is a display updated in place that ends as one line of text: nothing
    for a widget to leave behind (issue #21: empty Output() widgets after every training cell)."""
    import IPython
    import IPython.display

    from cnnlab.engine.progress import ProgressLine

    shown: list[dict] = []

    class Handle:
        def update(self, bundle, raw=False):
            shown[-1] = bundle

    def display(bundle, raw=False, display_id=False):
        assert raw and display_id
        shown.append(bundle)
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    line = ProgressLine()
    line.update("epoch 1/2  step 1/30  <loss>", 1 / 30)
    assert "<progress" in shown[0]["text/html"] and "&lt;loss&gt;" in shown[0]["text/html"]  # escaped
    line.update("epoch 1/2  step 26/30", 26 / 30)
    assert len(shown) == 1 and shown[0]["text/plain"] == "epoch 1/2  step 26/30"  # updated in place
    line.close("trained 2 epochs in 3.1 s")
    line.close("again")  # idempotent
    line.update("late")  # ignored once closed
    assert shown == [{"text/plain": "trained 2 epochs in 3.1 s"}]
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # plain Python: nothing displayed
    ProgressLine().update("x", 0.5)
    assert len(shown) == 1
