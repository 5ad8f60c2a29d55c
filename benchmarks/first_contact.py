"""A newcomer's typos: how long `cnnlab train` takes to refuse a misspelt model, recipe, dataset or folder
(the whole command, Python start-up included), and what it says. Target (issue 21): under 2 s, with a
suggestion, before anything is decoded.

    python benchmarks/first_contact.py        # alone on the machine; a few seconds

Writes benchmarks/results/first_contact.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "first_contact.json"
CASES = {
    "model typo": ["--data", "mypics", "--model", "resnet_ff"],
    "folder typo": ["--data", "mypic"],
    "dataset typo": ["--data", "fashion_mnst"],
    "recipe typo": ["--data", "mypics", "--recipe", "folde"],
    "spec typo": ["--data", "mypics", "--model", "conv32-pol-dense64"],
}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cls in ("cats", "dogs"):  # a real folder of 2 x 40 pictures, which no typo may decode
            (Path(tmp) / "mypics" / cls).mkdir(parents=True)
            for i in range(40):
                Image.fromarray(np.full((64, 64, 3), 40 * i % 255, np.uint8)).save(
                    Path(tmp) / "mypics" / cls / f"{i}.png"
                )
        for name, argv in CASES.items():
            times, said = [], ""
            for _ in range(3):
                t0 = time.perf_counter()
                r = subprocess.run(
                    [sys.executable, "-m", "cnnlab", "train", *argv, "--out", "run"],
                    cwd=tmp, capture_output=True, text=True,
                )  # fmt: skip
                times.append(time.perf_counter() - t0)
                said = r.stderr.strip()
                assert r.returncode == 1 and not (Path(tmp) / "run").exists(), said
            rows.append({"case": name, "argv": argv, "seconds": statistics.median(times), "message": said})
    print(machine_line())
    print(f"{'case':<13} {'median s':>8}  message")
    for r in rows:
        print(f"{r['case']:<13} {r['seconds']:>8.2f}  {r['message'][:150]}")
    met = all(r["seconds"] < 2 and "did you mean" in r["message"] for r in rows)
    print(f"target: every typo refused in under 2 s with a suggestion: {'met' if met else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine(), "rows": rows, "met": met}, indent=2) + "\n")


if __name__ == "__main__":
    main()
