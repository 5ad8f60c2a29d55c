"""`save_run` writes a run that everything else can use: fit -> save_run -> load_run -> evaluate, and
`cnnlab eval`, `export` and `explain` on it find the run's own test images (issue #17)."""

from __future__ import annotations

import json

import pytest
import torch

import cnnlab as cl
from cnnlab.errors import CnnlabError
from conftest import synthetic_dataset


@pytest.fixture(scope="module")
def fitted(fmnist_dir):
    data = cl.load_data("fashion_mnist", split="tutorial", seed=0, data_dir=fmnist_dir, limit=600)
    model = cl.create_model("conv8-pool-dense16", input_shape=data.input_shape, num_classes=10, seed=0)
    history = cl.fit(model, data, epochs=1, batch_size=50, progress=False)
    return data, model, history


@pytest.mark.slow
def test_round_trip_fit_save_load_evaluate(fitted, tmp_path):
    data, model, history = fitted
    path = cl.save_run(tmp_path / "run", model, history, data=data, config={"model": "conv8-pool-dense16"})
    config = json.loads((path / "config.json").read_text())
    assert config["data"] == "fashion_mnist" and config["split"] == "tutorial" and config["limit"] == 600
    assert config["classes"] == list(data.classes) and config["input_shape"] == [1, 28, 28]
    run = cl.load_run(path)
    assert run.verified is True and run.classes == list(data.classes)
    again, before = cl.evaluate(run.model, data.test), cl.evaluate(model, data.test)
    assert again["accuracy"] == before["accuracy"] and again["loss"] == pytest.approx(
        before["loss"], rel=1e-5
    )
    # the trained model's weights are channels_last, the loaded ones contiguous: another conv kernel
    torch.testing.assert_close(cl.predict(run.model, data.test), cl.predict(model, data.test))


@pytest.mark.slow
def test_cnnlab_eval_and_export_use_the_runs_own_test_images(fitted, tmp_path, fmnist_dir, run_cli):
    data, model, history = fitted
    path = cl.save_run(tmp_path / "run", model, history, data=data, config={"model": "conv8-pool-dense16"})
    code, out, err = run_cli("eval", path, "--data-dir", fmnist_dir, "--json")
    assert code == 0, err
    measured = json.loads(out)
    expected = cl.evaluate(model, data.test)
    assert measured["n"] == len(data.test) == 600 and measured["accuracy"] == pytest.approx(
        expected["accuracy"]
    )
    pytest.importorskip("onnxruntime")
    from cnnlab.export import export_run

    result = export_run(path, parity_images=100, data_dir=fmnist_dir)
    assert result.parity["source"] == "100 test images of fashion_mnist"


def test_a_train_config_names_the_model_and_the_normalize_stage_is_kept(tmp_path):
    data = synthetic_dataset(n_train=40, n_val=20, n_test=20)
    config = cl.TrainConfig(model="conv4-pool-dense8", normalize=True, epochs=1)
    model = cl.build_model(config, data)  # the builder `cnnlab train` uses: normalize stage included
    assert "normalize" in dict(model.named_children())
    path = cl.save_run(tmp_path / "run", model, cl.History(), data=data, config=config)
    run = cl.load_run(path)
    assert run.config["mean"] is not None and "normalize" in dict(run.model.named_children())
    x = data.test.images[:4]
    torch.testing.assert_close(cl.predict(run.model, x), cl.predict(model, x))


def test_what_is_missing_is_said_plainly(tmp_path):
    model = cl.create_model("mlp", seed=0)
    with pytest.raises(CnnlabError, match=r"name or layer spec.*config=\{'model': 'cnn2'\}"):
        cl.save_run(tmp_path / "a", model, cl.History(), data=synthetic_dataset(10, 10, 10))
    with pytest.raises(CnnlabError, match="input_shape and classes: pass data="):
        cl.save_run(tmp_path / "b", model, cl.History(), config={"model": "mlp"})
    with pytest.warns(UserWarning, match="no dataset recorded"):
        cl.save_run(
            tmp_path / "c",
            model,
            cl.History(),
            config={"model": "mlp", "input_shape": [1, 28, 28], "classes": list("abcdefghij")},
        )


def test_eval_of_a_run_that_records_no_dataset_is_one_line(run_cli, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = {"model": "mlp", "input_shape": [1, 28, 28], "classes": [str(i) for i in range(10)]}
        cl.save_run(tmp_path / "r", cl.create_model("mlp", seed=0), cl.History(), config=config)
    code, _, err = run_cli("eval", tmp_path / "r")
    assert code == 1 and "does not record its dataset" in err and "Traceback" not in err
