#!/usr/bin/env bash
# Set up .venv with cnnlab and its test tools. Idempotent: a second run only checks.
# PyTorch is pinned to the 2.13.0 CPU build first where that wheel is at hand (this project's machines);
# elsewhere pip picks your platform's torch (set CNNLAB_TORCH_SPEC to choose, e.g. "torch" for CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
say() { echo "setup: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv ($("$PY" --version 2>&1))"
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
stamp=.venv/.cnnlab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  start=$SECONDS
  say "installing into .venv (a few minutes the first time; later runs only check)"
  "${PIP[@]}" install --upgrade pip
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    say "1/2 PyTorch (${CNNLAB_TORCH_SPEC:-torch==2.13.0}, the largest download)"
    "${PIP[@]}" install "${CNNLAB_TORCH_SPEC:-torch==2.13.0}"
  fi
  say "2/2 cnnlab and its test tools (numpy, scipy, matplotlib, Pillow, FastAPI, pytest, Playwright, ONNX Runtime, timm, ...)"
  "${PIP[@]}" install -e ".[test]"
  touch "$stamp"
  say "ready in $((SECONDS - start)) s"
fi
