"""compare: one protocol for several models, a truthful results.md, and resuming an interrupted comparison."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

import cnnlab as cl
from cnnlab.engine import ProgressBar
from cnnlab.engine.signals import Interrupted
from cnnlab.experiment import protocol
from test_folder import make_folder

MODELS = ["mlp", "conv8-pool-dense16"]


def _cfg(**kw):
    return cl.TrainConfig(epochs=2, batch_size=50, device="cpu", **kw)


def test_interrupted_compare_resumes_keeping_finished_models(tiny, tmp_path):
    root = tmp_path / "cmp"

    def stop_after_first(result):
        raise Interrupted("SIGINT: stopped", 2)

    with pytest.raises(Interrupted):
        cl.compare(MODELS, _cfg(), out=root, data=tiny, progress=False, on_result=stop_after_first)
    first = root / "mlp" / "model.safetensors"
    stamp = first.stat().st_mtime_ns
    assert not (root / "results.md").exists()
    with pytest.raises(cl.CnnlabError, match="already holds"):  # a plain rerun never overwrites
        cl.compare(MODELS, _cfg(), out=root, data=tiny, progress=False)

    trained = []
    results = cl.compare(
        MODELS, _cfg(), out=root, data=tiny, progress=False, resume="auto", on_result=trained.append
    )
    assert [r.name for r in results] == MODELS
    assert first.stat().st_mtime_ns == stamp  # the finished model was kept, not trained again
    assert results[0].test["n"] == len(tiny.test) and results[1].history.epochs == 2
    assert (root / "results.md").is_file() and "| mlp |" in (root / "results.md").read_text()


def test_resume_refuses_a_comparison_made_with_other_settings(tiny, tmp_path):
    root = tmp_path / "cmp"
    cl.compare(MODELS[:1], _cfg(), out=root, data=tiny, progress=False)
    with pytest.raises(cl.CnnlabError, match="other settings \\(lr"):
        cl.compare(MODELS[:1], _cfg(lr=0.01), out=root, data=tiny, progress=False, resume="auto")


@pytest.mark.parametrize(
    "kw,says,never",
    [
        (
            dict(patience=None, monitor="val_accuracy"),
            "all 2 epochs, keeping the epoch with the best val_accuracy",
            "patience",
        ),
        (dict(patience=3), "early stopping on val_loss (patience 3), best weights restored", "keeping"),
        (dict(label_smoothing=0.1, ema=0.99), "label smoothing 0.1, EMA weights", "official"),
        (dict(patience=None, monitor_window=5), "val_loss averaged over the 5 epochs ending there", "ties"),
    ],
)
def test_protocol_says_what_was_done(tiny, kw, says, never):
    text = protocol(_cfg(**kw), tiny)
    assert says in text and never not in text
    assert "held-out test split" in text  # a generated dataset has no official test set


def test_protocol_names_a_limited_test_set_a_subset(tiny):
    text = protocol(cl.TrainConfig(limit=100), dataclasses.replace(tiny, name="fashion_mnist"))
    assert "a subset of the official test set" in text


def test_protocol_calls_a_whole_test_set_official_even_under_a_large_limit(tiny):
    import torch

    from cnnlab.data import Split

    test = Split(torch.zeros(10_000, 1, 28, 28, dtype=torch.uint8), torch.zeros(10_000, dtype=torch.int64))
    whole = dataclasses.replace(tiny, name="fashion_mnist", test=test)
    text = protocol(cl.TrainConfig(limit=15_000), whole)
    assert "(the official test set)" in text and "subset" not in text


def test_progress_prints_lines_when_not_on_a_terminal(tiny):
    out = io.StringIO()
    model = cl.create_model("mlp", seed=0)
    bar = ProgressBar(stream=out, every_seconds=0.0)
    cl.fit(model, tiny, epochs=2, batch_size=50, progress=False, callbacks=[bar], device="cpu")
    lines = out.getvalue().splitlines()
    assert any(line.startswith("epoch 1/2  step 1/4") for line in lines)  # inside the first epoch
    assert sum(line.startswith("epoch 2/2  ") and "val_acc" in line for line in lines) == 1


def test_a_folder_run_records_its_real_split_files_and_normalisation(tmp_path, run_cli, monkeypatch):
    import json

    from PIL import Image

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for cls, colour in (("red", (230, 20, 20)), ("blue", (20, 20, 230))):
        (tmp_path / "pics" / cls).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (16 + i, 20), colour).save(tmp_path / "pics" / cls / f"{i}.png")
    code, out, err = run_cli(
        "train", "--data", tmp_path / "pics", "--out", tmp_path / "run", "--image-size", "12",
        "--model", "conv4-pool-dense8", "--epochs", "1", "--min-steps", "0",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("recipe folder (your own small folder): conv4-pool-dense8 on 12 training images")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"] == "folder" and config["split"] == "default" and config["normalize"] is True
    assert config["mean"] and config["dataset"]["split_description"].startswith("stratified 70/15/15")
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == sorted(
        f"{c}/{i}.png" for c in ("blue", "red") for i in range(10)
    )


def test_lesson_checks_the_posts_ordering_in_words():
    from cnnlab.engine import History
    from cnnlab.experiment import RunResult, lesson

    def r(name, err):
        return RunResult(name, None, 1, History([]), {"error_pct": err})

    ok = lesson([r("mlp", 12.0), r("cnn1", 9.0), r("cnn2", 8.7), r("cnn4", 8.2)])
    assert ok[0].startswith("MLP worse than every CNN: yes") and ok[1].endswith(": yes")
    bad = lesson([r("mlp", 12.0), r("cnn1", 8.9), r("cnn2", 9.4), r("cnn4", 8.2)])
    assert "NOT in this run: cnn2 9.40% > cnn1 8.90%" in bad[1]
    assert lesson([r("fastcnn", 8.0)]) == []


def test_protocol_names_the_recipes_augmentations_from_the_option_table(tiny):
    cfg = _cfg(augment_flip="alternating", augment_translate=2, augment_erasing=0.25, clip_grad_norm=1.0)
    text = protocol(cfg, tiny)
    for says in ("alternating horizontal flips", "shifts of up to 2 pixels", "random erasing (p 0.25)",
                 "gradients clipped to norm 1"):  # fmt: skip
        assert says in text, says
    assert cl.TrainConfig().reported() == []  # defaults name nothing


def test_data_options_are_the_tables_data_group():
    from cnnlab.config import options_in

    assert set(cl.TrainConfig().data_options()) == set(options_in("data")) - {"data"}


def test_cli_compare_streams_each_model_with_data_placement_stream(tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "pets", {"cat": 12, "dog": 12})
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(
        "compare", "--data", root, "--image-size", "12", "--models", ",".join(MODELS), "--epochs", "1",
        "--batch-size", "4", "--data-placement", "stream", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    plans = [line for line in stdout.splitlines() if "; data placement " in line]
    assert len(plans) == 2 and all(
        line.endswith("; data placement stream: as --data-placement stream asks") for line in plans
    )
    for model in MODELS:
        config = json.loads((out / model / "config.json").read_text())
        assert config["data_placement"] == "stream" and config["model"] == model
    assert (out / "results.md").is_file()


def test_cli_compare_refuses_a_bad_data_placement_in_one_line(tmp_path, run_cli):
    code, _, err = run_cli("compare", "--models", "mlp", "--data-placement", "disk", "--out", tmp_path / "c")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--data-placement: invalid choice: 'disk'" in err
    assert not (tmp_path / "c").exists()
