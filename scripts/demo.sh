#!/usr/bin/env bash
# The quick-start main job: set everything up, then run the tutorial's experiment (the MLP against CNNs
# with 1, 2 and 4 conv layers on Fashion-MNIST) in its quick form, a few minutes on a laptop CPU.
# Results land in runs/compare-quick-*/; the end compares them with the post's full protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Use the project's shared copy of Fashion-MNIST when there is one; otherwise cnnlab downloads it.
if [ -z "${CNNLAB_DATA_DIR:-}" ] && [ -f ../shared/data/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  export CNNLAB_DATA_DIR=../shared/data/fashion-mnist
fi
out="runs/compare-quick-$(date +%Y%m%d-%H%M%S)"
start=$SECONDS
.venv/bin/cnnlab compare --quick --models mlp,cnn1,cnn2,cnn4 --out "$out" "$@"
echo "Quick form done in $((SECONDS - start)) s; its table, learning curves and runs are in $out/"
.venv/bin/python scripts/full_protocol.py "$out"
