#!/usr/bin/env bash
# The quick-start main job: set everything up, then run the tutorial's experiment (MLP vs CNNs with
# 1, 2 and 4 conv layers on Fashion-MNIST) in its quick form. Results land in runs/compare-quick-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Use the project's shared copy of Fashion-MNIST when there is one; otherwise cnnlab downloads it.
if [ -z "${CNNLAB_DATA_DIR:-}" ] && [ -f ../shared/data/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  export CNNLAB_DATA_DIR=../shared/data/fashion-mnist
fi
exec .venv/bin/cnnlab compare --quick --models mlp,cnn1,cnn2,cnn4 --out "runs/compare-quick-$(date +%Y%m%d-%H%M%S)" "$@"
