#!/usr/bin/env bash
# Web-page screenshots -> trained, evaluated, exported and explained classifier, with the cnnlab CLI only.
#
#   examples/web_pages/run.sh              # from the repository root, with cnnlab installed
#   PER_CLASS=40 EPOCHS=10 examples/web_pages/run.sh   # a quicker version
#
# Everything it writes stays in examples/web_pages/ (data/, new_pages/, runs/; all git-ignored).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
CNNLAB=${CNNLAB:-cnnlab}
PER_CLASS=${PER_CLASS:-150}
EPOCHS=${EPOCHS:-40}
MODEL=${MODEL:-conv32-pool-conv64-pool-conv64-pool-drop.25-dense64}

# 1. The dataset: PER_CLASS screenshots of each kind (article, shop, login, dashboard) in data/<kind>/,
#    plus 5 unseen pages of each kind in new_pages/, rendered by headless Chromium.
if [ "$(find data -name '*.png' 2>/dev/null | wc -l)" -ne $((PER_CLASS * 4)) ]; then
  rm -rf data new_pages
  "$PYTHON" make_dataset.py --per-class "$PER_CLASS"
fi

# 2. Train: the folder is decoded once (64x64 RGB, aspect kept and padded) into the user cache and cut
#    70/15/15 per class; the model normalises its input with the training split's mean/std.
"$CNNLAB" train --data data --image-size 64 --channels 3 --model "$MODEL" \
  --epochs "$EPOCHS" --patience 5 --out runs/web --overwrite --quiet

# 3. Evaluate on the held-out test split, predict unseen pages, export to ONNX (with a parity check).
"$CNNLAB" eval runs/web
"$CNNLAB" predict runs/web new_pages --top-k 2
"$CNNLAB" predict runs/web new_pages --format csv > runs/web/new_pages_predictions.csv
"$CNNLAB" export runs/web --format onnx --overwrite

# 4. Explain: the test-set report (confusion matrix, most confused pairs) and one unseen page of each kind.
if "$CNNLAB" explain --help > /dev/null 2>&1; then
  "$CNNLAB" explain runs/web
  "$CNNLAB" explain runs/web new_pages/new_article_0000.png new_pages/new_shop_0000.png \
    new_pages/new_login_0000.png new_pages/new_dashboard_0000.png
fi
