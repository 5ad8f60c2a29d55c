#!/usr/bin/env bash
# Create benchmarks/.venv-keras with the pinned TensorFlow for the Keras peer.
#
# Kept in its own virtual environment so TensorFlow never leaks into cnnlab's
# environment (version clashes on numpy/protobuf, and a 500 MB import that
# cnnlab itself must not depend on).
#
# Idempotent: a stamp file inside the venv records the hash of the
# requirements it was built from; if it matches, nothing is reinstalled.
# Usage: benchmarks/peers/setup_keras_env.sh [--force]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv-keras"
req="$here/requirements-keras.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ "${1:-}" != "--force" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/python" -c "import tensorflow" 2>/dev/null; then
    echo "Keras env up to date: $venv"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "Creating $venv"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$req"
# Fail here, not in the middle of a benchmark, if the install is unusable.
TF_CPP_MIN_LOG_LEVEL=2 "$venv/bin/python" -c "import tensorflow as tf; print('TensorFlow', tf.__version__)"
echo "$want" > "$stamp"
echo "Keras env ready: $venv"
