"""Each core CLI command end to end on a small real subset, and every bad input: one line, exit code."""

from __future__ import annotations

import json
import os

import pytest
import torch

import cnnlab as cl


@pytest.fixture
def data_args(fmnist_dir):
    return ["--data-dir", str(fmnist_dir)]


def test_datasets_and_models(run_cli):
    code, out, _ = run_cli("datasets", "--json")
    assert code == 0 and {d["name"] for d in json.loads(out)} >= {"fashion_mnist", "mnist"}
    code, out, _ = run_cli("models", "--json")
    params = {m["name"]: m["params_28x28x1"] for m in json.loads(out)}
    assert code == 0 and params["cnn4"] == 522_570  # a number in JSON, not text
    code, out, _ = run_cli("models")
    assert code == 0 and "cnn2" in out and "conv<C>" in out


def test_summary(run_cli):
    code, out, _ = run_cli("summary", "cnn2")
    assert code == 0 and "Total params: 485,514" in out and "(None, 128, 5, 5)" in out
    code, out, _ = run_cli("summary", "conv32-pool-dense64", "--json")
    assert code == 0 and json.loads(out)["layers"][0]["output_shape"] == [32, 26, 26]


def test_summary_of_a_model_for_your_own_folder(run_cli, tmp_path):
    for cls in ("cat", "dog", "fox"):
        (tmp_path / "pets" / cls).mkdir(parents=True)
        (tmp_path / "pets" / cls / "a.png").write_bytes(b"listed, never decoded")  # summary needs no pixels
    code, out, err = run_cli("summary", "cnn2", "--data", tmp_path / "pets", "--image-size", "32")
    assert code == 0, err
    assert "(3x32x32)" in out and "(None, 3)" in out  # RGB by default, as train decodes folders; 3 classes


@pytest.mark.slow
def test_train_then_eval(run_cli, data_args, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err = run_cli(
        "train",
        "--model",
        "cnn1",
        "--out",
        out_dir,
        "--limit",
        "1500",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--quiet",
        "--json",
        *data_args,
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["epochs_run"] == 2 and res["params"] == 1_386_506 and res["n_test"] == 1500
    for f in (
        "config.json",
        "env.json",
        "metrics.csv",
        "model.safetensors",
        "results.json",
        "plots/learning_curves.png",
    ):
        assert (out_dir / f).is_file(), f
    cfg = json.loads((out_dir / "config.json").read_text())
    assert (
        cfg["model"] == "cnn1"
        and cfg["batch_size"] == 64
        and cfg["input_shape"] == [1, 28, 28]
        and len(cfg["classes"]) == 10
    )
    assert json.loads((out_dir / "env.json").read_text())["torch"] == torch.__version__
    assert (out_dir / "metrics.csv").read_text().splitlines()[
        0
    ] == "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds"
    # eval reproduces the saved final-set numbers from the saved weights
    code, out, _ = run_cli("eval", out_dir, "--json", *data_args)
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(res["test_accuracy"], abs=1e-4)
    run = cl.load_run(out_dir)
    assert cl.count_params(run.model) == 1_386_506 and run.history.epochs == 2
    # never silently overwritten
    before = (out_dir / "model.safetensors").read_bytes()
    code, _, err = run_cli(
        "train", "--model", "mlp", "--out", out_dir, "--limit", "500", "--epochs", "1", *data_args
    )
    assert code == 1 and "already holds" in err and (out_dir / "model.safetensors").read_bytes() == before


@pytest.mark.slow
def test_compare(run_cli, data_args, tmp_path):
    out_dir = tmp_path / "cmp"
    code, out, err = run_cli(
        "compare",
        "--models",
        "mlp,conv8-pool-dense32",
        "--out",
        out_dir,
        "--limit",
        "1000",
        "--epochs",
        "2",
        "--batch-size",
        "128",
        "--json",
        *data_args,
    )
    assert code == 0, err
    rows = json.loads(out)["results"]
    assert [r["model"] for r in rows] == ["mlp", "conv8-pool-dense32"] and all(
        r["epochs_run"] == 2 for r in rows
    )
    for f in (
        "results.md",
        "results.csv",
        "results.json",
        "learning_curves.png",
        "mlp/model.safetensors",
        "conv8-pool-dense32/metrics.csv",
    ):
        assert (out_dir / f).is_file(), f
    md = (out_dir / "results.md").read_text()
    assert "| mlp | 101,770 | 2 |" in md and "error %" in md


@pytest.mark.parametrize(
    "args,code,message",
    [
        (
            ["train", "--data", "cifar99", "--out", "{tmp}/a"],
            1,
            "Unknown dataset 'cifar99' (did you mean 'cifar10'?). Available: fashion_mnist, mnist",
        ),
        (
            ["train", "--model", "cnn5", "--out", "{tmp}/a"],
            1,
            "Unknown model 'cnn5' (did you mean 'cnn4' or 'cnn2' or 'cnn1'?). Available: mlp, cnn1, cnn2, cnn4",
        ),
        (["train", "--model", "conv8-bogus", "--out", "{tmp}/a"], 1, "Invalid layer spec"),
        (["train", "--epochs", "0", "--out", "{tmp}/a"], 2, "expected a positive integer"),
        (["train", "--batch-size", "-3", "--out", "{tmp}/a"], 2, "expected a positive integer"),
        (["train", "--limit", "999999", "--out", "{tmp}/a"], 1, "limit must be an integer from 1 to 45,000"),
        (["train", "--data-dir", "{tmp}/nowhere", "--out", "{tmp}/a"], 1, "nowhere"),
        (["train", "--data-dir", "{tmp}", "--out", "{tmp}/a"], 1, "No fashion_mnist files"),
        (["train", "--device", "tpu", "--out", "{tmp}/a"], 1, "Unknown device"),
        (["train", "--optimizer", "rmsprop", "--out", "{tmp}/a"], 2, "invalid choice: 'rmsprop'"),
        (["train", "--weight-decay", "-1", "--out", "{tmp}/a"], 2, "--weight-decay: expected a number >= 0"),
        (["train", "--weight-decay", "nan", "--out", "{tmp}/a"], 2, "--weight-decay: expected a number >= 0"),
        (["train", "--lr", "inf", "--out", "{tmp}/a"], 2, "--lr: expected a positive number"),
        (["train", "--data", "{tmp}/x.txt", "--out", "{tmp}/a"], 1, "is a file, not a dataset"),
        (["summary", "conv99999999999999"], 1, "at most 65,536 channels"),
        (["compare", "--models", "mlp,cnn5", "--out", "{tmp}/a"], 1, "Unknown model 'cnn5'"),
        (["eval", "{tmp}/missing"], 1, "does not exist"),
        (["eval", "{tmp}"], 1, "is not a cnnlab run"),
        (["summary", "cnn2", "--data", "nope"], 1, "Unknown dataset"),
        (["train", "--bogus-flag", "--out", "{tmp}/a"], 2, "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_clear_line(run_cli, tmp_path, fmnist_dir, monkeypatch, args, code, message):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(fmnist_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "x.txt").write_text("not a dataset")
    got, out, err = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert got == code
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()  # nothing written


def test_corrupt_weights_are_a_clear_error(run_cli, tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model": "mlp", "input_shape": [1, 28, 28], "classes": list("abcdefghij")})
    )
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    code, _, err = run_cli("eval", tmp_path)
    assert code == 1 and "not a readable safetensors file" in err


def test_python_dash_m_and_help():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "cnnlab", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for cmd in ("datasets", "models", "summary", "train", "eval", "compare"):
        assert cmd in r.stdout


@pytest.mark.slow  # several seconds: fresh interpreters or real training
def test_eval_repeats_the_runs_own_test_time_views_and_autocast(run_cli, tmp_path, fmnist_dir):
    out_dir = tmp_path / "run"
    args = ["--data-dir", str(fmnist_dir)]
    code, out, _ = run_cli(
        "train", "--recipe", "fast", "--limit", "600", "--epochs", "1", "--tta", "identity,flip",
        "--amp", "bf16", "--out", out_dir, "--json", "--quiet", *args,
    )  # fmt: skip
    assert code == 0
    trained = json.loads(out)
    code, out, _ = run_cli("eval", out_dir, "--json", *args)
    assert code == 0
    evaluated = json.loads(out)
    assert (evaluated["accuracy"], evaluated["loss"]) == pytest.approx(
        (trained["test_accuracy"], trained["test_loss"]), abs=1e-4
    )


@pytest.fixture(scope="module")
def tiny_run(tiny, tmp_path_factory):
    """A run folder trained for one epoch on the generated dataset."""
    out = tmp_path_factory.mktemp("runs") / "mlp"
    cfg = cl.TrainConfig(model="mlp", epochs=1, batch_size=50, device="cpu")
    cl.train(cfg, out=out, data=tiny, progress=False)
    return out


def _image(path):
    from PIL import Image

    Image.new("L", (28, 28), 128).save(path)
    return path


@pytest.mark.parametrize("where", ["a_file", "read_only/sub", "/proc/nowhere"])
def test_explain_out_that_cannot_be_written_is_one_line(run_cli, tiny_run, tmp_path, where):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "read_only").mkdir()
    (tmp_path / "read_only").chmod(0o500)
    out = where if where.startswith("/") else tmp_path / where
    try:
        code, _, err = run_cli("explain", tiny_run, _image(tmp_path / "x.png"), "--out", out)
    finally:
        (tmp_path / "read_only").chmod(0o700)
    if os.geteuid() == 0 and where.startswith("read_only"):
        assert code == 0  # root writes anywhere: nothing to refuse
        return
    assert code == 1 and "Cannot write the report to" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_a_full_disk_while_writing_is_one_line(run_cli, tiny_run, tmp_path, monkeypatch):
    import errno

    import cnnlab.explain.files as files

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.png"))

    monkeypatch.setattr(files, "write_atomic", full, raising=False)
    monkeypatch.setattr(files, "image_report", full)
    code, _, err = run_cli("explain", tiny_run, _image(tmp_path / "x.png"), "--out", tmp_path / "out")
    assert code == 1 and "No space left on device" in err and "Traceback" not in err


def test_summary_of_a_huge_spec_at_a_huge_size_allocates_nothing(run_cli):
    # real activations would take 2 GB for one image; building and summarising allocate none of them
    code, out, err = run_cli("summary", "conv512-conv512-gap", "--image-size", "1024")
    assert code == 0, err
    assert "(None, 512, 1020, 1020)" in out and "Total params: 2,370,058" in out
    code, _, err = run_cli("summary", "conv65536-conv65536-dense65536", "--image-size", "512")
    assert code == 1 and "over 2 billion parameters" in err and "Traceback" not in err
