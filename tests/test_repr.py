"""What cnnlab's objects show in Jupyter: `_repr_html_` tables with the numbers they hold, inline images
that are real PNGs/GIFs, all text escaped (cnnlab.notebook)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

import cnnlab as cl
from cnnlab import notebook
from cnnlab.engine import History
from cnnlab.explain import reprs
from conftest import synthetic_dataset

EVIL = '<img src=x onerror="alert(1)">'


def images_in(html: str) -> list[Image.Image]:
    """Every inline data: image of an HTML fragment, decoded (and checked to be a whole file)."""
    found = []
    for mime, b64 in re.findall(r'src="data:image/(png|gif);base64,([A-Za-z0-9+/=]+)"', html):
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.load()
        assert img.format == mime.upper()
        found.append(img)
    return found


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(n_train=100, n_val=50, n_test=50)


@pytest.fixture(scope="module")
def trained(data):
    model = cl.create_model("conv4-pool-dense8", input_shape=data.input_shape, num_classes=10, seed=0)
    history = cl.fit(
        model, data, epochs=3, batch_size=25, progress=False, callbacks=[cl.EarlyStopping(patience=5)]
    )
    return model, history


def test_summary_is_a_table_of_every_stage_with_its_numbers():
    s = cl.summary(cl.create_model("cnn2"), (1, 28, 28))
    html = s._repr_html_()
    for row in s.rows:
        assert f">{row.name}<" in html and f">{row.params:,}<" in html
    assert ">485,514<" in html and ">64x26x26<" in html and html.count("<tr>") == len(s.rows) + 4 + 1


def test_history_shows_every_epoch_the_best_in_bold_and_curves(trained):
    _, history = trained
    html = history._repr_html_()
    assert html.count("<tr>") == 1 + history.epochs  # header + one row per epoch
    for r in history.rows:
        assert f">{notebook.fmt(r['val_loss'])}<" in html
    best = re.findall(r'font-weight:bold">(\d+)</td>', html)
    assert best[0] == str(history.best_epoch)
    (curves,) = images_in(html)
    assert curves.size[0] > 400 and curves.size[1] > 150


def test_long_tables_are_elided_but_keep_the_best_row():
    rows = [{"epoch": i, "loss": 1.0 / i, "accuracy": 0.5} for i in range(1, 41)]
    html = History(rows, best_epoch=20)._repr_html_()
    assert "… " in html and "more</td>" in html
    assert html.count("<tr>") < 25 and 'font-weight:bold">20<' in html


def test_empty_history_says_so():
    assert "No epochs yet" in History()._repr_html_() and not images_in(History()._repr_html_())


def test_run_result_and_saved_run_show_settings_results_and_curves(trained, data, tmp_path):
    model, history = trained
    path = cl.save_run(
        tmp_path / "run",
        model,
        history,
        data=data,
        config={"model": "conv4-pool-dense8"},
        results={"test": cl.evaluate(model, data.test)},
    )
    run = cl.load_run(path)
    html = run._repr_html_()
    test = run.results["test"]
    assert ">conv4-pool-dense8<" in html and ">synthetic<" in html
    assert f">{notebook.fmt(round(test['error_pct'], 2))}<" in html and ">Error %<" in html
    assert len(images_in(html)) == 1


def test_compare_returns_a_list_that_renders_the_error_table(data):
    results = cl.compare(
        ["mlp", "conv4-pool-dense8"],
        cl.TrainConfig(epochs=1, batch_size=25),
        out=None,
        data=data,
        progress=False,
    )
    assert (
        isinstance(results, list)
        and len(results) == 2
        and [r.name for r in results] == ["mlp", "conv4-pool-dense8"]
    )
    html = results._repr_html_()
    for r in results:
        assert f">{r.name}<" in html and f">{notebook.fmt(r.row()['error_pct'])}<" in html
    best = min(results, key=lambda r: r.test["error_pct"])
    assert f'font-weight:bold">{best.name}<' in html and ">error %<" in html
    assert len(images_in(html)) == 1
    one = results[0]._repr_html_()
    assert ">mlp<" in one and ">101,770<" in one and len(images_in(one)) == 1


def test_text_is_escaped(tmp_path):
    model = cl.create_model("mlp", num_classes=2, seed=0)
    history = History([{"epoch": 1, "loss": 0.5, "accuracy": 0.5}], best_epoch=1)
    config = {"model": "mlp", "input_shape": [1, 28, 28], "classes": [EVIL, "b"], "data": EVIL}
    run = cl.load_run(cl.save_run(tmp_path / "r<b>", model, history, config=config))
    html = run._repr_html_()
    assert EVIL not in html and "&lt;img src=x" in html and "r&lt;b&gt;" in html
    table = notebook.table([EVIL], [[EVIL]], caption=EVIL)
    assert "<img" not in table and table.count("&lt;img") == 3


def test_animation_is_an_inline_gif_with_every_frame():
    anim = cl.filters.animate(5, 3, padding=1, stride=2)
    html = anim._repr_html_()
    (gif,) = images_in(html)
    assert gif.format == "GIF" and gif.n_frames == len(anim.frames) == 9
    assert "3x3 output" in html


def test_filter_figures_draw_themselves_as_png():
    img = cl.filters.sample_image(gray=True)[:60, :80]
    fig = cl.filters.tutorial_figure(img, cl.filters.apply(img, "outline"), "outline")
    png = Image.open(io.BytesIO(fig._repr_png_()))
    assert png.format == "PNG" and png.size[0] > 2 * png.size[1] > 200
    grid = cl.filters.grid_figure(img, [("blur", cl.filters.get_kernel("blur"), img)])
    assert Image.open(io.BytesIO(grid._repr_png_())).format == "PNG"


def test_dataset_view_has_split_sizes_and_one_image_per_class(data):
    html = data._repr_html_()
    assert ">train<" in html and ">100<" in html and ">50<" in html and "9: angle9" in html
    (strip,) = images_in(html)
    assert strip.size == (10 * (28 + 2) * 2, 28 * 2)


def test_explanations_show_themselves(trained, data):
    """Activations, their prediction, heat maps and explain's figures render in a notebook."""
    model, _ = trained
    image = data.test.images[0, 0].numpy()
    acts = cl.explain.activations(model, image, classes=data.classes)
    html = acts._repr_html_()
    assert f">{acts.prediction.label}<" in html and ">conv1<" in html and len(images_in(html)) == 1
    assert f">{acts.prediction.label}<" in acts.prediction._repr_html_()
    cam = cl.explain.gradcam(model, image, classes=data.classes)
    assert Image.open(io.BytesIO(cam._repr_png_())).format == "PNG"
    png = Image.open(io.BytesIO(reprs.heatmap_png(cam, acts["input"].values)))  # over the input
    assert png.format == "PNG" and np.asarray(png).std() > 0


def test_activations_are_a_read_only_mapping_named_by_the_run(trained, data, tmp_path):
    model, _ = trained
    cl.save_run(tmp_path / "r", model, cl.History(), data=data, config={"model": "conv4-pool-dense8"})
    run = cl.load_run(tmp_path / "r")
    acts = cl.explain.activations(run.model, data.test.images[0, 0].numpy())  # no classes= given
    assert acts.prediction.classes == list(data.classes)  # the run's own class names
    assert len(acts) == len(acts.layers) and list(acts)[0] == "input" and list(acts)[-1] == "softmax"
    assert "conv1" in acts and "nope" not in acts and acts.get("nope") is None
    with pytest.raises(cl.CnnlabError, match="Unknown layer 'nope'"):
        acts["nope"]


def test_printing_data_images_and_activations_is_a_short_summary(tiny):
    """print() of a dataset, a prepared image or activations is one line, as torch and NumPy summarise
    large arrays, never every pixel."""
    import numpy as np

    model = cl.create_model("cnn2", seed=0)
    acts = cl.explain.activations(model, tiny.test.images[0])
    for obj, says in (
        (tiny, "200 / 100 / 100 train/val/test images 1x28x28, 10 classes"),
        (tiny.train, "Split(200 images uint8 1x28x28"),
        (acts.input, "PreparedInput(1x28x28 in 0..1"),
        (acts, "14 stages [input, conv1, relu1"),
        (acts["conv1"], "Stage('conv1', conv, shape (64, 26, 26)"),
    ):
        text = repr(obj)
        assert says in text and "\n" not in text and len(text) < 200, text
    assert "tensor(" not in repr(tiny) and isinstance(acts["conv1"].values, np.ndarray)


def test_the_views_import_no_feature_module():
    """The types import their views, never the other way: ``cnnlab.notebook`` uses only the figure leaves,
    and explain's views only explain's figures and ``notebook``'s pieces (no import runs back up a floor)."""
    import ast
    from pathlib import Path

    def imported(module) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert {m for m in imported(notebook) if m.startswith("cnnlab")} == {"cnnlab.pictures", "cnnlab.plots"}
    assert {m for m in imported(reprs) if m.startswith("cnnlab")} == {
        "cnnlab.explain.figures",
        "cnnlab.notebook",
    }
