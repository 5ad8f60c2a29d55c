#!/usr/bin/env bash
# Set everything up, then run the whole test suite (CPU only). Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"`. pytest exits non-zero when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
