"""Names checked before PyTorch loads (cnnlab.names): the same names the registry and loaders know, and
one-line errors with close matches for a typo."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import cnnlab.models.spec as spec
from cnnlab import names
from cnnlab.data import BUILTIN_NAMES
from cnnlab.errors import CnnlabError
from cnnlab.models import list_models


def test_the_lists_checked_without_torch_are_the_registry_and_the_loaders():
    assert tuple(m.name for m in list_models())[: len(names.BUILTIN_MODELS)] == names.BUILTIN_MODELS
    assert set(names.BUILTIN_MODELS) <= {m.name for m in list_models()}
    assert names.BUILTIN_DATASETS == BUILTIN_NAMES
    assert tuple(spec.ACTIVATIONS) == names.ACTIVATION_NAMES


@pytest.mark.parametrize(
    "data,says",
    [
        ("mypic", "Dataset folder or CSV 'mypic' does not exist (did you mean 'mypics' beside it?)"),
        ("sub/mypic", "Dataset folder or CSV 'sub/mypic' does not exist."),
        ("fashion_mnst", "Unknown dataset 'fashion_mnst' (did you mean 'fashion_mnist'?)"),
        ("nothing_like_it", "Unknown dataset 'nothing_like_it'. Available: fashion_mnist"),
    ],
)
def test_a_missing_dataset_is_named_as_missing_with_close_matches(tmp_path, monkeypatch, data, says):
    (tmp_path / "mypics" / "a").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CnnlabError) as err:
        names.check_dataset_name(data)
    assert says in str(err.value)
    names.check_dataset_name("mypics")  # what exists passes (its layout is checked when loading)
    names.check_dataset_name("fashion_mnist")


def test_a_model_typo_gets_the_close_matches_and_specs_pass():
    with pytest.raises(CnnlabError, match=r"Unknown model 'resnet_ff' \(did you mean 'resnet_f'"):
        names.check_model_name("resnet_ff")
    with pytest.raises(CnnlabError, match="unknown token 'pol'"):
        names.check_model_name("conv8-pol-dense16")
    for ok in ("cnn2", "conv8-pool-dense16", "timm:resnet18", "gap"):
        names.check_model_name(ok)


@pytest.mark.parametrize(
    "argv,says",
    [
        (["--model", "resnet_ff", "--data", "mypics"], "did you mean 'resnet_f'"),
        (["--data", "mypic"], "did you mean 'mypics' beside it"),
        (["--recipe", "folde", "--data", "mypics"], "did you mean 'folder'"),
    ],
)
def test_cli_typos_fail_before_torch_loads(tmp_path, argv, says):
    """A typo costs a fraction of a second: the check runs before PyTorch is imported, and nothing is
    decoded (the folder holds one unreadable image that decoding would report)."""
    (tmp_path / "mypics" / "a").mkdir(parents=True)
    (tmp_path / "mypics" / "a" / "x.png").write_bytes(b"not a png")
    probe = (
        "import sys; from cnnlab.cli import main; code = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)"
    )
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-c", probe, "train", *argv, "--out", "run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 1, p.stderr
    assert says in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    assert time.perf_counter() - t0 < 30  # (the target, < 2 s, is shown in benchmarks, not timed here)
