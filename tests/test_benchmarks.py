"""The benchmark scripts the README's tables come from still run: tiny real-data smoke runs on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(script: str, *args: str, env_out: Path | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if env_out is not None:
        env["OUT"] = str(env_out)
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, env=env
    )


def test_speedrun_budget_stops_starting_seeds_and_keeps_the_json(fmnist_dir, tmp_path):
    out = tmp_path / "speedrun.json"
    r = _run(
        "speedrun.py",
        "--device",
        "cpu",
        "--limit",
        "400",
        "--epochs",
        "1",
        "--seeds",
        "3",
        "--budget",
        "0",
        "--data-dir",
        str(fmnist_dir),
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    record = json.loads(out.read_text())
    assert [run["seed"] for run in record["runs"]] == [0]  # budget spent after the first seed
    assert "budget of 0 s spent" in r.stdout
    target = record["summary"]["targets"]["0.91"]
    assert target["of"] == 1 and record["config"]["model"] == "fastcnn"


def test_gpu_all_runs_its_parts_and_writes_a_summary(fmnist_dir, tmp_path):
    r = _run(
        "gpu_all.py",
        "--device",
        "cpu",
        "--quick",
        "--limit",
        "128",  # the plain peer's GPU-sized net on a CPU: a smoke test of the plumbing, not a measurement
        "--parts",
        "fast,plain",
        "--data-dir",
        str(fmnist_dir),
        env_out=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "gpu_all.json").read_text())
    part = summary["parts"]["fast"]
    assert part["returncode"] == 0 and part["seeds"] == 2
    assert set(part["summary"]["targets"]) == {"0.91", "0.93", "0.94", "0.95", "0.96"}
    assert "| fast | 2 |" in r.stdout
    peer = summary["parts"]["plain"]  # the plain-PyTorch peer ran and was summarised beside cnnlab
    assert peer["returncode"] == 0 and peer["seeds"] == 1 and 0 <= peer["final_accuracy_mean"] <= 1
    assert "| plain | 1 |" in r.stdout


def test_gpu_all_refuses_unknown_parts_and_a_missing_gpu(tmp_path):
    r = _run("gpu_all.py", "--parts", "fast,turbo", env_out=tmp_path)
    assert r.returncode != 0 and "Unknown part(s) turbo" in r.stderr
    import torch

    if not torch.cuda.is_available():
        r = _run("gpu_all.py", env_out=tmp_path)
        assert r.returncode != 0 and "needs a CUDA GPU" in r.stderr


def test_folder_bench_large_runs_its_parts_on_a_tiny_folder(tmp_path):
    """Issue 25's figures on 120 JPEGs, 80 of them for training (the capped epoch needs root and a cgroup: left to the real run)."""
    import os

    out = tmp_path / "large.json"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(ROOT / "src")}
    args = ["--n", "120", "--small-n", "120", "--source-size", "48", "--size", "32", "--rounds", "1"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "folder_bench.py"), "large", *args, "--folder",
         str(tmp_path / "jpegs"), "--skip", "capped", "--out", str(out)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["decode"]["ratio"] > 0 and result["decode"]["decoded_bytes"] == 120 * 3 * 32 * 32
    assert result["warm"]["train"] == 80 and result["warm"]["load_to_first_batch_s"] > 0
    assert result["speed"]["identical_weights"] is True and result["speed"]["stream_images_per_s"] > 0
